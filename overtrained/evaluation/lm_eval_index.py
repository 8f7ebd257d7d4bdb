"""What lm-eval knows: task names, groups and the datasets each task reads, without a model.

Indexing lm-eval's bundled task YAMLs takes ~10-15 s, so the index is cached as JSON per
lm-eval version (in ~/.cache/overtrained, or $XDG_CACHE_HOME/overtrained). The Snakefile
uses it to reject a suite naming a task lm-eval does not know before any job runs (with
close names), and the prefetch rule to know which datasets a suite needs, so evaluation
jobs can run offline.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from importlib import metadata
from pathlib import Path

from overtrained.core.config import is_repo_task

# Per user and lm-eval version, shared by every checkout and working directory.
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "overtrained"


def _dataset(cfg: dict) -> dict | None:
    if not cfg or not cfg.get("dataset_path"):
        return None
    # datasets >= 4 runs no loading scripts, so trust_remote_code is moot (and refused).
    kwargs = {k: v for k, v in (cfg.get("dataset_kwargs") or {}).items()}
    kwargs.pop("trust_remote_code", None)
    return {"path": cfg["dataset_path"], "name": cfg.get("dataset_name"), "kwargs": kwargs}


def build() -> dict:
    """{name: {kind, children, dataset}} for every task, group and tag lm-eval ships."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    index: dict[str, dict] = {}
    for name, entry in manager.task_index.items():
        cfg = entry.cfg or {}
        children = cfg.get("task", []) if entry.kind.name == "GROUP" else []
        index[name] = {
            "kind": entry.kind.name.lower(),
            "children": [c if isinstance(c, str) else c.get("task") for c in children],
            "dataset": _dataset(cfg) if entry.kind.name == "TASK" else None,
        }
    # A name that is both a task and a tag means the task (as in lm-eval).
    for name, entry in manager.task_index.items():
        for tag in entry.tags or ():
            tagged = index.setdefault(tag, {"kind": "tag", "children": [], "dataset": None})
            if tagged["kind"] == "tag":
                tagged["children"].append(name)
    return index


def load(cache_dir: str | Path = DEFAULT_CACHE) -> dict:
    """The index, from the cache when it was built by this lm-eval version. Read once per
    process: the Snakefile asks for it in the params of every evaluation job."""
    version = metadata.version("lm_eval")
    return _load(Path(cache_dir) / f"lm_eval_index-{version}.json")


@functools.cache
def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    index = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, sort_keys=True))
    os.replace(tmp, path)
    return index


def standard_tasks(suite: dict) -> list[str]:
    """The suite's tasks that come from lm-eval (not the repo's mini_*/id_* YAMLs)."""
    return [name for name in suite["tasks"] if not is_repo_task(name)]


def unknown_task_message(name: str, index: dict) -> str | None:
    """None if lm-eval knows `name`, else a message with the closest names it does know."""
    if name in index:
        return None
    close = difflib.get_close_matches(name, list(index), n=5, cutoff=0.6)
    hint = f"close names: {', '.join(close)}" if close else "no close name"
    return (
        f"{name!r} is not an lm-eval task, group or tag ({hint}); `lm-eval ls tasks` lists them all"
    )


def leaf_tasks(name: str, index: dict, seen: frozenset = frozenset()) -> list[str]:
    """The tasks a task, group or tag name stands for."""
    entry = index[name]
    if not entry["children"]:
        return [name]
    out = []
    for child in entry["children"]:
        if child in index and child not in seen:
            out += leaf_tasks(child, index, seen | {name})
    return out


def suite_datasets(tasks: list[str], index: dict) -> tuple[list[dict], list[str]]:
    """(datasets the tasks read, deduplicated and sorted; tasks whose dataset is not
    declared in YAML, such as Python-class tasks, which prefetch cannot list)."""
    found, undeclared = {}, []
    for name in tasks:
        for leaf in leaf_tasks(name, index):
            dataset = index[leaf]["dataset"]
            if dataset is None:
                undeclared.append(leaf)
                continue
            found[json.dumps(dataset, sort_keys=True)] = dataset
    return [found[key] for key in sorted(found)], sorted(set(undeclared))


def check_suites(cfg: dict, cache_dir: str | Path = DEFAULT_CACHE) -> None:
    """Every lm-eval name in every suite is known to lm-eval (the index is loaded only when
    a suite names one); raises ConfigError naming the key and the close names."""
    from overtrained.core.config import ConfigError

    names = [
        (suite_name, i, task)
        for suite_name, suite in cfg["evaluate"]["suites"].items()
        for i, task in enumerate(suite["tasks"])
        if not is_repo_task(task)
    ]
    if not names:
        return
    index = load(cache_dir)
    for suite_name, i, task in names:
        message = unknown_task_message(task, index)
        if message:
            raise ConfigError(f"evaluate.suites.{suite_name}.tasks[{i}]: {message}")


def datasets_of_suite(cfg: dict, suite: str, cache_dir: str | Path = DEFAULT_CACHE) -> list[dict]:
    """The datasets a suite's lm-eval tasks read (what its prefetch downloads)."""
    tasks = standard_tasks(cfg["evaluate"]["suites"][suite])
    return suite_datasets(tasks, load(cache_dir))[0] if tasks else []

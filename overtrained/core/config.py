"""The config: typed and defaulted by its JSON schema (core/schema.py), then the rules that
span several fields (this module).

`load(config)` is called by the Snakefile before any job is scheduled. Every
problem becomes a `ConfigError` whose one-line message names the key path
(for example ``finetune.lrs.arith[0]``) and says how to fix it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from overtrained.core import schema

# ConfigError is the schema's and the cross-checks' one error type; callers catch it here.
from overtrained.core.schema import ConfigError
from overtrained.core.units import format_lr, format_tokens, parse_tokens

MINI_PREFIX = (
    "mini_"  # lm-eval tasks shipped in overtrained/evaluation/lm_eval_tasks/, one per task kind
)
GENERATED_KINDS = ("corpus_language", "arithmetic", "topic_classification")
ID_PREFIX = "id_"  # id_<task>: in-distribution accuracy of a dataset task with answers


def is_repo_task(name: str) -> bool:
    """A suite task defined by this repo (mini_<kind>, id_<task>), not by lm-eval."""
    return name.startswith((MINI_PREFIX, ID_PREFIX))


TOPIC_LABELS = 8  # labels of the topic_classification task (tasks.make_task's default)


# The synthetic corpus's token stream is generated on one core and held in memory (4 bytes
# a token): 4B tokens is 16 GiB and hours of generation, past anything a miniature needs.
MAX_PRETRAIN_TOKENS = 4 * 10**9


def _cross_checks(cfg: dict) -> None:
    """Rules that a JSON schema cannot express."""
    ft = cfg["finetune"]
    tasks, lrs = ft["tasks"], ft["lrs"]
    for task in tasks:
        if task not in lrs:
            raise ConfigError(
                f"finetune.lrs: no learning-rate grid for task {task!r}; add "
                f"'finetune.lrs.{task}: [1.0e-3]' (or remove the task)"
            )
    for task in lrs:
        if task not in tasks:
            raise ConfigError(
                f"finetune.lrs.{task}: no task named {task!r} in finetune.tasks "
                f"(known: {', '.join(tasks)})"
            )
    for task, grid in lrs.items():
        spelled = [format_lr(lr) for lr in grid]
        if len(set(spelled)) != len(spelled):
            raise ConfigError(f"finetune.lrs.{task}: two learning rates are the same: {grid}")
    for name, fam in cfg["families"].items():
        unknown = [t for t in fam.get("finetune_tasks") or [] if t not in tasks]
        if unknown:
            raise ConfigError(
                f"families.{name}.finetune_tasks: no task named {unknown[0]!r} in "
                f"finetune.tasks (known: {', '.join(tasks)})"
            )
    _check_hub_families(cfg)
    from overtrained.analysis import theory  # here: the config module stays light to import

    problems = theory.check(cfg["theory"])
    if problems:
        raise ConfigError(problems[0])
    for name, fam in pretrain_families(cfg).items():
        model, train = fam["model"], fam["training"]
        where = f"families.{name}"
        if model["hidden_size"] % model["num_attention_heads"]:
            raise ConfigError(
                f"{where}.model.num_attention_heads: {model['num_attention_heads']} does not "
                f"divide hidden_size {model['hidden_size']}"
            )
        if (model["hidden_size"] // model["num_attention_heads"]) % 2:
            raise ConfigError(
                f"{where}.model: head size hidden_size/num_attention_heads must be even (RoPE)"
            )
        if ft["max_length"] > train["seq_len"]:
            raise ConfigError(
                f"finetune.max_length: {ft['max_length']} tokens exceed the context of family "
                f"{name!r} (training.seq_len {train['seq_len']}); lower max_length"
            )
        budgets = _token_budgets(f"{where}.budgets", fam["budgets"])
        if max(budgets) > MAX_PRETRAIN_TOKENS:
            raise ConfigError(
                f"{where}.budgets: {format_tokens(max(budgets))} tokens is beyond what a "
                f"pretrain family generates and trains on a CPU (at most "
                f"{format_tokens(MAX_PRETRAIN_TOKENS)}: the corpus stream is held in memory); "
                "for a large model's checkpoints use a hub family (source: hub)"
            )
        corpus = fam["corpus"]
        if corpus["heldout_topics"] >= corpus["n_topics"]:
            raise ConfigError(
                f"{where}.corpus.heldout_topics: {corpus['heldout_topics']} held-out topics "
                f"leave none of the {corpus['n_topics']} topics to pre-train on; lower it"
            )
        tokens_per_step = train["batch_size"] * train["seq_len"]
        warmup = parse_tokens(train["warmup_tokens"])
        stable_end = min(budgets) * (
            1 - train["decay_fraction"] if train["schedule"] == "wsd" else 1
        )
        if warmup >= stable_end:
            raise ConfigError(
                f"{where}.training.warmup_tokens: {warmup} tokens of warmup do not fit in the "
                f"smallest budget ({format_tokens(min(budgets))}); lower warmup_tokens"
            )
        retention = parse_tokens(cfg["evaluate"]["retention_tokens"])
        needed = max(1, retention // train["seq_len"]) * (train["seq_len"] + 1)
        from_corpus = cfg["evaluate"]["retention_text"] is None
        if from_corpus and needed > parse_tokens(fam["corpus"]["heldout_tokens"]):
            raise ConfigError(
                f"evaluate.retention_tokens: {retention} tokens in windows of seq_len + 1 need "
                f"{needed} held-out tokens, but families.{name}.corpus.heldout_tokens is "
                f"{fam['corpus']['heldout_tokens']}; raise heldout_tokens or lower retention_tokens"
            )
        if min(budgets) < 4 * tokens_per_step:
            raise ConfigError(
                f"{where}.budgets: {format_tokens(min(budgets))} is fewer than 4 optimizer steps "
                f"of {tokens_per_step} tokens (batch_size x seq_len); raise the budget"
            )
    _check_batch(ft)
    _resolve_datasets(tasks)
    _resolve_retention_text(cfg["evaluate"])
    _check_judge(cfg)
    kinds = [t["kind"] for t in tasks.values()]
    if "topic_classification" in kinds:
        for name, fam in pretrain_families(cfg).items():
            usable = fam["corpus"]["n_topics"] - fam["corpus"]["heldout_topics"]
            if usable < TOPIC_LABELS:
                raise ConfigError(
                    f"families.{name}.corpus.n_topics: the topic_classification task labels "
                    f"{TOPIC_LABELS} pre-training topics, but n_topics - heldout_topics = "
                    f"{usable}; raise n_topics"
                )
    _resolve_suites(cfg["evaluate"]["suites"])
    for suite_name, suite in cfg["evaluate"]["suites"].items():
        for i, task in enumerate(suite["tasks"]):
            if task.startswith(ID_PREFIX):
                _check_id_task(cfg, f"evaluate.suites.{suite_name}.tasks[{i}]", task)
            if task.startswith(MINI_PREFIX):
                kind = task.removeprefix(MINI_PREFIX)
                if kind not in GENERATED_KINDS:
                    raise ConfigError(
                        f"evaluate.suites.{suite_name}.tasks[{i}]: {task!r} is not a miniature "
                        f"task (mini_<kind> for kind in {', '.join(GENERATED_KINDS)})"
                    )
                if kinds.count(kind) != 1:
                    raise ConfigError(
                        f"evaluate.suites.{suite_name}.tasks[{i}]: {task!r} reads the held-out "
                        f"split of the fine-tuning task of kind {kind!r}, but finetune.tasks has "
                        f"{kinds.count(kind)} of that kind (need exactly one)"
                    )


def pretrain_families(cfg: dict) -> dict:
    return {n: f for n, f in cfg["families"].items() if f["source"] == "pretrain"}


def hub_families(cfg: dict) -> dict:
    return {n: f for n, f in cfg["families"].items() if f["source"] == "hub"}


def _token_budgets(where: str, values: list) -> list[int]:
    """A family's budgets as token counts: each at least one token, no two the same."""
    budgets = [parse_tokens(v) for v in values]
    if min(budgets) < 1:
        raise ConfigError(f"{where}: a budget must be at least one token")
    if len(set(budgets)) != len(budgets):
        raise ConfigError(f"{where}: two budgets are the same number of tokens")
    return budgets


def _check_hub_families(cfg: dict) -> None:
    """What a hub family needs from the rest of the config (its branches are checked when
    they are pinned, see overtrained.hub.pins)."""
    for name, fam in hub_families(cfg).items():
        where = f"families.{name}"
        if (fam["tokens"] is None) == (fam["revisions"] is None):
            raise ConfigError(
                f"{where}: give exactly one of `tokens` (budgets resolved to the nearest "
                "branch) or `revisions` (branch names)"
            )
        if fam["tokens"] is not None:
            _token_budgets(f"{where}.tokens", fam["tokens"])
        manifest = Path(fam["manifest"].replace("{family}", name)).resolve()
        for other, other_fam in hub_families(cfg).items():
            if (
                other != name
                and Path(other_fam["manifest"].replace("{family}", other)).resolve() == manifest
            ):
                raise ConfigError(
                    f"{where}.manifest: {fam['manifest']!r} is also families.{other}'s "
                    "manifest; give each hub family its own (the default includes {family})"
                )
        for task, spec in cfg["finetune"]["tasks"].items():
            if spec["kind"] != "dataset":
                raise ConfigError(
                    f"finetune.tasks.{task}: a generated task ({spec['kind']}) speaks the "
                    f"synthetic corpus language of a pretrain family, but {where} is a hub "
                    "family; use dataset tasks (kind: dataset) with hub families"
                )
        if cfg["evaluate"]["retention_text"] is None:
            raise ConfigError(
                f"evaluate.retention_text: {where} is a hub family, which has no corpus of its "
                "own to measure retention on; name a text such as c4_validation"
            )


def _check_id_task(cfg: dict, where: str, name: str) -> None:
    task = cfg["finetune"]["tasks"].get(name.removeprefix(ID_PREFIX))
    if task is None or task["kind"] != "dataset":
        names = [
            f"{ID_PREFIX}{t}" for t, v in cfg["finetune"]["tasks"].items() if v["kind"] == "dataset"
        ]
        raise ConfigError(
            f"{where}: {name!r} scores the dataset task {name.removeprefix(ID_PREFIX)!r}, which "
            f"finetune.tasks does not have (dataset tasks: {', '.join(names) or 'none'})"
        )
    if not (task["dataset"]["choices"] or task["dataset"]["answer_pattern"]):
        raise ConfigError(
            f"{where}: {name!r} needs answers to score: give the dataset definition `choices` "
            "(a fixed answer set) or `answer_pattern` (a final answer in the text)"
        )


def _check_judge(cfg: dict) -> None:
    judge = cfg["evaluate"]["judge"]
    if judge["command"] is None:
        return
    tasks = cfg["finetune"]["tasks"]
    if not judge["tasks"]:
        raise ConfigError(
            "evaluate.judge.tasks: a judge command needs the tasks whose fine-tuned models "
            f"it scores (known tasks: {', '.join(tasks)})"
        )
    for i, task in enumerate(judge["tasks"]):
        if task not in tasks:
            raise ConfigError(
                f"evaluate.judge.tasks[{i}]: no task named {task!r} in finetune.tasks "
                f"(known: {', '.join(tasks)})"
            )
    for placeholder in ("{responses}", "{output}"):
        if placeholder not in judge["command"]:
            raise ConfigError(f"evaluate.judge.command: must contain {placeholder}")


def _resolve_retention_text(evaluate: dict) -> None:
    from overtrained.data import dataset_task

    if evaluate["retention_text"] is None:
        return
    where = "evaluate.retention_text"
    try:
        evaluate["retention_text"] = dataset_task.resolve(evaluate["retention_text"], where)
        dataset_task.check(evaluate["retention_text"], where)
    except ValueError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def _check_batch(ft: dict) -> None:
    """batch_size = per_device_batch_size x accumulation x GPUs, in whole numbers."""
    devices = max(ft["gpus"], 1)
    per_device = ft["per_device_batch_size"] or ft["batch_size"] // devices
    if per_device < 1 or ft["batch_size"] % (per_device * devices):
        raise ConfigError(
            f"finetune.batch_size: {ft['batch_size']} examples per step cannot be split into "
            f"{devices} device(s) x per_device_batch_size {ft['per_device_batch_size']} x a whole "
            "number of accumulation steps; make batch_size a multiple of their product"
        )
    # Relative to the working directory (where the run's results/ and logs/ are), with
    # `x/../results` and absolute spellings of the same folders caught too.
    scratch = Path(os.path.normpath(Path.cwd() / ft["scratch_dir"])).relative_to(Path.cwd().anchor)
    outputs = [(Path.cwd() / d).relative_to(Path.cwd().anchor) for d in ("results", "logs")]
    if any(scratch == d or d in scratch.parents for d in outputs):
        raise ConfigError(
            f"finetune.scratch_dir: {ft['scratch_dir']!r} is inside the workflow's outputs, "
            "which the trainer checkpoints must stay out of; use e.g. 'scratch'"
        )
    if ft["fsdp"] and ft["gpus"] < 2:
        raise ConfigError("finetune.fsdp: FSDP shards over GPUs; it needs finetune.gpus >= 2")


SUITES_PATH = Path(__file__).resolve().parents[1] / "evaluation" / "suites.yaml"


def shipped_suites() -> dict:
    with open(SUITES_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _resolve_suites(suites: dict) -> None:
    """A suite names its tasks or a shipped preset, never both; presets become task lists."""
    for name, suite in suites.items():
        where = f"evaluate.suites.{name}"
        if (suite["tasks"] is None) == (suite["preset"] is None):
            raise ConfigError(
                f"{where}: give exactly one of `tasks` (a list of lm-eval task names) or "
                "`preset` (a shipped suite)"
            )
        if suite["preset"] is not None:
            shipped = shipped_suites()
            if suite["preset"] not in shipped:
                raise ConfigError(
                    f"{where}.preset: {suite['preset']!r} is not a shipped suite "
                    f"(shipped: {', '.join(sorted(shipped))})"
                )
            suite["tasks"] = list(shipped[suite["preset"]]["tasks"])


def check_room_for_completions(
    max_length: int, prompt_lengths: list[int], examples: str, unit: str = "tokens"
) -> None:
    """TRL drops an example whose prompt fills max_length (no completion token is left to
    learn), and on an empty dataset fails with a bare `num_samples=0`: raise a ConfigError
    naming the key instead when no prompt leaves room. `prompt_lengths` in `unit`s, each
    unit at least one token; `examples` says whose prompts they are."""
    if prompt_lengths and min(prompt_lengths) >= max_length:
        raise ConfigError(
            f"finetune.max_length: {max_length} tokens leave no completion token in any "
            f"{examples} (their prompts are {min(prompt_lengths)}-{max(prompt_lengths)} "
            f"{unit}{', each at least one token' if unit != 'tokens' else ''}); raise "
            f"finetune.max_length above {max(prompt_lengths)}"
        )


def _resolve_datasets(tasks: dict) -> None:
    """Replace each dataset task's `dataset` (a shipped name or a dict) by its full definition."""
    from overtrained.data import dataset_task

    for name, task in tasks.items():
        where = f"finetune.tasks.{name}"
        if task["kind"] != "dataset":
            if task["dataset"] is not None:
                raise ConfigError(
                    f"{where}.dataset: only tasks of kind 'dataset' read a dataset "
                    f"(this one is {task['kind']!r}); remove the key or set kind: dataset"
                )
            if task["n_train"] is None:
                raise ConfigError(
                    f"{where}.n_train: a generated task needs a number of examples "
                    "(null, 'all rows', only applies to kind: dataset)"
                )
            continue
        if task["dataset"] is None:
            raise ConfigError(
                f"{where}.dataset: a task of kind 'dataset' names a dataset: one of "
                f"{', '.join(sorted(dataset_task.library()))} or a full definition"
            )
        try:
            task["dataset"] = dataset_task.resolve(task["dataset"], f"{where}.dataset")
            dataset_task.check(task["dataset"], f"{where}.dataset")
            dataset_task.check_local_rows(
                task["dataset"], task["n_train"], task["n_test"], f"{where}.dataset"
            )
        except ValueError as err:
            message = str(err)
            if not message.startswith(where):
                message = f"{where}.dataset: {message}"
            raise ConfigError(message) from None


def load(raw: dict | None) -> dict:
    """Validate `raw` (as Snakemake loaded it), fill defaults, and return a new dict."""
    cfg = schema.validate(raw)
    _cross_checks(cfg)
    for fam in pretrain_families(cfg).values():
        # Budgets become checkpoint names: one spelling per count, in token order.
        fam["budgets"] = [format_tokens(t) for t in sorted(map(parse_tokens, fam["budgets"]))]
    for fam in hub_families(cfg).values():
        if fam["tokens"] is not None:
            fam["tokens"] = [format_tokens(t) for t in sorted(map(parse_tokens, fam["tokens"]))]
    for grid in cfg["finetune"]["lrs"].values():
        if any(not math.isfinite(lr) for lr in grid):
            raise ConfigError("finetune.lrs: learning rates must be finite numbers")
    return _canonical(cfg)


def _canonical(value):
    """Sort every mapping by key. Snakemake compares `params:` by their text, so without
    this, reordering keys in a config file would make jobs stale."""
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def load_file(path: str | Path) -> dict:
    """`load` of a YAML file."""
    return load(read_file(path))


def read_file(path: str | Path):
    """A YAML file's content; a file that cannot be read as YAML is a ConfigError too."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not a config file") from None
    except UnicodeDecodeError as error:
        reason = f"{error.reason} at byte {error.start}"
        raise ConfigError(f"{path}: not UTF-8 text ({reason})") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    return raw

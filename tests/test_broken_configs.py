"""Bad input is caught at plan time: every config in tests/data/broken_configs.yaml gets one
line that names its key (and no traceback) from `overtrained validate` and from
`snakemake -n` alike; a case only a job could judge would be marked `late` there (none is).

    .venv/bin/python tests/test_broken_configs.py   # the counts the README quotes
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.workflow_helpers import snakemake_command  # noqa: E402 (needs REPO on the path)

CORPUS = yaml.safe_load((REPO / "tests/data/broken_configs.yaml").read_text())
SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())
OUTCOMES = ("good", "traceback", "silent", "late", "unclear")


def _walk(cfg: dict, dotted: str):
    """(container, key) of a dotted path; number segments index lists."""
    *parents, last = dotted.split(".")
    node = cfg
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    return node, int(last) if isinstance(node, list) else last


def write_case(case: dict, folder: Path) -> Path:
    """The case's config file (and its data files) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (case.get("files") or {}).items():
        (folder / name).write_text(text)
    path = folder / "config.yaml"
    if "text" in case:
        path.write_text(case["text"])
        return path
    cfg = copy.deepcopy(SHIPPED)
    for dotted, value in (case.get("set") or {}).items():
        node, key = _walk(cfg, dotted)
        node[key] = value
    for dotted in case.get("delete") or []:
        node, key = _walk(cfg, dotted)
        del node[key]
    for dotted, new in (case.get("rename") or {}).items():
        node, key = _walk(cfg, dotted)
        node[new] = node.pop(key)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def outcome(case: dict, returncode: int, output: str) -> tuple[str, str]:
    """(one of OUTCOMES, the line that decided it) for one route's answer to a case."""
    if "Traceback" in output:
        return "traceback", output.strip().splitlines()[-1] if output.strip() else ""
    if returncode == 0:
        return ("late" if case.get("late") else "silent"), ""
    # Snakemake's own errors (it reads --configfile before the Snakefile runs) put the
    # message on the line after "WorkflowError:".
    output = re.sub(r"WorkflowError:\n", "WorkflowError: ", output)
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    named = [line for line in errors if re.search(case.get("error", "$^"), line)]
    if named and not case.get("late"):
        return "good", named[0]
    return "unclear", errors[-1] if errors else output.strip()[-300:]


def validate(case: dict, folder: Path) -> tuple[str, str]:
    """`overtrained validate` in this process (it imports little; the sweep runs it one
    case at a time, in the case's folder, as a user would)."""
    import contextlib
    import io
    import os
    import traceback

    from overtrained import cli

    path = write_case(case, folder)
    err = io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(folder)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            returncode = cli.main(["validate", str(path)])
    except BaseException:  # noqa: BLE001 (what a user would see as a traceback)
        return outcome(case, 1, traceback.format_exc())
    finally:
        os.chdir(here)
    return outcome(case, returncode, err.getvalue())


def dry_run(case: dict, folder: Path) -> tuple[str, str]:
    path = write_case(case, folder)
    result = subprocess.run(
        snakemake_command(folder, "-n", "--configfile", str(path)),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return outcome(case, result.returncode, result.stdout + result.stderr)


def sweep(route, root: Path, cases=CORPUS, workers: int = 2) -> dict[str, tuple[str, str]]:
    """{case id: outcome} for each case through `route`, `workers` at a time."""
    if route is validate:  # in-process: one at a time
        return {case["id"]: validate(case, root / case["id"]) for case in cases}
    with ThreadPoolExecutor(workers) as pool:
        answers = pool.map(lambda c: route(c, root / c["id"]), cases)
        return {case["id"]: answer for case, answer in zip(cases, answers, strict=True)}


# The default run's dry-run sample: Snakemake's own reading of the file, and one case of
# each kind of check (the whole corpus goes through `snakemake -n` in CI, -m extended).
SAMPLE = (
    "yaml-syntax",
    "top-level-list",
    "empty-file",
    "unknown-section",
    "budget-a-float",
    "seed-2-to-32",
    "one-terabyte-budget",
    "family-name-newline",
    "suite-task-typo",
    "local-missing-column",
    "scratch-escaping-into-results",
    "max-length-below-every-prompt",
)


def test_the_corpus_is_large_and_every_case_says_what_it_breaks():
    ids = [case["id"] for case in CORPUS]
    assert len(ids) >= 80 and len(set(ids)) == len(ids)
    for case in CORPUS:
        assert bool(case.get("error")) != bool(case.get("late")), case["id"]
        assert {"set", "delete", "rename", "text"} & set(case), case["id"]
    assert not [case for case in CORPUS if case.get("late")]  # every case caught at plan time


def _failures(answers: dict[str, tuple[str, str]]) -> list[str]:
    by_id = {case["id"]: case for case in CORPUS}
    wanted = {cid: ("late" if by_id[cid].get("late") else "good") for cid in answers}
    return [
        f"{cid}: {kind} ({line})" for cid, (kind, line) in answers.items() if kind != wanted[cid]
    ]


def test_validate_names_the_key_of_every_broken_config(tmp_path):
    failures = _failures(sweep(validate, tmp_path))
    assert not failures, "\n".join(failures)


@pytest.mark.workflow
def test_a_dry_run_names_the_key_of_a_sample_of_broken_configs(tmp_path):
    sample = [case for case in CORPUS if case["id"] in SAMPLE]
    assert len(sample) == len(SAMPLE)
    failures = _failures(sweep(dry_run, tmp_path, sample))
    assert not failures, "\n".join(failures)


@pytest.mark.extended
@pytest.mark.workflow
def test_a_dry_run_names_the_key_of_every_broken_config(tmp_path):
    failures = _failures(sweep(dry_run, tmp_path))
    assert not failures, "\n".join(failures)


def main() -> None:
    """Print the counts per route (the README's table) and every case that is not `good`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, route in (("overtrained validate", validate), ("snakemake -n", dry_run)):
            answers = sweep(route, Path(tmp) / name.split()[-1])
            counts = Counter(kind for kind, _ in answers.values())
            tally = ", ".join(f"{kind} {counts[kind]}" for kind in OUTCOMES)
            print(f"{name}: {len(answers)} configs: {tally}")
            for cid, (kind, line) in answers.items():
                if kind != "good":
                    print(f"  {cid}: {kind}: {line}")


if __name__ == "__main__":
    main()

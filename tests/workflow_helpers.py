"""Running Snakemake from tests, and reading what a dry-run says it would do."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake_command(work: Path, *args: str) -> list[str]:
    """`python -m snakemake` on this checkout's Snakefile, in the folder `work`."""
    return [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work), *args]


def copy_repo(dest: Path) -> Path:
    """A copy of the workflow (code, config, rules), so a test may edit its code."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "results",
        "logs",
        ".snakemake",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        "*.egg-info",
        "benchmarks",
    )
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 900, env: dict | None = None
):
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


_JOB = re.compile(r"^(?:local)?rule (\w+):\n(?:.*\n)*?    output: (.*)$", re.MULTILINE)


def dry_run_jobs(workdir: Path, *args: str, env: dict | None = None) -> list[tuple[str, str]]:
    """(rule, outputs) of every job a dry-run would execute."""
    result = snakemake(workdir, "-n", *args, env=env)
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return []
    jobs = []
    for block in re.split(r"\n(?=\[\w{3} \w{3} )", text):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.MULTILINE)
        if rule is None or rule[1] == "all":
            continue
        output = re.search(r"^\s+output: (.*)$", block, re.MULTILINE)
        jobs.append((rule[1], output[1] if output else ""))
    return jobs


def job_counts(jobs) -> Counter:
    return Counter(rule for rule, _ in jobs)


def expected_counts(cfg: dict) -> dict:
    """How many jobs of each rule a full run of `cfg` (validated) plans."""
    from overtrained import workflow

    n_ckpt = sum(len(f["budgets"]) * len(f["seeds"]) for f in cfg["families"].values())
    n_ft = len(workflow.ft_models(cfg))
    n_families = len(cfg["families"])
    n_datasets = len(workflow.dataset_task_names(cfg))
    counts = {
        "corpus": n_families,
        "task_data": n_families * len(workflow.generated_task_names(cfg)),
        "prefetch_dataset": n_datasets,
        "dataset_task": n_datasets,
        "pretrain_trunk": sum(
            len(f["seeds"])
            for f in cfg["families"].values()
            if f["training"]["schedule"] != "cosine"
        ),
        "pretrain": n_ckpt,
        "finetune": n_ckpt * n_ft,
        "evaluate": n_ckpt * (1 + n_ft) * len(cfg["evaluate"]["suites"]),
        "probes": n_ckpt * (1 + n_ft),
        "sensitivity": n_ckpt,
        "aggregate": 1,
        "analysis": 1,
        "figures": 1,
        "claims": 1,
        "theory": int(cfg["theory"]["enabled"]),
    }
    return {rule: n for rule, n in counts.items() if n}

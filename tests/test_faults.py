"""Faults a sweep must survive: one bad run never stops it, and every table it can write
says which rows are missing and why."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from overtrained.analysis import aggregate
from tests.workflow_helpers import REPO, copy_repo, snakemake


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    """The tiny config at two budgets, one fine-tuning run each, fine-tuned weights kept."""
    work = copy_repo(tmp_path_factory.mktemp("integrity") / "overtrained")
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["finetune"]["lrs"] = {"lang": [1.0e-3], "arith": [], "topic": []}
    cfg["finetune"]["keep_weights"] = True
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--cores", "2")
    return work


def verify(work):
    return subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "verify", str(work)],
        capture_output=True,
        text=True,
    )


@pytest.mark.workflow
def test_a_changed_checkpoint_is_caught_before_it_is_used_and_by_verify(kept_run):
    """A truncated and a swapped base checkpoint: `overtrained verify` names the file, and a
    job that would read it stops with one line that says what to re-run."""
    assert verify(kept_run).returncode == 0, verify(kept_run).stdout
    weights = kept_run / "results/tiny/16K-seed0/base/model.safetensors"
    original = weights.read_bytes()
    target = "results/tiny/16K-seed0/base/eval/probes.json"
    log = kept_run / "logs/probes/tiny/16K-seed0/base.log"
    other = (kept_run / "results/tiny/32K-seed0/base/model.safetensors").read_bytes()
    try:
        for damaged in (original[: len(original) // 2], other):
            weights.write_bytes(damaged)
            checked = verify(kept_run)
            assert checked.returncode == 1 and str(weights.parent) in checked.stdout
            forced = snakemake(kept_run, target, "--forcerun", "probes", check=False)
            assert forced.returncode != 0
            assert "holds weights with sha256" in log.read_text()
            assert "delete" in log.read_text() and "provenance.json" in log.read_text()
    finally:
        weights.write_bytes(original)
    assert verify(kept_run).returncode == 0


@pytest.mark.workflow
def test_a_hand_edited_record_is_flagged_not_trusted(kept_run, tmp_path):
    """A train.json whose loss was edited after the job: verify lists it, and aggregate
    keeps its rows with status `edited` and NaN values instead of the edited number."""
    record_path = kept_run / "results/tiny/16K-seed0/ft/lang/lr0.001/seed0/train.json"
    original = record_path.read_text()
    record = json.loads(original)
    record["final_train_loss"] = 0.001
    try:
        record_path.write_text(json.dumps(record, indent=1, sort_keys=True))
        checked = verify(kept_run)
        assert checked.returncode == 1 and "edited after its job" in checked.stdout
        snakemake(kept_run, "results/tables/metrics.parquet", "--forcerun", "aggregate")
        metrics = pd.read_parquet(kept_run / "results/tables/metrics.parquet")
        edited = metrics[(metrics["suite"] == "train") & (metrics["checkpoint"] == "16K-seed0")]
        assert set(edited["status"]) == {aggregate.EDITED} and edited["value"].isna().all()
        others = metrics[(metrics["suite"] == "train") & (metrics["checkpoint"] == "32K-seed0")]
        assert set(others["status"]) == {"ok"} and others["value"].notna().all()
    finally:
        record_path.write_text(original)


def mount_full_disk(where: Path) -> str | None:
    """A 64 KiB tmpfs at `where`, filled to the last byte: every write there gets ENOSPC.
    None where no tmpfs can be mounted (not root, a container without the capability),
    else why not; OVERTRAINED_REQUIRE_TMPFS=1 makes that a failure."""
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        why = f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}"
        assert os.environ.get("OVERTRAINED_REQUIRE_TMPFS") != "1", why
        return why
    with contextlib.suppress(OSError), open(where / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()
    return None


@pytest.mark.workflow
def test_a_sweep_with_three_faults_writes_every_table_it_can_then_recovers(tmp_path):
    """One sweep, three faults: LR 100 diverges (a result, not a failure), the 32K checkpoint
    is truncated after it was made, and the 16K fine-tuning runs' scratch disk is full (where
    a tmpfs can be mounted: root; without one, the first two faults alone).
    With --keep-going every other job runs; the run fails, and its `onerror` writes
    results/partial/: the tables of what exists, and missing.csv naming each missing
    result, its job's log and why. Doing what the messages say then finishes the sweep."""
    work = copy_repo(tmp_path / "overtrained")
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["families"]["tiny"]["budgets"] = ["16K", "24K", "32K"]
    cfg["finetune"]["lrs"] = {"lang": [1.0e-3, 1.0e2], "arith": [], "topic": []}
    cfg["finetune"]["scratch_dir"] = str(tmp_path / "scratch")
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    bases = [f"results/tiny/{b}-seed0/base/provenance.json" for b in ("16K", "24K", "32K")]
    snakemake(work, "--cores", "2", *bases)
    weights = work / "results/tiny/32K-seed0/base/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    from overtrained import workflow

    record = "results/tiny/16K-seed0/ft/lang/lr0.001/seed0/train.json"
    run_scratch = Path(workflow.scratch_dir(cfg, record, str(work)))
    checkpoint_scratch = run_scratch.parents[3]  # .../tiny/16K-seed0: both of its runs
    full = tmp_path / "full"
    no_full_disk = mount_full_disk(full)
    if no_full_disk:  # tests/test_errors.py still checks a full disk's message (/dev/full)
        warnings.warn(f"the fault sweep runs without its full disk: {no_full_disk}", stacklevel=1)
    try:
        checkpoint_scratch.parent.mkdir(parents=True)
        checkpoint_scratch.symlink_to(full)
        result = snakemake(work, "--cores", "2", "--keep-going", check=False)
    finally:
        subprocess.run(["umount", str(full)], check=False, capture_output=True)
    assert result.returncode != 0
    partial = work / "results/partial"
    missing = pd.read_csv(partial / "missing.csv").set_index("result")
    ft = "results/tiny/{}-seed0/ft/lang/lr{}/seed0/{}"
    for lr in () if no_full_disk else ("0.001", "100"):  # the full disk, in the job's words
        reason = missing.loc[ft.format("16K", lr, "train.json"), "reason"]
        assert reason.startswith(f"error: no space left on the device holding {tmp_path}")
        follow = missing.loc[ft.format("16K", lr, "eval/mini.json"), "reason"]
        assert follow == f"not run: its input {ft.format('16K', lr, 'train.json')} is missing"
    for result_file in (  # the truncated checkpoint: every job that would read it stops
        "results/tiny/32K-seed0/base/eval/mini.json",
        "results/tiny/32K-seed0/base/eval/probes.json",
        "results/tiny/32K-seed0/sensitivity.json",
        ft.format("32K", "0.001", "train.json"),
    ):
        reason = missing.loc[result_file, "reason"]
        assert "holds weights with sha256" in reason and "run snakemake again" in reason
    assert not any(r.startswith("results/tiny/24K") for r in missing.index)
    if no_full_disk:
        assert not any(r.startswith("results/tiny/16K") for r in missing.index)
    logs = [work / log for log in missing["log"].dropna() if (work / log).is_file()]
    assert logs and not any("Traceback" in log.read_text() for log in logs)
    metrics = pd.read_parquet(partial / "metrics.parquet")
    diverged = metrics[(metrics["checkpoint"] == "24K-seed0") & (metrics["lr"] == 1.0e2)]
    assert not diverged.empty and set(diverged["status"]) == {"diverged"}
    assert set(metrics["checkpoint"].dropna()) == {"16K-seed0", "24K-seed0", "32K-seed0"}
    best = pd.read_parquet(partial / "best_lr.parquet")
    tuned = {"24K-seed0"} | ({"16K-seed0"} if no_full_disk else set())
    assert set(best["checkpoint"]) == tuned and (best["lr"] == 1.0e-3).all()
    assert not (work / "results/tables/metrics.parquet").exists()  # never a partial as whole

    # What the messages say: free the disk, delete the damaged checkpoint's record.
    checkpoint_scratch.unlink()
    (work / "results/tiny/32K-seed0/base/provenance.json").unlink()
    snakemake(work, "--cores", "2")
    assert (work / "results/claims.md").is_file()
    metrics = pd.read_parquet(work / "results/tables/metrics.parquet")
    diverged = metrics[metrics["lr"] == 1.0e2]
    train = diverged[diverged["suite"] == "train"]
    assert len(train) and set(train["status"]) == {"diverged"}
    evaluated = diverged[diverged["suite"] == "mini"]
    assert set(evaluated["checkpoint"]) == {"16K-seed0", "24K-seed0", "32K-seed0"}
    assert set(evaluated["status"]) == {"diverged"}
    stand_in = evaluated[evaluated["metric"] == aggregate.NOT_EVALUATED]
    assert len(stand_in) <= 3 and all(math.isnan(v) for v in stand_in["value"])
    healthy = metrics[(metrics["lr"] == 1.0e-3) & (metrics["suite"] == "mini")]
    assert set(healthy["status"]) == {"ok"} and healthy["value"].notna().all()
    best = pd.read_parquet(work / "results/tables/best_lr.parquet")
    assert len(best) and (best["lr"] == 1.0e-3).all()  # a diverged LR is never the tuned one


def test_partial_tables_of_a_run_that_has_not_started_list_everything_as_not_run(tmp_path):
    """`overtrained partial` on an empty folder: no rows, and every expected result in
    missing.csv with its rule, its log and `not run`; exit 1 while anything is missing."""
    config_path = REPO / "tests/configs/tiny.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "partial", str(config_path)]
        + ["--directory", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert "0 results present" in result.stdout
    missing = pd.read_csv(tmp_path / "results/partial/missing.csv")
    assert set(missing["rule"]) == {"corpus", "pretrain", "finetune", "evaluate", "probes"} | {
        "sensitivity"
    }
    assert missing["reason"].str.startswith("not run").all()
    train = missing[missing["rule"] == "finetune"].iloc[0]
    assert train["log"].startswith("logs/finetune/tiny/") and train["log"].endswith(".log")
    assert pd.read_parquet(tmp_path / "results/partial/metrics.parquet").empty

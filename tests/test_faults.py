"""Faults a sweep must survive: one bad run never stops it, and every table it can write
says which rows are missing and why."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from overtrained.analysis import aggregate
from tests.workflow_helpers import REPO, copy_repo, snakemake


@pytest.mark.workflow
def test_a_diverging_lr_is_a_result_and_the_sweep_finishes(tmp_path):
    """LR 100 on `lang` diverges (the loss grows by orders of magnitude): fine-tuning records
    `diverged`, its evaluations record no metrics and why instead of crashing inside lm-eval,
    and aggregate, analysis, figures and claims all run."""
    work = copy_repo(tmp_path / "overtrained")
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["families"]["tiny"]["budgets"] = ["16K"]
    cfg["finetune"]["lrs"] = {"lang": [1.0e-3, 1.0e2], "arith": [], "topic": []}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--cores", "2")
    assert (work / "results/claims.md").is_file()
    metrics = pd.read_parquet(work / "results/tables/metrics.parquet")
    diverged = metrics[metrics["lr"] == 1.0e2]
    train = diverged[diverged["suite"] == "train"]
    assert set(train["status"]) == {"diverged"}
    evaluated = diverged[diverged["suite"] == "mini"]
    assert not evaluated.empty and set(evaluated["status"]) == {"diverged"}
    stand_in = evaluated[evaluated["metric"] == aggregate.NOT_EVALUATED]
    assert len(stand_in) <= 1 and all(math.isnan(v) for v in stand_in["value"])
    healthy = metrics[(metrics["lr"] == 1.0e-3) & (metrics["suite"] == "mini")]
    assert set(healthy["status"]) == {"ok"} and healthy["value"].notna().all()
    best = pd.read_parquet(work / "results/tables/best_lr.parquet")
    assert (best["lr"] == 1.0e-3).all()  # a diverged LR is never the tuned one


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

"""Faults a sweep must survive: one bad run never stops it, and every table it can write
says which rows are missing and why."""

from __future__ import annotations

import math

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

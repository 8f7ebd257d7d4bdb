"""presets/miniature-paper.yaml: the preset behind the README's Results (docs/results.md),
and a reduced run of it that checks the direction of claim (a).

The statistical rule (stated here, not tuned to a run): a one-sided sign test over the
preset's noise settings (scaling x gamma). Under the null of no trend, the mean loss increase
at the largest budget exceeds that at the smallest with probability 1/2 for each setting
independently; the test passes when the binomial tail P(X >= k) of the k settings that rise
is below 0.05 (with the preset's 5 settings: all 5 rise, p = 1/32)."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import yaml

from overtrained import workflow
from overtrained.core import config as C
from tests.workflow_helpers import REPO, copy_repo, dry_run_jobs, job_counts, snakemake

PRESET = REPO / "presets/miniature-paper.yaml"


def preset() -> dict:
    return yaml.safe_load(PRESET.read_text())


def test_the_preset_is_what_the_issue_asks_for():
    """Verdicts on replicates: one family with ten pre-training seeds (two disjoint halves of
    at least five for the seed split), a second schedule at the same size for (e), two
    fine-tuned tasks for (d), LR grids that bracket the default's fixed LRs, and noise."""
    cfg = C.load(preset())
    families = cfg["families"]
    seeds = max(len(f["seeds"]) for f in families.values())
    assert seeds >= 10 and seeds % 2 == 0
    shapes = {(f["training"]["schedule"], f["model"]["hidden_size"]) for f in families.values()}
    assert len({schedule for schedule, _ in shapes}) >= 2
    assert len({size for _, size in shapes}) == 1  # (e) compares schedules at one size
    widest = max(families.values(), key=lambda f: len(f["seeds"]))
    tuned = [t for t in widest["finetune_tasks"] if cfg["finetune"]["lrs"][t]]
    assert len(tuned) >= 2
    for task in tuned:
        grid = cfg["finetune"]["lrs"][task]
        assert len(grid) >= 3 and max(grid) / min(grid) >= 100
    default = C.load(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert set(default["finetune"]["lrs"]["lang"]) < set(cfg["finetune"]["lrs"]["lang"])
    assert sum(len(g) for g in cfg["sensitivity"]["gammas"].values()) >= 3


def test_the_preset_plans_every_stage(tmp_path):
    counts = job_counts(
        dry_run_jobs(tmp_path, "--snakefile", str(REPO / "Snakefile"), "--configfile", str(PRESET))
    )
    cfg = C.load(preset())
    n_ckpt = sum(len(f["budgets"]) * len(f["seeds"]) for f in cfg["families"].values())
    runs = sum(
        len(workflow.ft_models(cfg, name)) * len(fam["budgets"]) * len(fam["seeds"])
        for name, fam in cfg["families"].items()
    )
    assert counts["finetune"] == runs
    assert counts["probes"] == n_ckpt + runs
    assert counts["sensitivity"] == n_ckpt
    assert counts["claims"] == counts["theory"] == 1
    assert "evaluate" not in counts  # no lm-eval suites in the preset


def reduced() -> dict:
    """The preset cut to its first family and three of its seeds, three budgets 16x apart,
    one small fine-tuning task, and its noise scales unchanged: a few minutes on 2 cores."""
    cfg = copy.deepcopy(preset())
    name, family = next(iter(cfg["families"].items()))
    family["budgets"] = ["125K", "500K", "2M"]
    family["seeds"] = family["seeds"][:3]
    family["finetune_tasks"] = ["lang"]
    cfg["families"] = {name: family}
    cfg["finetune"]["tasks"] = {"lang": {**cfg["finetune"]["tasks"]["lang"], "n_train": 32}}
    cfg["finetune"]["lrs"] = {"lang": [1.0e-2]}
    cfg["theory"] = {"enabled": False}
    return cfg


@pytest.mark.workflow
def test_a_reduced_preset_shows_noise_sensitivity_growing_with_tokens(tmp_path):
    work = copy_repo(tmp_path / "overtrained")
    cfg = reduced()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--cores", "2")
    rows = pd.read_parquet(work / "results/tables/claims.parquet")
    growth = rows[rows["claim"] == "a"]
    gammas = cfg["sensitivity"]["gammas"]
    assert len(growth) == sum(len(g) for g in gammas.values())
    assert growth["evidence"].str.contains("3 replicates").all()
    n, rising = len(growth), int((growth["estimate"] > 0).sum())
    p_value = sum(math.comb(n, k) for k in range(rising, n + 1)) / 2**n
    assert p_value < 0.05, growth[["subject", "estimate", "ci_low", "evidence"]].to_string()

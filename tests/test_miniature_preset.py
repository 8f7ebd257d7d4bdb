"""presets/miniature-paper.yaml: the preset behind the README's Results (docs/results.md),
and a reduced run of it (four pre-training seeds) that checks the direction of claim (a) on
all seeds and on two disjoint halves of them, as docs/miniature-paper/seed-split.md does
for the full preset.

The statistical rule (stated here, not tuned to a run): a one-sided sign test over noise
settings (scaling x gamma, and seed set). Under the null of no trend, the mean loss increase
at the largest budget exceeds that at the smallest with probability 1/2 for each setting
independently; a check passes when the binomial tail P(X >= k) of the k settings that rise
is below 0.05 (all 5 of the preset's settings: p = 1/32; the 3 RMS-scaled settings on each
of 2 halves: all 6, p = 1/64)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from overtrained import workflow
from overtrained.analysis import claims
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
    """The preset cut to its first family and four of its seeds, three budgets 16x apart,
    one small fine-tuning task, and its noise scales unchanged: a few minutes on 2 cores."""
    cfg = copy.deepcopy(preset())
    name, family = next(iter(cfg["families"].items()))
    family["budgets"] = ["125K", "500K", "2M"]
    family["seeds"] = family["seeds"][:4]
    family["finetune_tasks"] = ["lang"]
    cfg["families"] = {name: family}
    cfg["finetune"]["tasks"] = {"lang": {**cfg["finetune"]["tasks"]["lang"], "n_train": 32}}
    cfg["finetune"]["lrs"] = {"lang": [1.0e-2]}
    cfg["theory"] = {"enabled": False}
    return cfg


def sign_test(estimates: pd.Series) -> float:
    """P(X >= k) for k of n settings rising, each rising with probability 1/2 under the null."""
    n, rising = len(estimates), int((estimates > 0).sum())
    return sum(math.comb(n, k) for k in range(rising, n + 1)) / 2**n


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("reduced") / "overtrained")
    (work / "config.yaml").write_text(yaml.safe_dump(reduced()))
    snakemake(work, "--cores", "2")
    return work


@pytest.mark.workflow
def test_a_reduced_preset_shows_noise_sensitivity_growing_with_tokens(reduced_run):
    rows = pd.read_parquet(reduced_run / "results/tables/claims.parquet")
    growth = rows[rows["claim"] == "a"]
    gammas = reduced()["sensitivity"]["gammas"]
    assert len(growth) == sum(len(g) for g in gammas.values())
    assert growth["evidence"].str.contains("4 replicates").all()
    shown = growth[["subject", "estimate", "ci_low", "evidence"]].to_string()
    assert sign_test(growth["estimate"]) < 0.05, shown


@pytest.mark.workflow
def test_two_disjoint_seed_sets_of_the_reduced_preset_agree_on_the_direction_of_a(
    reduced_run, tmp_path
):
    """The seed split the README's verdicts rest on, on the reduced run: the command writes
    the side-by-side table, and RMS-scaled noise sensitivity grows on both halves."""
    out = tmp_path / "seed-split.md"
    result = subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "seed-split", str(reduced_run / "results")]
        + ["--sets", "0,1", "2,3", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "| seeds 0,1 | seeds 2,3 | agree |" in out.read_text()
    metrics = pd.read_parquet(reduced_run / "results/tables/metrics.parquet")
    split = claims.seed_split(metrics, [[0, 1], [2, 3]])
    rms = split[(split["claim"] == "a") & split["subject"].str.startswith("noise rms")]
    assert len(rms) == len(reduced()["sensitivity"]["gammas"]["rms"])
    estimates = pd.concat([rms["estimate 0,1"], rms["estimate 2,3"]])
    assert sign_test(estimates) < 0.05, rms.to_string()

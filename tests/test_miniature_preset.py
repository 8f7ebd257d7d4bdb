"""presets/miniature-paper.yaml: the preset behind the README's Results, and a reduced run
of it that checks the direction of claim (a).

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

from overtrained import config as C
from overtrained import workflow
from tests.workflow_helpers import REPO, copy_repo, dry_run_jobs, job_counts, snakemake

PRESET = REPO / "presets/miniature-paper.yaml"


def preset() -> dict:
    return yaml.safe_load(PRESET.read_text())


def test_the_preset_is_what_the_issue_asks_for():
    """Two sizes, every schedule, a 64x range reaching thousands of tokens per parameter,
    three seeds per checkpoint, several tasks, LRs from too small to diverging, gammas."""
    cfg = C.load(preset())
    families = cfg["families"].values()
    assert {f["training"]["schedule"] for f in families} == {"cosine", "wsd", "constant"}
    assert len({f["model"]["hidden_size"] for f in families}) >= 2
    for fam in families:
        tokens = [C.parse_tokens(b) for b in fam["budgets"]]
        assert max(tokens) / min(tokens) >= 64
    smallest = min(families, key=lambda f: f["model"]["hidden_size"])
    from overtrained.model import ModelShape, Olmo2LM

    shape = {k: smallest["model"][k] for k in ("vocab_size", "hidden_size", "num_hidden_layers")}
    params = Olmo2LM(
        ModelShape(**shape, num_attention_heads=smallest["model"]["num_attention_heads"])
    ).num_parameters()
    assert max(C.parse_tokens(b) for b in smallest["budgets"]) / params >= 2000
    assert len(cfg["finetune"]["seeds"]) >= 3 and len(cfg["sensitivity"]["seeds"]) >= 3
    assert len(cfg["finetune"]["tasks"]) >= 3
    grid = cfg["finetune"]["lrs"]["lang"]
    assert max(grid) / min(grid) >= 100
    assert sum(len(g) for g in cfg["sensitivity"]["gammas"].values()) >= 3


def test_the_preset_plans_every_stage(tmp_path):
    counts = job_counts(
        dry_run_jobs(tmp_path, "--snakefile", str(REPO / "Snakefile"), "--configfile", str(PRESET))
    )
    cfg = C.load(preset())
    n_ckpt = sum(len(f["budgets"]) for f in cfg["families"].values())
    runs = sum(
        len(workflow.ft_models(cfg, name)) * len(fam["budgets"])
        for name, fam in cfg["families"].items()
    )
    assert counts["finetune"] == runs
    assert counts["probes"] == n_ckpt + runs
    assert counts["sensitivity"] == n_ckpt
    assert counts["claims"] == counts["theory"] == 1
    assert "evaluate" not in counts  # no lm-eval suites in the preset


def reduced() -> dict:
    """The preset cut to its first family, three budgets 16x apart, one small fine-tuning
    task, and its noise scales and seeds unchanged: a few minutes on 2 cores."""
    cfg = copy.deepcopy(preset())
    name, family = next(iter(cfg["families"].items()))
    family["budgets"] = ["125K", "500K", "2M"]
    cfg["families"] = {name: family}
    cfg["finetune"]["tasks"] = {"lang": {**cfg["finetune"]["tasks"]["lang"], "n_train": 32}}
    cfg["finetune"]["lrs"] = {"lang": [1.0e-2]}
    cfg["finetune"]["seeds"] = [0]
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

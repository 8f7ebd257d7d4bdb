"""Checkpoint branches of Hub repos: parsing, nearest-budget resolution, errors, the CLI.

The branch lists here are synthetic, written in the naming schemes the paper
documents (not recordings of the real repositories), with the irregularities it names:
rounding of token suffixes, a gap in OLMo-1B's history, Amber's `main`.
"""

import json

import pytest
import yaml

from overtrained import cli
from overtrained.core import config
from overtrained.hub import checkpoints as hub

OLMO = [
    *(f"step{s}-tokens{round(s * 0.004194)}B" for s in range(20000, 117851, 20000)),
    "step117850-tokens494B",
    # the gap: nothing between steps 117850 and 330000
    *(f"step{s}-tokens{round(s * 0.004194)}B" for s in range(330000, 738001, 40000)),
    "step738020-tokens3094B",
    "main",
]
OLMO2 = [
    "stage1-step19000-tokens80B",
    "stage1-step928646-tokens3896B",
    "stage2-ingredient1-step1000-tokens5B",
]
AMBER = [f"ckpt_{i:03d}" for i in range(359)] + ["main"]


def test_each_naming_scheme_is_parsed():
    assert hub.parse_branch("olmo", "step738020-tokens3094B") == hub.HubCheckpoint(
        "step738020-tokens3094B", 738020, 3_094_000_000_000
    )
    assert hub.parse_branch("olmo2-stage1", "stage1-step19000-tokens80B").tokens == 80 * 10**9
    assert hub.parse_branch("olmo2-stage1", "stage2-ingredient1-step1000-tokens5B") is None
    assert hub.parse_branch("amber", "ckpt_000").tokens == hub.AMBER_TOKENS_PER_CHECKPOINT
    assert hub.parse_branch("amber", "main") is None
    assert hub.detect_scheme(OLMO) == "olmo" and hub.detect_scheme(AMBER) == "amber"
    assert [c.step for c in hub.checkpoints(OLMO2)] == [19000, 928646]


def test_budgets_resolve_to_the_nearest_branch_with_its_distance():
    found = hub.checkpoints(OLMO)
    resolved = hub.resolve(["3.1T", "3T", "1.5T"], found, "allenai/OLMo-1B-hf")
    assert resolved[0].checkpoint.branch == "step738020-tokens3094B"
    assert resolved[0].distance == pytest.approx(3094 / 3100 - 1)
    assert resolved[1].checkpoint.branch == "step730000-tokens3062B"  # nearer than 3094B
    assert resolved[2].checkpoint.branch == "step370000-tokens1552B"


def test_a_budget_in_the_gap_or_beyond_the_range_is_an_error_with_the_range():
    found = hub.checkpoints(OLMO)
    with pytest.raises(hub.CheckpointError, match=r"10T is -69% from the nearest.*spans 84B to"):
        hub.resolve(["10T"], found, "allenai/OLMo-1B-hf")
    with pytest.raises(hub.CheckpointError, match=r"budget 1T is"):
        hub.resolve(["1T"], found, "allenai/OLMo-1B-hf")  # inside the gap (494B .. 1384B)


def test_a_mistyped_revision_names_the_nearest_branches():
    with pytest.raises(hub.CheckpointError, match=r"no branch named 'ckpt_36'; nearest: ckpt_"):
        hub.check_revision("ckpt_36", AMBER, "LLM360/Amber")
    hub.check_revision("ckpt_036", AMBER, "LLM360/Amber")


def test_cli_lists_checkpoints_and_prints_a_snippet(tmp_path, capsys):
    recorded = tmp_path / "branches.json"
    recorded.write_text(json.dumps(AMBER))
    code = cli.main(
        ["checkpoints", "LLM360/Amber", "--branches", str(recorded), "--tokens", "0.5T,1T"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "LLM360/Amber: 359 checkpoint branches of 360" in out
    assert "revisions: [ckpt_142, ckpt_285]" in out
    # the snippet is a valid family, pasted as it is
    snippet = yaml.safe_load(out[out.index("families:") :])
    config.load(
        {
            **snippet,
            "finetune": {
                "tasks": {"hh": {"kind": "dataset", "dataset": "anthropic_hh", "n_train": 10}},
                "lrs": {"hh": [1.0e-5]},
            },
            "evaluate": {"suites": {}, "retention_text": "c4_validation"},
        }
    )
    code = cli.main(["checkpoints", "LLM360/Amber", "--branches", str(recorded), "--tokens", "5T"])
    assert code == 2 and "spans 3.5B to 1256.5B" in capsys.readouterr().err

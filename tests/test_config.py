"""Config validation: defaults, types, unknown keys, cross-field rules, one-line messages."""

import copy

import pytest
import yaml

from overtrained.core import config as C
from overtrained.core import schema as schema_module
from overtrained.core import units

DEFAULT = yaml.safe_load((schema_module.SCHEMA_PATH.parent.parent / "config.yaml").read_text())


def load_with(patch):
    cfg = copy.deepcopy(DEFAULT)
    patch(cfg)
    return C.load(cfg)


def test_empty_config_gets_every_default():
    cfg = C.load({})
    fam = cfg["families"]["mini"]
    assert fam["training"]["schedule"] == "cosine"
    assert fam["model"]["hidden_size"] == 32
    assert set(cfg["finetune"]["tasks"]) == set(cfg["finetune"]["lrs"])
    assert cfg["sensitivity"]["gammas"]["init"]


def test_every_schema_property_is_described_and_defaulted():
    schema = schema_module.load_schema()
    missing = []

    def walk(node, path):
        node = schema_module._resolve(node, schema)
        for key, sub in node.get("properties", {}).items():
            sub_r = schema_module._resolve(sub, schema)
            if "description" not in sub_r:
                missing.append(f"{path}.{key}: description")
            required = key in node.get("required", [])
            if "default" not in sub_r and not required:
                missing.append(f"{path}.{key}: default")
            walk(sub_r, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.*")

    walk(schema, "")
    walk(schema["$defs"]["dataset_definition"], "(dataset definition)")
    assert missing == []


def test_shipped_config_is_valid():
    cfg = C.load(DEFAULT)
    assert cfg["families"]["mini"]["budgets"][0] == "1M"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (lambda c: c.update(finetun={}), "finetun: unknown key"),
        # what a job would discover late, caught at plan time
        (
            lambda c: c["families"]["mini"].__setitem__("seeds", [2**32]),
            "families.mini.seeds[0]: 4294967296 is greater than the maximum",
        ),
        (
            lambda c: c["finetune"].__setitem__("seeds", [2**64]),
            "finetune.seeds[0]: 18446744073709551616 is greater than the maximum",
        ),
        (
            lambda c: c["families"]["mini"].__setitem__("budgets", ["1M", "1T"]),
            "families.mini.budgets: 1T tokens is beyond what a pretrain family",
        ),
        (
            lambda c: c["families"]["mini"]["corpus"].update(heldout_topics=48),
            "families.mini.corpus.heldout_topics: 48 held-out topics leave none",
        ),
        # `$` in Python matches before a final newline: names must match in full
        (
            lambda c: c["families"].__setitem__("mini\n", c["families"].pop("mini")),
            "families: name 'mini\\n' is not a safe identifier",
        ),
        (
            lambda c: c["families"]["mini"]["budgets"].__setitem__(0, "1M\n"),
            "families.mini.budgets[0]: '1M\\n' is not a token count",
        ),
        (
            lambda c: c["families"]["mini"]["model"].update(hiden_size=8),
            "families.mini.model.hiden_size: unknown key",
        ),
        (lambda c: c["finetune"]["lrs"]["lang"].__setitem__(0, -1.0e-3), "finetune.lrs.lang[0]"),
        (
            lambda c: c["families"]["mini"].__setitem__("budgets", []),
            "families.mini.budgets: must not be empty",
        ),
        (
            lambda c: c["families"]["mini"]["training"].update(schedule="linear"),
            "families.mini.training.schedule: 'linear' is not one of",
        ),
        (
            lambda c: c["families"].update({"my/family": c["families"].pop("mini")}),
            "not a safe identifier",
        ),
        (
            lambda c: c["families"].update({"my family": c["families"].pop("mini")}),
            "not a safe identifier",
        ),
        (
            lambda c: c["families"]["mini"].update(budgets=["1Q"]),
            "families.mini.budgets[0]: '1Q' is not a token count",
        ),
        (
            lambda c: c["families"]["mini"]["training"].update(batch_size="16"),
            "families.mini.training.batch_size",
        ),
        (lambda c: c["finetune"]["lrs"].update(arith=["1e-3"]), "write 1.0e-03"),
        (lambda c: c["finetune"]["lrs"].pop("topic"), "no learning-rate grid for task 'topic'"),
        (
            lambda c: c["finetune"]["lrs"].update(other=[1.0e-3]),
            "finetune.lrs.other: no task named",
        ),
        (lambda c: c["families"]["mini"]["model"].update(num_attention_heads=5), "does not divide"),
        (
            lambda c: c["evaluate"]["suites"].update(probes={"tasks": ["arc_easy"]}),
            "'probes' is reserved",
        ),
        (
            lambda c: c["finetune"]["tasks"].pop("arith") and c["finetune"]["lrs"].pop("arith"),
            "mini_arithmetic",
        ),
        (lambda c: c["families"]["mini"]["training"].update(warmup_tokens="1M"), "warmup_tokens"),
        (lambda c: c["families"]["mini"].update(budgets=[1.0e6]), "is not a token count"),
        (lambda c: c["families"]["mini"].update(seeds=[0.0]), "families.mini.seeds[0]"),
        (lambda c: c["families"]["mini"].update(budgets=["0K", "1M"]), "at least one token"),
        (lambda c: c["evaluate"].update(retention_tokens="1M"), "evaluate.retention_tokens"),
        (lambda c: c["finetune"].update(warmup_ratio=1), "finetune.warmup_ratio"),
    ],
)
def test_bad_config_names_the_key(patch, expected):
    with pytest.raises(C.ConfigError) as info:
        load_with(patch)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_token_counts_round_trip():
    for text in ["250K", "1M", "1.5M", "8M", "3T", "2.5B"]:
        assert units.format_tokens(units.parse_tokens(text)) == text
    assert units.parse_tokens(4096) == 4096
    assert units.parse_tokens("1.5M") == 1_500_000


def test_budgets_are_sorted_by_tokens_and_spelled_one_way():
    cfg = load_with(lambda c: c["families"]["mini"].update(budgets=["1M", 250000, "500K", 128000]))
    assert cfg["families"]["mini"]["budgets"] == ["128K", "250K", "500K", "1M"]
    assert units.format_tokens(8192) == "8192" and units.parse_tokens("8192") == 8192
    with pytest.raises(C.ConfigError, match="same number of tokens"):
        load_with(lambda c: c["families"]["mini"].update(budgets=["1M", 1000000]))


def test_lr_spelling_is_canonical_and_unique():
    assert units.format_lr(1.0e-3) == "0.001"
    assert units.format_lr(3.0e-5) == "3e-05"
    with pytest.raises(C.ConfigError, match="same"):
        load_with(lambda c: c["finetune"]["lrs"].update(arith=[1.0e-3, 0.001000000000000001]))


def test_key_order_in_the_file_does_not_matter():
    """Snakemake compares params as text: reordered keys must give identical params."""
    import json

    reordered = json.loads(json.dumps(DEFAULT, sort_keys=True))
    reordered["families"]["mini"] = dict(reversed(list(reordered["families"]["mini"].items())))
    a, b = C.load(DEFAULT), C.load(reordered)
    assert json.dumps(a) == json.dumps(b)


def test_the_six_seed_robustness_config_is_the_default_with_more_seeds():
    from tests.workflow_helpers import REPO

    default = yaml.safe_load((REPO / "config.yaml").read_text())
    six = yaml.safe_load((REPO / "experiments/replicates/default-six-seeds.yaml").read_text())
    assert six["families"]["mini"].pop("seeds") == [0, 1, 2, 3, 4, 5]
    assert default["families"]["mini"].pop("seeds") == [0, 1, 2]
    assert six == default  # so seeds 0-2 of the six-seed run are the default's own jobs


def test_an_empty_lr_grid_makes_an_evaluation_only_task():
    from overtrained import workflow

    cfg = load_with(lambda c: c["finetune"]["lrs"].update(arith=[1.0e-3], topic=[]))
    models = workflow.ft_models(cfg)
    assert "ft/arith/lr0.001/seed0" in models
    assert not [m for m in models if m.startswith("ft/topic/")]
    assert "topic" in cfg["finetune"]["tasks"]  # still generated and evaluated

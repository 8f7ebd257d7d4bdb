"""Pinning hub families to commit shas (overtrained.hub.pins), with branch listings given in
memory (the Hub client itself is exercised against the stand-in in test_hub_workflow.py)."""

import hashlib
import json
from pathlib import Path

import pytest

from overtrained.core import config as config_module
from overtrained.hub import pins

RECORDING = Path(__file__).parent / "data/hub_branches/allenai__OLMo-1B-hf.json"
BRANCHES = json.loads(RECORDING.read_text())["branches"]


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def fake_refs(branches=BRANCHES, moved=()):
    """A branch listing: each branch at a made-up commit, `moved` ones at another."""

    def refs_of(repo):
        refs_of.calls += 1
        return {b: ("b" if b in moved else "a") * 32 + sha1(b)[:8] for b in branches}

    refs_of.calls = 0
    return refs_of


def offline_refs(repo):
    raise AssertionError("the Hub was asked although the manifest has every pin")


def hub_config(tmp_path, **family) -> dict:
    fam = {"source": "hub", "repo": "allenai/OLMo-1B-hf", "tokens": ["1.5T", "3T"]}
    fam |= {"manifest": str(tmp_path / "pins" / "{family}.json")} | family
    return config_module.load(
        {
            "families": {"olmo": fam},
            "finetune": {
                "tasks": {"hh": {"kind": "dataset", "dataset": "anthropic_hh", "n_train": 10}},
                "lrs": {"hh": [1.0e-5]},
            },
            "evaluate": {"suites": {}, "retention_text": "c4_validation"},
        }
    )


def test_budgets_resolve_to_the_nearest_branch_and_are_pinned(tmp_path):
    cfg = hub_config(tmp_path, tokens=["3.1T", "40B", "1.5T"])
    refs = fake_refs()
    lines = pins.pin_config(cfg, refs_of=refs)
    pinned = cfg["families"]["olmo"]["pinned"]
    # token order; the tie at 3094B goes to the later step (the final checkpoint)
    assert [e["revision"] for e in pinned] == [
        "step10000-tokens41B",
        "step369000-tokens1547B",
        "step738020-tokens3094B",
    ]
    assert pinned[0]["distance"] == pytest.approx(41 / 40 - 1)
    assert pinned[1]["sha"] == refs("x")["step369000-tokens1547B"]
    assert len(lines) == 3 and "pinned 1.5T -> step369000-tokens1547B" in lines[1]
    manifest = json.loads((tmp_path / "pins" / "olmo.json").read_text())
    assert manifest["repo"] == "allenai/OLMo-1B-hf" and manifest["scheme"] == "olmo"
    assert [e["revision"] for e in manifest["checkpoints"]] == [e["revision"] for e in pinned]
    assert manifest["tokenizer"]["revision"] == "main"

    again = hub_config(tmp_path, tokens=["3.1T", "40B", "1.5T"])
    assert pins.pin_config(again, refs_of=offline_refs) == []
    assert again["families"]["olmo"]["pinned"] == pinned


def test_a_new_budget_is_resolved_and_old_pins_are_kept(tmp_path):
    pins.pin_config(hub_config(tmp_path), refs_of=fake_refs())
    before = json.loads((tmp_path / "pins" / "olmo.json").read_text())["checkpoints"]
    # the branches moved meanwhile: the new budget takes today's sha, the old pins stay
    cfg = hub_config(tmp_path, tokens=["1.5T", "2.5T", "3T"])
    lines = pins.pin_config(cfg, refs_of=fake_refs(moved=BRANCHES))
    after = {e["request"]: e for e in cfg["families"]["olmo"]["pinned"]}
    assert [after["1.5T"], after["3T"]] == before
    assert after["2.5T"]["sha"].startswith("b")
    assert any("pinned 2.5T" in line for line in lines)
    assert sum("has moved" in line for line in lines) == 3  # 1.5T, 3T and the tokenizer


def test_a_moved_branch_is_reported_and_moved_only_on_repin(tmp_path):
    pins.pin_config(hub_config(tmp_path), refs_of=fake_refs())
    moved = fake_refs(moved=["step720000-tokens3018B"])
    cfg = hub_config(tmp_path)
    lines = pins.pin_config(cfg, check=True, refs_of=moved)
    assert lines == [
        f"families.olmo: branch step720000-tokens3018B has moved to {'b' * 12}; results stay "
        f"pinned to {'a' * 12} (`overtrained pin --repin` moves them)"
    ]
    assert cfg["families"]["olmo"]["pinned"][1]["sha"].startswith("a")
    cfg = hub_config(tmp_path)
    lines = pins.pin_config(cfg, repin=True, refs_of=moved)
    assert len(lines) == 1 and "re-pinned step720000-tokens3018B" in lines[0]
    assert cfg["families"]["olmo"]["pinned"][1]["sha"].startswith("b")
    assert cfg["families"]["olmo"]["pinned"][0]["sha"].startswith("a")
    stored = json.loads((tmp_path / "pins" / "olmo.json").read_text())
    assert stored["checkpoints"][1]["sha"].startswith("b")


def test_explicit_revisions_are_pinned_and_checked(tmp_path):
    cfg = hub_config(tmp_path, tokens=None, revisions=["step738020-tokens3094B"])
    pins.pin_config(cfg, refs_of=fake_refs())
    (entry,) = cfg["families"]["olmo"]["pinned"]
    assert (entry["revision"], entry["tokens"], entry["distance"]) == (
        "step738020-tokens3094B",
        3094 * 10**9,
        0.0,
    )
    typo = hub_config(tmp_path, tokens=None, revisions=["step738020-tokens3095B"])
    with pytest.raises(config_module.ConfigError) as err:
        pins.pin_config(typo, refs_of=fake_refs())
    assert str(err.value) == (
        "families.olmo: allenai/OLMo-1B-hf: no branch named 'step738020-tokens3095B'; nearest: "
        "step738020-tokens3094B, step738000-tokens3094B, step80000-tokens335B"
    )


@pytest.mark.parametrize(
    ("family", "message"),
    [
        (
            {"tokens": ["1T"]},  # in OLMo-1B's gap between 494B and 1383B
            "families.olmo: allenai/OLMo-1B-hf: budget 1T is +38% from the nearest checkpoint "
            "(step330000-tokens1383B, 1383B tokens); the repository spans 4B to 3094B tokens",
        ),
        (
            {"tokens": ["5T"]},
            "families.olmo: allenai/OLMo-1B-hf: budget 5T is -38% from the nearest checkpoint "
            "(step738020-tokens3094B, 3094B tokens); the repository spans 4B to 3094B tokens",
        ),
        (
            {"tokens": ["2.2T", "2.3T"]},
            "families.olmo.tokens: 2.2T and 2.3T both resolve to step509000-tokens2134B; drop "
            "one of them",
        ),
        (
            {"tokens": None, "revisions": ["main"]},
            "families.olmo: allenai/OLMo-1B-hf: branch 'main' does not follow the olmo naming "
            "scheme, so its token count is unknown; set families.olmo.scheme or pick a "
            "checkpoint branch",
        ),
    ],
)
def test_unsatisfiable_requests_are_one_line_errors(tmp_path, family, message):
    cfg = hub_config(tmp_path, **family)
    with pytest.raises(config_module.ConfigError) as err:
        pins.pin_config(cfg, refs_of=fake_refs())
    assert str(err.value) == message
    assert not (tmp_path / "pins" / "olmo.json").exists()


def test_offline_without_a_pin_says_how_to_pin(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(config_module.ConfigError) as err:
        pins.pin_config(hub_config(tmp_path))  # the real listing, which must not go online
    assert str(err.value) == (
        f"families.olmo: {tmp_path}/pins/olmo.json has no pin for 1.5T, 3T and HF_HUB_OFFLINE "
        "is set; run `overtrained pin` where the Hub is reachable, or copy the manifest here"
    )


def test_a_manifest_of_another_repo_is_not_overwritten(tmp_path):
    pins.pin_config(hub_config(tmp_path), refs_of=fake_refs())
    path = tmp_path / "pins" / "olmo.json"
    before = path.read_text()
    with pytest.raises(config_module.ConfigError, match="pins repository 'allenai/OLMo-1B-hf'"):
        pins.pin_config(hub_config(tmp_path, repo="allenai/OLMo-7B-hf"), refs_of=fake_refs())
    assert path.read_text() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["families"]["olmo"].update(revisions=["main"]),
            "families.olmo: give exactly one of `tokens`",
        ),
        (
            lambda c: c["finetune"]["tasks"].update(a={"kind": "arithmetic", "n_train": 5}),
            "finetune.tasks.a: a generated task (arithmetic) speaks the synthetic corpus",
        ),
        (
            lambda c: c["evaluate"].update(retention_text=None),
            "evaluate.retention_text: families.olmo is a hub family",
        ),
        (
            lambda c: c["families"]["olmo"].update(weights="x"),
            "families.olmo.weights: unknown key (allowed here: allow_patterns, allow_pickle,",
        ),
        (
            lambda c: c["families"]["olmo"].update(repo="OLMo-1B-hf"),
            "families.olmo.repo: 'OLMo-1B-hf' does not match",
        ),
    ],
)
def test_hub_family_config_mistakes(change, message):
    raw = {
        "families": {"olmo": {"source": "hub", "repo": "allenai/OLMo-1B-hf", "tokens": ["1T"]}},
        "finetune": {
            "tasks": {"hh": {"kind": "dataset", "dataset": "anthropic_hh", "n_train": 10}},
            "lrs": {"hh": [1.0e-5]},
        },
        "evaluate": {"suites": {}, "retention_text": "c4_validation"},
    }
    change(raw)
    if "a" in raw["finetune"]["tasks"]:
        raw["finetune"]["lrs"]["a"] = [1.0e-3]
    with pytest.raises(config_module.ConfigError) as err:
        config_module.load(raw)
    assert str(err.value).startswith(message)


def test_hub_family_defaults_are_filled():
    cfg = config_module.load(
        {
            "families": {"olmo": {"source": "hub", "repo": "a/b", "tokens": ["2T", "1T"]}},
            "finetune": {
                "tasks": {"hh": {"kind": "dataset", "dataset": "anthropic_hh", "n_train": 10}},
                "lrs": {"hh": [1.0e-5]},
            },
            "evaluate": {"suites": {}, "retention_text": "c4_validation"},
        }
    )
    fam = cfg["families"]["olmo"]
    assert fam["tokens"] == ["1T", "2T"]
    assert (fam["allow_pickle"], fam["trust_remote_code"], fam["scheme"]) == (False, False, "auto")
    assert "*.safetensors" in fam["allow_patterns"] and "model" not in fam


def test_repin_moves_only_the_named_branches(tmp_path):
    pins.pin_config(hub_config(tmp_path), refs_of=fake_refs())
    moved = fake_refs(moved=["step720000-tokens3018B", "step369000-tokens1547B", "main"])
    cfg = hub_config(tmp_path)
    lines = pins.pin_config(cfg, repin={"step720000-tokens3018B"}, refs_of=moved)
    assert sum("re-pinned" in line for line in lines) == 1
    assert sum("has moved" in line for line in lines) == 2  # 1.5T's branch and the tokenizer
    shas = [e["sha"][0] for e in cfg["families"]["olmo"]["pinned"]]
    assert shas == ["a", "b"] and cfg["families"]["olmo"]["tokenizer_pin"]["sha"][0] == "a"


def test_a_branch_gone_from_the_hub_is_reported(tmp_path):
    pins.pin_config(hub_config(tmp_path), refs_of=fake_refs())
    gone = [b for b in BRANCHES if b != "step720000-tokens3018B"]
    lines = pins.pin_config(hub_config(tmp_path), check=True, refs_of=fake_refs(gone))
    assert lines == [
        f"families.olmo: branch step720000-tokens3018B is gone from the repository; results "
        f"stay pinned to {'a' * 12} (downloads of it may now fail)"
    ]


def test_switching_from_revisions_to_tokens_keeps_the_manifest_readable(tmp_path):
    cfg = hub_config(tmp_path, tokens=None, revisions=["step720000-tokens3018B"])
    pins.pin_config(cfg, refs_of=fake_refs())
    cfg = hub_config(tmp_path, tokens=["3T"])
    pins.pin_config(cfg, refs_of=fake_refs())
    assert [e["request"] for e in cfg["families"]["olmo"]["pinned"]] == ["3T"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("checkpoints"), "not a manifest (an object with a `checkpoints` list)"),
        (lambda m: m["checkpoints"][0].pop("sha"), "checkpoints[0] lacks sha"),
        (
            lambda m: m["checkpoints"][0].update(sha="main"),
            "checkpoints[0].sha 'main' is not a 40-hex commit sha",
        ),
        (
            lambda m: m["checkpoints"][1].update(revision="step738020-tokens3094B"),
            "checkpoints[1]: branch 'step738020-tokens3094B' does not give step 720000 and "
            "3018000000000 tokens under scheme 'olmo'",
        ),
        (
            lambda m: m["tokenizer"].update(sha=None),
            "tokenizer.sha None is not a 40-hex commit sha",
        ),
    ],
)
def test_a_manifest_edited_wrongly_by_hand_is_refused(tmp_path, edit, message):
    pins.pin_config(hub_config(tmp_path), refs_of=fake_refs())
    path = tmp_path / "pins" / "olmo.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(config_module.ConfigError) as err:
        pins.pin_config(hub_config(tmp_path), refs_of=offline_refs)
    assert str(err.value) == f"{path}: {message}; fix it, or delete the file to pin afresh"


def test_hub_failures_are_one_line_errors():
    """A refused connection: the real client, retried, then one line (no traceback)."""
    code = (
        "from overtrained.hub import pins; pins.time.sleep = lambda s: None\n"
        "try:\n    pins.list_refs('acme/x')\n"
        "except pins.hub.CheckpointError as e:\n    print('ERROR', e)\n"
    )
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ERROR could not list the branches of 'acme/x' (")
    assert done.stdout.rstrip().endswith(
        "); check the network or HF_ENDPOINT, or run where the Hub is reachable"
    )
    assert len(done.stdout.strip().splitlines()) == 1


def test_a_repo_under_a_pretrain_family_suggests_source_hub():
    with pytest.raises(config_module.ConfigError) as err:
        config_module.load({"families": {"olmo": {"source": "pretrain", "repo": "a/b"}}})
    assert str(err.value) == (
        "families.olmo.repo: a family with a repo is a hub family: add `source: hub`"
    )

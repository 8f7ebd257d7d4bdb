"""Pre-training: schedules, data order, trunk/branch exactness, checkpoint format."""

import math

import numpy as np
import pytest
import torch

from overtrained.core import jsonio, provenance
from overtrained.train import pretrain


def schedule(kind, total=100, warmup=10, decay_start=0):
    return pretrain.Schedule(kind, 1.0, 0.1, warmup, total, decay_start)


def test_cosine_warms_up_then_anneals_to_min():
    s = schedule("cosine")
    lrs = [s.lr(i) for i in range(100)]
    assert lrs[0] == pytest.approx(0.1)  # 1/10 of peak on the first warmup step
    assert lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert s.lr(100) == pytest.approx(0.1)


def test_wsd_is_flat_until_its_branch_then_decays_linearly_to_min():
    s = schedule("wsd", decay_start=80)
    assert [s.lr(i) for i in range(10, 80)] == [1.0] * 70
    decay = [s.lr(i) for i in range(80, 100)]
    assert decay[-1] == pytest.approx(0.1)
    steps = np.diff(decay)
    assert np.allclose(steps, steps[0])


def test_constant_stays_at_peak():
    s = schedule("constant")
    assert {s.lr(i) for i in range(10, 1000)} == {1.0}


def test_sampler_never_repeats_a_block_and_depends_on_seed(tmp_path):
    stream = np.arange(33 * 64, dtype=np.uint16)
    np.save(tmp_path / "s.npy", stream)
    sampler = pretrain.BlockSampler(tmp_path / "s.npy", seq_len=32, batch_size=4, seed=0)
    firsts = [int(row[0]) for step in range(sampler.max_steps()) for row in sampler.batch(step)]
    assert len(firsts) == len(set(firsts)) == 64
    other = pretrain.BlockSampler(tmp_path / "s.npy", seq_len=32, batch_size=4, seed=1)
    assert not torch.equal(sampler.batch(0), other.batch(0))
    with pytest.raises(ValueError, match="corpus stream holds"):
        sampler.batch(sampler.max_steps())


def test_wsd_branch_from_trunk_state_equals_uninterrupted_run(family, corpus_dir, tmp_path):
    """Saving/restoring the trunk (weights + AdamW moments) loses nothing."""
    family["training"]["schedule"] = "wsd"
    train = family["training"]
    total = pretrain.steps_for(16_000, train)
    branch = pretrain.branch_step("16K", train)
    sampler = pretrain.BlockSampler(corpus_dir / "train.npy", train["seq_len"], 4, seed=0)
    sched = pretrain._schedule(train, "wsd", total, decay_start=branch)

    straight = pretrain.build_model(family, 0)
    opt = pretrain.make_optimizer(straight, train)
    pretrain.train_steps(straight, opt, sampler, sched, 0, total, train, [])

    trunk = pretrain.build_model(family, 0)
    opt = pretrain.make_optimizer(trunk, train)
    pretrain.train_steps(trunk, opt, sampler, sched, 0, branch, train, [])
    pretrain.save_state(trunk, opt, branch, tmp_path / "state.safetensors")

    resumed = pretrain.build_model(family, 0)
    opt = pretrain.make_optimizer(resumed, train)
    assert pretrain.load_state(resumed, opt, tmp_path / "state.safetensors") == branch
    pretrain.train_steps(resumed, opt, sampler, sched, branch, total, train, [])
    resumed_state = resumed.state_dict()
    for name, a in straight.state_dict().items():
        b = resumed_state[name]
        assert torch.allclose(a, b, atol=1e-6), name


def test_trunk_and_branches_produce_checkpoints(family, corpus_dir, tmp_path):
    family["training"]["schedule"] = "wsd"
    states = {b: tmp_path / f"state-{b}.safetensors" for b in family["budgets"]}
    result = pretrain.run_trunk(family, 0, corpus_dir, states)
    assert all(p.exists() for p in states.values())
    assert result["steps"] == pretrain.branch_step("32K", family["training"])
    record = pretrain.run_checkpoint(
        family, "16K", 0, corpus_dir, tmp_path / "ck", {"code": "x"}, states["16K"]
    )
    assert record["branch_step"] == pretrain.branch_step("16K", family["training"])
    assert record["steps"] == pretrain.steps_for(16_000, family["training"])
    assert record["loss_curve"][-1][1] == pytest.approx(0.0, abs=1e-12)  # decayed to min_lr 0


def test_a_long_run_reports_its_progress_and_computes_the_same(
    family, corpus_dir, tmp_path, monkeypatch, capsys
):
    """A trunk writes where it is to its log (here after every step; in a job every 30 s) and
    when it saves a state; the states are bit-identical to a run that reports nothing."""
    states = {b: tmp_path / f"quiet-{b}.safetensors" for b in family["budgets"]}
    monkeypatch.setattr(pretrain, "PROGRESS_SECONDS", 1e9)  # one line: the last step
    pretrain.run_trunk(family, 0, corpus_dir, states)
    quiet = capsys.readouterr().out
    monkeypatch.setattr(pretrain, "PROGRESS_SECONDS", 0.0)
    chatty = {b: tmp_path / f"chatty-{b}.safetensors" for b in family["budgets"]}
    result = pretrain.run_trunk(family, 0, corpus_dir, chatty)
    lines = capsys.readouterr().out.splitlines()
    steps = result["steps"]
    progress = [line for line in lines if "trunk seed 0: step" in line]
    assert len(progress) == steps
    assert f"step {steps:,}/{steps:,} (100.0%)" in progress[-1] and "min left" in progress[-1]
    assert sum("saved the" in line for line in lines) == len(family["budgets"])
    assert sum("trunk seed 0: step" in line for line in quiet.splitlines()) == 1
    from safetensors.torch import load_file

    for budget in family["budgets"]:  # (the header's key order is not fixed: compare tensors)
        a, b = load_file(states[budget]), load_file(chatty[budget])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_is_a_loadable_hf_model_with_provenance(checkpoint_dir):
    import transformers

    record = jsonio.read_json(checkpoint_dir / "provenance.json")
    for key in (
        "seed",
        "budget",
        "tokens",
        "schedule",
        "corpus_fingerprint",
        "versions",
        "code_version",
        "tokens_per_second",
        "wall_seconds",
        "sha",
    ):
        assert key in record, key
    assert record["sha"] == provenance.sha256_file(checkpoint_dir / "model.safetensors")
    assert not list(checkpoint_dir.glob("*.bin")) and not list(checkpoint_dir.glob("*.pt"))
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint_dir)
    ids = tokenizer("a test sentence", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == model.config.vocab_size


def test_pretraining_lowers_the_loss(checkpoint_dir):
    curve = jsonio.read_json(checkpoint_dir / "provenance.json")["loss_curve"]
    first, last = curve[0][2], curve[-1][2]
    assert last < first - 0.5, (first, last)  # from ~ln(vocab) towards the corpus's entropy
    assert math.isfinite(last)


def test_same_seed_same_checkpoint(family, corpus_dir, tmp_path, checkpoint_dir):
    pretrain.run_checkpoint(family, "16K", 0, corpus_dir, tmp_path / "again", {"code": "test"})
    assert (
        provenance.sha256_file(tmp_path / "again" / "model.safetensors")
        == (jsonio.read_json(checkpoint_dir / "provenance.json")["sha"])
    )


def test_our_adamw_matches_torch_adamw():
    torch.manual_seed(0)
    ref = torch.nn.Linear(8, 4)
    ours = torch.nn.Linear(8, 4)
    ours.load_state_dict(ref.state_dict())
    groups_ref = [
        {"params": [ref.weight], "weight_decay": 0.1},
        {"params": [ref.bias], "weight_decay": 0.0},
    ]
    groups_ours = [
        {"params": [ours.weight], "weight_decay": 0.1},
        {"params": [ours.bias], "weight_decay": 0.0},
    ]
    opt_ref = torch.optim.AdamW(groups_ref, lr=1e-2, betas=(0.9, 0.95), foreach=False)
    opt_ours = pretrain.AdamW(groups_ours, lr=1e-2, betas=(0.9, 0.95))
    for step in range(20):
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(step))
        for model, opt in ((ref, opt_ref), (ours, opt_ours)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert torch.allclose(ref.weight, ours.weight, atol=1e-6)
    assert torch.allclose(ref.bias, ours.bias, atol=1e-6)


def test_constant_checkpoint_is_the_trunk_state_at_its_budget(family, corpus_dir, tmp_path):
    from safetensors.torch import load_file

    family["training"]["schedule"] = "constant"
    states = {b: tmp_path / f"state-{b}.safetensors" for b in family["budgets"]}
    pretrain.run_trunk(family, 0, corpus_dir, states)
    record = pretrain.run_checkpoint(
        family, "16K", 0, corpus_dir, tmp_path / "ck", {"code": "x"}, states["16K"]
    )
    assert record["branch_step"] == record["steps"] and record["tokens_per_second"] is None
    saved = load_file(str(tmp_path / "ck" / "model.safetensors"))
    trunk = load_file(str(states["16K"]))
    for name, tensor in saved.items():
        assert torch.equal(tensor, trunk[f"model.{name}"]), name

"""overtrained.models.model: parity with transformers' Olmo2ForCausalLM, and checkpoint I/O."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GenerationConfig, Olmo2Config, Olmo2ForCausalLM

from overtrained.models.model import (
    ModelShape,
    Olmo2LM,
    default_intermediate_size,
    load_checkpoint,
    olmo2_config_dict,
    save_checkpoint,
    sequence_nll,
    shape_from_config,
)

REPO = Path(__file__).resolve().parents[1]

SMALL = ModelShape()
WIDER = ModelShape(hidden_size=48, num_attention_heads=6, num_hidden_layers=3)
TIED = ModelShape(
    vocab_size=300,
    hidden_size=24,
    num_attention_heads=2,
    num_hidden_layers=1,
    max_position_embeddings=64,
    rope_theta=500.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)
SHAPES = [SMALL, WIDER, TIED]
SHAPE_IDS = ["h32-4h-2l", "h48-6h-3l", "h24-tied"]


def _ids(shape: ModelShape, batch: int = 3, seq: int = 40, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, shape.vocab_size, (batch, seq), generator=gen)
    ids[0, :3] = 1  # include the pad token (embedding padding_idx)
    return ids


def _labels(ids: torch.Tensor) -> torch.Tensor:
    labels = ids.clone()
    labels[0, :7] = -100
    labels[1, -5:] = -100
    labels[2, 10:12] = -100
    return labels


def _hf_model(shape: ModelShape, attn: str = "sdpa", **token_ids) -> Olmo2ForCausalLM:
    config = Olmo2Config(**olmo2_config_dict(shape, **token_ids))
    config._attn_implementation = attn
    return Olmo2ForCausalLM(config).eval()


def _hf_twin(ours: Olmo2LM, attn: str = "sdpa") -> Olmo2ForCausalLM:
    hf = _hf_model(ours.shape, attn)
    result = hf.load_state_dict(ours.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return hf


# ----------------------------------------------------------------------------- shape/config


def test_model_shape_defaults_and_from_dict():
    shape = ModelShape()
    assert shape.intermediate_size == 88 == default_intermediate_size(32)
    assert default_intermediate_size(48) == 128
    assert default_intermediate_size(64) == 176
    for h in range(1, 200):
        size = default_intermediate_size(h)
        assert size % 8 == 0 and size >= 8 * h / 3 > size - 8
    assert shape.head_dim == 8
    assert ModelShape.from_dict(shape.to_dict()) == shape
    custom = ModelShape.from_dict({"hidden_size": 48, "intermediate_size": 100})
    assert custom.intermediate_size == 100
    with pytest.raises(ValueError, match="unknown"):
        ModelShape.from_dict({"hiden_size": 48})
    with pytest.raises(ValueError, match="divisible"):
        ModelShape(hidden_size=30, num_attention_heads=4)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_config_dict_round_trips_through_transformers(shape, tmp_path):
    ours = olmo2_config_dict(shape, eos_token_id=0, pad_token_id=1, bos_token_id=0)
    assert ours["architectures"] == ["Olmo2ForCausalLM"] and ours["model_type"] == "olmo2"
    written = Olmo2Config(**ours).to_dict()
    for key, value in ours.items():
        assert written[key] == value, key
    # identical to the file save_pretrained writes, apart from transformers_version
    _hf_model(shape).save_pretrained(tmp_path)
    theirs = json.loads((tmp_path / "config.json").read_text())
    theirs.pop("transformers_version")
    assert ours == theirs
    assert shape_from_config(theirs) == shape


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_logits_and_loss_match_transformers(shape):
    ours = Olmo2LM(shape).init_weights(3)
    hf = _hf_twin(ours)
    ids = _ids(shape)
    labels = _labels(ids)
    with torch.no_grad():
        logits, loss = ours(ids, labels)
        out = hf(input_ids=ids, labels=labels)
        logits_only, no_loss = ours(ids)
    assert no_loss is None
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits_only, logits, atol=0, rtol=0)
    torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=0)


@pytest.mark.parametrize("extra", [0, 1], ids=["max_len", "max_len_plus_1"])
def test_matches_eager_attention_at_and_past_max_length(extra):
    # HF computes RoPE for any position; so do we (probes score (seq_len + 1)-token windows).
    shape = WIDER
    ours = Olmo2LM(shape).init_weights(4)
    hf = _hf_twin(ours, attn="eager")
    ids = _ids(shape, batch=2, seq=shape.max_position_embeddings + extra, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], hf(input_ids=ids).logits, atol=1e-5, rtol=0)
        short = ids[:, :50]
        torch.testing.assert_close(ours(short)[0], hf(input_ids=short).logits, atol=1e-5, rtol=0)
    assert "rope_cos" not in ours.state_dict()


@pytest.mark.parametrize("shape", [SMALL, TIED], ids=["untied", "tied"])
def test_gradients_flow_and_match_transformers(shape):
    ours = Olmo2LM(shape).init_weights(5)
    hf = _hf_twin(ours).train()
    ids = _ids(shape, seed=6)
    labels = _labels(ids)
    _, loss = ours(ids, labels)
    loss.backward()
    hf(input_ids=ids, labels=labels).loss.backward()
    hf_params = dict(hf.named_parameters())
    for name, param in ours.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        if param.dim() == 2:
            assert param.grad.abs().sum() > 0, name
        torch.testing.assert_close(param.grad, hf_params[name].grad, atol=1e-6, rtol=1e-4)
    if not shape.tie_word_embeddings:  # like HF, the padding_idx row gets no gradient
        assert torch.count_nonzero(ours.model.embed_tokens.weight.grad[1]) == 0


def test_sequence_nll_matches_mean_loss():
    ours = Olmo2LM(SMALL).init_weights(7)
    ids = _ids(SMALL, seed=8)
    labels = _labels(ids)
    total, count = sequence_nll(ours, ids, labels)
    expected = int((labels[:, 1:] != -100).sum())
    assert count == expected
    _, loss = ours(ids, labels)
    assert math.isclose(total / count, loss.item(), rel_tol=1e-6)
    # batching: sums over splits add up
    parts = [sequence_nll(ours, ids[i : i + 1], labels[i : i + 1]) for i in range(ids.shape[0])]
    assert math.isclose(sum(p[0] for p in parts), total, rel_tol=1e-6)
    assert sum(p[1] for p in parts) == count


# ----------------------------------------------------------------------------- init


def test_init_weights_deterministic_and_hf_like():
    shape = ModelShape(vocab_size=512, hidden_size=64, num_attention_heads=4)
    a = Olmo2LM(shape).init_weights(11).state_dict()
    b = Olmo2LM(shape).init_weights(11).state_dict()
    c = Olmo2LM(shape).init_weights(12).state_dict()
    model = Olmo2LM(shape).init_weights(11)
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name
        if tensor.dim() == 1:
            assert torch.equal(tensor, torch.ones_like(tensor)), name
            assert model.init_std(name) == 0.0
            continue
        assert not torch.equal(tensor, c[name]), name
        std = model.init_std(name)
        assert std == shape.initializer_range
        values = tensor
        if name == "model.embed_tokens.weight":
            assert torch.count_nonzero(tensor[1]) == 0  # padding_idx row zeroed, as in HF
            values = torch.cat((tensor[:1], tensor[2:]))
        n = values.numel()
        assert abs(values.std().item() - std) < 5 * std / math.sqrt(2 * n), name
        assert abs(values.mean().item()) < 5 * std / math.sqrt(n), name
    with pytest.raises(KeyError):
        model.init_std("model.nope.weight")


@pytest.mark.parametrize("shape", [SMALL, TIED], ids=["untied", "tied"])
def test_num_parameters_matches_transformers(shape):
    ours = Olmo2LM(shape)
    hf = _hf_model(shape)
    assert ours.num_parameters() == hf.num_parameters()
    assert ours.num_parameters(exclude_embeddings=True) == hf.num_parameters(
        exclude_embeddings=True
    )
    if shape.tie_word_embeddings:
        assert ours.lm_head.weight is ours.model.embed_tokens.weight


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("shape", [SMALL, TIED], ids=["untied", "tied"])
def test_save_checkpoint_loads_in_transformers(shape, tmp_path):
    ours = Olmo2LM(shape, pad_token_id=1, bos_token_id=0, eos_token_id=2).init_weights(21)
    save_checkpoint(ours, tmp_path, extra_config={"overtrained": {"tokens": 1000}})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    with safe_open(tmp_path / "model.safetensors", "pt") as fh:
        assert fh.metadata() == {"format": "pt"}
        keys = set(fh.keys())
    assert ("lm_head.weight" in keys) != shape.tie_word_embeddings

    hf, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(hf, Olmo2ForCausalLM)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    assert hf.config.overtrained == {"tokens": 1000}
    assert hf.config.eos_token_id == 2 and hf.config.pad_token_id == 1
    gen = GenerationConfig.from_pretrained(tmp_path)
    assert (gen.eos_token_id, gen.pad_token_id, gen.bos_token_id) == (2, 1, 0)
    ids = _ids(shape, seed=22)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], hf(input_ids=ids).logits, atol=1e-5, rtol=0)

    again = load_checkpoint(tmp_path)
    assert again.shape == shape and again.eos_token_id == 2
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    with pytest.raises(ValueError, match="conflicts"):
        save_checkpoint(ours, tmp_path / "x", extra_config={"hidden_size": 7})


@pytest.mark.parametrize(
    ("shape", "shard"),
    [(SMALL, None), (TIED, None), (WIDER, "20KB")],
    ids=["untied", "tied", "sharded"],
)
def test_transformers_save_pretrained_loads_in_ours(shape, shard, tmp_path):
    torch.manual_seed(31)
    hf = _hf_model(shape)
    with torch.no_grad():  # make norm weights non-trivial so loading them matters
        for param in hf.parameters():
            if param.dim() == 1:
                param.uniform_(0.5, 1.5)
    kwargs = {"max_shard_size": shard} if shard else {}
    hf.save_pretrained(tmp_path, **kwargs)
    assert (tmp_path / "model.safetensors.index.json").exists() == bool(shard)
    ours = load_checkpoint(tmp_path)
    assert ours.shape == shape
    ids = _ids(shape, seed=32)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], hf(input_ids=ids).logits, atol=1e-5, rtol=0)


def test_load_refuses_pickle_and_unsupported_configs(tmp_path):
    ours = Olmo2LM(SMALL).init_weights(0)
    config = olmo2_config_dict(SMALL)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(config))
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match="pickle"):
        load_checkpoint(pickled)

    for change, pattern in [
        ({"model_type": "llama"}, "model_type"),
        ({"num_key_value_heads": 2}, "num_key_value_heads"),
        ({"attention_bias": True}, "attention_bias"),
        ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "RoPE"),
    ]:
        bad = tmp_path / f"bad_{len(list(tmp_path.iterdir()))}"
        save_checkpoint(ours, bad)
        (bad / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ValueError, match=pattern):
            load_checkpoint(bad)

    extra = tmp_path / "extra"
    save_checkpoint(ours, extra)
    state = {k: v.contiguous() for k, v in ours.state_dict().items()}
    state["model.layers.9.mlp.up_proj.weight"] = torch.zeros(1)
    save_file(state, extra / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="unexpected"):
        load_checkpoint(extra)

    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing")


def test_module_does_not_import_transformers():
    code = (
        "import sys, overtrained.models.model as m; "
        "assert 'transformers' not in sys.modules, 'transformers imported'; "
        "m.Olmo2LM(m.ModelShape()).init_weights(0)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)

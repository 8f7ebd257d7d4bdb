"""A small pure-torch OLMo-2 that is weight- and config-compatible with Hugging Face.

Importing ``transformers`` costs seconds of process start-up, which the CPU pre-training job,
the perturbation probe and the loss probes cannot afford.  This module re-implements
``transformers.Olmo2ForCausalLM`` (transformers 5.x, ``models/olmo2/modeling_olmo2.py``) with
plain torch so that:

* parameter names equal Hugging Face's ``state_dict`` keys (``model.embed_tokens.weight``,
  ``model.layers.0.self_attn.q_norm.weight``, ..., ``lm_head.weight``);
* :func:`save_checkpoint` writes ``model.safetensors`` + ``config.json`` +
  ``generation_config.json`` that ``transformers.AutoModelForCausalLM.from_pretrained`` loads
  with no missing or unexpected keys;
* :func:`load_checkpoint` reads what ``Olmo2ForCausalLM.save_pretrained`` writes (single file
  or sharded safetensors, tied or untied ``lm_head``); pickle checkpoints are refused.

Architecture (OLMo-2 "reordered norm"), per decoder layer::

    h = x + post_attention_layernorm(attn(x))
    h = h + post_feedforward_layernorm(mlp(h))

where ``attn`` applies RMSNorm ``q_norm``/``k_norm`` over the full projected q/k width *before*
splitting into heads, then rotary embeddings (``rotate_half`` convention), then causal
scaled-dot-product attention with scale ``head_dim ** -0.5``.  ``mlp`` is SwiGLU
(``down(silu(gate(x)) * up(x))``).  No biases anywhere.  RMSNorm is computed in float32.

As in Hugging Face, the token embedding is created with ``padding_idx=pad_token_id``: the
pad row is initialised to zero and never receives a gradient.

Only torch, safetensors and the standard library are imported here (never transformers).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overtrained.core import jsonio

__all__ = [
    "ModelShape",
    "Olmo2LM",
    "default_intermediate_size",
    "load_checkpoint",
    "olmo2_config_dict",
    "save_checkpoint",
    "sequence_nll",
    "shape_from_config",
]

IGNORE_INDEX = -100
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def default_intermediate_size(hidden_size: int) -> int:
    """SwiGLU width used when ``ModelShape.intermediate_size`` is None.

    ``8/3 * hidden_size`` (keeps the MLP parameter count of a 4x GELU MLP) rounded *up* to a
    multiple of 8, computed exactly in integers: ``8 * ceil(hidden_size / 3)``.
    hidden 32 -> 88, hidden 48 -> 128, hidden 64 -> 176.
    """
    return 8 * ((int(hidden_size) + 2) // 3)


@dataclass
class ModelShape:
    """Architecture hyper-parameters of a tiny OLMo-2 model (mirrors ``Olmo2Config`` names).

    ``intermediate_size=None`` is resolved in ``__post_init__`` to
    :func:`default_intermediate_size` (``8 * ceil(hidden_size / 3)``), so after construction
    it is always a concrete ``int``.
    """

    vocab_size: int = 1024
    hidden_size: int = 32
    intermediate_size: int | None = None
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 128
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.intermediate_size is None:
            self.intermediate_size = default_intermediate_size(self.hidden_size)
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelShape.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        self.rope_theta = float(self.rope_theta)
        self.rms_norm_eps = float(self.rms_norm_eps)
        self.initializer_range = float(self.initializer_range)
        if not (self.rope_theta > 0 and self.rms_norm_eps > 0 and self.initializer_range >= 0):
            raise ValueError("rope_theta and rms_norm_eps must be > 0, initializer_range >= 0")
        self.tie_word_embeddings = bool(self.tie_word_embeddings)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelShape:
        """Build from a dict of ``ModelShape`` fields; unknown keys raise ``ValueError``.

        (Use :func:`shape_from_config` for a Hugging Face ``config.json`` dict.)
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelShape field(s): {unknown}; known: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def olmo2_config_dict(
    shape: ModelShape, eos_token_id: Any = 0, pad_token_id: int | None = 1, bos_token_id: Any = 0
) -> dict[str, Any]:
    """The ``config.json`` content transformers 5 writes for ``Olmo2ForCausalLM`` of ``shape``.

    Identical to ``save_pretrained``'s file except that ``transformers_version`` is omitted
    (it is optional, and we do not want output to depend on the installed transformers).
    Keys are in the sorted order transformers uses.  Note transformers 5 writes ``dtype``
    (not ``torch_dtype``) and nests the RoPE base in ``rope_parameters``.
    """
    d = {
        "architectures": ["Olmo2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos_token_id,
        "dtype": "float32",
        "eos_token_id": eos_token_id,
        "hidden_act": "silu",
        "hidden_size": shape.hidden_size,
        "initializer_range": shape.initializer_range,
        "intermediate_size": shape.intermediate_size,
        "max_position_embeddings": shape.max_position_embeddings,
        "model_type": "olmo2",
        "num_attention_heads": shape.num_attention_heads,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_key_value_heads": shape.num_attention_heads,
        "pad_token_id": pad_token_id,
        "rms_norm_eps": shape.rms_norm_eps,
        "rope_parameters": {"rope_theta": shape.rope_theta, "rope_type": "default"},
        "tie_word_embeddings": shape.tie_word_embeddings,
        "use_cache": True,
        "vocab_size": shape.vocab_size,
    }
    return d


def shape_from_config(config: dict[str, Any]) -> ModelShape:
    """Validate a Hugging Face OLMo-2 ``config.json`` dict and return its :class:`ModelShape`.

    Raises ``ValueError`` for anything this implementation does not reproduce exactly
    (other model types, grouped-query attention, biases, non-SiLU activations, RoPE scaling,
    a ``head_dim`` different from ``hidden_size // num_attention_heads``).
    """
    model_type = config.get("model_type")
    if model_type != "olmo2":
        raise ValueError(f"config model_type is {model_type!r}; only 'olmo2' is supported")
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads")
    if kv_heads is not None and kv_heads != heads:
        raise ValueError(
            f"num_key_value_heads={kv_heads} differs from num_attention_heads={heads}: "
            "grouped-query attention is not supported"
        )
    if config.get("attention_bias", False):
        raise ValueError("attention_bias=true is not supported")
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act={act!r} is not supported (only 'silu')")
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim != config["hidden_size"] // heads:
        raise ValueError(f"head_dim={head_dim} != hidden_size // num_attention_heads")
    rope = config.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default" or config.get("rope_scaling"):
        raise ValueError(f"RoPE scaling {rope or config.get('rope_scaling')!r} is not supported")
    rope_theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    return ModelShape(
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        max_position_embeddings=config["max_position_embeddings"],
        rope_theta=rope_theta,
        # transformers' Olmo2Config defaults (used when a field is absent)
        rms_norm_eps=config.get("rms_norm_eps", 1e-5),
        initializer_range=config.get("initializer_range", 0.02),
        tie_word_embeddings=config.get("tie_word_embeddings", False),
    )


# ----------------------------------------------------------------------------- modules


class RMSNorm(nn.Module):
    """``Olmo2RMSNorm``: ``weight * (x / sqrt(mean(x^2) + eps))`` computed in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x).to(dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


class Attention(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        h = shape.hidden_size
        self.num_heads = shape.num_attention_heads
        self.head_dim = shape.head_dim
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(h, h, bias=False)
        self.v_proj = nn.Linear(h, h, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)
        self.q_norm = RMSNorm(h, shape.rms_norm_eps)
        self.k_norm = RMSNorm(h, shape.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        bsz, seq, width = x.shape
        split = (bsz, seq, self.num_heads, self.head_dim)
        q = self.q_norm(self.q_proj(x)).view(split).transpose(1, 2)
        k = self.k_norm(self.k_proj(x)).view(split).transpose(1, 2)
        v = self.v_proj(x).view(split).transpose(1, 2)
        q, k = _apply_rope(q, k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale = head_dim**-0.5
        return self.o_proj(out.transpose(1, 2).reshape(bsz, seq, width))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _apply_rope(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    q_out = q * cos + _rotate_half(q) * sin
    k_out = k * cos + _rotate_half(k) * sin
    return q_out.to(q.dtype), k_out.to(k.dtype)


class MLP(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        h, m = shape.hidden_size, shape.intermediate_size
        self.gate_proj = nn.Linear(h, m, bias=False)
        self.up_proj = nn.Linear(h, m, bias=False)
        self.down_proj = nn.Linear(m, h, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.self_attn = Attention(shape)
        self.mlp = MLP(shape)
        self.post_attention_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.post_feedforward_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(x, cos, sin))
        return x + self.post_feedforward_layernorm(self.mlp(x))


class Backbone(nn.Module):
    """Holds the ``model.*`` parameters (HF's ``Olmo2Model``)."""

    def __init__(self, shape: ModelShape, pad_token_id: int | None) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(shape.vocab_size, shape.hidden_size, pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(shape) for _ in range(shape.num_hidden_layers))
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)


class Olmo2LM(nn.Module):
    """OLMo-2 causal LM, numerically equivalent to ``transformers.Olmo2ForCausalLM``.

    ``state_dict()`` keys equal Hugging Face's.  With ``shape.tie_word_embeddings`` the
    ``lm_head.weight`` parameter *is* ``model.embed_tokens.weight``.
    ``pad_token_id`` becomes the embedding's ``padding_idx`` exactly as in Hugging Face (its
    row is zero-initialised and gets no gradient); ``bos_token_id``/``eos_token_id`` are only
    stored, for :func:`save_checkpoint`.
    """

    def __init__(
        self,
        shape: ModelShape | None = None,
        *,
        pad_token_id: int | None = 1,
        bos_token_id: Any = 0,
        eos_token_id: Any = 0,
    ) -> None:
        super().__init__()
        self.shape = shape = shape if shape is not None else ModelShape()
        if pad_token_id is not None and not 0 <= pad_token_id < shape.vocab_size:
            raise ValueError(f"pad_token_id={pad_token_id} outside vocab of {shape.vocab_size}")
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.model = Backbone(shape, pad_token_id)
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = _rope_tables(shape.max_position_embeddings, shape.head_dim, shape.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    # -- forward ---------------------------------------------------------------------------

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits [B, T, V], loss or None)`` for ``input_ids`` ``[B, T]``.

        ``loss`` is the mean next-token cross-entropy over positions whose *shifted* label is
        not -100 (``logits[:, :-1]`` against ``labels[:, 1:]``), exactly as HF's
        ``ForCausalLMLoss`` without ``num_items_in_batch``.
        """
        seq = input_ids.shape[-1]
        if seq > self.rope_cos.shape[0] or self.rope_cos.dtype != torch.float32:
            # Like HF (which computes RoPE for any position), allow sequences longer than
            # max_position_embeddings, e.g. (seq_len + 1)-token windows scored with a shift.
            # Also rebuild in float32 if ``model.to(dtype)`` converted the tables.
            shape = self.shape
            cos, sin = _rope_tables(seq, shape.head_dim, shape.rope_theta)
            self.rope_cos = cos.to(self.rope_cos.device)
            self.rope_sin = sin.to(self.rope_sin.device)
        x = self.model.embed_tokens(input_ids)
        cos = self.rope_cos[:seq].to(x.dtype)
        sin = self.rope_sin[:seq].to(x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        logits = self.lm_head(self.model.norm(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.shape[-1]),
                _shift_labels(labels).view(-1),
                ignore_index=IGNORE_INDEX,
            )
        return logits, loss

    # -- initialisation ---------------------------------------------------------------------

    def init_std(self, name: str) -> float:
        """Std. dev. that :meth:`init_weights` draws parameter ``name`` from.

        ``initializer_range`` for every matrix (embedding, projections, lm_head — including
        the embedding's pad row, which is nevertheless set to zero), ``0.0`` for RMSNorm
        weights (initialised to exactly one).
        """
        params = dict(self.named_parameters(remove_duplicate=False))
        if name not in params:
            raise KeyError(f"no parameter named {name!r}")
        return 0.0 if params[name].dim() == 1 else self.shape.initializer_range

    @torch.no_grad()
    def init_weights(self, seed: int) -> Olmo2LM:
        """Deterministic HF-style init (``PreTrainedModel._init_weights``) from ``seed``.

        Linear/Embedding weights ~ N(0, initializer_range), RMSNorm weights = 1, embedding row
        ``pad_token_id`` = 0.  Draws come from a CPU ``torch.Generator`` in ``named_parameters``
        order (tied weights drawn once), so the result is independent of device and dtype.
        """
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        for name, param in self.named_parameters():
            std = self.init_std(name)
            if param.dim() == 1:
                param.fill_(1.0)
                continue
            value = torch.empty(param.shape, dtype=torch.float32)
            value.normal_(mean=0.0, std=std, generator=gen)
            param.copy_(value)
        if self.pad_token_id is not None:
            self.model.embed_tokens.weight[self.pad_token_id].zero_()
        return self

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Unique parameter count; like HF, ``exclude_embeddings`` drops only the token
        embedding (so a tied lm_head is excluded too, an untied one is counted)."""
        skip = {"model.embed_tokens.weight"} if exclude_embeddings else set()
        return sum(p.numel() for n, p in self.named_parameters() if n not in skip)


def _rope_tables(max_pos: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``[max_pos, head_dim]`` computed exactly like ``Olmo2RotaryEmbedding``."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.arange(max_pos, dtype=torch.int64).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _shift_labels(labels: torch.Tensor) -> torch.Tensor:
    return F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].contiguous()


@torch.no_grad()
def sequence_nll(
    model: Olmo2LM, input_ids: torch.Tensor, labels: torch.Tensor
) -> tuple[float, int]:
    """Summed next-token NLL (nats) and token count over shifted labels that are not -100.

    Per-token losses are accumulated in float64 so callers can add batches exactly and divide
    at the end.
    """
    logits, _ = model(input_ids)
    target = _shift_labels(labels).view(-1)
    nll = F.cross_entropy(
        logits.float().view(-1, logits.shape[-1]),
        target,
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return float(nll.double().sum()), int((target != IGNORE_INDEX).sum())


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    model: Olmo2LM, out_dir: str | os.PathLike, extra_config: dict[str, Any] | None = None
) -> Path:
    """Write a Hugging Face-loadable checkpoint into ``out_dir`` (created if needed).

    Files: ``model.safetensors`` (metadata ``{"format": "pt"}``; ``lm_head.weight`` omitted
    when tied, as transformers does), ``config.json`` (:func:`olmo2_config_dict` plus
    ``extra_config``, which may add keys but not change generated ones) and
    ``generation_config.json``.  Every file is written atomically.  Never writes pickles.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = olmo2_config_dict(
        model.shape,
        eos_token_id=model.eos_token_id,
        pad_token_id=model.pad_token_id,
        bos_token_id=model.bos_token_id,
    )
    for key, value in (extra_config or {}).items():
        if key in config and config[key] != value:
            raise ValueError(
                f"extra_config[{key!r}]={value!r} conflicts with the model ({config[key]!r})"
            )
        config[key] = value

    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.shape.tie_word_embeddings:
            continue
        tensors[name] = tensor.detach().to("cpu", torch.float32).contiguous()
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{WEIGHTS_NAME}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, out / WEIGHTS_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

    generation = {
        k: v
        for k, v in (
            ("bos_token_id", model.bos_token_id),
            ("eos_token_id", model.eos_token_id),
            ("pad_token_id", model.pad_token_id),
        )
        if v is not None
    }
    jsonio.write_json(out / CONFIG_NAME, config, indent=2)
    jsonio.write_json(out / GENERATION_CONFIG_NAME, generation, indent=2)
    return out


def _read_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = model_dir / WEIGHTS_NAME
    if single.is_file():
        return load_file(single, device="cpu")
    index = model_dir / WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(load_file(model_dir / shard, device="cpu"))
        missing = sorted(set(weight_map) - set(state))
        if missing:
            raise ValueError(f"{index}: tensors listed in weight_map not found: {missing[:5]}")
        return state
    pickles = sorted(p.name for p in model_dir.iterdir() if p.name.endswith(_PICKLE_SUFFIXES))
    if pickles:
        raise ValueError(
            f"{model_dir} holds only pickle checkpoint(s) {pickles}; refusing to unpickle. "
            "Re-save it with safetensors (save_pretrained(..., safe_serialization=True))."
        )
    raise FileNotFoundError(f"no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in {model_dir}")


def load_checkpoint(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Olmo2LM:
    """Load a checkpoint written by :func:`save_checkpoint` or by transformers'
    ``Olmo2ForCausalLM.save_pretrained`` (safetensors only, single or sharded).

    Weights are cast to float32.  Raises ``ValueError`` for non-OLMo-2 configs, grouped-query
    attention, pickle-only directories, or mismatched/missing/unexpected tensors.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {model_dir}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    shape = shape_from_config(config)
    state = _read_state_dict(model_dir)

    if shape.tie_word_embeddings and "lm_head.weight" in state:
        head = state.pop("lm_head.weight")
        embed = state.get("model.embed_tokens.weight")
        if embed is not None and not torch.equal(head, embed):
            raise ValueError("tie_word_embeddings=true but lm_head.weight != embed_tokens weight")

    model = Olmo2LM(
        shape,
        pad_token_id=config.get("pad_token_id"),
        bos_token_id=config.get("bos_token_id"),
        eos_token_id=config.get("eos_token_id"),
    )
    expected = set(model.state_dict())
    if shape.tie_word_embeddings:
        expected.discard("lm_head.weight")
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{model_dir}: state dict mismatch; missing={missing[:8]} unexpected={unexpected[:8]}"
        )
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in state.items():
            target = params[name]
            if tuple(tensor.shape) != tuple(target.shape):
                raise ValueError(
                    f"{name}: checkpoint shape {tuple(tensor.shape)} != {tuple(target.shape)}"
                )
            target.copy_(tensor)
    return model.to(device)


# OLMo-2-1B's shape (allenai/OLMo-2-0425-1B), as transformers.Olmo2Config keywords: what the
# benchmarks build with random weights to measure throughput at paper scale.
OLMO2_1B_SHAPE = {
    "vocab_size": 100352,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "max_position_embeddings": 4096,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}

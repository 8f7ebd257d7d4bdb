"""Exact loss probes shared by base, fine-tuned and perturbed models.

- pretrain_loss: mean next-token NLL (nats) on held-out pre-training text, the paper's
  retention metric (C4 perplexity there, the corpus's held-out split here);
- id_loss: mean NLL of the completion tokens of a task's held-out split, the paper's
  in-distribution metric, tokenised the way TRL tokenises prompt/completion rows.

One function computes each number for every kind of model, so they are comparable. Models
come from `loading.load_probe_model`: the workflow's OLMo-2 checkpoints natively in fp32, hub
checkpoints through transformers (bf16 on a GPU); losses are summed in float64 from fp32
log-probabilities either way, so the batch size changes nothing but memory.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from overtrained.core import jsonio, provenance
from overtrained.models.loading import (
    load_probe_model,
    load_tokenizer,
    model_device,
    verified_weights,
    vocab_size,
)
from overtrained.models.model import sequence_nll

# fp32 logits one batch may hold (batch x positions x vocab x 4 bytes): at paper scale
# (OLMo-2: 4097 positions x 100k vocab = 1.6 GB a row) a fixed batch would not fit.
LOGIT_BUDGET_BYTES = 1 << 30
MAX_BATCH = 32


def batch_rows(positions: int, vocab: int, budget: int = LOGIT_BUDGET_BYTES) -> int:
    """Rows per batch whose fp32 logits fit in `budget` (at least 1, at most MAX_BATCH)."""
    return max(1, min(MAX_BATCH, budget // (positions * vocab * 4)))


def heldout_windows(stream_path: str | Path, tokens: int, seq_len: int) -> torch.Tensor:
    """The first `tokens` predicted tokens of the held-out stream, as (n, seq_len + 1) windows."""
    data = np.load(stream_path, mmap_mode="r")
    n = max(1, tokens // seq_len)
    if n * (seq_len + 1) > len(data):
        raise ValueError(
            f"held-out stream {stream_path} has {len(data)} tokens, {n * (seq_len + 1)} needed: "
            "raise corpus.heldout_tokens (or evaluate.retention_documents) or lower "
            "evaluate.retention_tokens"
        )
    return torch.from_numpy(np.asarray(data[: n * (seq_len + 1)], dtype=np.int64).reshape(n, -1))


def pretrain_loss(model, windows: torch.Tensor, batch_size: int | None = None) -> tuple[float, int]:
    """Mean NLL over every position of every window (each window predicts seq_len tokens).
    `batch_size` None: as many windows as the logit budget allows."""
    batch_size = batch_size or batch_rows(windows.shape[1], vocab_size(model))
    device = model_device(model)
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        block = windows[i : i + batch_size].to(device)
        nll, n = sequence_nll(model, block, block)
        total, count = total + nll, count + n
    return total / count, count


def encode_completion_rows(tokenizer, rows: list[dict], eos_id: int, max_length: int):
    """(input_ids, labels) per row: prompt tokens masked with -100, completion + EOS scored.

    `tokenizer`: a transformers tokenizer, or a model (or tokenizer) directory or its
    tokenizer.json. Texts are tokenised as TRL does, with the tokenizer's own special tokens
    (a Llama tokenizer's BOS; none for the miniature's byte-level BPE).
    """
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        tokenizer = load_tokenizer(path.parent if path.is_file() else path)
    encoded = []
    for row in rows:
        prompt = tokenizer(row["prompt"])["input_ids"]
        full = tokenizer(row["prompt"] + row["completion"])["input_ids"]
        full = (full + [eos_id])[:max_length]
        labels = [-100] * min(len(prompt), len(full)) + full[len(prompt) :]
        encoded.append((full, labels[: len(full)]))
    return encoded


def id_loss(model, encoded: list, pad_id: int, batch_size: int | None = None) -> tuple[float, int]:
    """Mean NLL of the scored (not -100) labels; rows are right-padded with `pad_id`, which
    is never scored, so its value does not matter."""
    if not encoded:
        return math.nan, 0
    longest = max(len(ids) for ids, _ in encoded)
    batch_size = batch_size or batch_rows(longest, vocab_size(model))
    device = model_device(model)
    total, count = 0.0, 0
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i : i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for j, (row_ids, row_labels) in enumerate(chunk):
            ids[j, : len(row_ids)] = torch.tensor(row_ids)
            labels[j, : len(row_labels)] = torch.tensor(row_labels)
        nll, n = sequence_nll(model, ids.to(device), labels.to(device))
        total, count = total + nll, count + n
    return (total / count if count else math.nan), count


def padding_id(config: dict) -> int:
    """The id padded positions get: pad, else EOS, else 0 (hub configs may have no pad)."""
    for key in ("pad_token_id", "eos_token_id"):
        value = config.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return 0


def run(
    model_dir: str | Path,
    heldout_stream: str | Path,
    task_tests: dict[str, str | Path],
    retention_tokens: int,
    max_length: int,
    out_json: str | Path,
    params: dict,
    status: str = "ok",
    loading: dict | None = None,
) -> dict:
    """Compute every probe of one model and write them to `out_json`. `loading`: the family's
    loading options (workflow.loading_options)."""
    started, t0 = provenance.now(), time.perf_counter()
    from overtrained.core.jsonio import read_jsonl

    loading = loading or {}
    model_dir = Path(model_dir)
    digest = verified_weights(model_dir)  # before any work: a changed file stops here
    model = load_probe_model(model_dir, **loading)
    config = jsonio.read_json(model_dir / "config.json")
    seq_len = config["max_position_embeddings"]
    windows = heldout_windows(heldout_stream, retention_tokens, seq_len)
    value, n = pretrain_loss(model, windows)
    metrics = [{"metric": "pretrain_loss", "task": "", "value": value, "n": n}]
    if task_tests:
        tokenizer = load_tokenizer(model_dir, loading.get("trust_remote_code", False))
        eos = tokenizer.eos_token_id
        eos = config["eos_token_id"] if eos is None else eos
    for task, path in task_tests.items():
        encoded = encode_completion_rows(tokenizer, read_jsonl(path), eos, max_length)
        value, n = id_loss(model, encoded, padding_id(config))
        metrics.append({"metric": "id_loss", "task": task, "value": value, "n": n})
    record = provenance.record(
        "probes",
        params,
        started,
        time.perf_counter() - t0,
        status=status,
        metrics=metrics,
        model_sha=digest,
        dtype=str(next(iter(model.parameters())).dtype).removeprefix("torch."),
    )
    record = provenance.write_json(out_json, record)  # as written: scrubbed, hashed
    return record

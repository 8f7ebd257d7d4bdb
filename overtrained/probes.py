"""Exact loss probes shared by base, fine-tuned and perturbed models.

- pretrain_loss: mean next-token NLL (nats) on held-out pre-training text, the paper's
  retention metric (C4 perplexity there, the corpus's held-out split here);
- id_loss: mean NLL of the completion tokens of a task's held-out split, the paper's
  in-distribution metric, tokenised the way TRL tokenises prompt/completion rows.

One function computes each number for every kind of model, so they are comparable.
Only torch, numpy and tokenizers are imported (no transformers): a probe job is cheap.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from overtrained import provenance
from overtrained.model import Olmo2LM, load_checkpoint, sequence_nll


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


def pretrain_loss(model: Olmo2LM, windows: torch.Tensor, batch_size: int = 32) -> tuple[float, int]:
    """Mean NLL over every position of every window (each window predicts seq_len tokens)."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        block = windows[i : i + batch_size]
        nll, n = sequence_nll(model, block, block)
        total, count = total + nll, count + n
    return total / count, count


def encode_completion_rows(
    tokenizer_json: str | Path, rows: list[dict], eos_id: int, max_length: int
):
    """(input_ids, labels) per row: prompt tokens masked with -100, completion + EOS scored."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    encoded = []
    for row in rows:
        prompt = tokenizer.encode(row["prompt"], add_special_tokens=False).ids
        full = tokenizer.encode(row["prompt"] + row["completion"], add_special_tokens=False).ids
        full = (full + [eos_id])[:max_length]
        labels = [-100] * min(len(prompt), len(full)) + full[len(prompt) :]
        encoded.append((full, labels[: len(full)]))
    return encoded


def id_loss(model: Olmo2LM, encoded: list, pad_id: int, batch_size: int = 32) -> tuple[float, int]:
    total, count = 0.0, 0
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i : i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for j, (row_ids, row_labels) in enumerate(chunk):
            ids[j, : len(row_ids)] = torch.tensor(row_ids)
            labels[j, : len(row_labels)] = torch.tensor(row_labels)
        nll, n = sequence_nll(model, ids, labels)
        total, count = total + nll, count + n
    return (total / count if count else math.nan), count


def run(
    model_dir: str | Path,
    heldout_stream: str | Path,
    task_tests: dict[str, str | Path],
    retention_tokens: int,
    max_length: int,
    out_json: str | Path,
    params: dict,
    status: str = "ok",
) -> dict:
    """Compute every probe of one model and write them to `out_json`."""
    started, t0 = provenance.now(), time.perf_counter()
    from overtrained.tasks import read_jsonl

    model_dir = Path(model_dir)
    model = load_checkpoint(model_dir).eval()
    config = provenance.read_json(model_dir / "config.json")
    seq_len = config["max_position_embeddings"]
    windows = heldout_windows(heldout_stream, retention_tokens, seq_len)
    value, n = pretrain_loss(model, windows)
    metrics = [{"metric": "pretrain_loss", "task": "", "value": value, "n": n}]
    for task, path in task_tests.items():
        encoded = encode_completion_rows(
            model_dir / "tokenizer.json", read_jsonl(path), config["eos_token_id"], max_length
        )
        value, n = id_loss(model, encoded, config["pad_token_id"])
        metrics.append({"metric": "id_loss", "task": task, "value": value, "n": n})
    record = provenance.record(
        "probes",
        params,
        started,
        time.perf_counter() - t0,
        status=status,
        metrics=metrics,
        model_sha=provenance.sha256_file(model_dir / "model.safetensors"),
    )
    provenance.write_json(out_json, record)
    return record

"""Builders shared by several test files (metrics rows, task specs, reference losses), so
that no test file imports another."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import torch

from overtrained.analysis import aggregate

TOKENS = [1_000, 2_000, 4_000, 8_000, 16_000]  # log-spaced budgets, as a family's


def row(tokens, value, metric="pretrain_loss", **kw) -> dict:
    """One row of metrics.parquet: by default a fine-tuned model's retention probe."""
    r = dict.fromkeys(aggregate.SCHEMA.names)
    seed = kw.pop("pretrain_seed", 0)
    budget = f"{tokens // 1000}K"
    r.update(
        family="f",
        checkpoint=f"{budget}-seed{seed}" if seed is not None else f"step{tokens}",
        budget=budget,
        tokens=tokens,
        pretrain_seed=seed,
        model="finetuned",
        ft_task="t",
        lr=1e-3,
        ft_seed=0,
        suite="probes",
        metric=metric,
        value=value,
        status="ok",
    )
    r.update(kw)
    if r["model"] != "finetuned":
        r.update(ft_task=None, lr=None, ft_seed=None)
    return r


def metrics(rows: list[dict]) -> pd.DataFrame:
    """The frame as pd.read_parquet gives it (nullable int64 columns come back float64)."""
    return pa.Table.from_pylist(rows, schema=aggregate.SCHEMA).to_pandas()


# A fine-tuning task read from local files in the Hub's dataset layout (tests/data/hh_local).
LOCAL_HH_TASK = {
    "kind": "dataset",
    "dataset": {
        "path": "tests/data/hh_local",
        "format": "transcript",
        "column": "chosen",
        "test_split": "test",
    },
    "n_train": 32,
    "n_test": 8,
}


def hand_mean_nll(model, windows):
    """One window at a time, one position at a time: the definition of mean token NLL."""
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            logits, _ = model(window[:-1].unsqueeze(0))
            logp = torch.log_softmax(logits[0].double(), dim=-1)
            for pos in range(len(window) - 1):
                total -= logp[pos, window[pos + 1]].item()
                count += 1
    return total / count, count

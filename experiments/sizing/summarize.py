"""Tables for docs/performance.md's sizing tables, from a run's metrics.parquet.

    .venv/bin/python experiments/sizing/summarize.py RUN_DIR [RUN_DIR ...]

For every family: base pre-training loss; Gaussian loss increase per scaling and gamma;
and, per fine-tuning task and LR, the pre-training loss after fine-tuning and its
increase over the base model. Cells are mean ± sd over pre-training seeds (noise seeds
averaged first); columns are token budgets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from overtrained.analysis.figures import tick_label


def cell(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    return f"{values.mean():.3f}"


def table(frame: pd.DataFrame, rows: list[str]) -> str:
    per_seed = frame.groupby([*rows, "tokens", "pretrain_seed"]).value.mean().reset_index()
    wide = per_seed.groupby([*rows, "tokens"]).value.apply(cell).unstack("tokens")
    wide.columns = [tick_label(t) for t in wide.columns]
    return wide.to_markdown()


def summarize(run: Path) -> None:
    df = pd.read_parquet(run / "results/tables/metrics.parquet")
    for family, fam in df.groupby("family"):
        seeds = sorted(int(s) for s in fam.pretrain_seed.dropna().unique())
        print(f"\n## {family} ({run}), pre-training seeds {seeds}\n")
        base = fam[(fam.model == "base") & (fam.metric == "pretrain_loss")].assign(what="base")
        print("Base model, held-out pre-training loss (nats):\n")
        print(table(base, ["what"]))
        sens = fam[(fam.model == "perturbed") & (fam.metric == "loss_increase")]
        print("\n(a) Loss increase under Gaussian noise:\n")
        print(table(sens, ["scaling", "gamma"]))
        ft = fam[(fam.model == "finetuned") & (fam.metric == "pretrain_loss")]
        print("\n(b) Pre-training loss after fine-tuning at a fixed LR:\n")
        print(table(ft, ["ft_task", "lr"]))
        merged = ft.merge(
            base[["tokens", "pretrain_seed", "value"]],
            on=["tokens", "pretrain_seed"],
            suffixes=("", "_base"),
        )
        merged["value"] = merged["value"] - merged["value_base"]
        print("\nIncrease caused by fine-tuning (fine-tuned minus base):\n")
        print(table(merged, ["ft_task", "lr"]))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        summarize(Path(arg))

"""Do two runs hold the same numbers? Compares two `metrics.parquet` row by row.

    .venv/bin/python benchmarks/compare_metrics.py RUN_A RUN_B [--json OUT]

RUN_A and RUN_B are run folders (or the Parquet files themselves). Rows are matched on what
was measured (family, checkpoint, model, task, LR, seeds, noise, suite, metric); timings
(`wall_seconds`, and metrics measured in seconds or tokens per second, which no two runs
share) and the columns that name the run (`producer`, `code_version`) are left out. Prints
how many numbers are bit-identical, how many differ (with the largest differences), and
which rows only one run has; exits 1 unless every number is identical.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

KEY = [
    "family",
    "checkpoint",
    "model",
    "ft_task",
    "lr",
    "ft_seed",
    "scaling",
    "gamma",
    "noise_seed",
    "suite",
    "eval_task",
    "metric",
]
RUN_COLUMNS = ["wall_seconds", "producer", "code_version"]
TIMING = ("seconds", "per_second", "_s")


def timing_metric(name: str) -> bool:
    return any(part in name for part in TIMING)


def load(path: str) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        path = path / "results/tables/metrics.parquet"
    table = pd.read_parquet(path)
    table = table[~table["metric"].map(timing_metric)].drop(columns=RUN_COLUMNS)
    return table.set_index(KEY).sort_index()


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    only_a = a.index.difference(b.index)
    only_b = b.index.difference(a.index)
    common = a.index.intersection(b.index)
    if not (a.index.is_unique and b.index.is_unique):
        raise SystemExit("a metrics table has two rows for one measurement")
    va, vb = a.loc[common, "value"].to_numpy(), b.loc[common, "value"].to_numpy()
    same = (va == vb) | (np.isnan(va) & np.isnan(vb))
    diff = np.abs(va - vb)
    order = np.argsort(-np.nan_to_num(diff, nan=np.inf))
    largest = [
        {"row": dict(zip(KEY, map(str, common[i]), strict=True)), "a": va[i], "b": vb[i]}
        for i in order[:5]
        if not same[i]
    ]
    other = [c for c in a.columns if c != "value" and c in b.columns]
    columns_differ = {}
    for c in other:
        x, y = a.loc[common, c], b.loc[common, c]
        columns_differ[c] = int((~((x == y) | (x.isna() & y.isna()))).sum())
    return {
        "numbers": int(len(common)),
        "identical": int(same.sum()),
        "different": int((~same).sum()),
        "max_abs_difference": float(np.nanmax(diff)) if len(diff) else 0.0,
        "largest": largest,
        "only_in_a": int(len(only_a)),
        "only_in_b": int(len(only_b)),
        "other_columns_differing": {c: n for c, n in columns_differ.items() if n},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--json", help="also write the comparison here")
    args = parser.parse_args()
    result = compare(load(args.run_a), load(args.run_b))
    result = {"a": args.run_a, "b": args.run_b, **result}
    print(json.dumps(result, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    identical = not (result["different"] or result["only_in_a"] or result["only_in_b"])
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())

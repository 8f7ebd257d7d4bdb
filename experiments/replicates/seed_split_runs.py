"""The claims on disjoint seed sets drawn from several runs of the same family, side by
side (`overtrained seed-split` for one run). The runs must share the family's config but
for its seeds; fine-tuned rows are kept for the (task, LR) pairs every seed set has.

    python experiments/replicates/seed_split_runs.py runs/miniature-paper runs/preset-more-seeds \
        --sets 0-9 10-19 --family constant --out docs/miniature-paper/seed-split-10.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from overtrained.analysis import claims


def seeds(spec: str) -> list[int]:
    """'0-9' or '0,1,2' -> [0, ..., 9] or [0, 1, 2]."""
    if "-" in spec:
        first, last = map(int, spec.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in spec.split(",")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (each holds results/)")
    parser.add_argument("--sets", nargs="+", required=True, help="seed sets: 0-9 10-19")
    parser.add_argument("--family", required=True)
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args(argv)
    frames = [pd.read_parquet(Path(r) / "results/tables/metrics.parquet") for r in args.runs]
    metrics = pd.concat(frames, ignore_index=True)
    metrics = metrics[metrics["family"] == args.family]
    sets = [seeds(s) for s in args.sets]
    ft = metrics[metrics["model"] == "finetuned"]
    pairs = None
    for chosen in sets:
        have = set(map(tuple, ft[ft["pretrain_seed"].isin(chosen)][["ft_task", "lr"]].values))
        pairs = have if pairs is None else pairs & have
    keep = (metrics["model"] != "finetuned") | pd.Series(
        [tuple(p) in pairs for p in metrics[["ft_task", "lr"]].values], index=metrics.index
    )
    split = claims.seed_split(metrics[keep], sets)
    text = claims.seed_split_markdown(split)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

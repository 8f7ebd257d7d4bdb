"""Per-rule time and peak memory of a finished run, from Snakemake's `benchmark:` files.

    .venv/bin/python benchmarks/job_resources.py [RUN_DIR]      # default: current directory

Prints, per rule: jobs, median and max seconds, summed seconds, and peak RSS (MiB), and
checks the miniature's memory target (no job above 2 GiB).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

LIMIT_MIB = 2048


def main() -> int:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    rows = []
    for path in sorted((run / "logs").glob("**/*.benchmark.tsv")):
        bench = pd.read_csv(path, sep="\t").iloc[-1]
        rows.append(
            {
                "rule": path.relative_to(run / "logs").parts[0],
                "s": bench["s"],
                "max_rss": bench["max_rss"],
            }
        )
    if not rows:
        print(f"no benchmark files under {run / 'logs'}")
        return 1
    df = pd.DataFrame(rows)
    table = df.groupby("rule").agg(
        jobs=("s", "size"),
        median_s=("s", "median"),
        max_s=("s", "max"),
        sum_s=("s", "sum"),
        peak_rss_mib=("max_rss", "max"),
    )
    print(table.round(1).to_string())
    print(
        f"total job seconds: {df.s.sum():.0f}; peak RSS of any job: {df.max_rss.max():.0f} MiB "
        f"(target < {LIMIT_MIB} MiB: {'met' if df.max_rss.max() < LIMIT_MIB else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

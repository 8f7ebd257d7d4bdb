"""Per-rule time and peak memory of a finished run, from Snakemake's `benchmark:` files.

A job that ran in a worker of the local job server (overtrained/execution/job_server.py) has its
worker's peak memory in its log (Snakemake's benchmark measures only the job's client
process): that number is used for it.

    .venv/bin/python benchmarks/job_resources.py [RUN_DIR]      # default: current directory

Prints, per rule: jobs, median and max seconds, summed seconds, and peak RSS (MiB), and
checks the miniature's memory target (no job above 2 GiB).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from overtrained.execution.job_server import read_usage

LIMIT_MIB = 2048


def log_of(benchmark: Path) -> Path:
    """logs/<rule>/<job>.benchmark.tsv -> logs/<rule>/<job>.log (the rules name them so)."""
    return benchmark.with_name(benchmark.name.removesuffix(".benchmark.tsv") + ".log")


def main() -> int:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    rows = []
    for path in sorted((run / "logs").glob("**/*.benchmark.tsv")):
        bench = pd.read_csv(path, sep="\t").iloc[-1]
        usage = read_usage(log_of(path)) or {}
        rows.append(
            {
                "rule": path.relative_to(run / "logs").parts[0],
                "s": bench["s"],
                "max_rss": max(bench["max_rss"], usage.get("peak_rss_mib", 0)),
                "served": bool(usage),
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
        served=("served", "sum"),
    )
    print(table.round(1).to_string())
    print(
        f"total job seconds: {df.s.sum():.0f}; peak RSS of any job: {df.max_rss.max():.0f} MiB "
        f"(target < {LIMIT_MIB} MiB: {'met' if df.max_rss.max() < LIMIT_MIB else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

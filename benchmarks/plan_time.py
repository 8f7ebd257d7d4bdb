"""How long Snakemake takes before any job: a no-op re-run, and each preset's plan.

    .venv/bin/python benchmarks/plan_time.py [RUN_DIR=CONFIG ...] [--repeats 3]

* For each RUN_DIR=CONFIG given (a finished run of that config), `snakemake` there with
  nothing to do: the no-op re-run a user makes after a finished sweep (it fails unless the
  run really is up to date).
* For every preset in presets/, `snakemake -n` from an empty folder: the whole plan. Hub
  presets are pinned first against the recorded branch lists in tests/data/hub_branches/,
  served by the tests' stand-in Hub on loopback; the timed plans then read the manifest
  offline, as a compute node would.

Medians of `--repeats`; JSON to benchmarks/results/plan_time_cpu.json (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.hub_server import StandInHub
from tests.workflow_helpers import snakemake_command

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}


def timed(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    output = result.stdout + result.stderr
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return seconds, output


def snakemake(work: Path, config: Path, *args: str) -> list[str]:
    return snakemake_command(work, "--configfile", str(config.resolve()), *args)


def no_op(run: Path, config: Path, repeats: int) -> dict:
    env = {**os.environ, **OFFLINE}
    times = []
    for _ in range(repeats):
        seconds, output = timed(snakemake(run, config), REPO, env)
        if "Nothing to be done" not in output:
            sys.exit(f"{run} is not up to date for {config}: it would run jobs")
        times.append(seconds)
    return {
        "config": str(config),
        "run": str(run),
        "seconds": times,
        "median": round(statistics.median(times), 2),
    }


def pin_hub_families(preset: Path, work: Path, hub: StandInHub) -> None:
    families = yaml.safe_load(preset.read_text())["families"]
    if not any(f.get("source") == "hub" for f in families.values()):
        return
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env |= {"HF_ENDPOINT": hub.endpoint, "PYTHONPATH": str(REPO)}
    timed([sys.executable, "-m", "overtrained.cli", "pin", str(preset.resolve())], work, env)


def plan(preset: Path, repeats: int, hub: StandInHub) -> dict:
    env = {**os.environ, **OFFLINE}
    times, jobs = [], None
    with tempfile.TemporaryDirectory(prefix="plan-") as tmp:
        work = Path(tmp)
        pin_hub_families(preset, work, hub)
        for _ in range(repeats):
            seconds, output = timed(snakemake(work, preset, "-n"), work, env)
            times.append(seconds)
            total = re.search(r"^total\s+(\d+)", output, re.MULTILINE)
            jobs = int(total[1]) if total else None
    return {
        "preset": preset.name,
        "jobs": jobs,
        "seconds": times,
        "median": round(statistics.median(times), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR=CONFIG")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/plan_time_cpu.json"))
    args = parser.parse_args()
    result = {
        "what": __doc__.splitlines()[0],
        "date": time.strftime("%Y-%m-%d"),
        "repeats": args.repeats,
        "no_op": [],
        "plans": [],
    }
    for item in args.runs:
        run, _, config = item.partition("=")
        result["no_op"].append(no_op(Path(run), Path(config or "config.yaml"), args.repeats))
        print(f"no-op re-run of {run}: {result['no_op'][-1]['median']:.1f} s")
    with StandInHub() as hub:
        for path in (REPO / "tests/data/hub_branches").glob("*.json"):
            recording = json.loads(path.read_text())
            repo = hub.repo("model", recording["repo"])
            for branch in recording["branches"]:
                repo.add_commit({"config.json": branch.encode()}, branch=branch)
        for preset in sorted((REPO / "presets").glob("*.yaml")):
            result["plans"].append(plan(preset, args.repeats, hub))
            row = result["plans"][-1]
            print(f"plan of {preset.name}: {row['jobs']} jobs, {row['median']:.1f} s")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()

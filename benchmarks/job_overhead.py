"""The fixed cost of one job per rule: its wall time on a minimal input minus its real work.

    .venv/bin/python benchmarks/job_overhead.py                 # 5 repeats, ~10 minutes
    .venv/bin/python benchmarks/job_overhead.py --repeats 3 --out /tmp/overhead.json

On the tiny config (tests/configs/tiny.yaml, the smallest input that runs every stage), run
once to completion in a scratch folder, each rule's job is timed three ways:

* `fresh`: the job's process as Snakemake starts it (`python <its script>`, the script that
  `--skip-script-cleanup` keeps, with the preamble that carries its `snakemake` object), with
  the job server off: a new interpreter that imports what the job needs;
* `server`: the same command with the job server on (`auto`), already warm: the client hands
  the job to a forked worker of a process that has imported the libraries (every job is
  also checked to have run there: its log has the worker's usage line);
* `work`: the job's script run again inside one process that has imported everything and
  has run it once already (the same script, inputs and outputs): what is left is the job's
  real work, which neither way can avoid.

fixed cost = median(wall) - median(work), per way; medians of `--repeats` runs, the three
ways interleaved so that each sees the same machine. Next to them, in the same run: a bare
`python -c pass`, a bare `python -c "import torch"`, and the one-off start of a job server
(its first job's wall time minus a warm job's). Writes JSON (default
benchmarks/results/job_overhead_cpu.json) and prints the table the docs quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

from overtrained.execution import job_server

FAMILY, CKPT = "tiny", "16K-seed0"
FT_MODEL = "ft/lang/lr0.001/seed0"
# One job per rule that runs Python, by the output Snakemake is asked to re-make.
TARGETS = {
    "pretrain": f"results/{FAMILY}/{CKPT}/base/provenance.json",
    "finetune": f"results/{FAMILY}/{CKPT}/{FT_MODEL}/train.json",
    "evaluate": f"results/{FAMILY}/{CKPT}/base/eval/mini.json",
    "probes": f"results/{FAMILY}/{CKPT}/base/eval/probes.json",
    "sensitivity": f"results/{FAMILY}/{CKPT}/sensitivity.json",
    "aggregate": "results/tables/metrics.parquet",
    "analysis": "results/tables/best_lr.parquet",
    "figures": "results/figures/retention.png",
    "claims": "results/claims.md",
}
WORK_HELPER = "--work"


def snakemake(work: Path, *args: str, env: dict) -> None:
    command = [sys.executable, "-m", "snakemake", "--directory", str(work), *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def job_env(mode: str) -> dict:
    """A job's environment as Snakemake makes it (one thread), with the server mode set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in ("OMP", "GOTO", "OPENBLAS", "MKL", "NUMEXPR"):
        env[f"{name}_NUM_THREADS"] = "1"
    env["VECLIB_MAXIMUM_THREADS"] = "1"
    env[job_server.ENV_MODE] = mode
    env.pop(job_server.ENV_WORKER, None)
    return env


def setup(work: Path) -> dict[str, Path]:
    """Run the tiny config, then keep each target job's script (re-made once, server off)."""
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["finetune"]["keep_weights"] = True  # so a fine-tuned model's jobs can be re-run alone
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    configfile = ["--configfile", str(work / "config.yaml")]
    snakemake(work, *configfile, "--cores", "2", env=job_env("auto"))
    scripts_dir = work / ".snakemake/scripts"
    snakemake(
        work,
        *configfile,
        "--cores",
        "1",
        "--skip-script-cleanup",
        "--force",
        *TARGETS.values(),
        env=job_env("off"),
    )
    scripts = {}
    for path in scripts_dir.glob("*.py"):
        real = re.search(r"__file__ = '([^']+)'", path.read_text())
        rule = Path(real[1]).stem if real else None
        if rule in TARGETS:
            scripts[rule] = path
    missing = sorted(set(TARGETS) - set(scripts))
    if missing:
        sys.exit(f"no kept script for {missing} in {scripts_dir}")
    return scripts


def job_log(script: Path) -> Path:
    """The log a kept script writes (its `snakemake.log[0]`), relative to the run folder."""
    import ast
    import pickle

    preamble = ast.parse(script.read_text().split("\n", 2)[1])
    blob = next(
        node.args[0].value
        for node in ast.walk(preamble)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "loads"
    )
    return script.parent.parent.parent / pickle.loads(blob).log[0]


def wall(command: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def work_seconds(script: Path, cwd: Path, repeats: int) -> list[float]:
    """The script's real work: run in one process that has imported everything (this file
    with WORK_HELPER), once to warm up, then `repeats` timed runs."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as report:
        command = [sys.executable, __file__, WORK_HELPER, str(script), str(repeats), report.name]
        wall(command, cwd, job_env("off"))
        return json.loads(Path(report.name).read_text())


def run_work_helper(script: str, repeats: int, report: str) -> None:
    """In this process: preload like the server, then run the job's script repeatedly."""
    import runpy

    os.environ[job_server.ENV_WORKER] = "1"  # the script's hand_over() lets it run here
    os.environ.update(job_server.OFFLINE)  # as in the server's workers
    job_server.preload()
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        runpy.run_path(script, run_name="__main__")
        if i:
            times.append(time.perf_counter() - t0)
    Path(report).write_text(json.dumps(times))


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/job_overhead_cpu.json"))
    args = parser.parse_args()
    job_server.stop_all()
    with tempfile.TemporaryDirectory(prefix="job-overhead-") as tmp:
        work = Path(tmp)
        scripts = setup(work)
        logs = {rule: job_log(script) for rule, script in scripts.items()}
        python = [sys.executable]
        fresh, server = job_env("off"), job_env("auto")
        # The one-off cost of a server: the first job that waits for it (fine-tuning) on no
        # server against the same job on the warm server.
        job_server.stop_all()
        time.sleep(1)
        cold = wall([*python, str(scripts["finetune"])], work, server)
        warm = wall([*python, str(scripts["finetune"])], work, server)
        bare = {"python -c pass": [], "python -c import torch": []}
        times = {rule: {"fresh": [], "server": []} for rule in scripts}
        for _ in range(args.repeats):
            bare["python -c pass"].append(wall([*python, "-c", "pass"], work, fresh))
            bare["python -c import torch"].append(
                wall([*python, "-c", "import torch"], work, fresh)
            )
            for rule, script in scripts.items():
                times[rule]["fresh"].append(wall([*python, str(script)], work, fresh))
                times[rule]["server"].append(wall([*python, str(script)], work, server))
                if job_server.read_usage(logs[rule]) is None:
                    sys.exit(f"the {rule} job did not run in the job server: see {logs[rule]}")
        for rule, script in scripts.items():
            times[rule]["work"] = work_seconds(script, work, args.repeats)
        job_server.stop_all()
    rules = {}
    for rule, runs in times.items():
        work_median = median(runs["work"])
        rules[rule] = {
            "runs": {way: [round(x, 3) for x in values] for way, values in runs.items()},
            "median": {way: median(values) for way, values in runs.items()},
            "fixed_fresh": round(median(runs["fresh"]) - work_median, 3),
            "fixed_server": round(median(runs["server"]) - work_median, 3),
        }
    result = {
        "what": __doc__.splitlines()[0],
        "command": "python benchmarks/job_overhead.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {name: _version(name) for name in ("torch", "transformers", "trl", "lm_eval")},
        "repeats": args.repeats,
        "bare": {name: median(values) for name, values in bare.items()},
        "server_start": {"first_job": round(cold, 3), "next_job": round(warm, 3)},
        "rules": rules,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"written: {args.out}")


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def print_table(result: dict) -> None:
    bare = result["bare"]
    print(
        f"bare python -c pass: {bare['python -c pass']:.2f} s; "
        f"python -c 'import torch': {bare['python -c import torch']:.2f} s; "
        f"job server start: first job {result['server_start']['first_job']:.2f} s, "
        f"next {result['server_start']['next_job']:.2f} s"
    )
    print(
        "| rule | work s | job s, fresh | job s, server | fixed s, fresh | fixed s, server "
        "| ratio fresh / server |"
    )
    print("|---|---|---|---|---|---|---|")
    for rule, row in result["rules"].items():
        m = row["median"]
        print(
            f"| {rule} | {m['work']:.2f} | {m['fresh']:.2f} | {m['server']:.2f} "
            f"| {row['fixed_fresh']:.2f} | {row['fixed_server']:.2f} "
            f"| {m['fresh'] / m['server']:.1f}x |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == [WORK_HELPER]:
        run_work_helper(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()

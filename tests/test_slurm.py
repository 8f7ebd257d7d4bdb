"""`snakemake --profile profiles/slurm` against a real Slurm (tests/slurm_cluster.py).

The miniature runs through sbatch on a single-node Slurm with one fake GPU and is checked
against a local run of the same config; an injected failure is retried with more memory;
a fine-tuning job cancelled mid-training resumes from its trainer checkpoint. Skipped where
Slurm is not installed, except under OVERTRAINED_REQUIRE_SLURM=1 (set by .ci/run), where a
missing Slurm fails the suite instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from overtrained.execution import job_server
from tests import slurm_cluster
from tests.workflow_helpers import REPO, copy_repo, snakemake

FAIL_ONCE_DRIVER = REPO / "tests/drivers/fail_once"  # sitecustomize: one job fails once

pytestmark = [pytest.mark.workflow, pytest.mark.slurm, pytest.mark.extended]

# The test overlay of the profile: quick first status checks, short file-system waits.
FAST = ("--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5")
KEYS = ["family", "checkpoint", "model", "ft_task", "lr", "suite", "eval_task", "metric"]
KEYS += ["scaling", "gamma", "noise_seed"]
TIMINGS = ("tokens_per_second", "train_seconds")  # wall-clock measurements, not results


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_cluster.missing()
    if reason:
        if os.environ.get("OVERTRAINED_REQUIRE_SLURM") == "1":
            pytest.fail(f"Slurm is required here (OVERTRAINED_REQUIRE_SLURM=1): {reason}")
        pytest.skip(reason)
    with slurm_cluster.SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def slurm_config() -> dict:
    """The tiny config with two tasks, its GPU rules asking for the fake GPU."""
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["finetune"]["tasks"].pop("topic")
    cfg["finetune"]["lrs"] = {"lang": [1.0e-3], "arith": [1.0e-3]}
    cfg["evaluate"]["suites"]["mini"]["tasks"] = ["mini_corpus_language", "mini_arithmetic"]
    cfg["evaluate"]["resources"] = {"gpus": 1}  # evaluate, probes, sensitivity
    return cfg


def workflow_copy(root, cfg: dict):
    work = copy_repo(root / "overtrained")
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return work


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The same config run locally and through Slurm (one sensitivity job failing once)."""
    local = workflow_copy(tmp_path_factory.mktemp("local"), slurm_config())
    snakemake(local, "--cores", "2")
    work = workflow_copy(tmp_path_factory.mktemp("cluster"), slurm_config())
    marker = work.parent / "failed-once"
    env = {
        **os.environ,
        # tests/drivers/fail_once: the first attempt of this job fails, the retry must not
        "OVERTRAINED_FAIL_ONCE": f"sensitivity/tiny/16K-seed0:{marker}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(FAIL_ONCE_DRIVER), os.environ.get("PYTHONPATH")])
        ),
    }
    started = time.perf_counter()
    result = snakemake(work, "--profile", "profiles/slurm", *FAST, env=env, timeout=1200)
    return {
        "local": local,
        "cluster": work,
        "marker": marker,
        "seconds": time.perf_counter() - started,
        "output": result.stdout + result.stderr,
        "jobs": cluster.jobs(),
    }


def by_rule(jobs: list[dict]) -> dict[str, list[dict]]:
    """Slurm jobs by the rule (or group) the plugin named in their comment."""
    out: dict[str, list[dict]] = {}
    for job in jobs:
        comment = job.get("Comment", "")
        name = comment.removeprefix("rule_").split("_wildcards")[0]
        out.setdefault(name, []).append(job)
    return out


def test_every_job_but_the_local_rules_went_through_sbatch(runs):
    print(f"Slurm run: {runs['seconds']:.0f} s, {len(runs['jobs'])} Slurm jobs")
    rules = by_rule(runs["jobs"])
    assert len(rules["corpus"]) == 1 and len(rules["pretrain"]) == 2
    assert len(rules["finetune"]) == 4
    assert not {"task_data", "aggregate", "figures"} & set(rules)  # local rules
    assert all(j["JobState"] == "COMPLETED" for j in runs["jobs"] if j not in rules["sensitivity"])
    # each job wrote where and on what it ran into its provenance
    train = yaml.safe_load(
        (runs["cluster"] / "results/tiny/16K-seed0/ft/lang/lr0.001/seed0/train.json").read_text()
    )
    assert train["allocation"]["job_id"] in {j["JobId"] for j in rules["finetune"]}
    assert train["allocation"]["partition"] == "debug"


def test_gpu_rules_asked_for_gpus_and_cpu_rules_did_not(runs):
    for job in runs["jobs"]:
        asked = "gpu" in job.get("TresPerJob", "")
        comment = job.get("Comment", "")
        gpu_rule = any(r in comment for r in ("sensitivity", "evaluate", "probes", "evals"))
        assert asked == gpu_rule, (comment, job.get("TresPerJob"))
        if asked:  # a group of evaluations shares one GPU, not one each
            assert job["TresPerJob"].endswith("gpu:1"), job["TresPerJob"]
    probes = yaml.safe_load(
        (runs["cluster"] / "results/tiny/16K-seed0/base/eval/probes.json").read_text()
    )
    assert probes["allocation"]["gpus_on_node"] == "1"  # Slurm granted the (fake) GPU
    assert probes["allocation"]["cuda_available"] is False  # ... which CUDA cannot use


def served_logs(work, rule: str) -> list:
    """Logs of `rule` (every rule: "") whose job ran in a worker of the job server (a rule
    with one job logs to logs/{rule}.log, others to logs/{rule}/...)."""
    logs = [*work.glob(f"logs/{rule}.log"), *work.glob(f"logs/{rule}/**/*.log")]
    logs = logs if rule else list(work.glob("logs/**/*.log"))
    return [log for log in logs if job_server.read_usage(log)]


def test_results_equal_a_local_run(runs):
    def metrics(work):
        frame = pd.read_parquet(work / "results/tables/metrics.parquet")
        measured = ~frame.metric.isin(TIMINGS) & (frame.model != "corpus")
        frame = frame[measured][[*KEYS, "value"]]
        return frame.set_index(KEYS).sort_index()["value"]

    # The local run's CPU jobs ran in workers of the job server and its GPU jobs (evaluate,
    # probes, sensitivity ask for the fake GPU here) each in its own process, as did every
    # job of the cluster run (Slurm jobs, and local rules on the "login node"): the same
    # numbers either way. Finetune waits for the server and aggregate starts after it is up;
    # the first jobs (pretrain, corpus) may run on their own while the server still imports.
    assert served_logs(runs["local"], "finetune") and served_logs(runs["local"], "aggregate")
    assert not served_logs(runs["local"], "evaluate") and not served_logs(runs["local"], "probes")
    assert not served_logs(runs["cluster"], "")
    local, cluster = metrics(runs["local"]), metrics(runs["cluster"])
    assert len(local) > 50 and local.index.equals(cluster.index)
    difference = (local - cluster).abs() / local.abs().clip(lower=1e-12)
    print(f"largest relative difference, Slurm vs local: {difference.max():.2e}")
    assert difference.max() == 0  # the same numbers, bit for bit, on the same machine


def test_a_failed_job_is_retried_with_more_memory(runs):
    assert runs["marker"].exists()  # the injected failure happened
    attempts = [
        j for j in by_rule(runs["jobs"])["sensitivity"] if "16K-seed0" in j.get("Comment", "")
    ]
    assert [j["JobState"] for j in attempts] == ["FAILED", "COMPLETED"]
    memory = [j["MinMemoryNode"] for j in attempts]
    assert memory == ["2000M", "4000M"]  # evaluate.resources.mem_mb x attempt


def test_a_cancelled_fine_tuning_job_resumes_from_its_checkpoint(cluster, tmp_path):
    cfg = slurm_config()
    cfg["families"]["tiny"]["budgets"] = ["16K"]
    cfg["finetune"]["tasks"] = {"lang": {"kind": "corpus_language", "n_train": 3000, "n_test": 16}}
    cfg["finetune"]["lrs"] = {"lang": [1.0e-3]}
    cfg["finetune"]["save_steps"] = 20
    cfg["evaluate"]["suites"]["mini"]["tasks"] = ["mini_corpus_language"]
    work = workflow_copy(tmp_path, cfg)
    target = "results/tiny/16K-seed0/ft/lang/lr0.001/seed0/train.json"
    before = {j["JobId"] for j in cluster.jobs()}
    command = [sys.executable, "-m", "snakemake", "--directory", str(work)]
    command += ["--profile", "profiles/slurm", *FAST, target]
    run = subprocess.Popen(
        command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        cancelled = None
        deadline = time.time() + 600
        while cancelled is None and time.time() < deadline and run.poll() is None:
            saved = list(work.glob("scratch/*/tiny/16K-seed0/ft/lang/lr0.001/seed0/checkpoint-*"))
            running = [
                j
                for j in cluster.jobs()
                if j["JobId"] not in before
                and "rule_finetune" in j.get("Comment", "")
                and j["JobState"] == "RUNNING"
            ]
            if saved and running:
                cancelled = running[0]["JobId"]
                cluster.cancel(cancelled)
            time.sleep(0.2)
        output, _ = run.communicate(timeout=900)
    finally:
        if run.poll() is None:
            run.kill()
    assert cancelled is not None, "no checkpoint was saved while the job ran:\n" + output[-3000:]
    assert run.returncode == 0, output[-4000:]
    finetunes = [
        j
        for j in cluster.jobs()
        if j["JobId"] not in before and "rule_finetune" in j.get("Comment", "")
    ]
    assert [j["JobState"] for j in finetunes] == ["CANCELLED", "COMPLETED"]
    train = yaml.safe_load((work / target).read_text())
    assert train["status"] == "ok" and train["resumed_from_step"] >= 20
    assert train["steps"] == 3000 // cfg["finetune"]["batch_size"]

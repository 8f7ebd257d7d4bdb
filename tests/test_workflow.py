"""The workflow as users run it: lint, dry-runs, config errors, a tiny end-to-end run,
and what a change makes stale (config values, inputs, a stage's own code)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from overtrained import workflow
from overtrained.analysis import aggregate, claims, figures, theory
from overtrained.core import config as C
from overtrained.execution import cpu_kernels, job_server
from tests.builders import LOCAL_HH_TASK
from tests.workflow_helpers import (
    REPO,
    copy_repo,
    dry_run_jobs,
    expected_counts,
    job_counts,
    snakemake,
)

pytestmark = pytest.mark.workflow


# A dataset task read with datasets.load_dataset from a local copy laid out like the
# Anthropic/hh-rlhf Hub repository (relative paths are relative to the working directory).


def test_lint_is_clean():
    result = snakemake(REPO, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for rule" not in result.stdout + result.stderr


def test_default_config_dry_run_plans_every_stage(tmp_path):
    jobs = dry_run_jobs(
        tmp_path, "--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config.yaml")
    )
    cfg = C.load_file(REPO / "config.yaml")
    assert dict(job_counts(jobs)) == expected_counts(cfg)


def test_hub_data_is_prefetched_then_read_offline(tmp_path):
    """A standard lm-eval suite and C4 retention text: downloads are local prefetch jobs
    (`snakemake prefetch` runs only those); compute jobs depend on them."""
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["evaluate"]["suites"]["bench"] = {"preset": "generalist", "limit": 10}
    cfg["evaluate"]["retention_text"] = "c4_validation"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = ("--snakefile", str(REPO / "Snakefile"), "--configfile", str(path))
    counts = job_counts(dry_run_jobs(tmp_path, *args))
    n_models = sum(1 + len(workflow.ft_models(C.load(cfg))) for _ in range(2))  # 2 budgets
    assert counts["prefetch_suite"] == counts["prefetch_retention"] == 1
    assert counts["retention_stream"] == 1  # one family
    assert counts["evaluate"] == n_models * 2  # suites mini and bench
    assert dict(job_counts(dry_run_jobs(tmp_path, "prefetch", *args))) == {
        "prefetch_suite": 1,
        "prefetch_retention": 1,
        "prefetch": 1,
    }


def test_a_configured_judge_scores_the_fine_tuned_models_of_its_tasks(tmp_path):
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["evaluate"]["judge"] = {"command": "my-judge {responses} {output}", "tasks": ["arith"]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = dry_run_jobs(tmp_path, "--snakefile", str(REPO / "Snakefile"), "--configfile", str(path))
    judged = [out for rule, out in jobs if rule == "judge"]
    n_ckpt = len(cfg["families"]["tiny"]["budgets"])
    assert len(judged) == n_ckpt * len(cfg["finetune"]["lrs"]["arith"])
    assert all("/ft/arith/" in out and out.endswith("/eval/judge.json") for out in judged)


@pytest.mark.parametrize("schedule", ["wsd", "constant"])
def test_trunk_schedules_plan_one_trunk_per_seed(tmp_path, schedule):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["families"]["mini"]["training"]["schedule"] = schedule
    cfg["families"]["mini"]["seeds"] = [0, 1]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = dry_run_jobs(tmp_path, "--snakefile", str(REPO / "Snakefile"), "--configfile", str(path))
    counts = job_counts(jobs)
    assert counts["pretrain_trunk"] == 2
    assert counts["pretrain"] == 2 * len(cfg["families"]["mini"]["budgets"])


BAD_CONFIGS = {
    "typo": (lambda c: c["finetune"].update(learning_rates=[1.0e-3]), "finetune.learning_rates"),
    "negative_lr": (
        lambda c: c["finetune"]["lrs"]["arith"].__setitem__(0, -0.001),
        "finetune.lrs.arith[0]",
    ),
    "schedule": (
        lambda c: c["families"]["tiny"]["training"].update(schedule="linear"),
        "families.tiny.training.schedule",
    ),
    "slash": (
        lambda c: c["families"].update({"a/b": c["families"].pop("tiny")}),
        "families: name 'a/b'",
    ),
    "space": (
        lambda c: c["families"].update({"a b": c["families"].pop("tiny")}),
        "families: name 'a b'",
    ),
    "lm_eval_task": (
        lambda c: c["evaluate"]["suites"].update(bench={"tasks": ["arc_easy", "hellaswg"]}),
        "evaluate.suites.bench.tasks[1]: 'hellaswg' is not an lm-eval task",
    ),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_config_stops_before_any_job(tmp_path, name):
    patch, key = BAD_CONFIGS[name]
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    patch(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = snakemake(
        tmp_path,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(path),
        "--cores",
        "1",
        check=False,
    )
    assert result.returncode != 0
    assert f"Config error: {key}" in result.stderr
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "logs").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny config run end to end in a private copy of the workflow."""
    work = copy_repo(tmp_path_factory.mktemp("wf") / "overtrained")
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["finetune"]["tasks"]["hh"] = LOCAL_HH_TASK
    cfg["finetune"]["lrs"]["hh"] = [1.0e-3]
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    prefetched = job_counts(dry_run_jobs(work, "prefetch"))
    assert dict(prefetched) == {"prefetch_dataset": 1, "prefetch": 1}  # downloads only
    snakemake(work, "--cores", "2")
    return work


def test_metrics_parquet_has_declared_columns_types_and_rows(finished):
    path = finished / "results/tables/metrics.parquet"
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == aggregate.SCHEMA
    df = pd.read_parquet(path)
    cfg = C.load_file(finished / "config.yaml")
    n_ckpt = len(cfg["families"]["tiny"]["budgets"])
    n_ft = len(workflow.ft_models(cfg))
    n_tasks = len(cfg["finetune"]["tasks"])
    sens = cfg["sensitivity"]
    n_perturb = sum(len(g) for g in sens["gammas"].values()) * len(sens["seeds"])
    counts = df.groupby("suite").size().to_dict()
    assert counts["pretrain"] == n_ckpt * 2
    assert counts["train"] == n_ckpt * n_ft * 4  # loss, tokens/s, tokens, seconds (no GPU)
    # retention for every model; ID loss on every task for a base model, on its own for a
    # fine-tuned one
    assert counts["probes"] == n_ckpt * (1 + n_tasks) + n_ckpt * n_ft * 2
    assert counts["sensitivity"] == n_ckpt * n_perturb * 2
    # lm-eval: bits_per_byte & 2 perplexities for the language task, acc & acc_norm for the others
    assert counts["mini"] == n_ckpt * (1 + n_ft) * (3 + 2 + 2)
    assert counts["corpus"] == 1  # the held-out unigram entropy, a reference line
    models = df[df.model != "corpus"]
    assert models["checkpoint_sha"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert df["code_version"].ne("").all() and df["versions"].str.contains("torch").all()
    if "avx2" in cpu_kernels.cpu_flags():  # every job ran the pinned kernels, and says so
        assert models["device"].str.endswith("kernels AVX2, pinned)").all()
    assert df.loc[df.model == "finetuned", "lr"].notna().all()
    assert set(df.model) == {"base", "finetuned", "perturbed", "corpus"}
    assert df.value.notna().all()
    meta = table.schema.metadata
    assert b"config_hash" in meta and b"code_version" in meta


def test_every_figure_and_its_data_exist(finished):
    for name in workflow.FIGURES:
        assert (finished / f"results/figures/{name}.png").stat().st_size > 1000
        assert (finished / f"results/figures/{name}.json").exists()


def test_figures_draw_one_curve_per_lr_and_gamma(finished):
    """The curves each figure drew (its JSON), counted from what the run did."""

    def drawn(name):
        return json.loads((finished / f"results/figures/{name}.json").read_text())

    ok_lrs: dict[str, set] = {}
    for record in finished.glob("results/tiny/*/ft/*/lr*/seed0/train.json"):
        run = json.loads(record.read_text())
        task = record.parts[-4]
        if run["status"] == "ok":
            ok_lrs.setdefault(task, set()).add(run["lr"])
    retention = drawn("retention")
    assert set(retention) == {f"fine-tuned on {task}" for task in ok_lrs}
    for task, lrs in ok_lrs.items():
        curves = retention[f"fine-tuned on {task}"]
        assert set(curves) == {f"lr {lr:g}" for lr in lrs} | {figures.BASE}
        assert all(len(c["x"]) == 2 for c in curves.values())  # the two budgets
    sensitivity = drawn("sensitivity")
    assert sorted(sensitivity) == sorted(
        f"{kind}, noise scaled by {scaling}"
        for kind in ("loss increase", "perturbed loss")
        for scaling in ("init", "rms")
    )
    for title, curves in sensitivity.items():
        extra = {"base (no noise)"} if title.startswith("perturbed") else set()
        assert set(curves) == {"gamma 1" if "init" in title else "gamma 0.1"} | extra


def test_analysis_tables_read_back_with_their_schemas_and_summarise(finished, capsys):
    from overtrained import cli
    from overtrained.analysis import analysis

    for name, schema in (
        ("best_lr", analysis.BEST_LR_SCHEMA),
        ("overtraining", analysis.OVERTRAINING_SCHEMA),
    ):
        path = finished / f"results/tables/{name}.parquet"
        assert pq.read_schema(path).remove_metadata() == schema  # pyarrow, declared types
        assert len(pd.read_parquet(path)) > 0  # and pandas
    best = pd.read_parquet(finished / "results/tables/best_lr.parquet")
    runs = 2 * 4  # tiny.yaml: 2 checkpoints x 4 tasks (lang, arith, topic, hh)
    assert len(best) == runs and set(best.status) == {"ok"}
    over = pd.read_parquet(finished / "results/tables/overtraining.parquet")
    # two budgets are too few to call a turning point: every verdict says so
    assert set(over.verdict) == {"inconclusive"}
    assert set(over.reason) == {"only 2 checkpoint(s); need 3"}
    assert cli.main(["summary", str(finished / "results")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["family", "task", "metric"]
    assert table.count("inconclusive") == len(over)
    assert cli.main(["summary", str(finished / "results"), "--format", "csv"]) == 0
    assert len(pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))) == len(over)
    assert cli.main(["summary", str(finished / "nowhere")]) == 2
    assert "run the workflow first" in capsys.readouterr().err


def test_fine_tuned_weights_are_deleted_after_evaluation(finished):
    assert list(finished.glob("results/tiny/*/ft/*/*/*/train.json"))
    assert not list(finished.glob("results/tiny/*/ft/*/*/*/model"))


def test_no_job_exceeds_its_memory(finished):
    """Snakemake's benchmark for jobs in their own process, the worker's own peak for jobs
    the job server ran (the benchmark sees only their client)."""
    peaks = [
        pd.read_csv(path, sep="\t")["max_rss"].max()
        for path in finished.glob("logs/**/*.benchmark.tsv")
    ]
    served = [job_server.read_usage(log) for log in finished.glob("logs/**/*.log")]
    served = [usage["peak_rss_mib"] for usage in served if usage]
    assert peaks and served and max(peaks + served) < 2048


def test_local_jobs_ran_in_job_server_workers(finished):
    """Fine-tuning and evaluation wait for the job server, and the tables come after it has
    started, so all of these ran in its workers (execution.job_server auto, no scheduler, no
    GPU): the numbers these tests check were made there."""
    logs = [
        log
        for log in finished.glob("logs/**/*.log")
        if log.relative_to(finished / "logs").parts[0] in ("finetune", "evaluate")
        or log.name in ("aggregate.log", "analysis.log", "figures.log", "claims.log")
    ]
    unserved = [str(log) for log in logs if job_server.read_usage(log) is None]
    assert len(logs) > 10 and not unserved


def test_second_run_has_nothing_to_do(finished):
    assert dry_run_jobs(finished) == []


def test_the_dataset_task_was_rendered_fine_tuned_and_probed(finished):
    meta = json.loads((finished / "results/datasets/hh/task.json").read_text())
    assert meta["n_train"] == 32 and meta["n_test"] == 8
    assert meta["prefetch"]["rows"] == {"train": 40, "test": 8}
    first = json.loads((finished / "results/datasets/hh/train.jsonl").read_text().splitlines()[0])
    assert first["prompt"].startswith("\n\nHuman:") and first["prompt"].endswith("Assistant:")
    table = pd.read_parquet(finished / "results/tables/metrics.parquet")
    trained = table[table["ft_task"] == "hh"]
    assert set(trained["suite"]) >= {"train", "probes"}
    assert trained[trained["metric"] == "final_train_loss"]["value"].notna().all()
    in_distribution = table[(table["eval_task"] == "hh") & (table["model"] == "base")]
    assert len(in_distribution) and in_distribution["value"].notna().all()


def test_editing_a_local_dataset_file_reruns_its_task_and_what_follows(finished):
    data = finished / "tests/data/hh_local/data/train.jsonl"
    original = data.read_text()
    try:
        data.write_text(original.replace("number 3 ", "number three "))
        counts = job_counts(dry_run_jobs(finished))
    finally:
        data.write_text(original)
        shutil.copystat(REPO / "tests/data/hh_local/data/train.jsonl", data)
    assert counts["prefetch_dataset"] == counts["dataset_task"] == 1
    n_ckpt = 2
    assert counts["finetune"] == n_ckpt  # only the hh runs, one per checkpoint
    assert counts["probes"] == 2 * n_ckpt  # their probes and the base models'
    assert "task_data" not in counts and "pretrain" not in counts


def test_changing_one_lr_reruns_only_that_lr_and_aggregation(finished, tmp_path):
    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    cfg["finetune"]["lrs"]["arith"] = [1.0e-3, 3.0e-3]  # 1e-2 -> 3e-3
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = dry_run_jobs(finished, "--configfile", str(path))
    per_lr = [
        (rule, out)
        for rule, out in jobs
        if rule not in ("aggregate", "analysis", "figures", "claims")
    ]
    assert per_lr and all("ft/arith/lr0.003/" in out for _, out in per_lr)
    n_ckpt = len(cfg["families"]["tiny"]["budgets"])
    assert dict(job_counts(jobs)) == {
        "finetune": n_ckpt,
        "evaluate": n_ckpt,
        "probes": n_ckpt,
        "aggregate": 1,
        "analysis": 1,
        "figures": 1,
        "claims": 1,
    }


def test_the_theory_stage_wrote_its_tables_and_figure(finished):
    curves = pq.read_table(finished / "results/tables/theory.parquet")
    assert curves.schema.remove_metadata() == theory.SCHEMA
    summary = pd.read_parquet(finished / "results/tables/theory_summary.parquet")
    cfg = C.load_file(finished / "config.yaml")["theory"]
    ft = cfg["finetune"]
    assert len(summary) == len(cfg["seeds"]) * len(ft["alignments"]) * len(ft["penalties"])
    drawn = json.loads((finished / "results/figures/theory.json").read_text())
    assert len(drawn) == 6 and all(drawn.values())
    assert "simulated in" in (finished / "logs/theory.log").read_text()


def test_the_claims_are_written_and_publish_copies_them(finished, tmp_path):
    table = pq.read_table(finished / "results/tables/claims.parquet")
    assert table.schema.remove_metadata() == claims.SCHEMA
    text = (finished / "results/claims.md").read_text()
    for letter, claim in claims.CLAIMS.items():
        assert f"({letter}) {claim}" in text
    # two budgets: nothing about a curve's shape can be read from them
    rows = table.to_pandas()
    assert set(rows.loc[rows["claim"] == "b", "verdict"]) <= {"not testable"}
    out = tmp_path / "published"
    result = subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "publish", str(finished), "--to", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "claims.md").read_text() == text
    assert pd.read_csv(out / "overtraining.csv").shape[0] == len(
        pd.read_parquet(finished / "results/tables/overtraining.parquet")
    )
    assert {p.name for p in (out / "figures").glob("*.png")} >= {"theory.png", "retention.png"}
    missing = subprocess.run(
        [sys.executable, "-m", "overtrained.cli", "publish", str(tmp_path), "--to", str(out)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "run the workflow there first" in missing.stderr


def test_changing_the_theory_reruns_only_the_theory(finished, tmp_path):
    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    cfg["theory"] = {"finetune": {"penalties": [0.0, 10.0]}}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert dict(job_counts(dry_run_jobs(finished, "--configfile", str(path)))) == {"theory": 1}


def test_changing_a_suite_reruns_only_that_suites_evaluations(finished, tmp_path):
    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    cfg["evaluate"]["suites"]["mini"]["tasks"].remove("mini_topic_classification")
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = dry_run_jobs(finished, "--configfile", str(path))
    evaluations = [out for rule, out in jobs if rule == "evaluate"]
    n_ckpt = len(cfg["families"]["tiny"]["budgets"])
    n_ft = len(workflow.ft_models(C.load(cfg)))
    assert len(evaluations) == n_ckpt * (1 + n_ft)
    assert all(out.endswith("/eval/mini.json") for out in evaluations)
    # Base models: only the suite's evaluations. Fine-tuned weights are temporary, so they
    # are rebuilt, and what reads them re-runs too (keep_weights: true avoids both).
    assert dict(job_counts(jobs)) == {
        "evaluate": n_ckpt * (1 + n_ft),
        "finetune": n_ckpt * n_ft,
        "probes": n_ckpt * n_ft,
        "aggregate": 1,
        "analysis": 1,
        "figures": 1,
        "claims": 1,
    }
    assert not [out for rule, out in jobs if rule == "probes" and "/base/" in out]


def test_a_stage_code_change_reruns_that_stage_and_downstream_only(finished):
    source = finished / "overtrained/train/finetune.py"
    original = source.read_text()
    try:
        source.write_text(original + "\nCHANGED = True  # a change to the fine-tuning code\n")
        counts = job_counts(dry_run_jobs(finished))
    finally:
        source.write_text(original)
    cfg = C.load_file(finished / "config.yaml")
    expected = expected_counts(cfg)
    n_ckpt_ft = expected["finetune"]
    assert dict(counts) == {
        "finetune": n_ckpt_ft,
        "evaluate": n_ckpt_ft,  # the fine-tuned models' evaluations, not the base models'
        "probes": n_ckpt_ft,
        "aggregate": 1,
        "analysis": 1,
        "figures": 1,
        "claims": 1,
    }


def test_a_documentation_edit_of_stage_code_reruns_nothing(finished):
    """The stage code hash ignores docstrings, comments and layout (and paths: see
    test_workflow_plan), so rewording or moving the library re-runs no finished work."""
    source = finished / "overtrained/train/finetune.py"
    original = source.read_text()
    _, docstring, rest = original.split('"""', 2)
    try:
        reworded = "Reworded. " + docstring.replace("the", "this")
        source.write_text(f'"""{reworded}"""{rest}\n# a note\n')
        jobs = dry_run_jobs(finished)
    finally:
        source.write_text(original)
    assert jobs == []


def test_a_params_change_of_pretraining_reruns_pretraining(finished, tmp_path):
    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    cfg["families"]["tiny"]["training"]["peak_lr"] = 1.0e-3
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    counts = job_counts(dry_run_jobs(finished, "--configfile", str(path)))
    assert counts["pretrain"] == len(cfg["families"]["tiny"]["budgets"])
    assert "corpus" not in counts and "task_data" not in counts


def test_configfile_replaces_the_default_config():
    """`snakemake --configfile X` in the repo runs X's families only, not config.yaml's too."""
    jobs = dry_run_jobs(REPO, "--configfile", str(REPO / "tests/configs/tiny.yaml"))
    outputs = " ".join(out for _, out in jobs)
    assert "results/tiny/" in outputs and "results/mini/" not in outputs


def test_a_gpu_run_without_cuda_fails_clearly_and_loses_nothing(finished, tmp_path):
    """`gpus: 1` on a CPU machine: the new run's job fails at start naming the problem; no
    finished result is deleted or re-run (the GPU count is an execution setting)."""
    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    cfg["finetune"]["gpus"] = 1
    cfg["finetune"]["lrs"]["arith"] = [*cfg["finetune"]["lrs"]["arith"], 5.0e-3]
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    before = {p: p.stat().st_mtime_ns for p in (finished / "results").rglob("*") if p.is_file()}
    target = "results/tiny/16K-seed0/ft/arith/lr0.005/seed0/train.json"
    result = snakemake(finished, "--configfile", str(path), "--cores", "1", target, check=False)
    assert result.returncode != 0
    log = finished / "logs/finetune/tiny/16K-seed0/arith-lr0.005-seed0.log"
    assert "finetune.gpus is 1 but this job sees no CUDA device" in log.read_text()
    after = {p: p.stat().st_mtime_ns for p in (finished / "results").rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p in before} == before
    assert not (finished / target).exists()


def test_evaluations_record_which_model_they_scored(finished):
    ckpt = finished / "results/tiny/16K-seed0"
    base_sha = json.loads((ckpt / "base/provenance.json").read_text())["sha"]
    base_eval = json.loads((ckpt / "base/eval/mini.json").read_text())
    assert base_eval["model_source"] == {"stage": "pretrain", "sha": base_sha, "seed": 0}
    ft_eval = json.loads((ckpt / "ft/arith/lr0.001/seed0/eval/mini.json").read_text())
    assert ft_eval["model_source"]["base_sha"] == base_sha
    assert ft_eval["model_source"]["lr"] == 0.001
    assert ft_eval["model_sha"] != base_eval["model_sha"]


def test_no_trainer_checkpoint_outlives_a_successful_run(finished):
    assert not list((finished / "scratch").rglob("*"))


def test_how_jobs_execute_is_not_a_reason_to_rerun(finished, tmp_path):
    """The job server's setting and its code change no result, so neither re-runs a job."""
    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    cfg["execution"] = {"job_server": "off"}
    path = tmp_path / "off.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert dry_run_jobs(finished, "--configfile", str(path)) == []
    source = finished / "overtrained/execution/job_server.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# a change to how jobs are executed\n")
        assert dry_run_jobs(finished) == []
    finally:
        source.write_text(original)

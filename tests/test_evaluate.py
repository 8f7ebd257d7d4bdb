"""lm-eval evaluation: the shipped task YAMLs build the requests we mean, results are
normalised, and a whole suite runs offline on a tiny checkpoint."""

import warnings

import pytest

from overtrained import corpus, evaluate, provenance, tasks


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    spec = corpus.CorpusSpec(n_topics=16, n_words=300)
    out = tmp_path_factory.mktemp("tasks")
    files = {}
    for kind in tasks.TASK_KINDS:
        tasks.write_task(out / kind, kind, spec, n_train=8, n_test=6, seed=0)
        files[f"mini_{kind}"] = out / kind / "test.jsonl"
    return files


def build_requests(name, test_file):
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(evaluate.TASK_DIR), include_defaults=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = get_task_dict([evaluate.repo_task_config(name, test_file)], manager)[name]
    task.build_all_requests(limit=None, rank=0, world_size=1)
    return task.instances


@pytest.mark.parametrize("name", ["mini_arithmetic", "mini_topic_classification"])
def test_multiple_choice_requests_are_prompt_plus_each_choice(task_files, name):
    rows = tasks.read_jsonl(task_files[name])
    instances = build_requests(name, task_files[name])
    assert len(instances) == sum(len(r["choices"]) for r in rows)
    for inst in instances:
        context, continuation = inst.arguments
        assert context == inst.doc["prompt"]
        assert continuation in inst.doc["choices"]
    for inst in instances:
        if inst.arguments[1] == inst.doc["choices"][inst.doc["target"]]:
            # exactly the text the model was fine-tuned on, no doubled delimiter
            assert "".join(inst.arguments) == inst.doc["prompt"] + inst.doc["completion"]


def test_corpus_language_scores_the_whole_text(task_files):
    instances = build_requests("mini_corpus_language", task_files["mini_corpus_language"])
    for inst in instances:
        assert inst.request_type == "loglikelihood_rolling"
        assert inst.arguments[0] == inst.doc["prompt"] + inst.doc["completion"]


def test_unknown_repo_task_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="mini_arithmetic"):
        evaluate.repo_task_config("mini_arithmatic", tmp_path / "x.jsonl")


def test_normalise_lm_eval_result_dict():
    saved = {
        "results": {
            "arc_easy": {
                "alias": "arc_easy",
                "acc,none": 0.5,
                "acc_stderr,none": 0.05,
                "acc_norm,none": 0.6,
                "acc_norm_stderr,none": "N/A",
            },
            "gsm8k": {"exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": 0.01},
        },
        "n-samples": {"arc_easy": {"original": 100, "effective": 80}},
    }
    rows = {(r["task"], r["metric"]): r for r in evaluate.normalise(saved)}
    assert rows[("arc_easy", "acc")] == {
        "task": "arc_easy",
        "metric": "acc",
        "value": 0.5,
        "stderr": 0.05,
        "n": 80,
    }
    assert rows[("arc_easy", "acc_norm")]["stderr"] is None
    assert rows[("gsm8k", "exact_match[strict-match]")]["value"] == 0.1
    assert len(rows) == 3


def test_suite_runs_offline_on_a_tiny_checkpoint(checkpoint_dir, task_files, tmp_path):
    suite = {"tasks": sorted(task_files), "num_fewshot": 0, "limit": 4, "batch_size": 8}
    out = tmp_path / "mini.json"
    evaluate.run(checkpoint_dir, suite, task_files, out, params={"code": "t"})
    record = provenance.read_json(out)
    metrics = {(m["task"], m["metric"]) for m in record["metrics"]}
    assert ("mini_arithmetic", "acc") in metrics
    assert ("mini_corpus_language", "bits_per_byte") in metrics
    assert all(m["n"] == 4 for m in record["metrics"])
    assert record["model_sha"] == provenance.sha256_file(checkpoint_dir / "model.safetensors")
    assert record["lm_eval_version"] and record["task_versions"]["mini_arithmetic"] == 1

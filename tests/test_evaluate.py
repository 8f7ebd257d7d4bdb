"""lm-eval evaluation: the shipped task YAMLs build the requests we mean, results are
normalised, and a whole suite runs offline on a tiny checkpoint."""

import pytest

from overtrained.core import jsonio, provenance
from overtrained.data import corpus, task_data
from overtrained.evaluation import evaluate


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    spec = corpus.CorpusSpec(n_topics=16, n_words=300)
    out = tmp_path_factory.mktemp("tasks")
    files = {}
    for kind in task_data.TASK_KINDS:
        task_data.write_task(out / kind, kind, spec, n_train=8, n_test=6, seed=0)
        files[f"mini_{kind}"] = out / kind / "test.jsonl"
    return files


def build_requests(name, test_file):
    return evaluate.build_requests(evaluate.repo_task_config(name, test_file))


@pytest.mark.parametrize("name", ["mini_arithmetic", "mini_topic_classification"])
def test_multiple_choice_requests_are_prompt_plus_each_choice(task_files, name):
    rows = jsonio.read_jsonl(task_files[name])
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


def test_suite_runs_offline_on_a_tiny_checkpoint(checkpoint_dir, task_files, tmp_path, monkeypatch):
    suite = {"tasks": sorted(task_files), "num_fewshot": 0, "limit": 4, "batch_size": 8}
    out = tmp_path / "mini.json"
    from torch.utils import collect_env

    surveyed = collect_env.get_pretty_env_info
    surveys = []  # torch's system survey (pip list, nvidia-smi, ...: 0.8 s) is not run
    monkeypatch.setattr(collect_env, "run", lambda command: surveys.append(command))
    evaluate.run(checkpoint_dir, suite, task_files, out, params={"code": "t"})
    assert surveys == [] and collect_env.get_pretty_env_info is surveyed
    record = jsonio.read_json(out)
    metrics = {(m["task"], m["metric"]) for m in record["metrics"]}
    assert ("mini_arithmetic", "acc") in metrics
    assert ("mini_corpus_language", "bits_per_byte") in metrics
    assert all(m["n"] == 4 for m in record["metrics"])
    assert record["model_sha"] == provenance.sha256_file(checkpoint_dir / "model.safetensors")
    assert record["lm_eval_version"] and record["task_versions"]["mini_arithmetic"] == 1


@pytest.fixture(scope="module")
def id_test_files(tmp_path_factory):
    """Held-out rows of two dataset tasks as dataset_task renders them: one with a fixed
    answer set (label accuracy), one with a final answer in the text (exact match)."""
    from overtrained.data import dataset_task

    out = tmp_path_factory.mktemp("id")
    mr = dataset_task.resolve("mr")
    reviews = [
        {"text": f"film {i} was {'good' if i % 2 else 'bad'}", "label": i % 2} for i in range(8)
    ]
    gsm = dataset_task.resolve("gsm8k")
    sums = [
        {"question": f"{i} + {i}?", "answer": f"{i} and {i} make {2 * i}.\n#### {2 * i}"}
        for i in range(8)
    ]
    jsonio.write_jsonl(out / "mr.jsonl", [dataset_task.render_row(mr, r) for r in reviews])
    jsonio.write_jsonl(out / "gsm.jsonl", [dataset_task.render_row(gsm, r) for r in sums])
    return {"id_mr": out / "mr.jsonl", "id_gsm": out / "gsm.jsonl"}, gsm["answer_pattern"]


def test_label_accuracy_requests_score_each_rendered_choice(id_test_files):
    files, _ = id_test_files
    instances = evaluate.build_requests(evaluate.id_task_config("id_mr", files["id_mr"], None))
    assert len(instances) == 8 * 2
    for inst in instances:
        assert inst.arguments[0].startswith("Review: film")
        assert inst.arguments[1] in (" negative", " positive")


class CannedLM:
    """An lm-eval model that answers every prompt from a table: scoring without a model."""

    def __new__(cls, answers):
        from lm_eval.api.model import LM

        class Canned(LM):
            def generate_until(self, requests):
                return [answers[r.arguments[0]] for r in requests]

            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

        return Canned()


def test_exact_match_extracts_the_answer_like_the_reference(id_test_files):
    """Half the generations end in the right answer (with different reasoning), half not:
    exact match is exactly 0.5, through lm-eval's own filter and metric."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    files, pattern = id_test_files
    rows = jsonio.read_jsonl(files["id_gsm"])
    answers = {
        row["prompt"]: f" I think so.\n#### {row['answer'] if i % 2 else 'nine'}"
        for i, row in enumerate(rows)
    }
    results = lm_eval.simple_evaluate(
        model=CannedLM(answers),
        tasks=[evaluate.id_task_config("id_gsm", files["id_gsm"], pattern)],
        task_manager=TaskManager(include_path=str(evaluate.TASK_DIR), include_defaults=False),
        bootstrap_iters=0,
    )
    rows = {(r["task"], r["metric"]): r["value"] for r in evaluate.normalise(results)}
    assert rows[("id_gsm", "exact_match[answer]")] == 0.5


def test_id_tasks_run_on_a_tiny_checkpoint(checkpoint_dir, id_test_files, tmp_path):
    files, pattern = id_test_files
    suite = {"tasks": sorted(files), "num_fewshot": 0, "limit": 4, "batch_size": 8}
    out = tmp_path / "id.json"
    evaluate.run(
        checkpoint_dir, suite, files, out, params={"code": "t"}, answer_patterns={"id_gsm": pattern}
    )
    metrics = {(m["task"], m["metric"]): m["value"] for m in jsonio.read_json(out)["metrics"]}
    assert 0 <= metrics[("id_mr", "acc")] <= 1
    assert metrics[("id_gsm", "exact_match[answer]")] == 0  # an untrained model: no sums

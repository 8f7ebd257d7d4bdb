"""lm-eval task names and datasets, read from lm-eval's own YAMLs (no network, no model)."""

import json
import os
import subprocess
import sys

import pytest

from overtrained.core import config
from overtrained.evaluation import lm_eval_index


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return lm_eval_index.load(lm_eval_index.DEFAULT_CACHE)


def test_generalist_suite_prefetches_exactly_its_ten_datasets(index):
    suite = config.load({"evaluate": {"suites": {"bench": {"preset": "generalist"}}}})
    tasks = suite["evaluate"]["suites"]["bench"]["tasks"]
    assert len(tasks) == 10
    datasets, undeclared = lm_eval_index.suite_datasets(tasks, index)
    assert undeclared == []
    assert {(d["path"], d["name"]) for d in datasets} == {
        ("allenai/ai2_arc", "ARC-Easy"),
        ("allenai/ai2_arc", "ARC-Challenge"),
        ("baber/piqa", None),
        ("Rowan/hellaswag", None),
        ("aps/super_glue", "boolq"),
        ("aps/super_glue", "copa"),
        ("allenai/winogrande", "winogrande_xl"),
        ("allenai/openbookqa", "main"),
        ("lighteval/siqa", None),
        ("allenai/sciq", None),
    }


def test_groups_and_tags_expand_to_their_tasks(index):
    assert sorted(lm_eval_index.leaf_tasks("ai2_arc", index)) == ["arc_challenge", "arc_easy"]
    mmlu, _ = lm_eval_index.suite_datasets(["mmlu"], index)
    assert len(mmlu) == 57 and {d["path"] for d in mmlu} == {"cais/mmlu"}


def test_an_unknown_task_fails_validation_with_close_names(index):
    cfg = config.load({"evaluate": {"suites": {"bench": {"tasks": ["arc_easy", "hellaswg"]}}}})
    with pytest.raises(config.ConfigError) as error:
        lm_eval_index.check_suites(cfg)
    message = str(error.value)
    assert message.startswith("evaluate.suites.bench.tasks[1]: 'hellaswg' is not an lm-eval task")
    assert "close names: hellaswag" in message


def test_the_index_is_read_from_its_cache(tmp_path, monkeypatch):
    cached = {"arc_easy": {"kind": "task", "children": [], "dataset": None}}
    version = __import__("importlib").metadata.version("lm_eval")
    (tmp_path / f"lm_eval_index-{version}.json").write_text(json.dumps(cached))
    monkeypatch.setattr(lm_eval_index, "build", lambda: pytest.fail("rebuilt the index"))
    assert lm_eval_index.load(tmp_path) == cached


def test_mini_suites_need_no_index(monkeypatch):
    monkeypatch.setattr(lm_eval_index, "load", lambda *a: pytest.fail("loaded the index"))
    lm_eval_index.check_suites(config.load({}))
    assert lm_eval_index.datasets_of_suite(config.load({}), "mini") == []


def test_offline_evaluation_names_the_missing_dataset(tmp_path):
    """A fresh process, offline, with an empty cache (as on a compute node before prefetch)."""
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    code = (
        "from overtrained.evaluation import evaluate; "
        "evaluate.check_cached([{'path': 'allenai/ai2_arc', 'name': 'ARC-Easy', 'kwargs': {}}])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "dataset 'allenai/ai2_arc' (name 'ARC-Easy') is not in the Hugging Face cache" in (
        result.stderr
    )
    assert "snakemake prefetch" in result.stderr

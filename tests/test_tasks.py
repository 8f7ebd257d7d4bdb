"""Tests for the miniature fine-tuning tasks."""

import collections
import hashlib
import json
import re
import subprocess
import sys

import pytest

from overtrained.core.jsonio import read_jsonl
from overtrained.data.corpus import CorpusSpec, generate_document, reserved_topics
from overtrained.data.task_data import (
    LABEL_WORDS,
    TASK_KINDS,
    make_task,
    topic_labels,
    write_task,
)

SPEC = CorpusSpec()
N_TRAIN, N_TEST = 120, 40


@pytest.fixture(scope="module", params=TASK_KINDS)
def task(request):
    kind = request.param
    return kind, make_task(kind, SPEC, N_TRAIN, N_TEST, seed=0)


def test_sizes_determinism_and_seed_sensitivity(task):
    kind, (train, test) = task
    assert len(train) == N_TRAIN and len(test) == N_TEST
    assert make_task(kind, SPEC, N_TRAIN, N_TEST, seed=0) == (train, test)
    other_train, other_test = make_task(kind, SPEC, N_TRAIN, N_TEST, seed=1)
    assert other_train != train and other_test != test
    for row in train + test:
        assert isinstance(row["prompt"], str) and row["prompt"]
        assert row["completion"].startswith(" ") and len(row["completion"]) > 1


def test_train_and_test_are_disjoint(task):
    _, (train, test) = task
    train_prompts = {r["prompt"] for r in train}
    assert len(train_prompts) == len(train)
    assert not train_prompts & {r["prompt"] for r in test}


def test_choices_contain_target_exactly_once(task):
    kind, (train, test) = task
    for row in train + test:
        if kind == "corpus_language":
            assert "choices" not in row and "target" not in row
            continue
        choices, target = row["choices"], row["target"]
        assert isinstance(target, int) and 0 <= target < len(choices)
        assert choices[target] == row["completion"]
        assert choices.count(row["completion"]) == 1
        assert len(set(choices)) == len(choices)


def _parse(prompt):
    a, op, b = re.fullmatch(r"(\d+) ([+-]) (\d+) =", prompt).groups()
    return int(a), op, int(b)


def test_arithmetic_answers_are_correct():
    train, test = make_task("arithmetic", SPEC, 300, 100, seed=5)
    for row in train + test:
        a, op, b = _parse(row["prompt"])
        assert 0 <= a <= 99 and 0 <= b <= 99
        answer = a + b if op == "+" else a - b
        assert answer >= 0
        assert row["completion"] == f" {answer}"
        assert len(row["choices"]) == 4
        wrong = [int(c) for i, c in enumerate(row["choices"]) if i != row["target"]]
        assert all(x >= 0 and x != answer and abs(x - answer) <= 20 for x in wrong)
    assert {_parse(r["prompt"]) for r in train}.isdisjoint({_parse(r["prompt"]) for r in test})
    ops = collections.Counter(_parse(r["prompt"])[1] for r in train)
    assert ops["+"] > 50 and ops["-"] > 50
    # the correct answer is not always in the same position
    assert len({r["target"] for r in train}) == 4


def test_arithmetic_range_limits():
    # operands 0..2: 9 additions + 6 non-negative subtractions = 15 distinct problems
    train, test = make_task("arithmetic", SPEC, 10, 5, seed=0, operand_range=(0, 2))
    assert len({r["prompt"] for r in train + test}) == 15
    with pytest.raises(ValueError, match="only 15 distinct problems"):
        make_task("arithmetic", SPEC, 10, 6, seed=0, operand_range=(0, 2))
    train, _ = make_task("arithmetic", SPEC, 50, 0, seed=0, operand_range=(10, 20), ops=("+",))
    assert all(_parse(r["prompt"])[1] == "+" for r in train)
    with pytest.raises(ValueError):
        make_task("arithmetic", SPEC, 5, 5, seed=0, ops=("*",))


def test_topic_classification_rows():
    train, test = make_task("topic_classification", SPEC, 160, 80, seed=2)
    labels = topic_labels(SPEC)
    assert len(labels) == 8 and list(labels) == list(LABEL_WORDS[:8])
    assert not set(labels.values()) & set(reserved_topics(SPEC))
    pretraining = " ".join(generate_document(SPEC, "train", i) for i in range(300))
    for row in train + test:
        assert row["prompt"].endswith("\nTopic:")
        assert row["choices"] == [" " + w for w in labels]
        text = row["prompt"].removesuffix("\nTopic:")
        assert 2 <= text.count(".") <= 3
        assert text.split(". ")[0] not in pretraining  # fresh text, not copied
    # labels are balanced within a split
    counts = collections.Counter(r["target"] for r in train)
    assert set(counts) == set(range(8)) and set(counts.values()) == {20}


def test_corpus_language_rows_are_short_continuations():
    train, test = make_task("corpus_language", SPEC, 100, 30, seed=0)
    for row in train + test:
        assert row["prompt"].endswith(".") and row["completion"].endswith(".")
        assert len(row["prompt"]) + len(row["completion"]) < 450
        assert row["completion"][1].isupper()  # continues with a new sentence


def test_unknown_kind_and_bad_sizes():
    with pytest.raises(ValueError, match="valid kinds: corpus_language, arithmetic"):
        make_task("translation", SPEC, 1, 1, seed=0)
    with pytest.raises(ValueError):
        make_task("arithmetic", SPEC, -1, 1, seed=0)
    with pytest.raises(TypeError):
        make_task("arithmetic", SPEC, 1, 1, seed=0, no_such_option=1)
    with pytest.raises(ValueError):
        topic_labels(SPEC, n_labels=1)


def test_write_and_read_jsonl(tmp_path):
    meta = write_task(tmp_path / "t", "topic_classification", SPEC, 20, 10, seed=3, n_labels=4)
    train, test = make_task("topic_classification", SPEC, 20, 10, seed=3, n_labels=4)
    assert meta["kind"] == "topic_classification" and meta["seed"] == 3
    assert (meta["n_train"], meta["n_test"]) == (20, 10)
    for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
        path = tmp_path / "t" / name
        raw = path.read_bytes()
        assert hashlib.sha256(raw).hexdigest() == meta["sha256"][name]
        assert read_jsonl(path) == rows
        lines = raw.decode("utf-8").splitlines()
        assert lines == [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows]
    again = write_task(tmp_path / "u", "topic_classification", SPEC, 20, 10, seed=3, n_labels=4)
    assert again["sha256"] == meta["sha256"]


def test_tasks_module_is_light():
    code = (
        "import sys, overtrained.data.task_data; "
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

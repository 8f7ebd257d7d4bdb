"""Dataset tasks: shipped definitions, rendering, and the load_dataset path on local data."""

import json
import os
import subprocess
import sys

import pytest

from overtrained.core import config
from overtrained.data import dataset_task
from overtrained.data.dataset_task import DatasetTaskError

HH_ROWS = [
    {
        "chosen": f"\n\nHuman: question {i}?\n\nAssistant: first.\n\nHuman: more?"
        f"\n\nAssistant: answer {i}.",
        "rejected": f"\n\nHuman: question {i}?\n\nAssistant: no.",
    }
    for i in range(30)
]


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def hh_repo(tmp_path):
    """A local directory laid out like the Anthropic/hh-rlhf Hub repository."""
    repo = tmp_path / "hh-rlhf"
    write_jsonl(repo / "data" / "train.jsonl", HH_ROWS[:24])
    write_jsonl(repo / "data" / "test.jsonl", HH_ROWS[24:])
    return repo


def test_every_shipped_definition_is_valid_and_pinned():
    shipped = dataset_task.library()
    assert {"anthropic_hh", "tulu_v2", "gsm8k", "siqa", "trec", "rte", "mr"} <= set(shipped)
    assert "starcoder_python" in shipped
    for name in shipped:
        defn = dataset_task.resolve(name)
        dataset_task.check(defn, name)  # no network: only what the definition says
        assert dataset_task.is_hub(defn), name
        assert len(defn["revision"]) == 40 and int(defn["revision"], 16) >= 0, name


@pytest.mark.parametrize(
    ("name", "row", "expected"),
    [
        (
            "gsm8k",
            {"question": "2+2?", "answer": "4\n#### 4"},
            {"prompt": "Question: 2+2?\nAnswer:", "completion": " 4\n#### 4"},
        ),
        (
            "siqa",
            {
                "context": "C",
                "question": "Q",
                "answerA": "a",
                "answerB": "b",
                "answerC": "c",
                "label": "2",
            },
            {"prompt": "C\nQuestion: Q\nAnswer:", "completion": " b"},
        ),
        ("trec", {"text": "Who?", "coarse_label": 3, "fine_label": 7}, {"completion": " human"}),
        ("rte", {"sentence1": "A", "sentence2": "B", "label": 1}, {"completion": " False"}),
        ("mr", {"text": "great", "label": 1}, {"completion": " positive"}),
        (
            "starcoder_python",
            {"content": "def f():\n    pass\n"},
            {"prompt": "", "completion": "def f():\n    pass\n"},
        ),
    ],
)
def test_shipped_templates_render_rows(name, row, expected):
    rendered = dataset_task.render_row(dataset_task.resolve(name), row)
    assert rendered.items() >= expected.items()


def test_transcript_keeps_the_conversation_and_trains_on_the_chosen_reply():
    rendered = dataset_task.render_row(dataset_task.resolve("anthropic_hh"), HH_ROWS[3])
    assert rendered["prompt"].endswith("\n\nHuman: more?\n\nAssistant:")
    assert rendered["prompt"].startswith("\n\nHuman: question 3?")
    assert rendered["completion"] == " answer 3."


def test_chat_rendering_with_each_template():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
    tulu = dataset_task.render_chat(messages, "tulu")
    assert tulu["prompt"] == (
        "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello.\n<|user|>\nBye\n<|assistant|>\n"
    )
    assert tulu["completion"] == "Goodbye."
    hh = dataset_task.render_chat(messages[1:], "hh")
    assert hh == {
        "prompt": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant:",
        "completion": " Goodbye.",
    }
    plain = dataset_task.render_chat(messages[1:3], "plain")
    assert plain == {"prompt": "User: Hi\nAssistant:", "completion": " Hello."}
    # A conversation ending on a user turn trains on the last assistant reply.
    assert dataset_task.render_chat(messages[:4], "tulu")["completion"] == "Hello."
    with pytest.raises(DatasetTaskError, match="no assistant turn"):
        dataset_task.render_chat(messages[:2], "tulu")


def test_a_missing_column_names_the_columns_there_are():
    defn = dataset_task.resolve("gsm8k")
    with pytest.raises(DatasetTaskError, match=r"'answer' is undefined.*columns are: question"):
        dataset_task.render_row(defn, {"question": "q"})


def test_hub_layout_on_local_data_prefetch_then_build_offline(hh_repo, tmp_path):
    defn = dataset_task.resolve(
        {"path": str(hh_repo), "format": "transcript", "column": "chosen", "test_split": "test"}
    )
    dataset_task.check(defn, "t")
    cache = str(tmp_path / "cache")
    fetched = dataset_task.prefetch(defn, cache_dir=cache)
    assert fetched["rows"] == {"train": 24, "test": 6}
    assert set(fetched["local_files_sha256"]) == {
        str(hh_repo / "data" / "train.jsonl"),
        str(hh_repo / "data" / "test.jsonl"),
    }
    train, test, meta = dataset_task.build(defn, 10, 4, seed=0, cache_dir=cache)
    assert len(train) == 10 and len(test) == 4
    assert all(r["prompt"].endswith("Assistant:") for r in train + test)
    assert {r["completion"] for r in test} <= {f" answer {i}." for i in range(24, 30)}
    assert meta["source_rows"] == {"train": 24, "test": 6}
    again, _, _ = dataset_task.build(defn, 10, 4, seed=0, cache_dir=cache)
    other, _, _ = dataset_task.build(defn, 10, 4, seed=1, cache_dir=cache)
    assert again == train and other != train  # the subsample is a function of the seed


def test_json_builder_without_test_split_holds_out_disjoint_rows(tmp_path):
    rows = [{"q": f"q{i}", "a": f"a{i}"} for i in range(20)]
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    defn = dataset_task.resolve(
        {
            "path": "json",
            "data_files": str(data),
            "format": "template",
            "prompt": "{{ q }} =",
            "completion": " {{ a }}",
        }
    )
    train, test, _ = dataset_task.build(
        defn, None, 5, seed=0, offline=False, cache_dir=str(tmp_path / "c")
    )
    assert len(train) == 15 and len(test) == 5
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    with pytest.raises(DatasetTaskError, match="fewer than the 40 asked for"):
        dataset_task.build(defn, 40, 5, seed=0, offline=False, cache_dir=str(tmp_path / "c"))


SHA = "0123456789abcdef0123456789abcdef01234567"


def offline_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    """Run `code` in a fresh process with the Hub switched off (as a compute-node job is):
    offline mode is read at import, so it cannot be switched back within one process."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "home"),
    }
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_offline_cache_miss_names_the_dataset(tmp_path):
    result = offline_python(
        "from overtrained.data import dataset_task as d; "
        "d.load_split(d.resolve('mr'), 'train', offline=True)",
        tmp_path,
    )
    assert result.returncode != 0
    assert "dataset 'cornell-movie-review-data/rotten_tomatoes' at revision" in result.stderr
    assert "run `snakemake prefetch`" in result.stderr


def test_offline_build_reads_the_pinned_commit_from_the_hub_cache(tmp_path):
    """A Hub cache laid out as snapshot_download leaves it (as after `snakemake prefetch`):
    the pinned commit is read offline, and another commit's copy is not."""
    repo = tmp_path / "cache" / "hub" / "datasets--acme--hh-rlhf" / "snapshots"
    write_jsonl(repo / SHA / "data" / "train.jsonl", HH_ROWS[:24])
    write_jsonl(repo / SHA / "data" / "test.jsonl", HH_ROWS[24:])
    other = "f" * 40
    write_jsonl(repo / other / "data" / "train.jsonl", HH_ROWS[:2])
    write_jsonl(repo / other / "data" / "test.jsonl", HH_ROWS[:2])
    definition = {
        "path": "acme/hh-rlhf",
        "revision": SHA,
        "format": "transcript",
        "column": "chosen",
        "test_split": "test",
    }
    cache = str(tmp_path / "cache")
    code = (
        "import json; from overtrained.data import dataset_task as d; "
        f"defn = d.resolve({definition!r}); "
        f"train, test, _ = d.build(defn, None, 6, 0, offline=True, cache_dir={cache!r}); "
        "print(json.dumps([len(train), len(test)]))"
    )
    result = offline_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [24, 6]


def test_hub_revisions_must_be_commit_shas():
    with pytest.raises(DatasetTaskError, match="the 40-hex commit sha"):
        dataset_task.check(
            dataset_task.resolve({"path": "a/b", "revision": "main", "format": "chat"}), "t"
        )


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"kind": "dataset", "dataset": "hh"}, "no shipped dataset definition named 'hh'"),
        ({"kind": "dataset", "dataset": "anthropic-hh"}, "did you mean anthropic_hh"),
        (
            {"kind": "dataset", "dataset": {"path": "a/b", "format": "chat", "colum": "x"}},
            r"finetune.tasks.t.dataset.colum: unknown key",
        ),
        (
            {"kind": "dataset", "dataset": {"path": "a/b", "format": "chat"}},
            r"finetune.tasks.t.dataset.revision: Hub dataset 'a/b' needs a pinned revision",
        ),
        (
            {
                "kind": "dataset",
                "dataset": {
                    "path": "json",
                    "data_files": "no.jsonl",
                    "format": "template",
                    "completion": "x",
                },
            },
            r"data_files: 'no.jsonl' does not exist",
        ),
        ({"kind": "arithmetic", "dataset": "gsm8k"}, "only tasks of kind 'dataset'"),
        ({"kind": "dataset"}, "names a dataset"),
        ({"kind": "arithmetic", "n_train": None}, "a generated task needs a number"),
    ],
)
def test_bad_dataset_tasks_fail_config_validation(task, message):
    raw = {"finetune": {"tasks": {"t": task}, "lrs": {"t": [1e-3]}}, "evaluate": {"suites": {}}}
    with pytest.raises(config.ConfigError, match=message):
        config.load(raw)


def test_a_shipped_task_resolves_into_the_config():
    raw = {
        "finetune": {
            "tasks": {"hh": {"kind": "dataset", "dataset": "anthropic_hh"}},
            "lrs": {"hh": [1e-5]},
        },
        "evaluate": {"suites": {}},
    }
    task = config.load(raw)["finetune"]["tasks"]["hh"]
    assert task["dataset"]["path"] == "Anthropic/hh-rlhf"
    assert task["dataset"]["test_split"] == "test" and task["n_train"] == 1000


def test_choices_give_a_target_and_patterns_an_answer():
    trec = dataset_task.render_row(
        dataset_task.resolve("trec"), {"text": "Who?", "coarse_label": 3}
    )
    assert trec["choices"][trec["target"]] == trec["completion"] == " human"
    siqa = dataset_task.render_row(
        dataset_task.resolve("siqa"),
        {
            "context": "C",
            "question": "Q",
            "answerA": "a",
            "answerB": "b",
            "answerC": "c",
            "label": "3",
        },
    )
    assert siqa["choices"] == [" a", " b", " c"] and siqa["target"] == 2
    gsm = dataset_task.render_row(
        dataset_task.resolve("gsm8k"), {"question": "q", "answer": "3 + 4 = 7\n#### 1,007"}
    )
    assert gsm["answer"] == "1,007"
    assert dataset_task.extract_answer("#### *(-?[0-9.,]+)", "so\n####  -12.5 apples") == "-12.5"
    assert dataset_task.extract_answer("#### (.+)", "no marker") is None


def test_answers_that_do_not_fit_the_definition_are_errors():
    mr = dataset_task.resolve({**dataset_task.library()["mr"], "choices": [" bad", " good"]})
    with pytest.raises(DatasetTaskError, match="is not one of the rendered choices"):
        dataset_task.render_row(mr, {"text": "x", "label": 1})
    with pytest.raises(DatasetTaskError, match="finds no answer"):
        dataset_task.render_row(dataset_task.resolve("gsm8k"), {"question": "q", "answer": "7"})
    for bad, message in (
        ({"answer_pattern": "(unclosed"}, "not a regular expression"),
        ({"answer_pattern": "#### .+"}, "needs a group"),
        ({"answer_pattern": "(.+)", "choices": [" a", " b"]}, "not both"),
    ):
        defn = dataset_task.resolve({**dataset_task.library()["gsm8k"], **bad})
        with pytest.raises(DatasetTaskError, match=message):
            dataset_task.check(defn, "t")


@pytest.mark.parametrize(
    ("suite_tasks", "message"),
    [
        (["id_nope"], "scores the dataset task 'nope', which finetune.tasks does not have"),
        (["id_hh"], "'id_hh' needs answers to score"),
    ],
)
def test_id_evaluations_need_a_dataset_task_with_answers(suite_tasks, message):
    raw = {
        "finetune": {
            "tasks": {
                "hh": {"kind": "dataset", "dataset": "anthropic_hh"},
                "mr": {"kind": "dataset", "dataset": "mr"},
            },
            "lrs": {"hh": [1e-5], "mr": [1e-5]},
        },
        "evaluate": {"suites": {"id": {"tasks": suite_tasks}}},
    }
    with pytest.raises(config.ConfigError, match=message):
        config.load(raw)
    raw["evaluate"]["suites"]["id"]["tasks"] = ["id_mr"]
    assert config.load(raw)["evaluate"]["suites"]["id"]["tasks"] == ["id_mr"]


def local_task(tmp_path, files: dict[str, str], **task) -> dict:
    """A config with one local JSON-lines dataset task; `files` name -> text."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    data_files = {split: str(tmp_path / name) for split, name in task.pop("splits").items()}
    definition = {
        "path": "json",
        "data_files": data_files,
        "format": "template",
        "prompt": "{{ q }} =",
        "completion": " {{ a }}",
        **task.pop("dataset", {}),
    }
    return {
        "finetune": {
            "tasks": {"qa": {"kind": "dataset", "dataset": definition, **task}},
            "lrs": {"qa": [1e-3]},
        },
        "evaluate": {"suites": {}},
    }


ROWS = "".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) + "\n" for i in range(20))


@pytest.mark.parametrize(
    ("files", "task", "message"),
    [
        (  # the templates name a column the rows lack
            {"train.jsonl": ROWS},
            {"splits": {"train": "train.jsonl"}, "dataset": {"completion": " {{ answer }}"}},
            r"finetune.tasks.qa.dataset: the first 'train' row: .*'answer' is undefined.*"
            r"its columns are: q, a",
        ),
        (  # an empty file (a bare StopIteration inside a job before)
            {"train.jsonl": "\n"},
            {"splits": {"train": "train.jsonl"}},
            r"finetune.tasks.qa.dataset.data_files: .*train.jsonl holds no rows",
        ),
        (  # more held-out rows than the data has
            {"train.jsonl": ROWS},
            {"splits": {"train": "train.jsonl"}, "n_train": 10, "n_test": 50},
            r"finetune.tasks.qa.n_test: 20 training rows cannot spare 50",
        ),
        (  # n_train's default (1000) on 20 rows
            {"train.jsonl": ROWS},
            {"splits": {"train": "train.jsonl"}, "n_test": 5},
            r"finetune.tasks.qa.n_train: 1000 asked for, but 20 rows minus the 5 held out",
        ),
        (
            {"train.jsonl": ROWS, "test.jsonl": "".join(ROWS.splitlines(keepends=True)[:5])},
            {
                "splits": {"train": "train.jsonl", "test": "test.jsonl"},
                "dataset": {"test_split": "test"},
                "n_train": None,
                "n_test": 10,
            },
            r"finetune.tasks.qa.n_test: 10 asked for, but split 'test' has 5 rows",
        ),
        (
            {"train.jsonl": ROWS},
            {"splits": {"train": "train.jsonl"}, "dataset": {"test_split": "validation"}},
            r"test_split: split 'validation' is not in data_files \(it names 'train'\)",
        ),
        (
            {"train.jsonl": "not json\n"},
            {"splits": {"train": "train.jsonl"}},
            r"finetune.tasks.qa.dataset.data_files: cannot read the 'train' rows",
        ),
    ],
)
def test_local_data_problems_are_caught_at_plan_time(tmp_path, files, task, message):
    raw = local_task(tmp_path, files, **task)
    with pytest.raises(config.ConfigError, match=message) as info:
        config.load(raw)
    assert "\n" not in str(info.value)


def test_local_data_that_fits_passes_and_large_files_are_left_to_the_job(tmp_path, monkeypatch):
    raw = local_task(tmp_path, {"train.jsonl": ROWS}, splits={"train": "train.jsonl"}, n_test=5)
    raw["finetune"]["tasks"]["qa"]["n_train"] = 15
    config.load(raw)
    raw["finetune"]["tasks"]["qa"]["n_train"] = 16
    with pytest.raises(config.ConfigError, match="n_train: 16 asked for"):
        config.load(raw)
    monkeypatch.setattr(dataset_task, "PLAN_READ_BYTES", 10)  # not read at plan time
    config.load(raw)

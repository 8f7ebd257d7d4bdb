"""TRL fine-tuning of a tiny checkpoint: outputs, provenance, divergence as a result."""

import math

import pytest

from overtrained import config, finetune, provenance, tasks
from overtrained.corpus import CorpusSpec

FT = config.load({})["finetune"]


@pytest.fixture(scope="module")
def train_jsonl(tmp_path_factory):
    out = tmp_path_factory.mktemp("task")
    tasks.write_task(out, "arithmetic", CorpusSpec(), n_train=32, n_test=4, seed=0)
    return out / "train.jsonl"


def run(checkpoint_dir, train_jsonl, tmp_path, lr):
    ft = {**FT, "batch_size": 8, "max_length": 64}
    return finetune.run(
        checkpoint_dir,
        train_jsonl,
        tmp_path / "model",
        tmp_path / "train.json",
        ft,
        lr,
        0,
        params={"code": "test", "lr": lr},
    )


def test_finetune_writes_safetensors_and_a_complete_record(checkpoint_dir, train_jsonl, tmp_path):
    record = run(checkpoint_dir, train_jsonl, tmp_path, 1e-3)
    assert record == provenance.read_json(tmp_path / "train.json")
    assert record["status"] == "ok"
    assert record["steps"] == 4  # 32 examples / batch 8, one epoch
    assert len(record["loss_curve"]) == 4 and math.isfinite(record["final_train_loss"])
    assert record["tokens_seen"] > 32 and record["tokens_per_second"] > 0
    assert record["base_sha"] == provenance.read_json(checkpoint_dir / "provenance.json")["sha"]
    assert record["dataset_sha"] == provenance.sha256_file(train_jsonl)
    assert record["versions"]["trl"]
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))}
    assert not (tmp_path / "trainer").exists() or not any(
        (tmp_path / "trainer").glob("checkpoint-*")
    )


def test_a_diverging_run_is_recorded_not_raised(checkpoint_dir, train_jsonl, tmp_path):
    record = run(checkpoint_dir, train_jsonl, tmp_path, 1e6)
    assert record["status"] == "diverged"
    assert (tmp_path / "train.json").exists()


@pytest.mark.parametrize(
    ("losses", "status"),
    [
        ([5.0, 4.0, 3.0], "ok"),
        ([5.0, 40.0, 3.0], "ok"),
        ([5.0, 51.0, 3.0], "diverged"),
        ([5.0, float("nan")], "diverged"),
        ([5.0, float("inf")], "diverged"),
        ([], "diverged"),
    ],
)
def test_run_status(losses, status):
    assert finetune.run_status(losses, factor=10.0) == status

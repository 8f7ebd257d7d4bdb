"""Retention text from a dataset: documents -> a held-out stream the probes read as usual."""

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from overtrained import dataset_tasks, probes, retention
from overtrained.model import load_checkpoint
from tests.test_probes import hand_mean_nll

TEXTS = [f"the river {i} runs past the old mill and the hill." * 3 for i in range(40)]


@pytest.fixture
def text_dataset(tmp_path):
    """A local stand-in for C4's validation shard: JSON lines with a `text` column."""
    path = tmp_path / "c4-validation.json"
    path.write_text("".join(json.dumps({"text": t, "url": "u"}) + "\n" for t in TEXTS))
    shipped = dataset_tasks.library()["c4_validation"]
    return dataset_tasks.resolve(
        {**shipped, "path": "json", "revision": None, "data_files": {"validation": str(path)}}
    )


def test_documents_are_the_first_rows_in_order(text_dataset, tmp_path):
    docs = retention.documents(text_dataset, 5, offline=False, cache_dir=str(tmp_path / "c"))
    assert docs == TEXTS[:5]
    with pytest.raises(dataset_tasks.DatasetTaskError, match="fewer than"):
        retention.documents(text_dataset, 41, offline=False, cache_dir=str(tmp_path / "c"))


def test_stream_is_each_document_then_eos(checkpoint_dir, tmp_path):
    meta = retention.write_stream(TEXTS[:3], checkpoint_dir, tmp_path / "heldout.npy")
    tokenizer = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    eos = tokenizer.token_to_id("<|endoftext|>")
    expected = []
    for text in TEXTS[:3]:
        expected += [*tokenizer.encode(text, add_special_tokens=False).ids, eos]
    stream = np.load(tmp_path / "heldout.npy")
    assert stream.tolist() == expected and meta["tokens"] == len(expected)


def test_retention_probe_on_text_equals_a_hand_computation(checkpoint_dir, tmp_path):
    retention.write_stream(TEXTS, checkpoint_dir, tmp_path / "heldout.npy")
    model = load_checkpoint(checkpoint_dir).eval()
    seq_len = 32
    windows = probes.heldout_windows(tmp_path / "heldout.npy", 4 * seq_len, seq_len)
    value, n = probes.pretrain_loss(model, windows)
    expected, expected_n = hand_mean_nll(model, windows)
    assert n == expected_n == 4 * seq_len
    assert value == pytest.approx(expected, rel=1e-6)

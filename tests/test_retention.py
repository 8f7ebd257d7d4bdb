"""Retention text from a dataset: documents -> a held-out stream the probes read as usual."""

import json
import shutil

import numpy as np
import pytest
from tokenizers import Tokenizer

from overtrained.core import provenance
from overtrained.data import dataset_task, retention_stream
from overtrained.evaluation import probes
from overtrained.models.model import load_checkpoint
from tests.builders import hand_mean_nll

TEXTS = [f"the river {i} runs past the old mill and the hill." * 3 for i in range(40)]


@pytest.fixture
def text_dataset(tmp_path):
    """A local stand-in for C4's validation shard: JSON lines with a `text` column."""
    path = tmp_path / "c4-validation.json"
    path.write_text("".join(json.dumps({"text": t, "url": "u"}) + "\n" for t in TEXTS))
    shipped = dataset_task.library()["c4_validation"]
    return dataset_task.resolve(
        {**shipped, "path": "json", "revision": None, "data_files": {"validation": str(path)}}
    )


def test_documents_are_the_first_rows_in_order(text_dataset, tmp_path):
    docs = retention_stream.documents(text_dataset, 5, offline=False, cache_dir=str(tmp_path / "c"))
    assert docs == TEXTS[:5]
    with pytest.raises(dataset_task.DatasetTaskError, match="fewer than"):
        retention_stream.documents(text_dataset, 41, offline=False, cache_dir=str(tmp_path / "c"))


def test_stream_is_each_document_then_eos(checkpoint_dir, tmp_path):
    meta = retention_stream.write_stream(TEXTS[:3], checkpoint_dir, tmp_path / "heldout.npy")
    tokenizer = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    eos = tokenizer.token_to_id("<|endoftext|>")
    expected = []
    for text in TEXTS[:3]:
        expected += [*tokenizer.encode(text, add_special_tokens=False).ids, eos]
    stream = np.load(tmp_path / "heldout.npy")
    assert stream.tolist() == expected and meta["tokens"] == len(expected)


def test_retention_probe_on_text_equals_a_hand_computation(checkpoint_dir, tmp_path):
    retention_stream.write_stream(TEXTS, checkpoint_dir, tmp_path / "heldout.npy")
    model = load_checkpoint(checkpoint_dir).eval()
    seq_len = 32
    windows = probes.heldout_windows(tmp_path / "heldout.npy", 4 * seq_len, seq_len)
    value, n = probes.pretrain_loss(model, windows)
    expected, expected_n = hand_mean_nll(model, windows)
    assert n == expected_n == 4 * seq_len
    assert value == pytest.approx(expected, rel=1e-6)


def test_stream_of_the_corpus_tokenizer_is_unchanged(corpus_dir, tmp_path):
    """The miniature's corpus tokenizer directory (no config.json): the same ids as the raw
    tokenizers library gave before streams were tokenised through transformers."""
    tokenizer = Tokenizer.from_file(str(corpus_dir / "tokenizer" / "tokenizer.json"))
    meta = retention_stream.write_stream(TEXTS, corpus_dir / "tokenizer", tmp_path / "heldout.npy")
    expected = []
    for encoding in tokenizer.encode_batch(TEXTS, add_special_tokens=False):
        expected += [*encoding.ids, tokenizer.token_to_id("<|endoftext|>")]
    stream = np.load(tmp_path / "heldout.npy")
    assert stream.dtype == np.uint16 and stream.tolist() == expected
    assert meta == {
        "documents": len(TEXTS),
        "tokens": len(expected),
        "sha256": provenance.sha256_file(tmp_path / "heldout.npy"),
    }


def test_stream_of_a_sentencepiece_only_model_dir(tmp_path):
    from tests.test_loading import sentencepiece_tokenizer_dir

    model_dir, sp = sentencepiece_tokenizer_dir(tmp_path / "amber", TEXTS)
    retention_stream.write_stream(TEXTS[:4], model_dir, tmp_path / "heldout.npy")
    expected = [i for text in TEXTS[:4] for i in [*sp.encode(text), sp.eos_id()]]
    assert np.load(tmp_path / "heldout.npy").tolist() == expected


@pytest.mark.parametrize("eos", [None, "<nope>"])
def test_stream_needs_an_eos_token_in_the_vocabulary(corpus_dir, tmp_path, eos):
    from overtrained.models.loading import LoadingError

    tokenizer_dir = tmp_path / "tok"
    shutil.copytree(corpus_dir / "tokenizer", tokenizer_dir)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((tokenizer_dir / name).read_text())
        config.pop("eos_token")
        if eos:
            config["eos_token"] = eos
        (tokenizer_dir / name).write_text(json.dumps(config))
    with pytest.raises(LoadingError, match="not in the vocabulary"):
        retention_stream.write_stream(TEXTS[:2], tokenizer_dir, tmp_path / "heldout.npy")

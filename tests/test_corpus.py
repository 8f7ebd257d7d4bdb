"""Tests for the synthetic corpus, its tokenizer and the token-stream writer."""

import collections
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from overtrained.data.corpus import (
    EOS_ID,
    PAD_ID,
    CorpusSpec,
    corpus_fingerprint,
    document_topics,
    generate_document,
    load_tokenizer,
    reserved_topics,
    train_tokenizer,
    unigram_entropy,
    write_token_stream,
)

SPEC = CorpusSpec()
VOCAB = 512


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(SPEC, VOCAB, out, n_documents=300)
    return out


def test_spec_from_dict_round_trip_and_rejects_unknown_keys():
    spec = CorpusSpec.from_dict({"seed": 3, "n_topics": 20})
    assert spec.seed == 3 and spec.n_topics == 20
    assert CorpusSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(TypeError):
        CorpusSpec.from_dict({"seed": 1, "no_such_field": 2})
    with pytest.raises(ValueError):
        CorpusSpec(n_topics=4, heldout_topics=4)
    with pytest.raises(ValueError, match="heldout_topics"):
        generate_document(CorpusSpec(heldout_topics=0), "task", 0)


def test_documents_are_deterministic_and_streams_differ():
    doc = generate_document(SPEC, "train", 7)
    assert doc == generate_document(SPEC, "train", 7)
    assert doc == generate_document(CorpusSpec(), "train", 7)  # no hidden state
    assert doc != generate_document(SPEC, "train", 8)
    assert doc != generate_document(SPEC, "heldout", 7)
    assert doc != generate_document(CorpusSpec(seed=1), "train", 7)
    assert generate_document(SPEC, "task", 7) != doc
    with pytest.raises(ValueError, match="unknown split"):
        generate_document(SPEC, "validation", 0)


def test_document_shape():
    for i in range(20):
        doc = generate_document(SPEC, "train", i)
        n_sent = len(re.findall(r"\.", doc))
        assert SPEC.doc_sentences_min <= n_sent <= SPEC.doc_sentences_max
        assert doc[0].isupper() and doc.endswith(".")
        assert "  " not in doc and " ." not in doc and " ," not in doc


def test_reserved_topics_never_in_pretraining_splits():
    reserved = set(reserved_topics(SPEC))
    assert len(reserved) == SPEC.heldout_topics
    seen = set()
    for i in range(300):
        for split in ("train", "heldout"):
            topics = document_topics(SPEC, split, i)
            assert 1 <= len(topics) <= SPEC.max_doc_topics
            assert not reserved & set(topics)
            seen.update(topics)
        assert set(document_topics(SPEC, "task", i)) <= reserved
    assert len(seen) == SPEC.n_topics - SPEC.heldout_topics  # all other topics do occur


def test_corpus_is_rich_and_heavy_tailed():
    words = [
        w.lower()
        for i in range(200)
        for w in re.findall(r"[A-Za-z]+", generate_document(SPEC, "train", i))
    ]
    counts = collections.Counter(words)
    assert len(counts) > 1000
    top10 = sum(n for _, n in counts.most_common(10))
    assert top10 / len(words) < 0.5
    singletons = sum(1 for n in counts.values() if n == 1)
    assert singletons > 0.2 * len(counts)  # a long tail of rare words


def test_entity_recurs_within_document():
    """The first word of every document is its entity name; it must come back later."""
    recurring = 0
    for i in range(50):
        doc = generate_document(SPEC, "train", i)
        first_sentence, rest = doc.split(". ", 1)
        names = [w for w in re.findall(r"[A-Za-z]+", first_sentence) if w[0].isupper()]
        recurring += any(name in rest for name in names)
    assert recurring > 40


def test_fingerprint_is_stable_and_sensitive():
    fp = corpus_fingerprint(SPEC)
    assert fp == corpus_fingerprint(CorpusSpec())
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert fp != corpus_fingerprint(CorpusSpec(seed=1))
    assert fp != corpus_fingerprint(CorpusSpec(plural_prob=0.3))


def test_tokenizer_round_trip_and_special_ids(tok_dir):
    tok = load_tokenizer(tok_dir)
    assert tok.get_vocab_size() == VOCAB
    assert tok.token_to_id("<|endoftext|>") == EOS_ID == 0
    assert tok.token_to_id("<|pad|>") == PAD_ID == 1
    texts = [
        generate_document(SPEC, split, i)
        for split in ("train", "heldout", "task")
        for i in range(5)
    ]
    texts += ["12 + 35 = 47", "Topic:\n jax", "  leading spaces, naïve ünïcode ✓ \t"]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert EOS_ID not in ids and PAD_ID not in ids
        assert tok.decode(ids) == text
    # BPE actually learned subwords: far fewer tokens than characters
    doc = texts[0]
    assert len(tok.encode(doc).ids) < 0.5 * len(doc)


def test_tokenizer_training_is_deterministic_across_processes(tok_dir, tmp_path):
    code = (
        "import sys; from overtrained.data.corpus import CorpusSpec, train_tokenizer; "
        f"train_tokenizer(CorpusSpec(), {VOCAB}, sys.argv[1], n_documents=300)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert (tmp_path / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()


def test_tokenizer_loads_with_transformers(tok_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    for hf in (
        PreTrainedTokenizerFast.from_pretrained(tok_dir),
        AutoTokenizer.from_pretrained(tok_dir),
    ):
        assert hf.eos_token_id == 0 and hf.pad_token_id == 1 and hf.bos_token_id == 0
        text = generate_document(SPEC, "heldout", 3)
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert ids == load_tokenizer(tok_dir).encode(text, add_special_tokens=False).ids
        assert hf.decode(ids) == text
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert config["clean_up_tokenization_spaces"] is False


def test_write_token_stream_exact_length_and_eos_separators(tok_dir, tmp_path):
    n = 5000
    out = tmp_path / "stream.npy"
    stats = write_token_stream(SPEC, tok_dir, "train", n, out)
    arr = np.load(out)
    assert arr.dtype == np.uint16 and arr.shape == (n,)
    assert stats["n_tokens"] == n and stats["chars"] > 0 and stats["seconds"] >= 0
    # rebuild the expected stream by hand: doc ids + EOS, concatenated, truncated
    tok = load_tokenizer(tok_dir)
    docs = [generate_document(SPEC, "train", i) for i in range(stats["n_documents"])]
    expected = []
    for doc in docs:
        expected += [*tok.encode(doc, add_special_tokens=False).ids, EOS_ID]
    last = len(tok.encode(docs[-1]).ids) + 1
    assert len(expected) - last < n <= len(expected)  # no document more than needed
    assert arr.tolist() == expected[:n]
    assert stats["chars"] == sum(map(len, docs))
    assert (arr == EOS_ID).sum() in (stats["n_documents"] - 1, stats["n_documents"])
    assert not (arr == PAD_ID).any()
    # deterministic, and the heldout stream is a different one
    write_token_stream(SPEC, tok_dir, "train", n, tmp_path / "again.npy", threads=2)
    assert np.array_equal(np.load(tmp_path / "again.npy"), arr)
    write_token_stream(SPEC, tok_dir, "heldout", n, tmp_path / "heldout.npy")
    assert not np.array_equal(np.load(tmp_path / "heldout.npy"), arr)


def test_unigram_entropy():
    assert unigram_entropy(np.zeros(10, dtype=np.uint16), 4) == 0.0
    assert math.isclose(unigram_entropy(np.arange(8).repeat(3), 16), math.log(8))
    skewed = unigram_entropy(np.array([0, 0, 0, 1]), 2)
    assert 0 < skewed < math.log(2)


def test_corpus_module_does_not_import_transformers():
    code = (
        "import sys, overtrained.data.corpus; "
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

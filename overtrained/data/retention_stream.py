"""Retention text from a dataset (C4 validation for the paper), as a held-out token stream.

The result has the format of the corpus's held-out stream (a flat `np.save` array, EOS
after each document), so the retention probe and the perturbation probe read it the same
way for base, fine-tuned and perturbed models. Tokenised once per family, with the
family's tokenizer (every checkpoint of a family shares it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from overtrained.data import dataset_task


def documents(defn: dict, n_docs: int, offline: bool = True, cache_dir: str | None = None):
    """The first `n_docs` documents (rendered completions) of the definition's split."""
    rows = dataset_task.load_split(defn, defn["train_split"], offline, cache_dir)
    if len(rows) < n_docs:
        raise dataset_task.DatasetTaskError(
            f"retention text {defn['path']!r} has {len(rows)} documents, fewer than "
            f"evaluate.retention_documents = {n_docs}; lower it"
        )
    return [dataset_task.render_row(defn, rows[i])["completion"] for i in range(n_docs)]


def write_stream(
    docs: list[str], tokenizer_dir: str | Path, out_npy: str | Path, trust_remote_code: bool = False
) -> dict:
    """Tokenise `docs` (EOS after each, no other special token) into `out_npy`; return its
    size and sha. `tokenizer_dir`: the corpus's tokenizer or a model directory (tokenizer.json,
    or only a sentencepiece tokenizer.model)."""
    from tokenizers import Tokenizer

    from overtrained.core import provenance
    from overtrained.models.loading import LoadingError, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
    eos = tokenizer.eos_token_id
    raw = Path(tokenizer_dir) / "tokenizer.json"
    # transformers appends a special token that is not in the vocabulary as a new id, one
    # the model has no embedding for: check against the tokenizer's own file.
    if (
        eos is None
        or raw.is_file()
        and Tokenizer.from_file(str(raw)).token_to_id(tokenizer.eos_token) != eos
    ):
        raise LoadingError(
            f"{tokenizer_dir}: eos_token {tokenizer.eos_token!r} (tokenizer_config.json) is "
            "not in the vocabulary; documents in the stream are separated by EOS"
        )
    dtype = np.uint16 if len(tokenizer) <= 1 << 16 else np.uint32
    ids = []
    # verbose=False: documents longer than the model's context are expected here.
    for row in tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]:
        ids += [*row, eos]
    out_npy = Path(out_npy)
    out_npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_npy.with_name(out_npy.name + ".tmp.npy")
    np.save(tmp, np.asarray(ids, dtype=dtype))
    tmp.replace(out_npy)
    return {"documents": len(docs), "tokens": len(ids), "sha256": provenance.sha256_file(out_npy)}

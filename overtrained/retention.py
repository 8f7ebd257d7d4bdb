"""Retention text from a dataset (C4 validation for the paper), as a held-out token stream.

The result has the format of the corpus's held-out stream (a flat `np.save` array, EOS
after each document), so the retention probe and the perturbation probe read it the same
way for base, fine-tuned and perturbed models. Tokenised once per family, with the
family's tokenizer (every checkpoint of a family shares it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from overtrained import dataset_tasks


def documents(defn: dict, n_docs: int, offline: bool = True, cache_dir: str | None = None):
    """The first `n_docs` documents (rendered completions) of the definition's split."""
    rows = dataset_tasks.load_split(defn, defn["train_split"], offline, cache_dir)
    if len(rows) < n_docs:
        raise dataset_tasks.DatasetTaskError(
            f"retention text {defn['path']!r} has {len(rows)} documents, fewer than "
            f"evaluate.retention_documents = {n_docs}; lower it"
        )
    return [dataset_tasks.render_row(defn, rows[i])["completion"] for i in range(n_docs)]


def write_stream(docs: list[str], tokenizer_dir: str | Path, out_npy: str | Path) -> dict:
    """Tokenise `docs` (EOS after each) into `out_npy`; return its size and sha."""
    from tokenizers import Tokenizer

    from overtrained import provenance

    tokenizer_dir = Path(tokenizer_dir)
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    eos = tokenizer.token_to_id(config["eos_token"])
    if eos is None:
        raise ValueError(
            f"{tokenizer_dir}: eos_token {config['eos_token']!r} is not in the vocabulary"
        )
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 1 << 16 else np.uint32
    ids = []
    for encoding in tokenizer.encode_batch(docs, add_special_tokens=False):
        ids += [*encoding.ids, eos]
    out_npy = Path(out_npy)
    out_npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_npy.with_name(out_npy.name + ".tmp.npy")
    np.save(tmp, np.asarray(ids, dtype=dtype))
    tmp.replace(out_npy)
    return {"documents": len(docs), "tokens": len(ids), "sha256": provenance.sha256_file(out_npy)}

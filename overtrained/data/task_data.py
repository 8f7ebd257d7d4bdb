"""Miniature fine-tuning tasks as prompt/completion JSONL, at graded distances from pre-training.

* ``corpus_language`` (closest, mild): continue a document of the corpus's reserved topics.
* ``topic_classification`` (middle): name the topic of a short corpus text with a made-up label.
* ``arithmetic`` (far): ``"12 + 35 ="`` -> ``" 47"``; a different language altogether.

Every task is a pure function of (kind, corpus spec, sizes, seed, options); train and test never
share a prompt.  Completions start with a space because the byte-level BPE attaches spaces to the
following word, so the completion tokenizes as it would inside running text.  Classification-style
rows also carry ``choices`` (strings, ``choices[target] == completion``) for multiple-choice
accuracy.  No torch/transformers imports: task files are built in light workflow jobs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from overtrained.core import jsonio
from overtrained.data.corpus import CorpusSpec, corpus_fingerprint, generate_sentences

TASK_KINDS = ("corpus_language", "arithmetic", "topic_classification")

# Made-up labels using letters (j, q, w, x, y) that the corpus lexicon never uses, so a label
# can never coincide with a corpus word.
LABEL_WORDS = ("jax", "quib", "wex", "yoj", "xul", "jiwy", "qoz", "wyx", "juq", "yex", "qaj", "xow")
_TRAIN, _TEST = 0, 1
_MAX_TRIES_PER_ROW = 50


def _row_rng(spec: CorpusSpec, kind: str, seed: int, part: int, index: int):
    # Stream tag 10 + kind id keeps task streams apart from the corpus splits (tags 0-2).
    return np.random.default_rng([spec.seed, 10 + TASK_KINDS.index(kind), seed, part, index])


def _unique_rows(make_row, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """Draw rows with ``make_row(part, index, position)`` until each split has its size of
    distinct prompts and no test prompt occurs in train (``position`` = rows kept so far)."""
    seen: set[str] = set()
    splits = []
    for part, n in ((_TRAIN, n_train), (_TEST, n_test)):
        rows: list[dict] = []
        index = 0
        while len(rows) < n:
            if index > _MAX_TRIES_PER_ROW * (n + 10):
                raise ValueError(f"could not draw {n} distinct prompts; task space too small")
            row = make_row(part, index, len(rows))
            index += 1
            if row["prompt"] not in seen:
                seen.add(row["prompt"])
                rows.append(row)
        splits.append(rows)
    return splits[0], splits[1]


def _corpus_language(
    spec, n_train, n_test, seed, *, max_prompt_chars: int = 220, max_completion_chars: int = 160
):
    """Prompt = opening sentence(s) of a reserved-topic document, completion = what follows.
    Sentences are added while they fit the character budgets (~100 tokens per row)."""
    if spec.doc_sentences_min < 2:
        raise ValueError("corpus_language needs documents of >= 2 sentences (doc_sentences_min)")

    def make_row(part, index, _position):
        rng = _row_rng(spec, "corpus_language", seed, part, index)
        sents = generate_sentences(spec, rng, split="task")
        k = 1
        while k + 1 < len(sents) and len(" ".join(sents[: k + 1])) <= max_prompt_chars:
            k += 1
        k = min(k, int(rng.integers(1, 3)))  # one or two sentences of context
        comp = [sents[k]]
        for s in sents[k + 1 :]:
            if len(" ".join([*comp, s])) > max_completion_chars:
                break
            comp.append(s)
        return {"prompt": " ".join(sents[:k]), "completion": " " + " ".join(comp)}

    return _unique_rows(make_row, n_train, n_test)


def _arithmetic(
    spec,
    n_train,
    n_test,
    seed,
    *,
    operand_range: tuple[int, int] = (0, 99),
    ops: tuple[str, ...] = ("+", "-"),
):
    """Distinct (a, op, b) problems with non-negative results, each with 4 answer choices."""
    lo, hi = (int(x) for x in operand_range)
    if not 0 <= lo <= hi:
        raise ValueError(f"operand_range must satisfy 0 <= lo <= hi, got {operand_range}")
    if not ops or set(ops) - {"+", "-"}:
        raise ValueError(f"ops must be a non-empty subset of ('+', '-'), got {ops}")
    n = hi - lo + 1
    total = ("+" in ops) * n * n + ("-" in ops) * n * (n + 1) // 2
    need = n_train + n_test
    if need > total:
        raise ValueError(
            f"arithmetic with operands {lo}..{hi} and ops {ops} has only {total} "
            f"distinct problems; {need} requested (n_train + n_test)"
        )
    rng = np.random.default_rng([spec.seed, 10 + TASK_KINDS.index("arithmetic"), seed])
    ops = tuple(sorted(set(ops)))
    if 2 * need > total:  # dense: enumerate everything and shuffle
        probs = [
            (a, op, b)
            for a in range(lo, hi + 1)
            for op in ops
            for b in range(lo, hi + 1)
            if op == "+" or a >= b
        ]
        probs = [probs[i] for i in rng.permutation(len(probs))[:need]]
    else:  # sparse: rejection-sample distinct triples
        chosen: dict[tuple, None] = {}
        while len(chosen) < need:
            a, b = (int(x) for x in rng.integers(lo, hi + 1, size=2))
            op = ops[int(rng.integers(len(ops)))]
            if op == "+" or a >= b:
                chosen.setdefault((a, op, b))
        probs = list(chosen)

    rows = []
    for a, op, b in probs:
        r = a + b if op == "+" else a - b
        near = {r + d for d in (-20, -11, -10, -9, -3, -2, -1, 1, 2, 3, 9, 10, 11, 20)}
        wrong = sorted(x for x in near if x >= 0)
        picks = [wrong[i] for i in rng.choice(len(wrong), size=3, replace=False)]
        choices = [f" {x}" for x in rng.permutation([r, *picks])]
        rows.append(
            {
                "prompt": f"{a} {op} {b} =",
                "completion": f" {r}",
                "choices": choices,
                "target": choices.index(f" {r}"),
            }
        )
    return rows[:n_train], rows[n_train:]


def topic_labels(spec: CorpusSpec, n_labels: int = 8) -> dict[str, int]:
    """Label word -> corpus topic (drawn from the pre-training topics, fixed per corpus seed)."""
    usable = spec.n_topics - spec.heldout_topics
    if not 2 <= n_labels <= min(len(LABEL_WORDS), usable):
        raise ValueError(f"n_labels must be in [2, {min(len(LABEL_WORDS), usable)}]")
    rng = np.random.default_rng([spec.seed, 10 + TASK_KINDS.index("topic_classification")])
    topics = rng.choice(usable, size=n_labels, replace=False)
    return {w: int(t) for w, t in zip(LABEL_WORDS[:n_labels], topics, strict=True)}


def _topic_classification(
    spec, n_train, n_test, seed, *, n_labels: int = 8, sentences: tuple[int, int] = (2, 3)
):
    """Prompt = 2-3 sentences of a fresh single-topic document + "\\nTopic:", completion = label.
    Labels are balanced within each split."""
    labels = topic_labels(spec, n_labels)
    words = list(labels)
    choices = [" " + w for w in words]
    order = {}
    for part, n in ((_TRAIN, n_train), (_TEST, n_test)):
        rng = np.random.default_rng(
            [spec.seed, 10 + TASK_KINDS.index("topic_classification"), seed, part]
        )
        order[part] = rng.permutation(np.arange(n) % n_labels)

    def make_row(part, index, position):
        rng = _row_rng(spec, "topic_classification", seed, part, index)
        target = int(order[part][position])
        sents = generate_sentences(spec, rng, topics=(labels[words[target]],))
        k = int(rng.integers(sentences[0], sentences[1] + 1))
        return {
            "prompt": " ".join(sents[:k]) + "\nTopic:",
            "completion": choices[target],
            "choices": list(choices),
            "target": target,
        }

    return _unique_rows(make_row, n_train, n_test)


_BUILDERS = {
    "corpus_language": _corpus_language,
    "arithmetic": _arithmetic,
    "topic_classification": _topic_classification,
}


def make_task(
    kind: str, spec: CorpusSpec, n_train: int, n_test: int, seed: int, **options
) -> tuple[list[dict], list[dict]]:
    """Build (train_rows, test_rows) for ``kind``; ``options`` are kind-specific keywords
    (arithmetic: operand_range, ops; topic_classification: n_labels, sentences;
    corpus_language: max_prompt_chars, max_completion_chars)."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown task kind {kind!r}; valid kinds: {', '.join(TASK_KINDS)}")
    if int(n_train) != n_train or int(n_test) != n_test or n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be non-negative ints, got {n_train}, {n_test}")
    return _BUILDERS[kind](spec, int(n_train), int(n_test), int(seed), **options)


def write_task(
    out_dir, kind: str, spec: CorpusSpec, n_train: int, n_test: int, seed: int, **options
) -> dict:
    """Write ``train.jsonl`` and ``test.jsonl`` into ``out_dir``; return metadata."""
    train, test = make_task(kind, spec, n_train, n_test, seed, **options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sha = {
        name: jsonio.write_jsonl(out / name, rows)
        for name, rows in (("train.jsonl", train), ("test.jsonl", test))
    }
    return {
        "kind": kind,
        "n_train": len(train),
        "n_test": len(test),
        "seed": int(seed),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "corpus_fingerprint": corpus_fingerprint(spec),
        "sha256": sha,
    }

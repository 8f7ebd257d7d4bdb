"""Fine-tuning tasks read from datasets (Hugging Face Hub or local files) as prompt/completion.

A task definition (schema `$defs/dataset_definition`; shipped ones in dataset_tasks.yaml) says
how to call `datasets.load_dataset` and how to render one row:

* ``template``: Jinja templates over the row's columns (GSM8k, SIQA, TREC, RTE, MR, code);
* ``chat``: a list of {role, content} messages rendered with one of CHAT_TEMPLATES, the last
  assistant turn being the completion (TULU); raw pre-training checkpoints have no chat
  template of their own, so the config names one;
* ``transcript``: "\\n\\nHuman: ...\\n\\nAssistant: ..." text, split before the last assistant turn
  (Anthropic-HH's *chosen* responses).

Rendering is ours, not TRL's, so the fine-tuning and the in-distribution evaluation read the
same strings from the task's JSONL files.  `prefetch` runs with network access (a local rule);
`build` runs in compute jobs with the Hub switched off and reads only the shared cache.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
from pathlib import Path

import jinja2
import jinja2.sandbox
import numpy as np
import yaml

from overtrained.core import provenance
from overtrained.core.errors import FixableError

LIBRARY_PATH = Path(__file__).resolve().parent / "dataset_tasks.yaml"
BUILDERS = ("json", "csv", "parquet", "text", "arrow")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SHA = re.compile(r"^[0-9a-f]{40}$")

# Turn formats of instruction-tuning corpora, as Jinja over `messages`. The completion is the
# last assistant turn; TRL appends the tokenizer's EOS token to it.
CHAT_TEMPLATES = {
    # Open-Instruct's TULU format (Ivison et al. 2023).
    "tulu": (
        "{% for m in messages %}"
        "{% if m.role == 'system' %}<|system|>\n{{ m.content }}\n"
        "{% elif m.role == 'user' %}<|user|>\n{{ m.content }}\n"
        "{% else %}<|assistant|>\n{{ m.content }}\n{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
    # Anthropic-HH's transcript format.
    "hh": (
        "{% for m in messages %}"
        "{% if m.role == 'assistant' %}\n\nAssistant: {{ m.content }}"
        "{% else %}\n\nHuman: {{ m.content }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}\n\nAssistant:{% endif %}"
    ),
    "plain": (
        "{% for m in messages %}"
        "{% if m.role == 'assistant' %}Assistant: {{ m.content }}\n"
        "{% elif m.role == 'system' %}{{ m.content }}\n"
        "{% else %}User: {{ m.content }}\n{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    ),
}
_ASSISTANT_MARK = "\n\nAssistant:"


class DatasetTaskError(FixableError, ValueError):
    """A dataset task that cannot be loaded or rendered, with what to fix."""


@functools.cache
def library() -> dict[str, dict]:
    with open(LIBRARY_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve(dataset: str | dict, where: str = "dataset") -> dict:
    """The full definition of a task's `dataset` entry: a shipped name or a written-out dict,
    with the schema's defaults filled in."""
    from overtrained.core.schema import fill_definition_defaults

    if isinstance(dataset, str):
        shipped = library()
        if dataset not in shipped:
            close = difflib.get_close_matches(dataset, list(shipped), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise DatasetTaskError(
                f"no shipped dataset definition named {dataset!r}{hint}; shipped: "
                f"{', '.join(sorted(shipped))}. Or write the definition out (path, format, ...)"
            )
        dataset = shipped[dataset]
    return fill_definition_defaults(copy.deepcopy(dataset), where)


def is_hub(defn: dict) -> bool:
    """A Hub dataset id (owner/name) that is not a local directory."""
    path = defn["path"]
    return path not in BUILDERS and not Path(path).exists() and bool(_HUB_ID.match(path))


def data_file_list(defn: dict) -> list[str]:
    """`data_files` (a path, a list, or split -> path(s)) as one flat list."""
    files = defn.get("data_files")
    if isinstance(files, str):
        return [files]
    if isinstance(files, dict):
        return [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
    return list(files or [])


def local_files(defn: dict) -> list[str]:
    """The local files a definition reads (data_files, or everything under a local path)."""
    if is_hub(defn):
        return []  # data_files of a Hub dataset are paths inside its repository
    out = data_file_list(defn)
    if not out and Path(defn["path"]).is_dir():
        out = sorted(str(p) for p in Path(defn["path"]).rglob("*") if p.is_file())
    return out


def check(defn: dict, where: str) -> None:
    """Problems visible without reading data: raised before any job runs."""
    if is_hub(defn) and not _SHA.match(defn.get("revision") or ""):
        raise DatasetTaskError(
            f"{where}.revision: Hub dataset {defn['path']!r} needs a pinned revision, the 40-hex "
            f"commit sha (got {defn.get('revision')!r}), so reruns read the same rows; the "
            "dataset page's 'Files and versions' history lists them"
        )
    if defn["path"] in BUILDERS and not defn.get("data_files"):
        raise DatasetTaskError(f"{where}.data_files: the {defn['path']!r} builder needs data_files")
    if not is_hub(defn) and defn["path"] not in BUILDERS and not Path(defn["path"]).exists():
        raise DatasetTaskError(
            f"{where}.path: {defn['path']!r} is neither a local directory, a builder "
            f"({', '.join(BUILDERS)}), nor a Hub id (owner/name)"
        )
    for file in local_files(defn):
        if not Path(file).exists():
            raise DatasetTaskError(f"{where}.data_files: {file!r} does not exist")
    fmt = defn["format"]
    if fmt == "template" and not defn["completion"]:
        raise DatasetTaskError(f"{where}.completion: format 'template' needs a completion template")
    templates = {"prompt": defn["prompt"], "completion": defn["completion"]}
    templates |= {f"choices[{i}]": c for i, c in enumerate(defn.get("choices") or [])}
    for key, text in templates.items():
        try:
            _environment().parse(text)
        except jinja2.TemplateSyntaxError as err:
            raise DatasetTaskError(f"{where}.{key}: not a valid Jinja template: {err}") from None
    if defn.get("answer_pattern"):
        try:
            groups = re.compile(defn["answer_pattern"]).groups
        except re.error as err:
            message = f"{where}.answer_pattern: not a regular expression: {err}"
            raise DatasetTaskError(message) from None
        if groups < 1:
            raise DatasetTaskError(f"{where}.answer_pattern: needs a group, as in '#### (.+)'")
    if defn.get("choices") and defn.get("answer_pattern"):
        raise DatasetTaskError(f"{where}: give choices or answer_pattern, not both")


# Local files up to this size are read at plan time to count their rows (a quick scan).
PLAN_READ_BYTES = 256 * 2**20


def _split_files(defn: dict, split: str, where: str) -> list[str]:
    """The local files `load_dataset` reads for one split (data_files as a path or a list
    are all 'train'; a mapping names its splits)."""
    files = defn["data_files"]
    if not isinstance(files, dict):
        return data_file_list(defn) if split == "train" else []
    if split not in files:
        key = "train_split" if split == defn["train_split"] else "test_split"
        raise DatasetTaskError(
            f"{where}.{key}: split {split!r} is not in data_files (it names "
            f"{', '.join(map(repr, files))}); name one of those or add the split's files"
        )
    chosen = files[split]
    return [chosen] if isinstance(chosen, str) else list(chosen)


def _read_local_rows(files: list[str], builder: str) -> tuple[int, dict | None] | None:
    """(row count, first row) of local json/jsonl/csv/parquet files, without `datasets` and
    without parsing every row (this runs at every plan): JSON lines are counted, Parquet's
    count is in its metadata. None where that would be guesswork (other builders, large or
    unusual files)."""
    import csv
    import json

    if sum(Path(f).stat().st_size for f in files) > PLAN_READ_BYTES:
        return None
    count, first = 0, None
    for file in files:
        if builder == "parquet" or file.endswith(".parquet"):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(file)
            rows = parquet.metadata.num_rows
            if first is None and rows:
                first = next(parquet.iter_batches(batch_size=1)).to_pylist()[0]
        elif builder == "csv" or file.endswith(".csv"):
            with open(file, encoding="utf-8", newline="") as f:
                records = csv.DictReader(f)  # (quoted fields may span lines: read them all)
                head = next(records, None)
                rows = (head is not None) + sum(1 for _ in records)
            first = first if first is not None else head
        elif builder == "json" and file.endswith(".jsonl"):
            with open(file, encoding="utf-8") as f:
                lines = (line for line in f if line.strip())
                head = next(lines, None)
                rows = (head is not None) + sum(1 for _ in lines)
            if first is None and head is not None:
                first = json.loads(head)  # not JSON: an error the job would meet too
        elif builder == "json" and file.endswith(".json"):
            text = Path(file).read_text(encoding="utf-8")
            if not text.lstrip().startswith("["):
                return None  # one object with a `field` of rows, say: the job reads it
            records = json.loads(text)
            rows, first = len(records), first if first is not None else next(iter(records), None)
        else:
            return None
        count += rows
    return count, first


def check_local_rows(defn: dict, n_train: int | None, n_test: int, where: str) -> None:
    """What a job would find in a local dataset, found before any job runs: files with no
    rows, a first row the templates cannot render, fewer rows than n_train and n_test ask
    for. Hub datasets (not downloaded at plan time) are checked by their jobs."""
    if is_hub(defn) or not defn.get("data_files"):
        return
    builder = defn["path"]
    splits = {"train": defn["train_split"], "test": defn["test_split"]}
    sizes = {}
    for role, split in splits.items():
        if split is None:
            continue
        plain = split.split("[", 1)[0]  # 'train[:50%]' reads the files of 'train'
        files = _split_files(defn, plain, where)
        try:
            read = _read_local_rows(files, builder)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise DatasetTaskError(
                f"{where}.data_files: cannot read the {split!r} rows of "
                f"{', '.join(files)}: {type(err).__name__}: {err}"
            ) from None
        if read is None:
            continue
        rows, first = read
        if rows == 0:
            raise DatasetTaskError(
                f"{where}.data_files: {', '.join(files)} holds no rows for split {split!r}; "
                "point data_files at the data"
            )
        try:
            render_row(defn, first)
        except DatasetTaskError as err:
            raise DatasetTaskError(f"{where}: the first {split!r} row: {err}") from None
        if "[" not in split:
            sizes[role] = rows
    task = where.rsplit(".", 1)[0]  # finetune.tasks.NAME
    if "train" in sizes and defn["test_split"] is None:
        if sizes["train"] <= n_test:
            raise DatasetTaskError(
                f"{task}.n_test: {sizes['train']} training rows cannot spare {n_test} for a "
                "held-out split; lower n_test or name a test_split"
            )
        if n_train is not None and sizes["train"] - n_test < n_train:
            raise DatasetTaskError(
                f"{task}.n_train: {n_train} asked for, but {sizes['train']} rows minus the "
                f"{n_test} held out leave {sizes['train'] - n_test}; lower n_train (null = all)"
            )
    if "test" in sizes and sizes["test"] < n_test:
        raise DatasetTaskError(
            f"{task}.n_test: {n_test} asked for, but split {defn['test_split']!r} has "
            f"{sizes['test']} rows; lower n_test"
        )
    if "train" in sizes and defn["test_split"] and n_train and sizes["train"] < n_train:
        raise DatasetTaskError(
            f"{task}.n_train: {n_train} asked for, but split {defn['train_split']!r} has "
            f"{sizes['train']} rows; lower n_train (null = all)"
        )


@functools.cache
def _environment() -> jinja2.sandbox.SandboxedEnvironment:
    # StrictUndefined: a misspelt column is an error naming it, not an empty string.
    return jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )


@functools.cache
def _template(text: str) -> jinja2.Template:
    return _environment().from_string(text)


def render_chat(messages: list[dict], template: str) -> dict:
    """prompt = every turn before the last assistant turn + the assistant header;
    completion = the last assistant turn's text."""
    if not messages or messages[-1].get("role") != "assistant":
        # Conversations that end on a user turn: train on the last assistant reply.
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
        if last < 0:
            raise DatasetTaskError("a conversation has no assistant turn")
        messages = messages[: last + 1]
    chat = _template(CHAT_TEMPLATES[template])
    prompt = chat.render(messages=messages[:-1], add_generation_prompt=True)
    full = chat.render(messages=messages, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise DatasetTaskError(f"chat template {template!r} does not extend its prompt")
    return {"prompt": prompt, "completion": full[len(prompt) :].rstrip("\n")}


def render_transcript(text: str) -> dict:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> prompt '...Assistant:', completion ' b'."""
    cut = text.rfind(_ASSISTANT_MARK)
    if cut < 0:
        raise DatasetTaskError(f"a transcript has no {_ASSISTANT_MARK.strip()!r} turn")
    cut += len(_ASSISTANT_MARK)
    return {"prompt": text[:cut], "completion": text[cut:]}


def _render(defn: dict, row: dict) -> dict:
    fmt = defn["format"]
    if fmt == "template":
        rendered = {
            "prompt": _template(defn["prompt"]).render(**row),
            "completion": _template(defn["completion"]).render(**row),
        }
    elif defn["column"] not in row:
        raise jinja2.UndefinedError(f"'{defn['column']}' is undefined")
    elif fmt == "chat":
        rendered = render_chat(list(row[defn["column"]]), defn["chat_template"])
    else:
        rendered = render_transcript(row[defn["column"]])
    if defn.get("choices"):
        choices = [_template(choice).render(**row) for choice in defn["choices"]]
        if rendered["completion"] not in choices:
            raise DatasetTaskError(
                f"dataset {defn['path']!r}: completion {rendered['completion']!r} is not one of "
                f"the rendered choices {choices}; fix the definition's choices"
            )
        rendered |= {"choices": choices, "target": choices.index(rendered["completion"])}
    if defn.get("answer_pattern"):
        rendered["answer"] = extract_answer(defn["answer_pattern"], rendered["completion"])
        if rendered["answer"] is None:
            raise DatasetTaskError(
                f"dataset {defn['path']!r}: answer_pattern {defn['answer_pattern']!r} finds no "
                f"answer in the completion {rendered['completion'][-200:]!r}"
            )
    return rendered


def extract_answer(pattern: str, text: str) -> str | None:
    """The first group of the first match of `pattern` in `text` (None if it does not match).
    The same function scores references and generations, so both are read alike."""
    match = re.search(pattern, text)
    return match.group(1).strip() if match else None


def render_row(defn: dict, row: dict) -> dict:
    """One dataset row as {"prompt", "completion"} (+ "choices" and "target" for a task with
    a fixed answer set, + "answer" for one with an answer_pattern); a missing column raises
    naming the columns there are."""
    try:
        return _render(defn, row)
    except jinja2.UndefinedError as err:
        raise DatasetTaskError(
            f"dataset {defn['path']!r}: {err} in a row; its columns are: {', '.join(row)}. "
            "Fix the definition's templates or column"
        ) from None


def _hub_patterns(defn: dict) -> list[str] | None:
    """The repository files a definition reads (None = all of them)."""
    patterns = data_file_list(defn)
    if not patterns and defn.get("data_dir"):
        patterns = [f"{defn['data_dir']}/*"]
    elif not patterns:
        return None
    return [*patterns, "README.md"]  # the card's YAML declares the configs


def snapshot(defn: dict, offline: bool, cache_dir: str | None = None) -> str:
    """The local folder of the pinned commit of a Hub dataset, downloaded unless `offline`.

    Hub datasets are read from this snapshot, not through load_dataset's Hub path: offline,
    that path falls back to "the latest cached version", whatever its revision, and cannot
    find data_files-selected shards at all (huggingface/datasets#6837)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return snapshot_download(
            defn["path"],
            repo_type="dataset",
            revision=defn["revision"],
            allow_patterns=_hub_patterns(defn),
            local_files_only=offline,
            cache_dir=str(Path(cache_dir) / "hub") if cache_dir else None,
        )
    except RevisionNotFoundError:
        raise DatasetTaskError(
            f"dataset {defn['path']!r} has no revision {defn['revision']!r}; pin a commit from "
            "its 'Files and versions' history"
        ) from None
    except RepositoryNotFoundError:
        raise DatasetTaskError(
            f"no dataset {defn['path']!r} on the Hub (check the owner/name spelling, and "
            "HF_TOKEN for a gated or private one)"
        ) from None


def _go_offline() -> None:
    """No network from here on. The variables suffice in a fresh job process; the module
    constants cover a process that imported datasets before (notebooks)."""
    os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets.config
    import huggingface_hub.constants

    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def load_split(defn: dict, split: str, offline: bool, cache_dir: str | None = None):
    """One split: Hub datasets from the snapshot of their pinned commit (a cache miss
    offline is an error naming the dataset), local data through `datasets.load_dataset`."""
    if offline:
        _go_offline()
    import datasets

    path = defn["path"]
    if is_hub(defn):
        try:
            path = snapshot(defn, offline, cache_dir)
        except Exception as err:  # huggingface_hub raises several types for a cache miss
            if not offline:
                raise
            raise DatasetTaskError(
                f"dataset {defn['path']!r} at revision {defn['revision']!r} is not in the "
                "Hugging Face cache; run `snakemake prefetch` on a machine with internet "
                f"access and the same HF_HOME. ({type(err).__name__}: {err})"
            ) from err
    kwargs = {key: defn[key] for key in ("name", "data_dir", "data_files") if defn.get(key)}
    return datasets.load_dataset(path, **kwargs, split=split, cache_dir=cache_dir)


def prefetch(defn: dict, cache_dir: str | None = None) -> dict:
    """Download the pinned commit's files into the shared cache (and check every split a task
    reads loads from them); return what was fetched."""
    splits = [defn["train_split"], *([defn["test_split"]] if defn["test_split"] else [])]
    sizes = {split: len(load_split(defn, split, False, cache_dir)) for split in splits}
    return {
        "path": defn["path"],
        "name": defn["name"],
        "revision": defn["revision"],
        "rows": sizes,
        "local_files_sha256": {f: provenance.sha256_file(f) for f in local_files(defn)},
    }


def _subsample(n_rows: int, n: int | None, rng: np.random.Generator) -> list[int]:
    order = rng.permutation(n_rows)
    return sorted(int(i) for i in (order if n is None else order[:n]))


def build(
    defn: dict,
    n_train: int | None,
    n_test: int,
    seed: int,
    offline: bool = True,
    cache_dir: str | None = None,
):
    """Train/test prompt/completion rows: a seeded subset of each split (test rows are taken
    from the training split, disjoint from the rows trained on, when there is no test split)."""
    rng = np.random.default_rng(seed)
    train = load_split(defn, defn["train_split"], offline, cache_dir)
    if defn["test_split"]:
        test = load_split(defn, defn["test_split"], offline, cache_dir)
        train_idx = _subsample(len(train), n_train, rng)
        test_idx = _subsample(len(test), n_test, rng)
    else:
        order = [int(i) for i in rng.permutation(len(train))]
        if len(order) <= n_test:
            raise DatasetTaskError(
                f"dataset {defn['path']!r}: {len(order)} training rows cannot spare {n_test} "
                "for a held-out split; lower n_test or name a test_split"
            )
        test, test_idx = train, sorted(order[:n_test])
        rest = order[n_test:]
        train_idx = sorted(rest if n_train is None else rest[:n_train])
    for name, rows, wanted in (("train", train_idx, n_train), ("test", test_idx, n_test)):
        if wanted is not None and len(rows) < wanted:
            raise DatasetTaskError(
                f"dataset {defn['path']!r}: the {name} split has {len(rows)} usable rows, "
                f"fewer than the {wanted} asked for (n_{name}); lower it"
            )
    rendered = {
        "train": [render_row(defn, train[i]) for i in train_idx],
        "test": [render_row(defn, test[i]) for i in test_idx],
    }
    meta = {
        "fingerprints": {"train": train._fingerprint, "test": test._fingerprint},
        "source_rows": {"train": len(train), "test": len(test)},
    }
    return rendered["train"], rendered["test"], meta

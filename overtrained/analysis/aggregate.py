"""Aggregation of every measured number into one long table, `metrics.parquet`.

One row per number, with the identity of what was measured (family, checkpoint, model,
task, lr, seed, noise scale, suite, metric) and the provenance of the job that measured
it (checkpoint sha, hash of the job's params, code version, library versions, device).
The Arrow schema is declared here, never inferred.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from overtrained.core import jsonio, provenance

# The metric of the row standing for an evaluation that produced no metrics (its status
# says why: a diverged model's losses overflow lm-eval's perplexities).
NOT_EVALUATED = "not_evaluated"
# The status of rows measured on other weights than their producer recorded (a swapped or
# edited checkpoint): kept as rows, with NaN values, so the table says what is missing.
SHA_MISMATCH = "sha_mismatch"
EDITED = "edited"  # a record changed after the job wrote it (provenance.RECORD_SHA)
UNTRUSTED = (SHA_MISMATCH, EDITED)
SCHEMA = pa.schema(
    [
        ("family", pa.string()),
        ("checkpoint", pa.string()),
        ("budget", pa.string()),
        ("tokens", pa.int64()),
        ("pretrain_seed", pa.int64()),
        ("model", pa.string()),  # base | finetuned | perturbed | corpus
        ("ft_task", pa.string()),
        ("lr", pa.float64()),
        ("ft_seed", pa.int64()),
        ("scaling", pa.string()),
        ("gamma", pa.float64()),
        ("noise_seed", pa.int64()),
        ("suite", pa.string()),
        ("eval_task", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("stderr", pa.float64()),
        ("n", pa.int64()),
        ("status", pa.string()),
        ("source", pa.string()),
        ("checkpoint_sha", pa.string()),
        ("repo", pa.string()),  # hub checkpoints: the repository and branch the sha came from
        ("revision", pa.string()),
        ("params_hash", pa.string()),
        ("stage_code_hash", pa.string()),
        ("code_version", pa.string()),
        ("versions", pa.string()),
        ("device", pa.string()),
        ("wall_seconds", pa.float64()),
        ("producer", pa.string()),
    ]
)
_PATH = re.compile(
    r"(?P<family>[^/]+)/(?P<ckpt>[^/]+)/(?P<model>base|ft/(?P<task>[^/]+)/lr(?P<lr>[^/]+)/"
    r"seed(?P<seed>\d+))/(?:eval/(?P<suite>[^/]+)\.json|train\.json)$"
)


def _job_columns(record: dict, producer: str) -> dict:
    return {
        "params_hash": provenance.sha256_json(record.get("params", {}))[:16],
        "stage_code_hash": record.get("stage_code_hash", ""),
        "code_version": record.get("code_version", ""),
        "versions": json.dumps(record.get("versions", {}), sort_keys=True),
        "device": _device(record),
        "wall_seconds": record.get("wall_seconds"),
        "producer": producer,
    }


def _device(record: dict) -> str:
    """'cpu (model; kernels AVX2, pinned)' on the CPU: which kernels ran decides the digits."""
    device, cpu = record.get("device", ""), record.get("cpu")
    if device != "cpu" or not cpu:
        return device
    kernels = cpu.get("torch_capability", "?") + (", pinned" if cpu.get("pins") else "")
    return f"cpu ({cpu.get('model', '?')}; kernels {kernels})"


def _base_sha(columns: dict, checkpoints: dict) -> str | None:
    return provenance.weights_sha(checkpoints[(columns["family"], columns["checkpoint"])][1])


def _checkpoint_columns(family: str, ckpt_name: str, checkpoints: dict) -> dict:
    ckpt = checkpoints[(family, ckpt_name)][1]
    return {
        "family": family,
        "checkpoint": ckpt_name,
        "budget": ckpt["budget"],
        "tokens": ckpt["tokens"],
        "pretrain_seed": ckpt["seed"],
        "model": "base",
        "source": ckpt.get("family_source", "pretrain"),
        "checkpoint_sha": ckpt["sha"],
        "repo": ckpt.get("repo"),
        "revision": ckpt.get("revision"),
    }


def _identity(path: str, checkpoints: dict) -> dict:
    """Who a train.json or eval/{suite}.json describes, read from its path."""
    match = _PATH.search(path)
    if not match:
        raise ValueError(f"cannot tell which model {path} belongs to")
    columns = _checkpoint_columns(match["family"], match["ckpt"], checkpoints)
    columns["suite"] = match["suite"]
    if match["task"] is not None:
        columns.update(
            model="finetuned",
            ft_task=match["task"],
            lr=float(match["lr"]),
            ft_seed=int(match["seed"]),
        )
    return columns


def _checkpoint_index(paths: list[str]) -> dict:
    """(family, checkpoint) -> (provenance path, record), each file read once."""
    index = {}
    for path in paths:
        parts = Path(path).parts
        index[(parts[-4], parts[-3])] = (path, jsonio.read_json(path))
    return index


def collect(
    evaluations: list[str],
    trainings: list[str],
    sensitivity: list[str],
    checkpoints: list[str],
    corpora: list[str] = (),
) -> list[dict]:
    """Rows of metrics.parquet from the workflow's JSON outputs."""
    index = _checkpoint_index(checkpoints)
    rows: list[dict] = []
    problems: list[str] = []

    def add(base: dict, **values):
        row = {name: None for name in SCHEMA.names}
        row.update(base)
        row.update(values)
        if row["status"] in UNTRUSTED:
            row["value"] = math.nan
        rows.append(row)

    def checked(record: dict, path: str, expected_sha: str | None = None) -> dict:
        """The record, or the record with status `edited` (changed after its job wrote it)
        or `sha_mismatch` (it measured other weights than their producer recorded): such
        rows stay in the table, with NaN values, so it says what is missing and why."""
        if provenance.edited(record):
            problems.append(f"{path}: {EDITED}, the file no longer matches its record_sha256")
            return {**record, "status": EDITED}
        got = record.get("model_sha")
        if got and expected_sha and got != expected_sha:
            problems.append(f"{path}: {SHA_MISMATCH}, weights {got[:16]} != {expected_sha[:16]}")
            return {**record, "status": SHA_MISMATCH}
        return record

    for (family, ckpt_name), (path, record) in index.items():
        record = checked(record, path)
        base = {
            **_checkpoint_columns(family, ckpt_name, index),
            **_job_columns(record, path),
            "suite": "pretrain",
            "status": record.get("status") if record.get("status") in UNTRUSTED else "ok",
        }
        for metric in ("final_train_loss", "tokens_per_second"):
            if record.get(metric) is not None:
                add(base, metric=metric, value=record[metric], n=record.get("tokens"))
    trained_sha = {}  # a fine-tuned model's folder -> the sha its fine-tuning recorded
    for path in trainings:
        record = checked(jsonio.read_json(path), path)
        trained_sha[str(Path(path).parent)] = provenance.weights_sha(record)
        base = {**_identity(path, index), **_job_columns(record, path), "suite": "train"}
        for metric in (
            "final_train_loss",
            "tokens_per_second",
            "tokens_seen",
            "train_seconds",
            "peak_gpu_memory_mib",
        ):
            if record.get(metric) is not None:
                add(base, metric=metric, value=record[metric], status=record.get("status"))
    for path in evaluations:
        identity = _identity(path, index)
        model_dir = str(Path(path).parents[1])
        expected = (
            trained_sha.get(model_dir)
            if identity.get("model") == "finetuned"
            else _base_sha(identity, index)
        )
        record = checked(jsonio.read_json(path), path, expected)
        base = {**identity, **_job_columns(record, path)}
        if not record["metrics"] and record.get("status", "ok") != "ok":
            # A model that could not be evaluated (diverged): one row that says so.
            add(base, metric=NOT_EVALUATED, value=math.nan, status=record["status"])
        for metric in record["metrics"]:
            add(
                base,
                eval_task=metric.get("task") or None,
                metric=metric["metric"],
                value=metric["value"],
                stderr=metric.get("stderr"),
                n=metric.get("n"),
                status=record.get("status", "ok"),
            )
    for path in sensitivity:
        parts = Path(path).parts
        columns = _checkpoint_columns(parts[-3], parts[-2], index)
        record = checked(jsonio.read_json(path), path, _base_sha(columns, index))
        base = {
            **columns,
            **_job_columns(record, path),
            "model": "perturbed",
            "suite": "sensitivity",
            "status": record.get("status", "ok"),
        }
        for p in record["perturbations"]:
            for metric in ("perturbed_loss", "loss_increase"):
                add(
                    base,
                    scaling=p["scaling"],
                    gamma=p["gamma"],
                    noise_seed=p["seed"],
                    metric=metric,
                    value=p[metric],
                    n=p["n"],
                )
    for path in corpora:
        record = jsonio.read_json(path)
        if "heldout_unigram_entropy" not in record:
            continue
        add(
            {**_job_columns(record, path), "family": Path(path).parts[-3], "model": "corpus"},
            suite="corpus",
            metric="heldout_unigram_entropy",
            value=record["heldout_unigram_entropy"],
            n=record["heldout"]["n_tokens"],
            status="ok",
        )
    for line in problems:
        print(f"left out of the table (status, NaN values): {line}", flush=True)
    return rows


def write_parquet(rows: list[dict], out_path: str | Path, metadata: dict) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    existing = table.schema.metadata or {}
    meta = {**existing, **{k.encode(): json.dumps(v).encode() for k, v in metadata.items()}}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(out_path) + ".tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    tmp.replace(out_path)

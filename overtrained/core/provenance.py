"""What produced an artifact: code version, library versions, host, timing, hashes.

Everything here is cheap (no torch import) and never records environment
variables, so tokens and secrets cannot leak into provenance files.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from overtrained.core import jsonio
from overtrained.execution import cpu_kernels

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "overtrained",
    "torch",
    "transformers",
    "tokenizers",
    "trl",
    "lm_eval",
    "datasets",
    "snakemake",
    "numpy",
    "pandas",
    "pyarrow",
)
# Hugging Face tokens and generic bearer secrets, scrubbed from any string we record.
_SECRET = re.compile(r"(hf_[A-Za-z0-9]{8,}|(?i:token|secret|password)=[^\s&]+)")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def code_version() -> str:
    """The workflow's git commit, with '-dirty' when tracked files differ from it."""
    try:
        run = functools.partial(
            subprocess.run, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        if not commit:
            return "unknown"
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def seconds_since_process_start() -> float:
    """Wall time since this process was exec'd (Linux /proc; NaN elsewhere)."""
    import time

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return time.time() - (boot + int(fields[19]) / ticks)
    except (OSError, ValueError, IndexError, StopIteration):
        return float("nan")


def scrub(text: str) -> str:
    return _SECRET.sub("<redacted>", text)


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def device_description() -> str:
    """'cpu' or the CUDA device name; imports torch only if it is already loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu"


# What a Slurm job was given, as the job's environment says (recorded in every provenance).
SLURM_ALLOCATION = {
    "job_id": "SLURM_JOB_ID",
    "partition": "SLURM_JOB_PARTITION",
    "nodes": "SLURM_JOB_NODELIST",
    "cpus_on_node": "SLURM_CPUS_ON_NODE",
    "mem_per_node_mb": "SLURM_MEM_PER_NODE",
    "gpus_on_node": "SLURM_GPUS_ON_NODE",
    "restart_count": "SLURM_RESTART_COUNT",
}


def allocation() -> dict:
    """Where this job ran and what it got: the Slurm allocation (if any), the GPUs it may
    see (CUDA_VISIBLE_DEVICES) and those CUDA reports (only if torch is already loaded)."""
    import sys

    out = {key: os.environ[var] for key, var in SLURM_ALLOCATION.items() if var in os.environ}
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        out["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    torch = sys.modules.get("torch")
    if torch is not None:
        out["cuda_available"] = torch.cuda.is_available()
        if out["cuda_available"]:
            out["cuda_devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
            out["cuda_version"] = torch.version.cuda
    return out


def record(stage: str, params: dict, started: str, wall_seconds: float, **extra) -> dict:
    """The provenance block written next to every artifact."""
    return {
        "stage": stage,
        "params": params,
        "code_version": code_version(),
        "stage_code_hash": params.get("code", ""),
        "versions": package_versions(),
        "host": scrub(socket.gethostname()),
        "device": device_description(),
        "cpu": cpu_kernels.describe(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "allocation": allocation(),
        "started": started,
        "finished": now(),
        "wall_seconds": round(wall_seconds, 3),
        **extra,
    }


def _scrubbed(obj: Any) -> Any:
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {key: _scrubbed(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_scrubbed(value) for value in obj]
    return obj


RECORD_SHA = "record_sha256"  # a record's hash of itself: a hand edit shows


def write_json(path: str | Path, obj: Any) -> Any:
    """Write a record atomically (a killed job leaves no half file), with secrets scrubbed
    and, for a mapping, its own hash (RECORD_SHA) so that an edit after the job shows.
    Returns what was written."""
    obj = json.loads(json.dumps(_scrubbed(obj), default=str))  # as it will be read back
    if isinstance(obj, dict):
        obj.pop(RECORD_SHA, None)
        obj[RECORD_SHA] = sha256_json(obj)
    jsonio.write_json(path, obj)
    return obj


def weights_sha(record: dict) -> str | None:
    """The sha of the weights a producing job recorded: a fine-tuning run's `model_sha`, a
    pre-trained checkpoint's `sha`; None for a hub download (its files are checked by size
    when loaded, against the download's record)."""
    if record.get("model_sha"):
        return record["model_sha"]
    return record.get("sha") if record.get("family_source") == "pretrain" else None


def edited(record: Any) -> bool:
    """Whether a record read back no longer matches the hash it was written with (records
    written before RECORD_SHA existed, and non-mappings, cannot tell: False)."""
    if not isinstance(record, dict) or RECORD_SHA not in record:
        return False
    rest = {key: value for key, value in record.items() if key != RECORD_SHA}
    return sha256_json(rest) != record[RECORD_SHA]

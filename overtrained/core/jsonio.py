"""JSON and JSON Lines files: read, and written atomically (a killed job leaves the old file
or the new one, never half of one). Records with secrets go through provenance.write_json,
which scrubs them first."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any, indent: int = 1) -> None:
    """Sorted keys, so equal objects give equal files; what JSON cannot hold as str."""
    text = json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n"
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path: str | Path, rows: list[dict]) -> str:
    """One sorted-key JSON object per line; returns the file's sha256."""
    data = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    data = data.encode("utf-8")
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file (blank lines ignored)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

"""`overtrained verify RUN`: does every result file still hold what its job wrote?

Checks, without re-running anything:
- every JSON record against the hash it was written with (provenance.RECORD_SHA): a hand
  edit shows;
- every pre-trained checkpoint's and kept fine-tuned model's weights against the sha its
  producing job recorded: a truncated or swapped file shows;
- every evaluation, probe and perturbation record against the weights it was measured on:
  a record measured on other weights than its checkpoint's shows;
- every generated task file against the sha256 its task.json records.
"""

from __future__ import annotations

from pathlib import Path

from overtrained.core import jsonio, provenance
from overtrained.models.loading import LoadingError, weights_digest


def problems(run: str | Path) -> tuple[int, list[str]]:
    """(files checked, one line per problem: the file, what changed, how to remake it)."""
    results = Path(run) / "results"
    if not results.is_dir():
        raise FileNotFoundError(f"no {results}: name the run's working directory")
    found, checked = [], 0
    records = {}
    for path in sorted(results.rglob("*.json")):
        try:
            record = jsonio.read_json(path)
        except (ValueError, UnicodeDecodeError) as error:
            found.append(f"{path}: not readable JSON ({error}); delete it and run snakemake")
            continue
        checked += 1
        records[path] = record
        if provenance.edited(record):
            found.append(f"{path}: edited after its job wrote it; delete it and run snakemake")
    weights_sha = {}  # model folder -> the sha its producer recorded
    for path, record in records.items():
        if path.name == "provenance.json" and path.parent.name == "base":
            folder = path.parent
        elif path.name == "train.json":
            folder = path.parent / "model"
        else:
            continue
        expected = provenance.weights_sha(record)
        weights_sha[path.parent] = expected
        if not expected or not folder.is_dir():
            continue  # a hub checkpoint (checked when loaded), or temporary weights
        checked += 1
        try:
            digest = weights_digest(folder)
        except (OSError, LoadingError) as error:
            found.append(f"{folder}: unreadable weights ({error}); delete {path} and run snakemake")
            continue
        if digest != expected:
            found.append(
                f"{folder}: weights {digest[:16]}, but {path.name} records {expected[:16]}; "
                f"delete {path} and run snakemake"
            )
    for path, record in records.items():
        measured = record.get("model_sha") if isinstance(record, dict) else None
        if not measured or path.name == "train.json":
            continue
        # eval/{suite}.json sits in the model's folder; sensitivity.json next to base/
        sens = path.name == "sensitivity.json"
        model_folder = path.parent / "base" if sens else path.parents[1]
        expected = weights_sha.get(model_folder)
        if expected and measured != expected:
            found.append(
                f"{path}: measured weights {measured[:16]}, not its model's {expected[:16]}; "
                f"delete {path} and run snakemake"
            )
    for path, record in records.items():
        shas = record.get("sha256") if path.name == "task.json" else None
        for name, sha in (shas or {}).items():
            checked += 1
            data = path.parent / name
            if not data.is_file() or provenance.sha256_file(data) != sha:
                found.append(f"{data}: not what {path} records; delete {path} and run snakemake")
    return checked, found

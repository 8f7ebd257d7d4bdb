"""Tables from a run that did not finish: what every result that exists says, and which
results are missing and why.

Snakemake runs `aggregate` only once every result exists. When jobs fail (a full disk, a
damaged checkpoint, a bug), the Snakefile's `onerror` handler, or `overtrained partial`,
writes results/partial/: `metrics.parquet` and the analysis tables (`best_lr.parquet`,
`overtraining.parquet`) over the results that exist, and `missing.csv`, one row per expected
result that does not: the rule that makes it, its log, and why (the log's `error:` line,
or the missing input that kept the job from running). With `--keep-going`, every job that
can run has run by then.
"""

from __future__ import annotations

import re
from pathlib import Path

from overtrained import workflow

PARTIAL = f"{workflow.RESULTS}/partial"
_SEGMENT = r"[^/]+"
# Each expected result: the rule that writes it and that rule's log (as in rules/*.smk).
_PRODUCERS = (
    (
        rf"^results/(?P<family>{_SEGMENT})/(?P<ckpt>{_SEGMENT})/(?P<model>base|ft/.+?)"
        r"/eval/probes\.json$",
        "probes",
        "logs/probes/{family}/{ckpt}/{model}.log",
    ),
    (
        rf"^results/(?P<family>{_SEGMENT})/(?P<ckpt>{_SEGMENT})/(?P<model>base|ft/.+?)"
        rf"/eval/(?P<suite>{_SEGMENT})\.json$",
        "evaluate",
        "logs/evaluate/{family}/{ckpt}/{model}/{suite}.log",
    ),
    (
        rf"^results/(?P<family>{_SEGMENT})/(?P<ckpt>{_SEGMENT})/ft/(?P<task>{_SEGMENT})"
        rf"/lr(?P<lr>{_SEGMENT})/seed(?P<seed>\d+)/train\.json$",
        "finetune",
        "logs/finetune/{family}/{ckpt}/{task}-lr{lr}-seed{seed}.log",
    ),
    (
        rf"^results/(?P<family>{_SEGMENT})/(?P<ckpt>{_SEGMENT})/sensitivity\.json$",
        "sensitivity",
        "logs/sensitivity/{family}/{ckpt}.log",
    ),
    (
        rf"^results/(?P<family>{_SEGMENT})/(?P<ckpt>{_SEGMENT})/base/provenance\.json$",
        "pretrain",
        "logs/pretrain/{family}/{ckpt}.log",
    ),
    (
        rf"^results/(?P<family>{_SEGMENT})/corpus/corpus\.json$",
        "corpus",
        "logs/corpus/{family}.log",
    ),
)


def expected(cfg: dict) -> dict[str, list[str]]:
    """The results `aggregate` reads, by its input names."""
    return {
        "evaluations": workflow.evaluation_files(cfg),
        "trainings": workflow.train_files(cfg),
        "sensitivity": workflow.sensitivity_files(cfg),
        "checkpoints": workflow.base_provenance_files(cfg),
        "corpora": workflow.corpus_files(cfg),
    }


def producer(path: str) -> tuple[str, str | None]:
    """(rule, log) of an expected result; hub checkpoints come from `download`."""
    for pattern, rule, log in _PRODUCERS:
        match = re.match(pattern, path)
        if match:
            log = log.format(**match.groupdict())
            if rule == "pretrain" and not Path(log).exists():
                download = "logs/download/{family}/{ckpt}.log".format(**match.groupdict())
                if Path(download).exists():
                    return "download", download
            return rule, log
    return "?", None


def _upstream(path: str, missing: set[str]) -> str | None:
    """The missing input that kept the job of `path` from running, if we can name it."""
    model = re.match(r"^(results/[^/]+/[^/]+/(base|ft/[^/]+/[^/]+/[^/]+))/", path)
    if model:
        made_by = workflow.model_record(*model[1].removeprefix("results/").split("/", 2))
        if made_by in missing and made_by != path:
            return made_by
    checkpoint = re.match(r"^(results/[^/]+/[^/]+)/", path)
    if checkpoint:
        base = f"{checkpoint[1]}/base/provenance.json"
        if base in missing and base != path:
            return base
    return None


def why(path: str, missing: set[str]) -> tuple[str, str | None, str]:
    """(rule, log, reason) for a missing result."""
    rule, log = producer(path)
    if log and Path(log).is_file():
        lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines()]
        errors = [line for line in lines if "error:" in line.lower()]
        meaningful = [line for line in lines if line and not line.startswith("[job-server] {")]
        if errors or meaningful:
            return rule, log, (errors or meaningful)[-1][:500]
    upstream = _upstream(path, missing)
    if upstream:
        return rule, log, f"not run: its input {upstream} is missing"
    return rule, log, "not run (the run stopped before this job, or an input is missing)"


def write(cfg: dict, out_dir: str | Path = PARTIAL) -> dict:
    """Write the partial tables and missing.csv for the run in the working directory;
    return counts {present, missing, rows}."""
    import pandas as pd

    from overtrained.analysis import aggregate, analysis
    from overtrained.core import provenance

    files = expected(cfg)
    missing = sorted(f for group in files.values() for f in group if not Path(f).is_file())
    missing_set = set(missing)
    present = {key: [f for f in group if f not in missing_set] for key, group in files.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["result", "rule", "log", "reason"]
    table = [dict(zip(columns, (f, *why(f, missing_set)), strict=True)) for f in missing]
    pd.DataFrame(table, columns=columns).to_csv(out / "missing.csv", index=False)
    rows = aggregate.collect(**present)
    metadata = {
        "config_hash": workflow.config_hash(cfg),
        "code_version": provenance.code_version(),
        "versions": provenance.package_versions(),
        "created": provenance.now(),
        "partial": f"{len(missing)} expected results missing: see missing.csv",
    }
    aggregate.write_parquet(rows, out / "metrics.parquet", metadata=metadata)
    if rows:
        metrics = pd.read_parquet(out / "metrics.parquet")
        best = analysis.best_lr(metrics)
        verdicts = analysis.overtraining(metrics, best)
        analysis.write(best, out / "best_lr.parquet", analysis.BEST_LR_SCHEMA, metadata)
        analysis.write(
            verdicts, out / "overtraining.parquet", analysis.OVERTRAINING_SCHEMA, metadata
        )
    total = sum(len(group) for group in files.values())
    return {"present": total - len(missing), "missing": len(missing), "rows": len(rows)}


def on_error(cfg: dict) -> None:
    """The Snakefile's `onerror`: never raises (the run's own error is what matters)."""
    try:
        counts = write(cfg)
    except Exception as error:  # noqa: BLE001
        print(f"partial tables not written ({type(error).__name__}: {error})")
        return
    print(
        f"Partial tables in {PARTIAL}/: {counts['rows']} rows from {counts['present']} "
        f"results; {counts['missing']} missing, each with its reason in "
        f"{PARTIAL}/missing.csv (`overtrained partial` rewrites them)"
    )

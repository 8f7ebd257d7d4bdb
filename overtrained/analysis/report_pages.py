"""The Snakemake report's HTML pages: the verdicts, the tuned LRs, the run's provenance."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from overtrained.analysis.drawing import tick_label

_CSS = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; color: #111; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.degrades td { background: #fde2e1; }
tr.no-degradation td { background: #e3f5e1; }
tr.inconclusive td { background: #fdf6dc; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
p.rule { max-width: 60em; }
"""


def _cell(value) -> tuple[str, bool]:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "", False
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), False
    if isinstance(value, (int, np.integer)):
        return str(int(value)), True
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}", True
    return str(value), False


def html_table(df: pd.DataFrame, row_class: str | None = None) -> str:
    """`df` as an HTML table; `row_class`: a column whose value classes each row."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for record in df.to_dict("records"):
        cls = ""
        if row_class and isinstance(record.get(row_class), str):
            cls = f' class="{html.escape(record[row_class].replace(" ", "-"))}"'
        cells = []
        for value in record.values():
            text, numeric = _cell(value)
            cells.append(f"<td{' class=num' if numeric else ''}>{html.escape(text)}</td>")
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title><style>{_CSS}</style></head>\n<body><h1>"
        f"{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _table(table) -> pd.DataFrame:
    return table if isinstance(table, pd.DataFrame) else pd.read_parquet(table)


def _tokens_column(values: pd.Series) -> list[str]:
    return ["" if pd.isna(v) else f"{tick_label(float(v))} ({int(v):,})" for v in values]


def _rule_text(df: pd.DataFrame, column: str) -> str:
    rules = df[column].dropna().unique() if column in df else []
    return "".join(f'<p class="rule"><b>Rule:</b> {html.escape(str(r))}</p>' for r in rules)


# The verdict table's columns, first these (the rest after them, `rule` stated once above).
VERDICT_COLUMNS = (
    *("family", "ft_task", "metric", "eval_task", "lr_mode", "lr", "verdict", "best_tokens"),
    *("best_value", "last_tokens", "last_value", "change", "ci_low", "ci_high", "ci_method"),
    *("n_checkpoints", "reason"),
)


def overtraining_page(overtraining) -> str:
    over = _table(overtraining)
    first = [c for c in VERDICT_COLUMNS if c in over]
    shown = over[first + [c for c in over if c not in first and c != "rule"]].copy()
    for column in ("best_tokens", "last_tokens"):
        if column in shown:
            shown[column] = _tokens_column(shown[column])
    counts = over["verdict"].value_counts().to_dict() if "verdict" in over else {}
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())) or "no curves"
    body = (
        "<p>One row per fine-tuned curve along pre-training tokens (family x fine-tuning task x"
        " metric x evaluation task), at the LR tuned per checkpoint (lr_mode tuned) and at each"
        " fixed LR. <b>change</b>: the last checkpoint minus the best one, signed so that"
        " positive means the last is worse; <b>ci_low/ci_high</b>: its 95% confidence interval."
        f" Verdicts: {html.escape(summary)}.</p>"
        f"{_rule_text(over, 'rule')}{html_table(shown, row_class='verdict')}"
    )
    return page("Does fine-tuning get worse with more pre-training? (overtraining.parquet)", body)


def best_lr_page(best_lr) -> str:
    best = _table(best_lr)
    shown = best.drop(columns=[c for c in ("selection_rule",) if c in best]).copy()
    if "tokens" in shown:
        shown["tokens"] = _tokens_column(shown["tokens"])
    body = (
        "<p>The fine-tuning LR chosen at each checkpoint and task: the figures' 'tuned LR'"
        " curves use it.</p>"
        f"{_rule_text(best, 'selection_rule')}{html_table(shown)}"
    )
    return page("The LR tuned at each checkpoint (best_lr.parquet)", body)


CHECKPOINT_COLUMNS = [
    "family",
    "checkpoint",
    "tokens",
    "pretrain_seed",
    "source",
    "checkpoint_sha",
    "repo",
    "revision",
]


def provenance_page(metrics_path, config: dict | None = None) -> str:
    """The run's provenance: the config (as the workflow read it), code version and config
    hash of metrics.parquet, library versions and devices, and every base checkpoint's sha."""
    import pyarrow.parquet as pq
    import yaml

    from overtrained.core import provenance

    meta = pq.read_schema(metrics_path).metadata or {}
    df = pd.read_parquet(metrics_path)
    facts = {
        key.decode(): json.loads(value)
        for key, value in meta.items()
        if not key.startswith(b"pandas") and not key.startswith(b"ARROW")
    }
    parts = [
        "<h2>Run</h2>",
        html_table(pd.DataFrame([{"key": k, "value": json.dumps(v)} for k, v in facts.items()])),
    ]
    base = df[df["model"] == "base"]
    checkpoints = base[[c for c in CHECKPOINT_COLUMNS if c in base]].drop_duplicates()
    checkpoints = checkpoints.sort_values(["family", "tokens", "checkpoint"])
    parts += ["<h2>Checkpoints</h2>", html_table(checkpoints)]
    jobs = df.drop_duplicates("producer")
    for column, heading in (("versions", "Library versions"), ("device", "Devices")):
        if column in jobs:
            counts = jobs[column].fillna("").value_counts()
            table = pd.DataFrame({heading.lower(): counts.index, "jobs": counts.to_numpy()})
            parts += [f"<h2>{heading}</h2>", html_table(table)]
    if config is not None:
        text = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False)
        parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(provenance.scrub(text))}</pre>"]
    return page("Provenance of this run", provenance.scrub("\n".join(parts)))


def write_pages(metrics, best_lr, overtraining, out_dir: str | Path, config=None) -> None:
    """out_dir/{overtraining,best_lr,provenance}.html, the report's tables (PAGES)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "overtraining.html").write_text(overtraining_page(overtraining))
    (out_dir / "best_lr.html").write_text(best_lr_page(best_lr))
    (out_dir / "provenance.html").write_text(provenance_page(metrics, config))

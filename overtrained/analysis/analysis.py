"""What metrics.parquet says about the paper's claim: the LR chosen at each checkpoint, and
whether fine-tuned models get worse with more pre-training ("catastrophic overtraining").

Pure functions over the long metrics table (overtrained.analysis.aggregate.SCHEMA); every
output has a declared Arrow schema and carries, as a column, the rule that produced it in words:

- `best_lr`: per checkpoint and fine-tuning task, the LR with the lowest in-distribution loss.
- `overtraining`: per family, task and metric, the fine-tuned curve along pre-training tokens
  (at the tuned LR and at each fixed LR), where it is best, how much worse its last checkpoint
  is, a 95% confidence interval of that change, and a verdict.
- `summary`: the verdicts as a terminal table, csv, json or markdown.
- `write`: a table as Parquet with its declared schema and key-value metadata.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from overtrained.analysis import aggregate, statistics, vocabulary

# --- what is measured, and which way is better (vocabulary.py) ------------------------------

# eval_task of a suite's benchmark-average row (the paper's headline), made of accuracies
AVERAGE = "average"
SELECTION_METRIC = "id_loss"
# Absolute half-width of "no practical change", in the metric's units (nats; accuracy as a
# fraction, so 0.01 is one point). A metric not listed uses DEFAULT_TOLERANCE.
TOLERANCE = {"pretrain_loss": 0.01, "id_loss": 0.01, "acc": 0.01, "acc_norm": 0.01}
DEFAULT_TOLERANCE = 0.01
MIN_CHECKPOINTS = 3
TIE_RTOL = 1e-9  # values this close (relative) are a tie

SELECTION_RULE = (
    "lowest id_loss of the fine-tuned model on its own task (suite probes), averaged over "
    "fine-tuning seeds; an LR any of whose seeds diverged is excluded; ties (within 1e-9 "
    "relative) go to the smaller LR, the more conservative update"
)
VERDICT_RULE = (
    "change = last minus best checkpoint, signed so that positive means the last is worse; "
    "degrades: the best checkpoint is before the last and the 95% CI of the change excludes 0; "
    "no degradation: the best is the last checkpoint, or the CI lies within +-tolerance; "
    f"inconclusive: otherwise, or fewer than {MIN_CHECKPOINTS} checkpoints, or no CI "
    "(one seed and no standard errors)"
)

# --- declared output schemas -----------------------------------------------------------------

BEST_LR_SCHEMA = pa.schema(
    [
        ("family", pa.string()),
        ("checkpoint", pa.string()),
        ("tokens", pa.int64()),
        ("pretrain_seed", pa.int64()),  # null: a hub checkpoint
        ("ft_task", pa.string()),
        ("lr", pa.float64()),  # null when every LR diverged
        ("selection_metric", pa.string()),
        ("selection_rule", pa.string()),
        ("value", pa.float64()),  # the chosen LR's selection metric (mean over ft seeds)
        ("n_lrs", pa.int64()),  # LRs fine-tuned from this checkpoint
        ("n_diverged", pa.int64()),  # of those, LRs with a diverged seed
        ("status", pa.string()),  # ok | all diverged
        # lowest | highest | only: the chosen LR is an end of the grid fine-tuned here, so the
        # best LR may lie beyond it (widen the grid); null: interior, or a larger LR diverged
        ("grid_edge", pa.string()),
    ]
)
OVERTRAINING_SCHEMA = pa.schema(
    [
        ("family", pa.string()),
        ("ft_task", pa.string()),
        ("suite", pa.string()),
        ("metric", pa.string()),
        ("eval_task", pa.string()),  # null for pretrain_loss; "average" for a suite's mean
        ("direction", pa.string()),  # lower | higher (is better)
        ("lr_mode", pa.string()),  # tuned | fixed
        ("lr", pa.float64()),  # null when tuned (see best_lr for the LR at each checkpoint)
        ("n_checkpoints", pa.int64()),
        # tuned: checkpoints (x pre-training seeds) whose chosen LR is an end of its grid
        ("n_at_grid_edge", pa.int64()),
        ("best_tokens", pa.int64()),
        ("best_checkpoint", pa.string()),
        ("best_value", pa.float64()),
        ("last_tokens", pa.int64()),
        ("last_checkpoint", pa.string()),
        ("last_value", pa.float64()),
        ("change", pa.float64()),  # >= 0; > 0: the last checkpoint is worse than the best
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("ci_method", pa.string()),  # seeds | stderr | none
        ("tolerance", pa.float64()),
        ("verdict", pa.string()),  # degrades | no degradation | inconclusive
        ("reason", pa.string()),
        ("rule", pa.string()),
    ]
)

RUN = ["family", "checkpoint", "pretrain_seed", "ft_task", "lr", "ft_seed"]
LR_AT_CHECKPOINT = ["family", "checkpoint", "pretrain_seed", "ft_task", "lr"]
CURVE = ["family", "ft_task", "suite", "metric", "eval_task"]


def direction(metric: str) -> str | None:
    """'lower' or 'higher' (is better) for an analysed metric, None for any other."""
    name = metric.split("[", 1)[0]  # lm-eval filtered metrics: "exact_match[strict-match]"
    if name in vocabulary.LOWER_IS_BETTER:
        return "lower"
    if name in vocabulary.ACCURACIES:
        return "higher"
    return None


def tolerance_for(metric: str, tolerance: float | Mapping[str, float] | None = None) -> float:
    """The +-tolerance of a metric: a number for every metric, or per metric name (base name
    of a filtered lm-eval metric), falling back to TOLERANCE and DEFAULT_TOLERANCE."""
    if isinstance(tolerance, int | float):
        return float(tolerance)
    table = {**TOLERANCE, **(tolerance or {})}
    return float(table.get(metric, table.get(metric.split("[", 1)[0], DEFAULT_TOLERANCE)))


# --- helpers ---------------------------------------------------------------------------------


def _frame(rows: list[dict], schema: pa.Schema) -> pd.DataFrame:
    """Rows as a DataFrame whose columns are exactly the schema's (int64 as nullable Int64)."""
    table = pa.Table.from_pylist([{k: _py(r.get(k)) for k in schema.names} for r in rows], schema)
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _py(value):
    """A Python scalar for Arrow: None for any missing value, numpy scalars unwrapped."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _py(value.item())
    return value


def finetuned_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The fine-tuned rows with every column of metrics.parquet, integer columns as nullable
    Int64 (pandas reads the parquet's int64 columns that have nulls as float64)."""
    df = metrics[metrics["model"] == "finetuned"].copy()
    for column in aggregate.SCHEMA.names:  # a hand-made frame may leave out what it does not use
        if column not in df:
            df[column] = None
    for column in ("tokens", "pretrain_seed", "ft_seed", "n"):
        df[column] = pd.to_numeric(df[column]).round().astype("Int64")
    for column in ("lr", "value", "stderr"):
        df[column] = pd.to_numeric(df[column]).astype("float64")
    return df


def lrs_at_checkpoints(ft: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, checkpoint, pretrain_seed, ft_task, lr) fine-tuned: its tokens,
    and `diverged`: any fine-tuning seed's rows (train or evaluation) carry 'diverged'."""
    return (
        ft.assign(diverged=ft["status"] == "diverged")
        .groupby(LR_AT_CHECKPOINT, dropna=False, sort=False)
        .agg(tokens=("tokens", "first"), diverged=("diverged", "any"))
        .reset_index()
    )


def _is_tie(values: np.ndarray, best: float) -> np.ndarray:
    return np.isclose(values, best, rtol=TIE_RTOL, atol=0.0)


# --- 1. the LR chosen at each checkpoint -----------------------------------------------------


def _grid_edge(lr: float, grid: pd.DataFrame) -> str | None:
    """Where the chosen LR sits in the grid fine-tuned from its checkpoint: at an end the
    optimum may lie outside the grid, so "tuned" is a bound, not a tuning. The largest LR
    that did not diverge is no edge when a larger one was tried (it diverged)."""
    lrs = grid["lr"]
    if len(lrs) == 1:
        return "only"
    if lr <= lrs.min():
        return "lowest"
    if lr >= lrs.max():
        return "highest"
    return None


def best_lr(metrics: pd.DataFrame) -> pd.DataFrame:
    """The LR chosen for each family x checkpoint (x pretrain seed) x fine-tuning task.

    Rule (SELECTION_RULE): the candidate LRs are those fine-tuned from the checkpoint; an LR
    is excluded when any of its fine-tuning seeds diverged (status 'diverged' on any of its
    rows: a sometimes-exploding LR is not a usable choice, and keeping its surviving seeds
    would bias it) or when its id_loss is not finite. Each remaining LR scores the mean over
    its seeds of `id_loss` (suite probes) on the task it was fine-tuned on; the lowest wins,
    and ties (within TIE_RTOL) go to the smaller LR. When every LR diverged, lr and value
    are null and status is 'all diverged'. `grid_edge` flags a chosen LR at an end of its
    grid (_grid_edge). Schema: BEST_LR_SCHEMA.
    """
    ft = finetuned_rows(metrics)
    if ft.empty:
        return _frame([], BEST_LR_SCHEMA)
    own = ft[
        (ft["suite"] == "probes")
        & (ft["metric"] == SELECTION_METRIC)
        & (ft["eval_task"] == ft["ft_task"])
    ]
    loss = (
        own.groupby(LR_AT_CHECKPOINT, dropna=False)["value"]
        .agg(lambda v: v.mean() if np.isfinite(v).all() else np.nan)
        .rename("loss")
        .reset_index()
    )
    lrs = lrs_at_checkpoints(ft).merge(loss, on=LR_AT_CHECKPOINT, how="left")
    rows = []
    for key, group in lrs.groupby(LR_AT_CHECKPOINT[:-1], dropna=False, sort=False):
        row = dict(zip(LR_AT_CHECKPOINT[:-1], key, strict=True))
        row.update(
            tokens=group["tokens"].iloc[0],
            selection_metric=SELECTION_METRIC,
            selection_rule=SELECTION_RULE,
            n_lrs=len(group),
            n_diverged=int(group["diverged"].sum()),
            status="ok",
        )
        candidates = group[~group["diverged"] & np.isfinite(group["loss"])]
        if len(candidates):
            losses = candidates["loss"].to_numpy()
            tied = candidates[_is_tie(losses, losses.min())]
            pick = tied.loc[tied["lr"].idxmin()]
            row.update(lr=pick["lr"], value=pick["loss"], grid_edge=_grid_edge(pick["lr"], group))
        elif group["diverged"].all():
            row["status"] = "all diverged"
        else:  # LRs that did not diverge but have no id_loss: nothing to select by
            continue
        rows.append(row)
    out = _frame(rows, BEST_LR_SCHEMA)
    return out.sort_values(["family", "ft_task", "tokens", "pretrain_seed"], ignore_index=True)


# --- 2. degradation along pre-training tokens ------------------------------------------------


def _observations(ft: pd.DataFrame) -> pd.DataFrame:
    """One row per (fine-tuned model, analysed metric): pretrain_loss and own-task id_loss
    from the probes; acc/acc_norm/exact_match per lm-eval task; and per lm-eval suite and
    accuracy metric, the mean over the suite's tasks (eval_task 'average') for each model
    that has all of them. Accuracies without a stderr get the binomial one from n."""
    probes = ft[ft["suite"] == "probes"]
    retention = probes[probes["metric"] == "pretrain_loss"].assign(eval_task=None)
    own = probes[(probes["metric"] == "id_loss") & (probes["eval_task"] == probes["ft_task"])]
    lm = ft[~ft["suite"].isin(vocabulary.NOT_LM_EVAL_SUITES) & ft["suite"].notna()]
    lm = lm[lm["metric"].map(direction) == "higher"].copy()
    fill = lm["stderr"].isna() & (lm["n"] > 1) & lm["value"].between(0, 1)
    p, n = lm.loc[fill, "value"], lm.loc[fill, "n"].astype("float64")
    lm.loc[fill, "stderr"] = np.sqrt(p * (1 - p) / (n - 1))
    averages = []
    for _, rows in lm.groupby(["family", "suite", "metric"]):
        tasks = set(rows["eval_task"])
        for _, model in rows.groupby(RUN, dropna=False):
            if set(model["eval_task"]) != tasks or len(model) != len(tasks):
                continue  # a model missing a task would change what the average means
            first = model.iloc[0].copy()
            first["eval_task"] = AVERAGE
            first["value"] = model["value"].mean()
            first["stderr"] = np.sqrt((model["stderr"] ** 2).sum(min_count=len(model))) / len(model)
            first["n"] = model["n"].sum(min_count=len(model))
            averages.append(first)
    parts = [retention, own, lm] + ([pd.DataFrame(averages)] if averages else [])
    columns = [*RUN, "tokens", "budget", "suite", "metric", "eval_task", "value", "stderr"]
    parts = [part[columns] for part in parts if len(part)]
    if not parts:
        return pd.DataFrame(columns=columns)
    obs = pd.concat(parts, ignore_index=True)
    return obs[np.isfinite(obs["value"])]  # a NaN/inf value is no measurement


def _points(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per pre-training token budget: checkpoint label, replicate values, mean, and
    the mean's standard error from the replicates' own standard errors."""

    def point(rows: pd.DataFrame) -> pd.Series:
        names = rows["checkpoint"].unique()
        se = rows["stderr"].to_numpy(dtype="float64")
        return pd.Series(
            {
                "checkpoint": names[0] if len(names) == 1 else rows["budget"].iloc[0],
                "values": rows["value"].to_numpy(dtype="float64"),
                "mean": rows["value"].mean(),
                "stderr": math.sqrt((se**2).sum()) / len(se) if np.isfinite(se).all() else np.nan,
            }
        )

    return pd.DataFrame(
        [point(rows).rename(tokens) for tokens, rows in curve.groupby("tokens", sort=True)]
    )


def _verdict(n_points: int, best_is_last: bool, low: float, high: float, tol: float):
    if n_points < MIN_CHECKPOINTS:
        return "inconclusive", f"only {n_points} checkpoint(s); need {MIN_CHECKPOINTS}"
    if best_is_last:
        return "no degradation", "best at the last checkpoint"
    if not np.isfinite(low):
        return "inconclusive", "no confidence interval (one seed and no standard errors)"
    if low > 0:
        return "degrades", "best before the last checkpoint; the CI of the change excludes 0"
    if low >= -tol and high <= tol:
        return "no degradation", f"the CI of the change lies within +-{tol:g}"
    return "inconclusive", f"the CI of the change includes 0 and exceeds +-{tol:g}"


def _analyse(curve: pd.DataFrame, sign: float, tol: float) -> dict:
    """Best and last checkpoint of one curve, the change between them, its CI, the verdict."""
    points = _points(curve)
    badness = sign * points["mean"].to_numpy()
    best = points.iloc[int(np.flatnonzero(_is_tie(badness, badness.min()))[0])]  # earliest
    last = points.iloc[-1]
    best_is_last = best.name == last.name
    # >= 0 by construction (the best is the optimum); clamped so that a tie reads 0, not -0.
    change = 0.0 if best_is_last else max(0.0, float(sign * (last["mean"] - best["mean"])))
    low, high, method = (math.nan, math.nan, "none")
    if not best_is_last:
        low, high, method = statistics.change_ci(best, last, change)
    verdict, reason = _verdict(len(points), best_is_last, low, high, tol)
    return {
        "n_checkpoints": len(points),
        "best_tokens": best.name,
        "best_checkpoint": best["checkpoint"],
        "best_value": best["mean"],
        "last_tokens": last.name,
        "last_checkpoint": last["checkpoint"],
        "last_value": last["mean"],
        "change": change,
        "ci_low": low,
        "ci_high": high,
        "ci_method": method,
        "verdict": verdict,
        "reason": reason,
    }


def overtraining(
    metrics: pd.DataFrame,
    best: pd.DataFrame | None = None,
    tolerance: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Does the fine-tuned model get worse with more pre-training? One row per family x
    fine-tuning task x suite x metric x eval_task, for the tuned LR (lr_mode 'tuned': at each
    checkpoint the fine-tuned model at that checkpoint's `best` LR, per pre-training seed)
    and for each fixed LR (lr_mode 'fixed'). Schema: OVERTRAINING_SCHEMA.

    Metrics: pretrain_loss and id_loss on the fine-tuning task (lower is better); lm-eval
    acc, acc_norm, exact_match per task, and each suite's mean over its tasks (eval_task
    'average', the paper's headline) (higher is better). Timing and training bookkeeping
    are not analysed.

    Rules:
    - A curve point is a pre-training token budget; its value is the mean over the models
      there (pre-training seeds x fine-tuning seeds). A checkpoint where the LR diverged for
      any seed has no point (for a fixed LR: the curve has fewer points; tuned: best_lr never
      picks a diverged LR). A missing checkpoint just means fewer points.
    - best: the budget with the best mean, ties (within TIE_RTOL) to the earliest budget;
      last: the largest budget. change = last - best, signed so that > 0 means worse.
    - CI (95%) of the change, conditional on which point was picked as best (so optimistic,
      with many checkpoints, about how much worse the last is): 'seeds' (Welch t over the
      replicate values) when both points have >= 2 models; else 'stderr' (normal, standard
      errors in quadrature; an accuracy without stderr gets the binomial one from n); else
      'none'. No CI when the best is the last point (the change is 0 by definition).
    - verdict (VERDICT_RULE, checked in this order): fewer than MIN_CHECKPOINTS points ->
      inconclusive; best at the last point -> no degradation; no CI -> inconclusive;
      ci_low > 0 -> degrades; CI within +-tolerance -> no degradation; else inconclusive.
      `tolerance`: absolute, one number or per metric (default TOLERANCE).
    """
    ft = finetuned_rows(metrics)
    obs = _observations(ft)
    if obs.empty:
        return _frame([], OVERTRAINING_SCHEMA)
    lrs = lrs_at_checkpoints(ft)
    diverged = lrs.loc[lrs["diverged"], LR_AT_CHECKPOINT]
    marked = obs.merge(diverged, on=LR_AT_CHECKPOINT, how="left", indicator=True)
    obs = marked[marked["_merge"] == "left_only"].drop(columns="_merge")
    if best is None:
        best = best_lr(metrics)
    ok = best[best["status"] == "ok"]
    chosen = ok[LR_AT_CHECKPOINT].copy()
    chosen["pretrain_seed"] = chosen["pretrain_seed"].astype("Int64")
    tuned = obs.merge(chosen, on=LR_AT_CHECKPOINT, how="inner")
    edges = (
        ok.assign(edge=ok["grid_edge"].notna() if "grid_edge" in ok else False)
        .groupby(["family", "ft_task"])["edge"]
        .sum()
    )
    rows = []
    for mode, frame, keys in (("tuned", tuned, CURVE), ("fixed", obs, [*CURVE, "lr"])):
        for key, curve in frame.groupby(keys, dropna=False, sort=True):
            ids = dict(zip(keys, key, strict=True))
            sense = direction(ids["metric"])
            tol = tolerance_for(ids["metric"], tolerance)
            rows.append(
                {
                    **ids,
                    **_analyse(curve, 1.0 if sense == "lower" else -1.0, tol),
                    "direction": sense,
                    "lr_mode": mode,
                    "lr": ids.get("lr"),
                    "n_at_grid_edge": (
                        int(edges.get((ids["family"], ids["ft_task"]), 0))
                        if mode == "tuned"
                        else None
                    ),
                    "tolerance": tol,
                    "rule": VERDICT_RULE,
                }
            )
    out = _frame(rows, OVERTRAINING_SCHEMA)
    order = {"tuned": 0, "fixed": 1}
    return out.sort_values(
        [*CURVE, "lr_mode", "lr"],
        key=lambda s: s.map(order) if s.name == "lr_mode" else s,
        na_position="first",
        ignore_index=True,
    )


# --- 3. the verdicts, for people and for scripts ---------------------------------------------

SUMMARY_COLUMNS = ["family", "task", "metric", "lr", "best at", "change", "CI", "verdict"]


def _tokens_label(tokens) -> str:
    """15872 -> '15.9K', 3.094e12 -> '3.09T': three significant digits, enough to tell apart
    neighbouring hub checkpoints (the exact count is in the csv/json)."""
    if pd.isna(tokens):
        return "-"
    rounded = float(f"{float(tokens):.3g}")
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if rounded >= scale:
            return f"{rounded / scale:g}{suffix}"
    return f"{rounded:g}"


def _number(x) -> str:
    return "-" if pd.isna(x) else f"{x:.4g}"


def _lr_label(r) -> str:
    if r.lr_mode != "tuned":
        return f"{r.lr:g}"
    edges = getattr(r, "n_at_grid_edge", None)
    # A tuned LR at the end of its grid is a bound: say so where the verdict is read.
    return "tuned" if pd.isna(edges) or not edges else f"tuned ({edges} at grid edge)"


def _summary_rows(over: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in over.itertuples(index=False):
        if pd.isna(r.eval_task) or r.eval_task == r.ft_task:
            metric = r.metric
        else:
            metric = f"{r.metric} {r.suite}/{r.eval_task}"
        ci = "-" if pd.isna(r.ci_low) else f"[{_number(r.ci_low)}, {_number(r.ci_high)}]"
        rows.append(
            [
                r.family,
                r.ft_task,
                metric,
                _lr_label(r),
                f"{_tokens_label(r.best_tokens)} of {_tokens_label(r.last_tokens)}",
                _number(r.change),
                ci,
                r.verdict,
            ]
        )
    return rows


def summary(over: pd.DataFrame, fmt: str = "table") -> str:
    """The verdicts of `overtraining` as text.

    'table' (terminal, fixed-width) and 'markdown': one line per curve with the columns
    SUMMARY_COLUMNS ('best at': best budget of last budget; 'change' > 0: the last checkpoint
    is worse). 'csv' and 'json' (a list of records) carry every column of the table, numbers
    as numbers, for scripts.
    """
    if fmt == "csv":
        buffer = io.StringIO()
        over.to_csv(buffer, index=False)
        return buffer.getvalue()
    if fmt == "json":
        records = [{k: _py(v) for k, v in row.items()} for row in over.to_dict("records")]
        return json.dumps(records, indent=1)
    rows = _summary_rows(over)
    if fmt == "markdown":
        lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    if fmt == "table":
        widths = [max(len(str(c)) for c in col) for col in zip(SUMMARY_COLUMNS, *rows, strict=True)]
        lines = [
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [SUMMARY_COLUMNS, ["-" * w for w in widths], *rows]
        ]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown summary format {fmt!r}: table, csv, json or markdown")


# --- 4. Parquet ------------------------------------------------------------------------------


def write(df: pd.DataFrame, path: str | Path, schema: pa.Schema, metadata: Mapping) -> None:
    """`df` as Parquet with exactly `schema` (columns in its order; a missing or mistyped
    column is an error) and `metadata` as JSON-encoded key-value pairs, written atomically.
    (aggregate.write_parquet takes rows of metrics.parquet's fixed schema, so it is not reused.)"""
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    meta = {
        **(table.schema.metadata or {}),
        **{str(k).encode(): json.dumps(v).encode() for k, v in metadata.items()},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    tmp.replace(path)

"""The figures a user expects (docs/paper.md, "Figures a user expects"), and the report's tables.

Inputs: metrics.parquet (every number), best_lr.parquet (the LR tuned at each checkpoint)
and overtraining.parquet (where each fine-tuned curve is best, and the verdict). The x axis
is pre-training tokens on a log scale, ticks labelled with the budgets, unless a panel says
otherwise (the turning point is plotted against the fine-tuning LR).

Each figure function returns the panels it drew (drawn by analysis/drawing.py; the report's
HTML pages are analysis/report_pages.py); `make_all` writes every figure as PNG and SVG,
and the plotted curves as JSON next to them ({panel: {label: {x, y, err}}}), so tests
and reviewers can check what a figure shows without reading pixels. Where there are several
seeds (pre-training, fine-tuning or noise), a curve is their mean and the band is +- one
standard deviation (on a log-scaled y axis: the geometric mean, and `err` in decades). A
curve may carry `open`: points drawn hollow (a turning point that was not established).
With several families, every panel title starts with its family.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from overtrained.analysis import vocabulary
from overtrained.analysis.drawing import Panel, draw

# The figures, in the order of the paper's list and of the report. workflow.FIGURES is this.
FIGURES = (
    "benchmarks",  # 1. base vs fine-tuned (tuned LR) mean benchmark accuracy: the headline U
    "id_ood",  # 2. in- and out-of-distribution metrics after fine-tuning at the tuned LR
    "sensitivity",  # 3. Gaussian perturbation: loss increase and perturbed loss per gamma
    "retention",  # 4. fixed LR: pre-training loss after fine-tuning, a curve per LR
    "in_distribution",  # 4. fixed LR: the task's own held-out loss, a curve per LR
    "turning_point",  # 5. where the U turns against the LR; the tuned LR against tokens
    "tuned_losses",  # 6. tuned LR: ID loss and pre-training loss
)
# The report's pages besides the figures (HTML, written by `write_pages`).
PAGES = ("overtraining", "best_lr", "provenance")

BASE = "base (not fine-tuned)"
# Suites whose rows are not lm-eval results (probes, bookkeeping, perturbations, judge).
# A benchmark's panel in `id_ood` shows the first of these it reports.
BENCHMARK_METRICS = (*vocabulary.ACCURACIES, "bits_per_byte", "word_perplexity", "byte_perplexity")


@dataclass
class Data:
    """One family's rows of the three tables."""

    metrics: pd.DataFrame
    best_lr: pd.DataFrame
    overtraining: pd.DataFrame


# --- reading the tables ----------------------------------------------------------------------

# The columns the figures read from each table; numbers are read as float64.
METRICS_COLUMNS = (
    *("family", "checkpoint", "tokens", "pretrain_seed", "model", "ft_task", "lr", "ft_seed"),
    *("scaling", "gamma", "noise_seed", "suite", "eval_task", "metric", "value", "status"),
)
BEST_LR_COLUMNS = ("family", "checkpoint", "tokens", "pretrain_seed", "ft_task", "lr", "status")
OVERTRAINING_COLUMNS = (
    *("family", "ft_task", "metric", "eval_task", "lr_mode", "lr"),
    *("best_tokens", "last_tokens", "verdict"),
)
NUMBERS = {"tokens", "pretrain_seed", "lr", "ft_seed", "gamma", "noise_seed", "value"}
NUMBERS |= {"best_tokens", "last_tokens"}


def _read(table, columns: tuple[str, ...]) -> pd.DataFrame:
    """A table (path, DataFrame or None) with at least `columns`: missing ones are null (a
    hand-made frame leaves out what it does not use), numbers as float64 (pandas reads a
    nullable int64 column as float64 or Int64, depending on its nulls)."""
    if table is None:
        df = pd.DataFrame()
    elif isinstance(table, pd.DataFrame):
        df = table.copy()
    else:
        df = pd.read_parquet(table)
    for column in columns:
        if column not in df:
            df[column] = np.nan if column in NUMBERS else None
        elif column in NUMBERS:
            df[column] = pd.to_numeric(df[column]).astype("float64")
    return df.reset_index(drop=True)


def _seed_key(df: pd.DataFrame) -> pd.Series:
    return df["pretrain_seed"].fillna(-1).astype("int64")


def at_tuned_lr(finetuned: pd.DataFrame, best_lr: pd.DataFrame) -> pd.DataFrame:
    """The fine-tuned rows at the LR chosen for their checkpoint and task (best_lr); a
    checkpoint whose LRs all diverged (lr null) has none."""
    chosen = best_lr[best_lr["lr"].notna()]
    chosen = chosen.assign(_seed=_seed_key(chosen))[
        ["family", "checkpoint", "_seed", "ft_task", "lr"]
    ].rename(columns={"lr": "_tuned"})
    rows = finetuned.assign(_seed=_seed_key(finetuned)).merge(
        chosen, on=["family", "checkpoint", "_seed", "ft_task"], how="inner"
    )
    same = np.isclose(rows["lr"], rows["_tuned"], rtol=1e-9, atol=0.0)
    return rows[same].drop(columns=["_seed", "_tuned"])


def _curve(frame: pd.DataFrame, x: str = "tokens", y: str = "value", log: bool = False) -> dict:
    """Mean and standard deviation of `y` at each `x` (over seeds)."""
    frame = frame[frame[y].notna() & frame[x].notna()]
    values = np.log10(frame[y].astype("float64")) if log else frame[y].astype("float64")
    grouped = values.groupby(frame[x])
    mean, std = grouped.mean(), grouped.std(ddof=0).fillna(0.0)
    if log:
        mean = 10**mean
    xs = [int(v) if x.endswith("tokens") else float(v) for v in mean.index]
    return {"x": xs, "y": [float(v) for v in mean], "err": [float(v) for v in std]}


def _tasks(df: pd.DataFrame) -> list[str]:
    return sorted(df.loc[df["model"] == "finetuned", "ft_task"].dropna().unique())


def _entropy(df: pd.DataFrame) -> tuple[str, float] | None:
    """Above this line a model knows less than token frequencies: pre-training erased."""
    rows = df[df["metric"] == "heldout_unigram_entropy"]["value"]
    return ("unigram entropy of the held-out text", float(rows.iloc[0])) if len(rows) else None


def _lm_eval(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["suite"].notna() & ~df["suite"].isin(vocabulary.NOT_LM_EVAL_SUITES)]


def _is_accuracy(metric: str) -> bool:
    return metric.split("[", 1)[0] in vocabulary.ACCURACIES


def _first_metric(metrics, preference) -> str | None:
    present = set(metrics)
    for wanted in preference:
        if wanted in present:
            return wanted
        filtered = sorted(m for m in present if m.startswith(f"{wanted}["))
        if filtered:
            return filtered[0]
    return None


# --- the figures -----------------------------------------------------------------------------

MODEL = ["checkpoint", "tokens", "pretrain_seed", "model", "ft_task", "lr", "ft_seed"]


def _suite_means(rows: pd.DataFrame) -> pd.DataFrame:
    """One metric of one suite: per model, the mean over the suite's tasks (models that have
    every task only: a missing task would change what the average means)."""
    n_tasks = rows["eval_task"].nunique()
    means = rows.groupby(MODEL, dropna=False).agg(
        value=("value", "mean"), n=("eval_task", "nunique")
    )
    return means[means["n"] == n_tasks].reset_index()


def benchmarks(d: Data) -> dict[str, Panel]:
    """Figure 1, the headline: mean lm-eval accuracy over each suite's tasks, of the base
    models and of the models fine-tuned at the tuned LR (expect: base rises with tokens, a
    fine-tuned curve peaks then falls)."""
    df = d.metrics
    tuned = at_tuned_lr(df[df["model"] == "finetuned"], d.best_lr)
    panels = {}
    for suite, rows in _lm_eval(df).groupby("suite"):
        metric = _first_metric(rows["metric"].unique(), vocabulary.ACCURACIES)
        if metric is None:
            continue
        rows = rows[rows["metric"] == metric]
        base = _suite_means(rows[rows["model"] == "base"])
        curves = {BASE: _curve(base)} if len(base) else {}
        for task in _tasks(df):
            mine = tuned[(tuned["ft_task"] == task) & (tuned["suite"] == suite)]
            means = _suite_means(mine[mine["metric"] == metric])
            if len(means):
                curves[f"fine-tuned on {task}"] = _curve(means)
        n = rows["eval_task"].nunique()
        panels[f"{suite}: mean {metric} over {n} task{'s' * (n > 1)}"] = Panel(
            curves, f"mean {metric} (higher is better)"
        )
    return panels


def id_ood(d: Data) -> dict[str, Panel]:
    """Figure 2: after fine-tuning at the tuned LR, in-distribution (the task's held-out loss,
    and the judge's score where one is configured) and out-of-distribution (each lm-eval
    benchmark) metrics; the base model dashed."""
    df = d.metrics
    tuned = at_tuned_lr(df[df["model"] == "finetuned"], d.best_lr)
    base = df[df["model"] == "base"]
    panels = {}
    for task in _tasks(df):
        own = tuned[
            (tuned["ft_task"] == task)
            & (tuned["metric"] == "id_loss")
            & (tuned["eval_task"] == task)
        ]
        base_own = base[(base["metric"] == "id_loss") & (base["eval_task"] == task)]
        curves = {f"fine-tuned on {task}": _curve(own)} if len(own) else {}
        if len(base_own):
            curves[BASE] = _curve(base_own)
        if curves:
            panels[f"ID: held-out loss on {task}"] = Panel(curves, "loss (nats, lower is better)")
        judged = tuned[(tuned["ft_task"] == task) & (tuned["metric"] == "judge_score")]
        if len(judged):
            panels[f"ID: judge score on {task}"] = Panel(
                {f"fine-tuned on {task}": _curve(judged)}, "judge score (higher is better)"
            )
    lm = _lm_eval(df)
    suites_of = lm.groupby("eval_task")["suite"].nunique()
    for (suite, eval_task), rows in lm.groupby(["suite", "eval_task"]):
        metric = _first_metric(rows["metric"].unique(), BENCHMARK_METRICS)
        if metric is None:
            continue
        rows = rows[rows["metric"] == metric]
        curves = {}
        base_rows = rows[rows["model"] == "base"]
        if len(base_rows):
            curves[BASE] = _curve(base_rows)
        ft = at_tuned_lr(rows[rows["model"] == "finetuned"], d.best_lr)
        for task, mine in ft.groupby("ft_task"):
            curves[f"fine-tuned on {task}"] = _curve(mine)
        name = f"{suite}/{eval_task}" if suites_of[eval_task] > 1 else eval_task
        better = "higher" if _is_accuracy(metric) else "lower"
        panels[f"OOD: {name}"] = Panel(curves, f"{metric} ({better} is better)")
    return panels


def sensitivity(d: Data) -> dict[str, Panel]:
    """Figure 3, Gaussian perturbation, per noise scaling: the loss increase (expect: grows
    with tokens) and the perturbed loss (expect: a U), one curve per gamma; the unperturbed
    loss dashed."""
    pert = d.metrics[d.metrics["model"] == "perturbed"]
    panels = {}
    for scaling, rows in pert.groupby("scaling"):
        increase = rows[rows["metric"] == "loss_increase"]
        perturbed = rows[rows["metric"] == "perturbed_loss"]
        if len(increase):
            panels[f"loss increase, noise scaled by {scaling}"] = Panel(
                {f"gamma {g:g}": _curve(r) for g, r in increase.groupby("gamma")},
                "loss increase (nats)",
            )
        if len(perturbed):
            curves = {f"gamma {g:g}": _curve(r) for g, r in perturbed.groupby("gamma")}
            keys = ["checkpoint", "tokens", "pretrain_seed", "gamma", "noise_seed"]
            pairs = perturbed.merge(increase, on=keys, suffixes=("", "_increase"))
            if len(pairs):
                clean = pairs.assign(value=pairs["value"] - pairs["value_increase"])
                per_model = clean.groupby(["checkpoint", "tokens"], as_index=False)["value"].mean()
                curves["base (no noise)"] = _curve(per_model)
            panels[f"perturbed loss, noise scaled by {scaling}"] = Panel(
                curves, "held-out pre-training loss (nats)"
            )
    return panels


RUN = ["checkpoint", "pretrain_seed", "ft_task", "lr", "ft_seed"]


def _drop_diverged(ft: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Fine-tuned rows less the runs that diverged (status 'diverged' on any of their rows:
    their losses would set the axis), and how many runs that leaves out."""
    # str() each value: pandas 3's astype(str) keeps missing values (a hub checkpoint's
    # pretrain_seed) as NaN, which join refuses
    keys = ft[RUN].apply(lambda run: "|".join(map(str, run)), axis=1)
    diverged = set(keys[ft["status"] == "diverged"])
    return ft[~keys.isin(diverged)], len(diverged)


def _per_lr(df: pd.DataFrame, task: str, metric: str, base: pd.DataFrame, ylabel: str):
    """A fixed-LR panel: one curve per LR of the runs that did not diverge, and the base."""
    ft = df[(df["model"] == "finetuned") & (df["ft_task"] == task)]
    ft, n_diverged = _drop_diverged(ft)
    ft = ft[(ft["metric"] == metric) & (ft["eval_task"].isna() | (ft["eval_task"] == task))]
    curves = {f"lr {lr:g}": _curve(g) for lr, g in ft.groupby("lr")}
    if not curves:
        return None
    if len(base):
        curves[BASE] = _curve(base)
    note = f"{n_diverged} diverged run{'s' * (n_diverged > 1)} left out" if n_diverged else None
    return Panel(curves, ylabel, note=note)


def retention(d: Data) -> dict[str, Panel]:
    """Figure 4: pre-training loss after fine-tuning at each fixed LR, one panel per task
    (expect: a U in tokens, its bottom at fewer tokens for a larger LR)."""
    df = d.metrics
    probes = df[df["suite"] == "probes"]
    base = probes[(probes["model"] == "base") & (probes["metric"] == "pretrain_loss")]
    panels = {}
    for task in _tasks(df):
        panel = _per_lr(df, task, "pretrain_loss", base, "held-out pre-training loss (nats)")
        if panel:
            panel.reference = _entropy(df)
            panels[f"fine-tuned on {task}"] = panel
    return panels


def in_distribution(d: Data) -> dict[str, Panel]:
    """Figure 4, its other side: the task's own held-out loss after fine-tuning at each
    fixed LR (what a larger LR buys)."""
    df = d.metrics
    base = df[(df["model"] == "base") & (df["metric"] == "id_loss")]
    panels = {}
    for task in _tasks(df):
        mine = base[base["eval_task"] == task]
        panel = _per_lr(df, task, "id_loss", mine, "held-out loss on the task (nats)")
        if panel:
            panels[f"fine-tuned on {task}"] = panel
    return panels


def turning_point(d: Data) -> dict[str, Panel]:
    """Figure 5: where the pre-training loss after fine-tuning is lowest (the bottom of the U,
    overtraining.parquet's best_tokens) against the fixed fine-tuning LR (expect: fewer tokens
    for a larger LR), hollow where no degradation was established; and the LR tuned at each
    checkpoint against tokens (best_lr.parquet)."""
    over = d.overtraining
    fixed = over[(over["lr_mode"] == "fixed") & (over["metric"] == "pretrain_loss")]
    fixed = fixed[fixed["lr"].notna() & fixed["best_tokens"].notna()]
    panels = {}
    if len(fixed):
        curves = {}
        for task, rows in fixed.groupby("ft_task"):
            rows = rows.sort_values("lr")
            curves[f"fine-tuned on {task}"] = {
                "x": [float(v) for v in rows["lr"]],
                "y": [int(v) for v in rows["best_tokens"]],
                "err": [0.0] * len(rows),
                "open": [v != "degrades" for v in rows["verdict"]],
            }
        budgets = pd.concat([d.metrics["tokens"], over["best_tokens"], over["last_tokens"]])
        panels["turning point of the pre-training loss vs fixed LR"] = Panel(
            curves,
            "tokens at the lowest pre-training loss",
            xlabel="fine-tuning LR",
            x_tokens=False,
            y_tokens=True,
            yticks=sorted(budgets.dropna().unique()),
        )
    chosen = d.best_lr[d.best_lr["lr"].notna() & d.best_lr["tokens"].notna()]
    if len(chosen):
        panels["fine-tuning LR tuned at each checkpoint"] = Panel(
            {
                f"fine-tuned on {task}": _curve(r, y="lr", log=True)
                for task, r in chosen.groupby("ft_task")
            },
            "tuned LR (lowest ID loss)",
            ylog=True,
        )
    return panels


def tuned_losses(d: Data) -> dict[str, Panel]:
    """Figure 6, LR tuned per checkpoint for ID loss: pre-training loss after fine-tuning
    (expect: still a U for some tasks) and each task's own held-out loss."""
    df = d.metrics
    tuned = at_tuned_lr(df[(df["model"] == "finetuned") & (df["suite"] == "probes")], d.best_lr)
    base = df[(df["model"] == "base") & (df["suite"] == "probes")]
    panels = {}
    retained = tuned[tuned["metric"] == "pretrain_loss"]
    if len(retained):
        curves = {f"fine-tuned on {t}": _curve(r) for t, r in retained.groupby("ft_task")}
        base_loss = base[base["metric"] == "pretrain_loss"]
        if len(base_loss):
            curves[BASE] = _curve(base_loss)
        panels["pre-training loss after fine-tuning"] = Panel(
            curves, "held-out pre-training loss (nats)", reference=_entropy(df)
        )
    for task in _tasks(df):
        own = tuned[
            (tuned["ft_task"] == task)
            & (tuned["metric"] == "id_loss")
            & (tuned["eval_task"] == task)
        ]
        if own.empty:
            continue
        curves = {f"fine-tuned on {task}": _curve(own)}
        base_own = base[(base["metric"] == "id_loss") & (base["eval_task"] == task)]
        if len(base_own):
            curves[BASE] = _curve(base_own)
        panels[f"held-out loss on {task}"] = Panel(curves, "loss on the task (nats)")
    return panels


@dataclass(frozen=True)
class Figure:
    draw: Callable[[Data], dict[str, Panel]]
    title: str
    empty: str  # shown instead of panels when the run has nothing to draw


SPECS = {
    "benchmarks": Figure(
        benchmarks,
        "Mean benchmark accuracy: base vs fine-tuned at the tuned LR",
        "no lm-eval suite with an accuracy metric (acc, acc_norm, exact_match) in this run",
    ),
    "id_ood": Figure(
        id_ood,
        "After fine-tuning at the tuned LR: in-distribution (ID) and out-of-distribution (OOD)",
        "no model fine-tuned at a tuned LR (best_lr.parquet has no LR)",
    ),
    "sensitivity": Figure(
        sensitivity,
        "Gaussian perturbation of the base model: θ + N(0, γ² Σ)",
        "no Gaussian-perturbation results in this run",
    ),
    "retention": Figure(
        retention,
        "Pre-training loss after fine-tuning at a fixed LR",
        "no fine-tuned model in this run",
    ),
    "in_distribution": Figure(
        in_distribution,
        "The task's own held-out loss after fine-tuning at a fixed LR",
        "no fine-tuned model in this run",
    ),
    "turning_point": Figure(
        turning_point,
        "Where fine-tuning starts to hurt, by LR; and the LR tuned at each checkpoint",
        "no fixed-LR verdicts (overtraining.parquet) and no tuned LRs (best_lr.parquet)",
    ),
    "tuned_losses": Figure(
        tuned_losses,
        "LR tuned per checkpoint: pre-training loss and ID loss after fine-tuning",
        "no model fine-tuned at a tuned LR (best_lr.parquet has no LR)",
    ),
}


def figure_panels(name: str, metrics, best_lr=None, overtraining=None) -> dict[str, Panel]:
    """Figure `name`'s panels for every family (titles prefixed when there are several)."""
    df = _read(metrics, METRICS_COLUMNS)
    best = _read(best_lr, BEST_LR_COLUMNS)
    over = _read(overtraining, OVERTRAINING_COLUMNS)
    families = sorted(df["family"].dropna().unique())
    panels = {}
    for family in families:
        data = Data(
            df[df["family"] == family],
            best[best["family"] == family],
            over[over["family"] == family],
        )
        for title, panel in SPECS[name].draw(data).items():
            panels[f"{family}: {title}" if len(families) > 1 else title] = panel
    return panels


def plotted(panels: dict[str, Panel]) -> dict:
    """What a figure shows, as written to its JSON: {panel: {label: {x, y, err[, open]}}}."""
    return {title: panel.curves for title, panel in panels.items()}


def make_all(metrics, best_lr, overtraining, out_dir: str | Path) -> dict:
    """Every figure of FIGURES as out_dir/{name}.png, .svg and .json (its plotted curves).
    The tables are paths to Parquet files or DataFrames. Returns {name: plotted curves}."""
    metrics = _read(metrics, METRICS_COLUMNS)
    best_lr = _read(best_lr, BEST_LR_COLUMNS)
    overtraining = _read(overtraining, OVERTRAINING_COLUMNS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name in FIGURES:
        panels = figure_panels(name, metrics, best_lr, overtraining)
        spec = SPECS[name]
        draw(panels, spec.title, spec.empty, [out_dir / f"{name}.png", out_dir / f"{name}.svg"])
        drawn[name] = plotted(panels)
        (out_dir / f"{name}.json").write_text(json.dumps(drawn[name], indent=1))
    return drawn

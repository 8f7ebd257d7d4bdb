"""The figures a user expects (docs/paper.md, "Figures a user expects"), and the report's tables.

Inputs: metrics.parquet (every number), best_lr.parquet (the LR tuned at each checkpoint)
and overtraining.parquet (where each fine-tuned curve is best, and the verdict). The x axis
is pre-training tokens on a log scale, ticks labelled with the budgets, unless a panel says
otherwise (the turning point is plotted against the fine-tuning LR).

Each figure function returns the panels it drew; `make_all` writes every figure as PNG and
SVG, and the plotted curves as JSON next to them ({panel: {label: {x, y, err}}}), so tests
and reviewers can check what a figure shows without reading pixels. Where there are several
seeds (pre-training, fine-tuning or noise), a curve is their mean and the band is +- one
standard deviation (on a log-scaled y axis: the geometric mean, and `err` in decades). A
curve may carry `open`: points drawn hollow (a turning point that was not established).
With several families, every panel title starts with its family.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from overtrained.analysis import vocabulary

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
ACCURACIES = ("acc", "acc_norm", "exact_match")  # higher is better; exact_match[filter] too
# A benchmark's panel in `id_ood` shows the first of these it reports.
BENCHMARK_METRICS = (*ACCURACIES, "bits_per_byte", "word_perplexity", "byte_perplexity")
TOKEN_TICKS = 8  # at most this many budget labels on a tokens axis


def tick_label(tokens: float) -> str:
    """249856 -> '250K', 7999488 -> '8M': budgets are trained to whole steps, label the budget."""
    rounded = float(f"{tokens:.2g}")
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if rounded >= scale:
            return f"{rounded / scale:g}{suffix}"
    return f"{rounded:g}"


@dataclass
class Panel:
    """One axes: its curves ({label: {x, y, err}}) and how to draw them."""

    curves: dict[str, dict]
    ylabel: str
    xlabel: str = "pre-training tokens"
    x_tokens: bool = True  # x is pre-training tokens: log scale, budget tick labels
    y_tokens: bool = False  # y is pre-training tokens: log scale, budget tick labels
    ylog: bool = False
    reference: tuple[str, float] | None = None  # a labelled horizontal line
    note: str | None = None  # a remark in the panel's corner
    yticks: list[float] = field(default_factory=list)  # y_tokens: the budgets to label


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
    return metric.split("[", 1)[0] in ACCURACIES


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
        metric = _first_metric(rows["metric"].unique(), ACCURACIES)
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


# --- drawing ---------------------------------------------------------------------------------


def _thin(ticks: list[float], most: int = TOKEN_TICKS) -> list[float]:
    if len(ticks) <= most:
        return ticks
    keep = np.unique(np.round(np.linspace(0, len(ticks) - 1, most)).astype(int))
    return [ticks[i] for i in keep]


def _colours(panels: dict[str, Panel]) -> dict[str, object]:
    """One colour per fine-tuning task, the same in every panel and figure of a run."""
    import matplotlib

    tasks = sorted(
        {
            label.removeprefix("fine-tuned on ")
            for panel in panels.values()
            for label in panel.curves
            if label.startswith("fine-tuned on ")
        }
    )
    cycle = matplotlib.colormaps["tab10"].colors
    return {task: cycle[i % len(cycle)] for i, task in enumerate(tasks)}


def _style(label: str, index: int, n: int, task_colours: dict) -> dict:
    import matplotlib

    if label.startswith("base"):
        return {"ls": "--", "color": "black", "zorder": 3}  # on top of a curve it equals
    if label.startswith("fine-tuned on "):
        colour = task_colours.get(label.removeprefix("fine-tuned on "))
        return {"ls": "-", "color": colour, "zorder": 2}
    # A sweep (lr, gamma): ordered light to dark, so the order reads off the colours.
    shade = 0.2 + 0.65 * (index / max(1, n - 1))
    return {"ls": "-", "color": matplotlib.colormaps["viridis"](1 - shade), "zorder": 2}


def _draw_panel(ax, title: str, panel: Panel, task_colours: dict) -> None:
    from matplotlib.ticker import NullFormatter

    sweep = [label for label in panel.curves if not label.startswith(("base", "fine-tuned"))]
    any_open = False
    for label, c in panel.curves.items():
        index = sweep.index(label) if label in sweep else 0
        style = _style(label, index, len(sweep), task_colours)
        opened = c.get("open") or [False] * len(c["x"])
        (line,) = ax.plot(c["x"], c["y"], marker="o", ms=4, lw=1.5, label=label, **style)
        if any(opened):  # hollow markers over the filled ones
            any_open = True
            hollow = [(x, y) for x, y, o in zip(c["x"], c["y"], opened, strict=True) if o]
            xs, ys = zip(*hollow, strict=True)
            ax.plot(xs, ys, "o", ms=4, mfc="white", mec=line.get_color(), ls="none")
        err = np.asarray(c["err"], dtype="float64")
        if err.any():
            y = np.asarray(c["y"], dtype="float64")
            lo, hi = (y / 10**err, y * 10**err) if panel.ylog else (y - err, y + err)
            ax.fill_between(c["x"], lo, hi, alpha=0.15, color=line.get_color(), lw=0)
    if panel.reference:
        label, y = panel.reference
        ax.axhline(y, color="grey", lw=1, ls=":", label=label)
    if panel.note:
        ax.text(0.02, 0.02, panel.note, transform=ax.transAxes, fontsize=7, color="dimgrey")
    if any_open:
        hollow_label = "hollow: no degradation established"
        ax.plot([], [], "o", mfc="white", mec="grey", ls="none", label=hollow_label)
    ax.set_xscale("log")
    if panel.x_tokens:
        ticks = _thin(sorted({x for c in panel.curves.values() for x in c["x"]}))
        ax.set_xticks(ticks, [tick_label(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    if panel.y_tokens or panel.ylog:
        ax.set_yscale("log")
    if panel.y_tokens:
        ticks = _thin([float(t) for t in panel.yticks])
        ax.set_yticks(ticks, [tick_label(t) for t in ticks])
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def draw(
    panels: dict[str, Panel], title: str, empty: str, paths: list[Path], columns: int = 4
) -> None:
    """The panels on a grid (at most `columns` a row), saved to each path (PNG, SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    ncols = min(max(n, 1), columns)
    nrows = max(1, math.ceil(n / ncols))
    rc = {"svg.fonttype": "none", "svg.hashsalt": "overtrained", "font.size": 9}
    with plt.rc_context(rc):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(max(4.6 * ncols, 7.5), 3.7 * nrows + 0.4), squeeze=False
        )
        colours = _colours(panels)
        for ax, (name, panel) in zip(axes.flat, panels.items(), strict=False):
            _draw_panel(ax, name, panel, colours)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        if not panels:
            ax = axes[0][0]
            ax.set_visible(True)
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"Nothing to draw:\n{empty}", ha="center", va="center", wrap=True)
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        for path in paths:
            meta = {"Date": None} if Path(path).suffix == ".svg" else {}
            fig.savefig(path, dpi=110, metadata=meta)
        plt.close(fig)


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


# --- the report's pages: the verdicts, the tuned LRs, the run's provenance ---------------------

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

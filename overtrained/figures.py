"""One figure per measured effect, from metrics.parquet (x axis: pre-training tokens, log).

Each figure function returns the curves it drew ({panel: {label: {x, y, err}}}), which the
rule also writes as JSON next to the PNG, so tests and reviewers can check what a figure
shows without reading pixels. Where there are several seeds (pre-training, fine-tuning or
noise), the curve is their mean and the band is +- one standard deviation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from overtrained.workflow import FIGURES


def tick_label(tokens: float) -> str:
    """249856 -> '250K', 7999488 -> '8M': budgets are trained to whole steps, label the budget."""
    rounded = float(f"{tokens:.2g}")
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if rounded >= scale:
            return f"{rounded / scale:g}{suffix}"
    return f"{rounded:g}"


def _curve(frame: pd.DataFrame) -> dict:
    grouped = frame.groupby("tokens")["value"]
    mean, std = grouped.mean(), grouped.std(ddof=0).fillna(0.0)
    return {"x": mean.index.tolist(), "y": mean.tolist(), "err": std.tolist()}


def _draw(panels: dict, path: Path, title: str, ylabel: str, references=None) -> None:
    """One panel per entry; `references[panel]` = (label, y) draws a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, (panel, curves) in zip(axes[0], panels.items(), strict=False):
        for label, c in curves.items():
            style = "--" if label.startswith("base") else "-"
            color = "black" if label.startswith("base") else None
            (line,) = ax.plot(c["x"], c["y"], style, marker="o", ms=3, label=label, color=color)
            lo = [y - e for y, e in zip(c["y"], c["err"], strict=True)]
            hi = [y + e for y, e in zip(c["y"], c["err"], strict=True)]
            ax.fill_between(c["x"], lo, hi, alpha=0.15, color=line.get_color())
        if references and panel in references:
            label, y = references[panel]
            ax.axhline(y, color="grey", lw=1, ls=":", label=label)
        ax.set_xscale("log")
        ticks = sorted({x for c in curves.values() for x in c["x"]})
        ax.set_xticks(ticks, [tick_label(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("pre-training tokens")
        ax.set_ylabel(ylabel)
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sensitivity(df: pd.DataFrame) -> dict:
    """Loss increase under Gaussian noise (expect: grows with tokens), per scaling."""
    d = df[(df.model == "perturbed") & (df.metric == "loss_increase")]
    panels = {}
    for scaling, by_scaling in d.groupby("scaling"):
        panels[f"noise scaled by {scaling}"] = {
            f"gamma {gamma:g}": _curve(g) for gamma, g in by_scaling.groupby("gamma")
        }
    return panels


def _per_task_by_lr(df: pd.DataFrame, metric: str, base_filter) -> dict:
    finetuned = df[(df.model == "finetuned") & (df.metric == metric)]
    panels = {}
    for task, by_task in finetuned.groupby("ft_task"):
        curves = {f"lr {lr:g}": _curve(g) for lr, g in by_task.groupby("lr")}
        base = df[(df.model == "base") & (df.metric == metric) & base_filter(df, task)]
        if len(base):
            curves["base (not fine-tuned)"] = _curve(base)
        panels[f"fine-tuned on {task}"] = curves
    return panels


def retention(df: pd.DataFrame) -> dict:
    """Pre-training loss after fine-tuning at each fixed LR (expect: a U in tokens)."""
    return _per_task_by_lr(df, "pretrain_loss", lambda d, task: d.suite == "probes")


def in_distribution(df: pd.DataFrame) -> dict:
    """Held-out loss on the fine-tuning task itself, after fine-tuning."""
    finetuned = df[(df.model == "finetuned") & (df.metric == "id_loss")]
    own_task = finetuned[finetuned.eval_task == finetuned.ft_task]
    rest = df[df.model != "finetuned"]
    return _per_task_by_lr(
        pd.concat([own_task, rest]), "id_loss", lambda d, task: d.eval_task == task
    )


def benchmarks(df: pd.DataFrame) -> dict:
    """Mean lm-eval accuracy over the suite's tasks: base vs fine-tuned."""
    acc = df[(df.metric == "acc") & df.suite.notna() & ~df.suite.isin(["probes"])]
    if acc.empty:
        return {}
    keys = ["tokens", "pretrain_seed", "model", "ft_task", "lr", "ft_seed"]
    mean = acc.groupby(keys, dropna=False)["value"].mean().reset_index()
    panels = {}
    for task, by_task in mean[mean.model == "finetuned"].groupby("ft_task"):
        curves = {f"lr {lr:g}": _curve(g) for lr, g in by_task.groupby("lr")}
        curves["base (not fine-tuned)"] = _curve(mean[mean.model == "base"])
        panels[f"fine-tuned on {task}"] = curves
    return panels


TITLES = {
    "sensitivity": (
        "Gaussian perturbation: loss increase on held-out text",
        "loss increase (nats)",
    ),
    "retention": ("Pre-training loss after fine-tuning (fixed LR)", "held-out pre-training loss"),
    "in_distribution": ("In-distribution loss after fine-tuning", "task held-out loss"),
    "benchmarks": ("lm-eval suite: mean accuracy", "mean acc"),
}


def family_panels(df: pd.DataFrame, name: str) -> tuple[dict, dict]:
    """A figure's panels for every family (prefixed when there are several), and the
    unigram-entropy reference line of each retention panel."""
    families = sorted(df.family.dropna().unique())
    panels, references = {}, {}
    for family in families:
        sub = df[df.family == family]
        entropy = sub[sub.metric == "heldout_unigram_entropy"].value
        for panel, curves in globals()[name](sub).items():
            key = f"{family}: {panel}" if len(families) > 1 else panel
            panels[key] = curves
            if name == "retention" and len(entropy):
                # Above this line a model knows less than token frequencies: pre-training erased.
                references[key] = ("unigram entropy", float(entropy.iloc[0]))
    return panels, references


def make_all(metrics_parquet: str | Path, out_dir: str | Path) -> dict:
    df = pd.read_parquet(metrics_parquet)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name in FIGURES:
        panels, references = family_panels(df, name)
        title, ylabel = TITLES[name]
        _draw(panels, out_dir / f"{name}.png", title, ylabel, references)
        (out_dir / f"{name}.json").write_text(json.dumps(panels, indent=1))
        drawn[name] = panels
    return drawn

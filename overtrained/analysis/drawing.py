"""Drawing the figures' panels with matplotlib: log-token axes labelled with the budgets,
one colour per task, bands of +- one standard deviation, hollow points where a turning
point was not established."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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

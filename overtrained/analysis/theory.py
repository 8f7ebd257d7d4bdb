"""The theory experiment (docs/paper.md, Experiment 4): catastrophic overtraining in a two-layer
linear network, simulated exactly on the CPU in seconds.

The model is f(x) = W2 W1 x with whitened inputs, so a task is a target matrix and its loss
is L(W) = 1/2 ||W2 W1 - target||_F^2 (the population loss). Everything is float64 numpy.

- Task A (pre-training): target A = U diag(s) V^T with random orthonormal U, V and a spread
  of singular values s. From small initialisation, gradient descent with a small step
  (approximating gradient flow) learns A's singular directions one after another, strongest
  first (incremental learning; Saxe et al. 2014). Snapshots at pre-training times T (steps).
- Task B (fine-tuning): B = a A + sqrt(1 - a^2) C, where C is an unrelated task with the same
  spectrum (independent random U, V) and a in [0, 1] is the alignment: a = 1 is A itself.
  Every snapshot is fine-tuned on B for a fixed number of steps at a fixed step size, with an
  optional L2 penalty lambda/2 ||theta - theta_pretrained||^2 (regularisation toward the
  pre-trained weights).
- Gaussian analogue: the task-A loss increase when every weight gets N(0, scale^2) noise, by
  Monte Carlo (mean and standard error over draws) and exactly:
  E[dL] = 1/2 [scale^2 (d_out ||W1||^2 + d_in ||W2||^2) + scale^4 d_out h d_in].

Why an inflection: a fine-tuning step moves a direction at a rate proportional to how strongly
it has been learned (the other layer's weights multiply the gradient), so the same fixed-LR
fine-tuning moves a longer-pre-trained network further from A. The task-A loss after
fine-tuning first falls with T (A is being learned) and then rises (what was learned is
overwritten faster); the penalty holds the weights back and delays the turn, at the price of
a higher task-B loss. All of it is computed here, nothing is assumed: see tests/test_theory.py.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from overtrained.analysis.drawing import Panel

# One row per measured number (long format, like metrics.parquet). `model`: pretrained
# (a snapshot at time T), finetuned (that snapshot fine-tuned on B) or perturbed (noised).
SCHEMA = pa.schema(
    [
        ("seed", pa.int64()),
        ("time", pa.int64()),  # pre-training steps T
        ("model", pa.string()),
        ("alignment", pa.float64()),  # finetuned only
        ("penalty", pa.float64()),  # finetuned only
        ("noise_scale", pa.float64()),  # perturbed only
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("stderr", pa.float64()),  # perturbed Monte Carlo only
        ("n", pa.int64()),  # noise draws (perturbed), else 1
    ]
)
# Per seed, alignment and penalty: where the fine-tuned task-A loss turns upward.
SUMMARY_SCHEMA = pa.schema(
    [
        ("seed", pa.int64()),
        ("alignment", pa.float64()),
        ("penalty", pa.float64()),
        ("turning_time", pa.float64()),  # T of the minimum; NaN: no rise within the times
        ("loss_a_min", pa.float64()),
        ("loss_a_last", pa.float64()),  # at the longest pre-training time
        ("rise", pa.float64()),  # loss_a_last - loss_a_min
        ("loss_b_last", pa.float64()),
    ]
)
# A rise smaller than this fraction of the task-A loss at initialisation is no turn (the
# curves are exact; this only keeps float noise on a plateau from counting as a rise).
RISE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Setup:
    input_dim: int
    output_dim: int
    hidden_dim: int
    singular_values: tuple[float, ...]
    init_scale: float
    pretrain_step: float
    times: tuple[int, ...]
    finetune_step: float
    finetune_steps: int
    alignments: tuple[float, ...]
    penalties: tuple[float, ...]
    noise_scale: float
    noise_draws: int

    @classmethod
    def from_config(cls, theory: dict) -> Setup:
        pre, ft, noise = theory["pretrain"], theory["finetune"], theory["perturbation"]
        return cls(
            input_dim=theory["input_dim"],
            output_dim=theory["output_dim"],
            hidden_dim=theory["hidden_dim"],
            singular_values=tuple(float(s) for s in theory["singular_values"]),
            init_scale=theory["init_scale"],
            pretrain_step=pre["step_size"],
            times=pretraining_times(pre["first_time"], pre["last_time"], pre["points"]),
            finetune_step=ft["step_size"],
            finetune_steps=ft["steps"],
            alignments=tuple(float(a) for a in ft["alignments"]),
            penalties=tuple(float(p) for p in ft["penalties"]),
            noise_scale=noise["scale"],
            noise_draws=noise["draws"],
        )


def check(theory: dict) -> list[str]:
    """What the schema cannot say about a theory config: each problem as one sentence."""
    problems = []
    s = theory["singular_values"]
    rank_room = min(theory["input_dim"], theory["output_dim"], theory["hidden_dim"])
    if len(s) > rank_room:
        problems.append(
            f"theory.singular_values has {len(s)} values but the network has rank at most "
            f"{rank_room} (min of input_dim, output_dim, hidden_dim): it could not learn task A; "
            "give fewer singular values or larger dimensions"
        )
    if list(s) != sorted(s, reverse=True) or len(set(s)) != len(s):
        problems.append(
            "theory.singular_values must be distinct and in decreasing order (the order in "
            f"which the directions are learned), not {s}"
        )
    for stage in ("pretrain", "finetune"):
        step = theory[stage]["step_size"]
        # A two-layer net's curvature along a learned direction is about 2 s; GD tracks
        # gradient flow only well below the stability limit 1 / s.
        if step * max(s) > 0.1:
            problems.append(
                f"theory.{stage}.step_size {step} is too large to approximate gradient flow "
                f"with singular values up to {max(s)}: use at most {0.1 / max(s):.3g}"
            )
    pre = theory["pretrain"]
    if pre["first_time"] >= pre["last_time"]:
        problems.append(
            f"theory.pretrain.first_time ({pre['first_time']}) must be below last_time "
            f"({pre['last_time']})"
        )
    return problems


def pretraining_times(first: int, last: int, points: int) -> tuple[int, ...]:
    """`points` pre-training times from first to last, evenly spaced on a log scale (whole
    steps, so fewer where the low end is crowded)."""
    grid = np.round(np.geomspace(first, last, points)).astype(np.int64)
    return tuple(int(t) for t in np.unique(grid))


def _orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))  # the sign fix makes the draw Haar-distributed


def tasks(setup: Setup, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Task A and an unrelated task C with the same spectrum."""
    s = np.diag(setup.singular_values)
    r = len(setup.singular_values)
    a, c = (
        _orthonormal(rng, setup.output_dim, r) @ s @ _orthonormal(rng, setup.input_dim, r).T
        for _ in range(2)
    )
    return a, c


def finetune_target(task_a: np.ndarray, task_c: np.ndarray, alignment: float) -> np.ndarray:
    return alignment * task_a + math.sqrt(max(0.0, 1.0 - alignment**2)) * task_c


def loss(w1: np.ndarray, w2: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1/2 ||W2 W1 - target||_F^2, over any leading batch axes."""
    return 0.5 * np.sum((w2 @ w1 - target) ** 2, axis=(-2, -1))


def gradient_descent(w1, w2, target, step: float, steps: int, penalty=0.0):
    """`steps` of full-batch GD on the loss plus penalty/2 ||theta - theta_start||^2.
    Batched: leading axes of w1, w2, target and penalty (shaped [..., 1, 1]) broadcast."""
    w1_start, w2_start = w1, w2
    for _ in range(steps):
        residual = w2 @ w1 - target
        grad1 = np.swapaxes(w2, -1, -2) @ residual + penalty * (w1 - w1_start)
        grad2 = residual @ np.swapaxes(w1, -1, -2) + penalty * (w2 - w2_start)
        w1, w2 = w1 - step * grad1, w2 - step * grad2
    return w1, w2


def pretrain(setup: Setup, task_a: np.ndarray, rng: np.random.Generator):
    """Snapshots (W1, W2), stacked on a first axis, at each of setup.times."""
    w1 = rng.standard_normal((setup.hidden_dim, setup.input_dim)) * setup.init_scale
    w2 = rng.standard_normal((setup.output_dim, setup.hidden_dim)) * setup.init_scale
    snapshots1, snapshots2, now = [], [], 0
    for until in setup.times:
        w1, w2 = gradient_descent(w1, w2, task_a, setup.pretrain_step, until - now)
        now = until
        snapshots1.append(w1)
        snapshots2.append(w2)
    return np.stack(snapshots1), np.stack(snapshots2)


def expected_noise_increase(w1, w2, scale: float) -> np.ndarray:
    """E[L(W + noise) - L(W)] for N(0, scale^2) noise on every weight (the docstring)."""
    hidden, d_in = w1.shape[-2:]
    d_out = w2.shape[-2]
    norms = d_out * np.sum(w1**2, axis=(-2, -1)) + d_in * np.sum(w2**2, axis=(-2, -1))
    return 0.5 * (scale**2 * norms + scale**4 * d_out * hidden * d_in)


def noise_increase(w1, w2, target, scale: float, draws: int, rng: np.random.Generator):
    """Monte Carlo task-A loss increase under N(0, scale^2) weight noise: mean and standard
    error over `draws` draws, for each stacked snapshot."""
    noise1 = rng.standard_normal((draws, *w1.shape)) * scale
    noise2 = rng.standard_normal((draws, *w2.shape)) * scale
    increase = loss(w1 + noise1, w2 + noise2, target) - loss(w1, w2, target)
    return increase.mean(axis=0), increase.std(axis=0, ddof=1) / math.sqrt(draws)


def _rows(seed, times, model, metric, values, **fixed) -> list[dict]:
    base = {
        "alignment": None,
        "penalty": None,
        "noise_scale": None,
        "stderr": None,
        "n": 1,
    }
    stderr = fixed.pop("stderr", None)
    return [
        {
            **base,
            **fixed,
            "seed": seed,
            "time": int(t),
            "model": model,
            "metric": metric,
            "value": float(v),
            **({"stderr": float(stderr[i])} if stderr is not None else {}),
        }
        for i, (t, v) in enumerate(zip(times, values, strict=True))
    ]


def _norms(w1, w2) -> dict[str, np.ndarray]:
    return {
        "norm_w1": np.sqrt(np.sum(w1**2, axis=(-2, -1))),
        "norm_w2": np.sqrt(np.sum(w2**2, axis=(-2, -1))),
    }


def simulate(setup: Setup, seed: int) -> pd.DataFrame:
    """Every curve for one seed (the tasks, the initialisation and the noise draws)."""
    rng = np.random.default_rng(seed)
    task_a, task_c = tasks(setup, rng)
    w1, w2 = pretrain(setup, task_a, rng)
    times = setup.times
    rows = _rows(seed, times, "pretrained", "loss_a", loss(w1, w2, task_a))
    for name, values in _norms(w1, w2).items():
        rows += _rows(seed, times, "pretrained", name, values)
    singular = np.linalg.svd(w2 @ w1, compute_uv=False)
    for i in range(len(setup.singular_values)):
        rows += _rows(seed, times, "pretrained", f"singular_value_{i + 1}", singular[:, i])

    # Every (alignment, penalty) at once: stacked on two leading axes before the times.
    targets = np.stack([finetune_target(task_a, task_c, a) for a in setup.alignments])
    penalties = np.asarray(setup.penalties)[None, :, None, None, None]
    ft1, ft2 = gradient_descent(
        w1[None, None],
        w2[None, None],
        targets[:, None, None],
        setup.finetune_step,
        setup.finetune_steps,
        penalties,
    )
    for i, alignment in enumerate(setup.alignments):
        for j, penalty in enumerate(setup.penalties):
            fixed = {"alignment": alignment, "penalty": penalty}
            a1, a2 = ft1[i, j], ft2[i, j]
            moved = np.sqrt(
                np.sum((a1 - w1) ** 2, axis=(1, 2)) + np.sum((a2 - w2) ** 2, axis=(1, 2))
            )
            curves = {
                "loss_a": loss(a1, a2, task_a),
                "loss_b": loss(a1, a2, targets[i]),
                "loss_b_before": loss(w1, w2, targets[i]),
                **_norms(a1, a2),
                "distance_moved": moved,
            }
            for name, values in curves.items():
                rows += _rows(seed, times, "finetuned", name, values, **fixed)

    scale = setup.noise_scale
    mean, stderr = noise_increase(w1, w2, task_a, scale, setup.noise_draws, rng)
    noisy = {"noise_scale": scale, "n": setup.noise_draws}
    rows += _rows(seed, times, "perturbed", "loss_a_increase", mean, stderr=stderr, **noisy)
    expected = expected_noise_increase(w1, w2, scale)
    rows += _rows(seed, times, "perturbed", "loss_a_increase_expected", expected, **noisy)
    return pd.DataFrame(rows, columns=SCHEMA.names)


def run(setup: Setup, seeds: list[int]) -> pd.DataFrame:
    return pd.concat([simulate(setup, seed) for seed in seeds], ignore_index=True)


def initial_loss(setup: Setup) -> float:
    """Task-A loss of the zero network, 1/2 sum s_i^2: the scale of every loss here."""
    return 0.5 * float(np.sum(np.square(setup.singular_values)))


def turning_point(times, losses, tolerance: float) -> tuple[float, float, float]:
    """(T at the minimum, minimum, rise to the last time) of a fine-tuned task-A loss curve.
    T is NaN when the curve does not rise more than `tolerance` after its minimum."""
    losses = np.asarray(losses, dtype="float64")
    lowest = int(np.argmin(losses))
    rise = float(losses[-1] - losses[lowest])
    turn = float(times[lowest]) if rise > tolerance else math.nan
    return turn, float(losses[lowest]), rise


def summary(curves: pd.DataFrame, setup: Setup) -> pd.DataFrame:
    """The turning point of every seed, alignment and penalty (SUMMARY_SCHEMA)."""
    ft = curves[curves["model"] == "finetuned"]
    tolerance = RISE_TOLERANCE * initial_loss(setup)
    rows = []
    for (seed, alignment, penalty), group in ft.groupby(["seed", "alignment", "penalty"]):
        a = group[group["metric"] == "loss_a"].sort_values("time")
        b = group[group["metric"] == "loss_b"].sort_values("time")
        turn, lowest, rise = turning_point(a["time"].to_numpy(), a["value"].to_numpy(), tolerance)
        rows.append(
            {
                "seed": seed,
                "alignment": alignment,
                "penalty": penalty,
                "turning_time": turn,
                "loss_a_min": lowest,
                "loss_a_last": float(a["value"].iloc[-1]),
                "rise": rise,
                "loss_b_last": float(b["value"].iloc[-1]),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_SCHEMA.names)


# --- the figure ----------------------------------------------------------------------------


def _mean_curve(rows: pd.DataFrame) -> dict:
    """Mean over seeds, band +- one standard deviation."""
    grouped = rows["value"].groupby(rows["time"])
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    return {"x": mean.index.tolist(), "y": mean.tolist(), "err": sd.tolist()}


def _label(name: str, value: float) -> str:
    return f"{name} {value:g}"


def _turns_note(curves: dict[str, dict]) -> str:
    """The turning point of each mean curve, as a line for the panel's corner."""
    parts = []
    for label, curve in curves.items():
        if not label.startswith("base"):
            tolerance = RISE_TOLERANCE * curve["y"][0]
            turn = turning_point(curve["x"], curve["y"], tolerance)[0]
            parts.append(f"{label}: {'none' if math.isnan(turn) else f'T={turn:.0f}'}")
    return "minimum before a rise (mean curve):\n" + "\n".join(parts)


def panels(curves: pd.DataFrame) -> dict[str, Panel]:
    """The theory figure's panels (drawing.Panel), x = pre-training time T, means over
    seeds with +- one standard deviation. Linear y: the pre-trained loss falls to ~0."""

    def rows(model, metric, **where):
        picked = curves[(curves["model"] == model) & (curves["metric"] == metric)]
        for column, value in where.items():
            picked = picked[np.isclose(picked[column], value)]
        return _mean_curve(picked)

    def panel(curve_dict, ylabel, note=None):
        xlabel = "pre-training time T (GD steps)"
        return Panel(curve_dict, ylabel, xlabel=xlabel, x_tokens=False, note=note)

    alignments = sorted(curves["alignment"].dropna().unique())
    penalties = sorted(curves["penalty"].dropna().unique())
    least, none = alignments[0], penalties[0]
    before = {"base (pre-trained, before fine-tuning)": rows("pretrained", "loss_a")}
    by_alignment = {
        _label("alignment", a): rows("finetuned", "loss_a", alignment=a, penalty=none)
        for a in alignments
    }
    by_penalty = {
        _label("penalty", p): rows("finetuned", "loss_a", alignment=least, penalty=p)
        for p in penalties
    }
    scale = curves["noise_scale"].dropna().iloc[0]
    draws = int(curves.loc[curves["model"] == "perturbed", "n"].iloc[0])
    singular = sorted(
        (m for m in curves["metric"].unique() if m.startswith("singular_value_")),
        key=lambda m: int(m.rsplit("_", 1)[1]),
    )
    return {
        "task-A loss after fine-tuning, by alignment": panel(
            {**before, **by_alignment},
            f"task-A loss (penalty {none:g})",
            note=_turns_note(by_alignment),
        ),
        f"alignment {least:g}: task-A loss after FT, by penalty": panel(
            {**before, **by_penalty}, "task-A loss", note=_turns_note(by_penalty)
        ),
        f"alignment {least:g}: the price, task-B loss after FT": panel(
            {
                _label("penalty", p): rows("finetuned", "loss_b", alignment=least, penalty=p)
                for p in penalties
            },
            "task-B loss",
        ),
        f"alignment {least:g}: how far fine-tuning moves W": panel(
            {
                _label("penalty", p): rows(
                    "finetuned", "distance_moved", alignment=least, penalty=p
                )
                for p in penalties
            },
            "||theta_finetuned - theta_pretrained||",
        ),
        # Early on a Monte Carlo mean can be below zero: the weights are still tiny.
        f"Gaussian noise (scale {scale:g}): task-A loss rise": panel(
            {
                "exact expectation": rows("perturbed", "loss_a_increase_expected"),
                f"Monte Carlo, mean of {draws} draws": rows("perturbed", "loss_a_increase"),
            },
            "task-A loss increase",
        ),
        "pre-training: singular values of W2 W1": panel(
            {f"sigma {m.rsplit('_', 1)[1]}": rows("pretrained", m) for m in singular},
            "singular value",
        ),
    }


TITLE = "Theory: a two-layer linear network pre-trained on task A, fine-tuned on task B"


def write_all(theory_cfg: dict, outputs) -> pd.DataFrame:
    """Run every seed and write `outputs` (curves, summary: Parquet; png, svg: the figure;
    data: its plotted curves as JSON). Returns the summary, also printed to the log."""
    from overtrained.analysis import analysis, drawing, figures
    from overtrained.core import provenance

    setup = Setup.from_config(theory_cfg)
    start = time.perf_counter()
    curves = run(setup, list(theory_cfg["seeds"]))
    turns = summary(curves, setup)
    seconds = time.perf_counter() - start
    metadata = {
        "theory": theory_cfg,
        "code_version": provenance.code_version(),
        "versions": provenance.package_versions(),
        "created": provenance.now(),
        "wall_seconds": round(seconds, 3),
    }
    analysis.write(curves, outputs.curves, SCHEMA, metadata)
    analysis.write(
        turns, outputs.summary, SUMMARY_SCHEMA, {**metadata, "rise_tolerance": RISE_TOLERANCE}
    )
    drawn = panels(curves)
    drawing.draw(drawn, TITLE, "no curves", [Path(outputs.png), Path(outputs.svg)], columns=3)
    Path(outputs.data).write_text(json.dumps(figures.plotted(drawn), indent=1))
    seeds = len(theory_cfg["seeds"])
    print(f"{seeds} seed(s), {len(setup.times)} times: simulated in {seconds:.2f} s")
    print(turns.to_string(index=False))
    return turns

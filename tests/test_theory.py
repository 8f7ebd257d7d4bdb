"""The theory experiment (overtrained/analysis/theory.py): the claims of the paper's Experiment 4,
each asserted on curves computed from the default config (config.yaml's `theory`, which
is the schema's default), for every seed it runs.

Thresholds come from the setup, not from one run's output: the step-size error is measured
by running the same setup at half the step size (gradient descent is only an approximation
of gradient flow); grid resolution is the pre-training time grid itself; the noise check is
a z-test with a Bonferroni correction.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from overtrained.analysis import theory
from overtrained.core import config as C
from tests.workflow_helpers import REPO

THEORY = C.load_file(REPO / "config.yaml")["theory"]
SETUP = theory.Setup.from_config(THEORY)
SEEDS = THEORY["seeds"]


def halved(cfg: dict) -> dict:
    """The same experiment at half the step sizes: twice the steps for the same gradient-flow
    time (pre-training times and fine-tuning steps doubled)."""
    cfg = copy.deepcopy(cfg)
    pre, ft = cfg["pretrain"], cfg["finetune"]
    pre.update(
        step_size=pre["step_size"] / 2,
        first_time=2 * pre["first_time"],
        last_time=2 * pre["last_time"],
    )
    ft.update(step_size=ft["step_size"] / 2, steps=2 * ft["steps"])
    return cfg


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    return theory.run(SETUP, SEEDS)


@pytest.fixture(scope="module")
def turns(curves) -> pd.DataFrame:
    return theory.summary(curves, SETUP)


@pytest.fixture(scope="module")
def step_error(turns) -> pd.DataFrame:
    """|coarse - fine| of each summary number: the discretisation error of the coarse run."""
    fine_setup = theory.Setup.from_config(halved(THEORY))
    fine = theory.summary(theory.run(fine_setup, SEEDS), fine_setup)
    keys = ["seed", "alignment", "penalty"]
    both = turns.merge(fine, on=keys, suffixes=("", "_fine"))
    for column in ("loss_a_min", "loss_a_last", "rise", "loss_b_last"):
        both[f"{column}_error"] = (both[column] - both[f"{column}_fine"]).abs()
    return both


def pick(df: pd.DataFrame, model: str, metric: str, seed: int, **where) -> pd.DataFrame:
    rows = df[(df["model"] == model) & (df["metric"] == metric) & (df["seed"] == seed)]
    for column, value in where.items():
        rows = rows[np.isclose(rows[column], value)]
    return rows.sort_values("time")


def later(a: float, b: float) -> bool:
    """Turning time a is at or after b (NaN: no turn within the times, i.e. after all)."""
    return math.isnan(a) or (not math.isnan(b) and a >= b)


def test_the_default_shows_what_it_claims_to():
    """The tests below need a misaligned task, no penalty and a positive one, and B = A."""
    ft = THEORY["finetune"]
    assert min(ft["alignments"]) < 1 and 1.0 in ft["alignments"]
    assert 0.0 in ft["penalties"] and max(ft["penalties"]) > 0
    assert len(SEEDS) >= 2


@pytest.mark.parametrize("seed", SEEDS)
def test_singular_directions_are_learned_in_order_of_strength(curves, seed):
    """Incremental learning: sigma_i of W2 W1 reaches half its target s_i at a time that
    grows as s_i shrinks, and every sigma_i ends at s_i (the times reach convergence)."""
    halfway = []
    for i, target in enumerate(SETUP.singular_values, 1):
        sigma = pick(curves, "pretrained", f"singular_value_{i}", seed)
        reached = sigma[sigma["value"] >= target / 2]
        assert len(reached), f"sigma {i} never reached {target / 2}"
        halfway.append(int(reached["time"].iloc[0]))
        assert sigma["value"].iloc[-1] == pytest.approx(target, rel=1e-3)
    assert halfway == sorted(halfway) and len(set(halfway)) == len(halfway), halfway


@pytest.mark.parametrize("seed", SEEDS)
def test_a_misaligned_task_turns_upward_without_a_penalty(curves, turns, step_error, seed):
    """Alignment 0, penalty 0: the task-A loss after fine-tuning first falls (pre-training
    helps) and then rises (catastrophic overtraining), each by more than the step-size error
    of the numbers it is computed from."""
    row = step_error.query("seed == @seed and alignment == 0 and penalty == 0").iloc[0]
    after = pick(curves, "finetuned", "loss_a", seed, alignment=0, penalty=0)
    first, lowest, last = after["value"].iloc[0], row["loss_a_min"], row["loss_a_last"]
    error = row["loss_a_min_error"] + row["loss_a_last_error"]
    assert first - lowest > error, (first, lowest, error)
    assert last - lowest > error, (last, lowest, error)
    assert after["time"].iloc[0] < row["turning_time"] < after["time"].iloc[-1]
    # ... while pre-training alone only ever improves task A.
    before = pick(curves, "pretrained", "loss_a", seed)["value"].to_numpy()
    assert (np.diff(before) <= 1e-12 * before[0]).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_penalty_delays_the_turn_and_costs_task_b(turns, step_error, seed):
    """For every misaligned alignment: a larger penalty turns later (or not at all within
    the times) and rises less; the largest turns strictly later than none. The price: the
    task-B loss after fine-tuning grows with the penalty, by more than its step-size error."""
    for alignment in sorted(turns.loc[turns["alignment"] < 1, "alignment"].unique()):
        mine = (step_error["seed"] == seed) & (step_error["alignment"] == alignment)
        rows = step_error[mine].sort_values("penalty")
        times, rises = rows["turning_time"].tolist(), rows["rise"].to_numpy()
        assert all(later(b, a) for a, b in zip(times, times[1:], strict=False)), times
        assert not math.isnan(times[0]) and (math.isnan(times[-1]) or times[-1] > times[0])
        assert (np.diff(rises) < 0).all(), rises
        price = np.diff(rows["loss_b_last"].to_numpy())
        noise = rows["loss_b_last_error"].to_numpy()
        assert (price > noise[:-1] + noise[1:]).all(), (price, noise)


@pytest.mark.parametrize("seed", SEEDS)
def test_fine_tuning_on_task_a_itself_never_degrades_it(curves, turns, seed):
    """Alignment 1 (B = A): the loss after fine-tuning is at most the loss before, at every
    time and penalty (fine-tuning descends L_A + penalty, and the penalty starts at 0), and
    without a penalty it keeps falling with T (it is pre-training for K more steps)."""
    before = pick(curves, "pretrained", "loss_a", seed)["value"].to_numpy()
    for penalty in SETUP.penalties:
        after = pick(curves, "finetuned", "loss_a", seed, alignment=1, penalty=penalty)
        assert (after["value"].to_numpy() <= before * (1 + 1e-9)).all()
    free = pick(curves, "finetuned", "loss_a", seed, alignment=1, penalty=0)["value"].to_numpy()
    assert (np.diff(free) <= 1e-12 * free[0]).all()
    assert turns.query("seed == @seed and alignment == 1")["turning_time"].isna().all()


@pytest.mark.parametrize("seed", SEEDS)
def test_gaussian_noise_hurts_more_with_longer_pre_training(curves, seed):
    """The exact expected loss increase grows with T (up to its value at initialisation, the
    scale of the random start's early decay) and ends where the balanced solution puts it
    (||W1||^2 = ||W2||^2 = sum s_i)."""
    expected = pick(curves, "perturbed", "loss_a_increase_expected", seed)["value"].to_numpy()
    assert (np.diff(expected) >= -expected[0]).all()
    scale, d_in, d_out, h = SETUP.noise_scale, SETUP.input_dim, SETUP.output_dim, SETUP.hidden_dim
    balanced = 0.5 * (
        scale**2 * (d_out + d_in) * sum(SETUP.singular_values) + scale**4 * d_out * h * d_in
    )
    assert expected[-1] == pytest.approx(balanced, rel=1e-3)
    assert expected[-1] > 100 * expected[0]


def test_monte_carlo_noise_agrees_with_the_exact_expectation_at_every_time():
    """On the default run's snapshots, 4000 draws each: a z-test per time, Bonferroni-
    corrected over the times (family-wise error 1e-3). (The table's 32 draws are too few
    for a normal approximation: the increase is skewed.)"""
    rng = np.random.default_rng(SEEDS[0])
    task_a, _ = theory.tasks(SETUP, rng)
    w1, w2 = theory.pretrain(SETUP, task_a, rng)
    mean, stderr = theory.noise_increase(w1, w2, task_a, SETUP.noise_scale, 4000, rng)
    z = (mean - theory.expected_noise_increase(w1, w2, SETUP.noise_scale)) / stderr
    bound = statistics.NormalDist().inv_cdf(1 - 1e-3 / (2 * len(z)))
    assert np.abs(z).max() < bound, (np.abs(z).max(), bound)


def test_expected_noise_increase_matches_a_large_sample():
    """The closed form against brute force on one random pair of matrices."""
    rng = np.random.default_rng(7)
    w1, w2 = rng.standard_normal((3, 5)), rng.standard_normal((4, 3))
    target = rng.standard_normal((4, 5))
    mean, stderr = theory.noise_increase(w1, w2, target, 0.3, 20000, rng)
    exact = theory.expected_noise_increase(w1, w2, 0.3)
    assert abs(mean - exact) < 4.5 * stderr


def test_gradient_descent_matches_the_analytic_gradient():
    """One step of the batched GD equals a finite-difference step on the loss + penalty."""
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    target = rng.standard_normal((2, 4))
    step, penalty = 1e-3, 0.7
    n1, n2 = theory.gradient_descent(w1, w2, target, step, 1, penalty)

    def objective(a, b):  # at the start the penalty's gradient is 0; its curvature is not
        return theory.loss(a, b, target)

    eps = 1e-6
    for w, new, which in ((w1, n1, 0), (w2, n2, 1)):
        grad = np.zeros_like(w)
        for index in np.ndindex(w.shape):
            bumped = w.copy()
            bumped[index] += eps
            args = (bumped, w2) if which == 0 else (w1, bumped)
            grad[index] = (objective(*args) - objective(w1, w2)) / eps
        np.testing.assert_allclose((w - new) / step, grad, rtol=1e-4, atol=1e-4)


def test_the_same_seed_gives_the_same_numbers_and_another_seed_does_not():
    a, b = theory.simulate(SETUP, 0), theory.simulate(SETUP, 0)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["value"], theory.simulate(SETUP, 1)["value"])


def test_finetune_target_is_a_mix_of_a_and_c():
    rng = np.random.default_rng(0)
    a, c = theory.tasks(SETUP, rng)
    np.testing.assert_allclose(np.linalg.svd(a, compute_uv=False), SETUP.singular_values)
    np.testing.assert_allclose(np.linalg.svd(c, compute_uv=False), SETUP.singular_values)
    assert np.array_equal(theory.finetune_target(a, c, 1.0), a)
    assert np.array_equal(theory.finetune_target(a, c, 0.0), c)


def test_turning_point_reads_the_minimum_and_ignores_float_noise():
    times = [1, 2, 3, 4]
    assert theory.turning_point(times, [3.0, 1.0, 2.0, 2.5], 1e-6) == (2.0, 1.0, 1.5)
    turn, lowest, rise = theory.turning_point(times, [3.0, 2.0, 1.0, 1.0 + 1e-9], 1e-6)
    assert math.isnan(turn) and lowest == 1.0 and rise == pytest.approx(1e-9)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (lambda t: t.update(singular_values=[3, 2, 1, 0.5, 0.2]), "rank at most 4"),
        (lambda t: t.update(singular_values=[1, 2]), "decreasing order"),
        (lambda t: t["pretrain"].update(step_size=0.1), "theory.pretrain.step_size 0.1 is too"),
        (lambda t: t["finetune"].update(step_size=0.05), "theory.finetune.step_size 0.05"),
        (lambda t: t["pretrain"].update(first_time=100, last_time=50), "must be below"),
        (lambda t: t["finetune"].update(alignments=[1.5]), "theory.finetune.alignments[0]"),
        (lambda t: t.update(noise=0.1), "theory.noise: unknown key"),
    ],
)
def test_bad_theory_configs_are_refused_with_the_key_and_a_fix(patch, message):
    raw = {"theory": copy.deepcopy(THEORY)}
    patch(raw["theory"])
    with pytest.raises(C.ConfigError) as error:
        C.load(raw)
    assert message in str(error.value), str(error.value)


def test_write_all_writes_typed_tables_with_provenance_and_a_figure(tmp_path):
    cfg = copy.deepcopy(THEORY)
    cfg["seeds"] = [0]
    cfg["pretrain"]["points"] = 12
    out = SimpleNamespace(
        curves=tmp_path / "t.parquet",
        summary=tmp_path / "s.parquet",
        png=tmp_path / "t.png",
        svg=tmp_path / "t.svg",
        data=tmp_path / "t.json",
    )
    summary = theory.write_all(cfg, out)
    table = pq.read_table(out.curves)
    assert table.schema.remove_metadata() == theory.SCHEMA
    assert pq.read_table(out.summary).schema.remove_metadata() == theory.SUMMARY_SCHEMA
    meta = table.schema.metadata
    assert b"code_version" in meta and b"versions" in meta
    assert json.loads(meta[b"theory"]) == cfg
    n_cells = len(cfg["finetune"]["alignments"]) * len(cfg["finetune"]["penalties"])
    assert len(summary) == n_cells
    drawn = json.loads(out.data.read_text())
    assert len(drawn) == 6
    assert out.png.stat().st_size > 10_000 and out.svg.stat().st_size > 10_000

"""overtrained.analysis.analysis: the LR chosen per checkpoint, and the overtraining verdicts.

Every metrics frame is built here from curves of known shape (a bowl in log-LR, a U or a
monotone line in tokens, seeds placed symmetrically around a mean), so each expected answer
follows from the construction, not from running the code."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overtrained.analysis import aggregate, statistics
from overtrained.analysis import analysis as A
from tests.builders import TOKENS, metrics, row
from tests.workflow_helpers import REPO

Z = 1.959963984540054


def id_row(tokens, value, **kw) -> dict:
    """The fine-tuned model's loss on its own task (what selects the LR)."""
    return row(tokens, value, metric="id_loss", eval_task=kw.pop("ft_task", "t"), **kw)


def lm_row(tokens, value, task="arc", metric="acc", **kw) -> dict:
    return row(tokens, value, metric=metric, suite="bench", eval_task=task, **kw)


def one(frame: pd.DataFrame, **where) -> pd.Series:
    for column, value in where.items():
        match = frame[column].isna() if value is None else frame[column] == value
        frame = frame[match]
    assert len(frame) == 1, frame
    return frame.iloc[0]


def fixed(over, metric="pretrain_loss", lr=1e-3, **where) -> pd.Series:
    return one(over, lr_mode="fixed", metric=metric, lr=lr, **where)


# --- best_lr ---------------------------------------------------------------------------------

LRS = [1e-4, 1e-3, 1e-2]


def bowl(lr: float) -> float:
    """ID loss as a bowl in log10(LR), lowest at 1e-3."""
    return 2.0 + 0.1 * (math.log10(lr) + 3) ** 2


def test_best_lr_is_the_lowest_id_loss_averaged_over_ft_seeds():
    swing = 0.3  # seed 0 favours 1e-2 by this much, seed 1 disfavours it as much
    rows = [row(1000, 0.5, model="base", metric="id_loss", eval_task="t")]  # never a candidate
    for lr in LRS:
        for seed, sign in ((0, -1), (1, 1)):
            offset = sign * swing if lr == 1e-2 else 0.0
            rows.append(id_row(1000, bowl(lr) + offset, lr=lr, ft_seed=seed))
            rows.append(row(1000, 0.1, "final_train_loss", suite="train", lr=lr, ft_seed=seed))
    best = A.best_lr(metrics(rows))
    assert list(best.columns) == A.BEST_LR_SCHEMA.names
    chosen = one(best)
    assert chosen.lr == 1e-3 and chosen.value == pytest.approx(bowl(1e-3))
    assert (chosen.n_lrs, chosen.n_diverged, chosen.status) == (3, 0, "ok")
    assert chosen.selection_metric == "id_loss" and "smaller LR" in chosen.selection_rule
    assert (chosen.family, chosen.checkpoint, chosen.tokens, chosen.pretrain_seed) == (
        "f",
        "1K-seed0",
        1000,
        0,
    )
    seed0 = A.best_lr(metrics([r for r in rows if r["ft_seed"] in (0, None)]))
    assert one(seed0).lr == 1e-2  # so the average, not one seed, decided


@pytest.mark.parametrize(
    "per_lr",
    [
        {1e-4: [2.0], 1e-3: [2.5], 1e-2: [2.0]},  # exact tie between 1e-4 and 1e-2
        {1e-4: [0.1, 0.2], 1e-3: [0.15, 0.15]},  # tie up to float rounding of the seed mean
    ],
)
def test_best_lr_breaks_a_tie_toward_the_smaller_lr(per_lr):
    assert np.mean([0.1, 0.2]) > 0.15  # in the second case 1e-4 is a hair worse in floats
    rows = [
        id_row(1000, v, lr=lr, ft_seed=seed)
        for lr, values in per_lr.items()
        for seed, v in enumerate(values)
    ]
    assert one(A.best_lr(metrics(rows))).lr == 1e-4


def test_best_lr_excludes_an_lr_any_of_whose_seeds_diverged():
    rows = []
    for seed in (0, 1):
        rows.append(id_row(1000, 2.0, lr=1e-3, ft_seed=seed))
        rows.append(id_row(1000, 1.0, lr=1e-2, ft_seed=seed))  # lower, but seed 1 diverged
    # only the diverged run's train row says so (its probe rows claim "ok")
    rows.append(
        row(
            1000, math.nan, "final_train_loss", suite="train", lr=1e-2, ft_seed=1, status="diverged"
        )
    )
    chosen = one(A.best_lr(metrics(rows)))
    assert (chosen.lr, chosen.value, chosen.n_lrs, chosen.n_diverged) == (1e-3, 2.0, 2, 1)


@pytest.mark.parametrize(
    ("losses", "diverged", "edge"),
    [
        ({1e-4: 1.0, 1e-3: 2.0, 1e-2: 3.0}, (), "lowest"),  # the optimum may lie below 1e-4
        ({1e-4: 3.0, 1e-3: 1.0, 1e-2: 2.0}, (), None),  # interior: a tuning
        ({1e-4: 3.0, 1e-3: 2.0, 1e-2: 1.0}, (), "highest"),
        ({1e-4: 3.0, 1e-3: 1.0, 1e-2: 0.5}, (1e-2,), None),  # bounded above by divergence
        ({1e-3: 1.0}, (), "only"),
    ],
)
def test_a_tuned_lr_at_an_end_of_its_grid_is_flagged(losses, diverged, edge):
    rows = [id_row(1000, v, lr=lr) for lr, v in losses.items()]
    rows += [
        row(1000, math.nan, "final_train_loss", suite="train", lr=lr, status="diverged")
        for lr in diverged
    ]
    chosen = one(A.best_lr(metrics(rows)))
    assert chosen.grid_edge == edge or (edge is None and pd.isna(chosen.grid_edge))


def test_the_tuned_curve_and_its_summary_count_the_grid_edges():
    rows = []
    for i, t in enumerate(TOKENS):
        low_wins = i < 3  # the lowest LR wins at three budgets, the middle one at two
        for lr in LRS:
            rows.append(row(t, 3.0 - 0.1 * i, lr=lr))
            rows.append(
                id_row(t, 1.0 if (lr == LRS[0]) == low_wins and lr != LRS[2] else 2.0, lr=lr)
            )
    over = A.overtraining(metrics(rows))
    assert one(over, lr_mode="tuned", metric="pretrain_loss").n_at_grid_edge == 3
    assert pd.isna(fixed(over, lr=LRS[0]).n_at_grid_edge)
    assert "tuned (3 at grid edge)" in A.summary(over)


def test_when_every_lr_diverged_the_lr_is_null_and_the_status_says_so():
    rows = [id_row(1000, math.nan, lr=lr, status="diverged") for lr in LRS]
    rows += [id_row(2000, bowl(lr), lr=lr) for lr in LRS]
    best = A.best_lr(metrics(rows))
    gone, fine = one(best, tokens=1000), one(best, tokens=2000)
    assert gone.status == "all diverged" and math.isnan(gone.lr) and math.isnan(gone.value)
    assert (gone.n_lrs, gone.n_diverged) == (3, 3)
    assert fine.status == "ok" and fine.lr == 1e-3


def test_a_hub_checkpoint_has_a_null_pretrain_seed():
    rows = [id_row(t, bowl(lr), lr=lr, pretrain_seed=None) for t in TOKENS for lr in LRS]
    best = A.best_lr(metrics(rows))
    assert len(best) == len(TOKENS) and best.pretrain_seed.isna().all()
    assert (best.lr == 1e-3).all() and best.checkpoint.tolist() == [f"step{t}" for t in TOKENS]
    rows += [
        row(t, 3.0 - 0.1 * i, lr=lr, pretrain_seed=None) for i, t in enumerate(TOKENS) for lr in LRS
    ]
    tuned = one(A.overtraining(metrics(rows)), lr_mode="tuned", metric="pretrain_loss")
    assert tuned.n_checkpoints == len(TOKENS) and tuned.best_checkpoint == "step16000"


# --- overtraining: the shape of a curve ------------------------------------------------------


@pytest.mark.parametrize(
    "metric, make",
    [
        ("pretrain_loss", lambda i, t: row(t, 3.0 + 1.0 / (i + 1))),  # falls
        ("acc", lambda i, t: lm_row(t, 0.3 + 0.05 * i)),  # rises
    ],
)
def test_a_monotonically_improving_curve_shows_no_degradation(metric, make):
    over = A.overtraining(metrics([make(i, t) for i, t in enumerate(TOKENS)]))
    r = fixed(over, metric=metric, eval_task=None if metric == "pretrain_loss" else "arc")
    assert r.verdict == "no degradation" and r.reason == "best at the last checkpoint"
    assert r.best_tokens == r.last_tokens == TOKENS[-1] and r.change == 0.0
    assert r.n_checkpoints == len(TOKENS) and r.direction == (
        "lower" if metric != "acc" else "higher"
    )


def test_a_u_shaped_curve_degrades_with_its_best_in_the_middle():
    depth, noise = 0.5, 0.01  # loss = 3 + depth (i - 2)^2, two pre-training seeds at +-noise
    rows = [
        row(t, 3.0 + depth * (i - 2) ** 2 + sign * noise, pretrain_seed=seed)
        for i, t in enumerate(TOKENS)
        for seed, sign in ((0, -1), (1, 1))
    ]
    r = fixed(A.overtraining(metrics(rows)))
    assert r.best_tokens == TOKENS[2] and r.best_checkpoint == "4K"  # two seeds: the budget
    assert r.best_value == pytest.approx(3.0) and r.last_value == pytest.approx(3.0 + 4 * depth)
    assert r.change == pytest.approx(4 * depth)
    assert r.ci_method == "seeds" and 0 < r.ci_low < r.change < r.ci_high
    assert r.verdict == "degrades"


def test_a_peaked_accuracy_degrades_too_with_the_change_positive():
    rows = [lm_row(t, 0.6 - 0.05 * (i - 2) ** 2, stderr=0.005) for i, t in enumerate(TOKENS)]
    r = fixed(A.overtraining(metrics(rows)), metric="acc", eval_task="arc")
    assert r.best_tokens == TOKENS[2] and r.best_checkpoint == "4K-seed0"
    assert r.change == pytest.approx(0.05 * 4)  # last is lower: worse, so positive
    assert r.verdict == "degrades"


def flat(amplitude: float, stderr: float) -> list[dict]:
    """Accuracy 0.5 with one wiggle (+amplitude at the 2nd budget), one seed, with stderr."""
    wiggle = [0, 1, 0, -1, 0]
    return [
        lm_row(t, 0.5 + amplitude * w, stderr=stderr) for t, w in zip(TOKENS, wiggle, strict=True)
    ]


def test_a_noisy_flat_curve_is_inconclusive():
    amplitude, stderr = 0.005, 0.05
    r = fixed(A.overtraining(metrics(flat(amplitude, stderr))), metric="acc", eval_task="arc")
    assert r.best_tokens == TOKENS[1] and r.change == pytest.approx(amplitude)
    half = Z * math.hypot(stderr, stderr)
    assert r.ci_method == "stderr"
    assert (r.ci_low, r.ci_high) == pytest.approx((amplitude - half, amplitude + half))
    assert r.verdict == "inconclusive" and "includes 0" in r.reason


def test_a_flat_curve_measured_precisely_shows_no_degradation():
    amplitude, stderr = 0.001, 0.001  # CI about [-0.002, 0.004], inside the 0.01 tolerance
    r = fixed(A.overtraining(metrics(flat(amplitude, stderr))), metric="acc", eval_task="arc")
    assert r.best_tokens < r.last_tokens and r.ci_low < 0 < r.ci_high
    assert -r.tolerance <= r.ci_low and r.ci_high <= r.tolerance
    assert r.verdict == "no degradation" and "within" in r.reason
    loose = A.overtraining(metrics(flat(amplitude, stderr)), tolerance=0.001)
    assert fixed(loose, metric="acc", eval_task="arc").verdict == "inconclusive"


def test_fewer_than_three_checkpoints_is_inconclusive_whatever_the_curve():
    rows = [
        row(t, 3.0 + i + sign * 0.01, ft_seed=seed)
        for i, t in enumerate(TOKENS[:2])
        for seed, sign in ((0, -1), (1, 1))
    ]
    r = fixed(A.overtraining(metrics(rows)))
    assert r.ci_low > 0  # clearly worse at the last budget, yet two points are no curve
    assert r.verdict == "inconclusive" and r.reason.startswith("only 2 checkpoint")


def test_a_tie_for_best_goes_to_the_earliest_budget():
    values = [3.0, 2.0, 2.5, 2.0, 2.2]  # best 2.0 at the 2nd and 4th budgets
    r = fixed(A.overtraining(metrics([row(t, v) for t, v in zip(TOKENS, values, strict=True)])))
    assert r.best_tokens == TOKENS[1] and r.change == pytest.approx(0.2)


# --- overtraining: confidence intervals ------------------------------------------------------


def test_the_ci_comes_from_seeds_when_there_are_several():
    stats = pytest.importorskip("scipy.stats")
    spread, means = 0.1, [1.0, 0.5, 1.5]  # best at the 2nd budget, change 1.0
    rows = [
        row(t, m + k * spread, ft_seed=seed, stderr=0.001)  # seeds win over the stderr
        for t, m in zip(TOKENS, means, strict=False)
        for seed, k in enumerate((-1, 0, 1))
    ]
    r = fixed(A.overtraining(metrics(rows)))
    # three seeds at m - s, m, m + s: variance s^2 at both points, Welch df = 4
    half = stats.t.ppf(0.975, 4) * math.sqrt(2 * spread**2 / 3)
    assert r.ci_method == "seeds" and r.change == pytest.approx(1.0)
    assert (r.ci_low, r.ci_high) == pytest.approx((1.0 - half, 1.0 + half), rel=1e-4)


def test_the_ci_comes_from_standard_errors_with_one_seed():
    errors = [0.03, 0.03, 0.04]  # best at the 2nd budget, last at the 3rd
    rows = [row(t, m, stderr=e) for t, m, e in zip(TOKENS, [1.0, 0.5, 1.5], errors, strict=False)]
    r = fixed(A.overtraining(metrics(rows)))
    half = Z * math.hypot(0.03, 0.04)
    assert r.ci_method == "stderr"
    assert (r.ci_low, r.ci_high) == pytest.approx((1.0 - half, 1.0 + half))


def test_without_seeds_or_standard_errors_there_is_no_ci_and_no_verdict():
    rows = [row(t, m) for t, m in zip(TOKENS, [1.0, 0.5, 1.5], strict=False)]
    r = fixed(A.overtraining(metrics(rows)))
    assert r.ci_method == "none" and math.isnan(r.ci_low) and math.isnan(r.ci_high)
    assert r.verdict == "inconclusive" and "no confidence interval" in r.reason


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in [*range(1, 31), 31, 45, 80, 200, 10_000]:
        assert statistics.t_95(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-4)


# --- overtraining: LRs, divergence, missing checkpoints, averages ------------------------------


def test_a_missing_checkpoint_or_diverged_point_shortens_only_that_lrs_curve():
    small, large = 1e-3, 1e-2
    loss = {small: lambda i: 3.0 - 0.1 * i, large: lambda i: 4.0 - 0.1 * i}
    id_loss = {small: 2.0, large: 1.0}  # the large LR wins wherever it has a point
    rows = []
    for i, t in enumerate(TOKENS):
        rows += [row(t, loss[small](i), lr=small), id_row(t, id_loss[small], lr=small)]
        if i == 3:
            continue  # never fine-tuned at the large LR
        status = "diverged" if i == 1 else "ok"
        value = 0.0 if i == 1 else None  # would be the best point, and win the LR, if counted
        rows.append(row(t, value if value is not None else loss[large](i), lr=large, status=status))
        rows.append(
            id_row(t, value if value is not None else id_loss[large], lr=large, status=status)
        )
    m = metrics(rows)
    best = A.best_lr(m)
    chosen = {r.tokens: r.lr for r in best.itertuples()}
    assert chosen == {
        TOKENS[0]: large,
        TOKENS[1]: small,
        TOKENS[2]: large,
        TOKENS[3]: small,
        TOKENS[4]: large,
    }
    assert one(best, tokens=TOKENS[1]).n_diverged == 1 and one(best, tokens=TOKENS[3]).n_lrs == 1
    over = A.overtraining(m, best)
    assert fixed(over, lr=small).n_checkpoints == 5
    r = fixed(over, lr=large)
    assert r.n_checkpoints == 3 and r.best_tokens == TOKENS[-1] and r.verdict == "no degradation"
    tuned = one(over, lr_mode="tuned", metric="pretrain_loss")
    curve = [loss[chosen[t]](i) for i, t in enumerate(TOKENS)]
    best_i = int(np.argmin(curve))
    assert tuned.n_checkpoints == 5 and tuned.best_tokens == TOKENS[best_i]
    assert tuned.change == pytest.approx(curve[-1] - curve[best_i])


def test_the_tuned_curve_follows_the_chosen_lr_and_can_degrade_where_fixed_lrs_do_not():
    small, large, spread = 1e-3, 1e-2, 0.01
    loss = {small: lambda i: 3.0 - 0.1 * i, large: lambda i: 5.0 - 0.1 * i}  # both improve
    rows = []
    for i, t in enumerate(TOKENS):
        winner = small if i < 2 else large  # the ID loss prefers the large LR from budget 3
        for lr in (small, large):
            for seed, sign in ((0, -1), (1, 1)):
                rows.append(row(t, loss[lr](i) + sign * spread, lr=lr, ft_seed=seed))
                rows.append(id_row(t, 1.0 if lr == winner else 2.0, lr=lr, ft_seed=seed))
    over = A.overtraining(metrics(rows))
    tuned = one(over, lr_mode="tuned", metric="pretrain_loss")
    curve = [loss[small if i < 2 else large](i) for i in range(len(TOKENS))]
    assert math.isnan(tuned.lr) and tuned.best_tokens == TOKENS[int(np.argmin(curve))]
    assert tuned.change == pytest.approx(curve[-1] - min(curve))
    assert tuned.ci_method == "seeds" and tuned.verdict == "degrades"
    for lr in (small, large):
        assert fixed(over, lr=lr).verdict == "no degradation"
    own = one(over, lr_mode="tuned", metric="id_loss")
    assert own.eval_task == "t" and own.best_value == pytest.approx(1.0)


def test_the_benchmark_average_is_the_mean_over_a_suites_tasks_with_its_error():
    se, n = 0.01, 100
    peak = {"arc": (0.6, 0.02), "piqa": (0.7, 0.01)}  # acc = top - drop (i - 2)^2
    rows = []
    for i, t in enumerate(TOKENS):
        for task, (top, drop) in peak.items():
            if task == "piqa" and i == 0:
                continue  # a model without every task has no average point
            rows.append(lm_row(t, top - drop * (i - 2) ** 2, task, stderr=se, n=n))
        exact = 0.2 + 0.1 * i  # no stderr: the binomial one from n
        rows.append(lm_row(t, exact, "gsm", "exact_match[strict-match]", n=n))
        rows.append(lm_row(t, 1e9, "wiki", "word_perplexity", n=n))  # not analysed
        rows.append(row(t, 123.0, "tokens_per_second", suite="train"))  # not analysed
    over = A.overtraining(metrics(rows))
    assert set(over.metric) == {"acc", "exact_match[strict-match]"}
    avg = fixed(over, metric="acc", eval_task="average")
    mean_drop = (peak["arc"][1] + peak["piqa"][1]) / 2
    assert avg.suite == "bench" and avg.n_checkpoints == len(TOKENS) - 1
    assert avg.best_value == pytest.approx((0.6 + 0.7) / 2)
    assert avg.change == pytest.approx(mean_drop * 4)
    half = Z * math.hypot(se / math.sqrt(2), se / math.sqrt(2))  # each point: sqrt(2 se^2) / 2
    assert avg.ci_high - avg.change == pytest.approx(half)
    assert avg.verdict == "degrades"
    em = fixed(over, metric="exact_match[strict-match]", eval_task="gsm")
    assert em.direction == "higher" and em.verdict == "no degradation"


def test_the_binomial_error_stands_in_for_a_missing_accuracy_stderr():
    n, values = 100, [0.5, 0.7, 0.6]  # best at the 2nd budget
    r = fixed(
        A.overtraining(metrics([lm_row(t, v, n=n) for t, v in zip(TOKENS, values, strict=False)])),
        metric="acc",
        eval_task="arc",
    )
    se = [math.sqrt(v * (1 - v) / (n - 1)) for v in values[1:]]
    assert r.ci_method == "stderr" and r.change == pytest.approx(0.1)
    assert r.ci_high - r.change == pytest.approx(Z * math.hypot(*se))


# --- summary and Parquet ---------------------------------------------------------------------


@pytest.fixture
def verdicts() -> pd.DataFrame:
    """A U (degrades), a monotone line (no degradation) and a two-budget curve."""
    rows = [
        row(t, 3.0 + 0.5 * (i - 2) ** 2 + sign * 0.01, ft_seed=seed)
        for i, t in enumerate(TOKENS)
        for seed, sign in ((0, -1), (1, 1))
    ]
    rows += [row(t, 3.0 - 0.1 * i, lr=1e-2) for i, t in enumerate(TOKENS)]
    rows += [id_row(t, 2.0 - 0.1 * i) for i, t in enumerate(TOKENS[:2])]
    over = A.overtraining(metrics(rows))
    assert set(over.verdict) == {"degrades", "no degradation", "inconclusive"}
    return over


def test_summary_table_has_fixed_width_columns(verdicts):
    lines = A.summary(verdicts).splitlines()
    assert lines[0].split() == [
        "family",
        "task",
        "metric",
        "lr",
        "best",
        "at",
        "change",
        "CI",
        "verdict",
    ]
    assert len(lines) == 2 + len(verdicts)
    at = lines[0].index("verdict")
    for line, verdict in zip(lines[2:], verdicts.verdict, strict=True):
        assert line[at:] == verdict
    assert "4K of 16K" in A.summary(verdicts)
    assert [A._tokens_label(t) for t in (15872, 32000, 3_094e9, 950)] == [
        "15.9K",
        "32K",
        "3.09T",
        "950",
    ]


def test_summary_csv_json_and_markdown_are_machine_readable(verdicts):
    back = pd.read_csv(io.StringIO(A.summary(verdicts, "csv")))
    assert list(back.columns) == A.OVERTRAINING_SCHEMA.names
    assert back.verdict.tolist() == verdicts.verdict.tolist()
    assert back.change.tolist() == pytest.approx(verdicts.change.tolist())
    records = json.loads(A.summary(verdicts, "json"))
    assert len(records) == len(verdicts) and set(records[0]) == set(A.OVERTRAINING_SCHEMA.names)
    tuned = [r for r in records if r["lr_mode"] == "tuned"]
    assert tuned and all(r["lr"] is None for r in tuned)  # NaN becomes null, valid JSON
    lines = A.summary(verdicts, "markdown").splitlines()
    assert lines[0] == "| " + " | ".join(A.SUMMARY_COLUMNS) + " |"
    assert set(lines[1]) == {"|", "-"} and len(lines) == 2 + len(verdicts)
    with pytest.raises(ValueError, match="unknown summary format"):
        A.summary(verdicts, "html")


@pytest.mark.parametrize("name", ["best_lr", "overtraining"])
def test_parquet_round_trip_keeps_the_declared_schema_and_metadata(tmp_path, verdicts, name):
    schema = A.BEST_LR_SCHEMA if name == "best_lr" else A.OVERTRAINING_SCHEMA
    rows = [
        id_row(t, bowl(lr), lr=lr, status="diverged" if t == TOKENS[0] else "ok")
        for t in TOKENS
        for lr in LRS
    ]
    frame = A.best_lr(metrics(rows)) if name == "best_lr" else verdicts
    path = tmp_path / f"{name}.parquet"
    A.write(frame, path, schema, {"config_hash": "abc", "tolerance": A.TOLERANCE})
    table = pq.read_table(path)
    assert table.schema.remove_metadata().equals(schema)
    assert json.loads(table.schema.metadata[b"tolerance"]) == A.TOLERANCE
    assert json.loads(table.schema.metadata[b"config_hash"]) == "abc"
    assert table.num_rows == len(frame)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame)
    for field in schema:
        dtype = back[field.name].dtype
        if field.type == pa.int64():
            assert dtype == pd.Int64Dtype(), field.name
        elif field.type == pa.float64():
            assert dtype == np.float64, field.name
        else:
            assert pd.api.types.is_string_dtype(dtype), field.name


def test_parquet_of_an_empty_result_and_a_mistyped_column(tmp_path):
    empty = A.overtraining(metrics([]))
    assert empty.empty and list(empty.columns) == A.OVERTRAINING_SCHEMA.names
    A.write(empty, tmp_path / "empty.parquet", A.OVERTRAINING_SCHEMA, {})
    assert (
        pq.read_schema(tmp_path / "empty.parquet").remove_metadata().equals(A.OVERTRAINING_SCHEMA)
    )
    bad = A.best_lr(metrics([id_row(1000, 1.0)])).assign(tokens="many")
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        A.write(bad, tmp_path / "bad.parquet", A.BEST_LR_SCHEMA, {})


# --- the real tiny run -------------------------------------------------------------------------

# Rows of results/tables/metrics.parquet from `snakemake --configfile tests/configs/tiny.yaml`
# (family tiny, pre-training seed 0, fine-tuning seed 0): the base models, the task `arith`
# at its two LRs, and a perturbation row; values rounded to 6 digits, provenance left out.
TINY_RUN = """\
checkpoint,budget,tokens,model,ft_task,lr,suite,eval_task,metric,value,stderr,n,status
16K-seed0,16K,15872,base,,,pretrain,,final_train_loss,4.36776,,15872,ok
32K-seed0,32K,32000,base,,,pretrain,,final_train_loss,3.99807,,32000,ok
16K-seed0,16K,15872,finetuned,arith,0.001,train,,final_train_loss,5.55177,,,ok
16K-seed0,16K,15872,finetuned,arith,0.001,train,,tokens_seen,412,,,ok
16K-seed0,16K,15872,finetuned,arith,0.01,train,,final_train_loss,5.25105,,,ok
16K-seed0,16K,15872,finetuned,arith,0.01,train,,tokens_seen,412,,,ok
32K-seed0,32K,32000,finetuned,arith,0.001,train,,final_train_loss,5.65513,,,ok
32K-seed0,32K,32000,finetuned,arith,0.001,train,,tokens_seen,412,,,ok
32K-seed0,32K,32000,finetuned,arith,0.01,train,,final_train_loss,5.60717,,,ok
32K-seed0,32K,32000,finetuned,arith,0.01,train,,tokens_seen,412,,,ok
16K-seed0,16K,15872,base,,,mini,mini_corpus_language,bits_per_byte,3.5748,,16,ok
16K-seed0,16K,15872,base,,,mini,mini_arithmetic,acc,0.375,0.125,16,ok
16K-seed0,16K,15872,base,,,mini,mini_arithmetic,acc_norm,0.375,0.125,16,ok
16K-seed0,16K,15872,base,,,mini,mini_topic_classification,acc,0.125,0.0853913,16,ok
16K-seed0,16K,15872,base,,,mini,mini_topic_classification,acc_norm,0.125,0.0853913,16,ok
16K-seed0,16K,15872,base,,,probes,,pretrain_loss,4.35642,,1920,ok
16K-seed0,16K,15872,base,,,probes,arith,id_loss,5.84896,,67,ok
16K-seed0,16K,15872,base,,,probes,lang,id_loss,4.38337,,1049,ok
16K-seed0,16K,15872,base,,,probes,topic,id_loss,5.40611,,84,ok
16K-seed0,16K,15872,finetuned,arith,0.001,mini,mini_corpus_language,bits_per_byte,3.58407,,16,ok
16K-seed0,16K,15872,finetuned,arith,0.001,mini,mini_arithmetic,acc,0.1875,0.100778,16,ok
16K-seed0,16K,15872,finetuned,arith,0.001,mini,mini_arithmetic,acc_norm,0.1875,0.100778,16,ok
16K-seed0,16K,15872,finetuned,arith,0.001,mini,mini_topic_classification,acc,0.125,0.0853913,16,ok
16K-seed0,16K,15872,finetuned,arith,0.001,mini,mini_topic_classification,acc_norm,0.125,0.0853913,16,ok
16K-seed0,16K,15872,finetuned,arith,0.001,probes,,pretrain_loss,4.37114,,1920,ok
16K-seed0,16K,15872,finetuned,arith,0.001,probes,arith,id_loss,5.50585,,67,ok
16K-seed0,16K,15872,finetuned,arith,0.01,mini,mini_corpus_language,bits_per_byte,4.19985,,16,ok
16K-seed0,16K,15872,finetuned,arith,0.01,mini,mini_arithmetic,acc,0.1875,0.100778,16,ok
16K-seed0,16K,15872,finetuned,arith,0.01,mini,mini_arithmetic,acc_norm,0.1875,0.100778,16,ok
16K-seed0,16K,15872,finetuned,arith,0.01,mini,mini_topic_classification,acc,0.125,0.0853913,16,ok
16K-seed0,16K,15872,finetuned,arith,0.01,mini,mini_topic_classification,acc_norm,0.125,0.0853913,16,ok
16K-seed0,16K,15872,finetuned,arith,0.01,probes,,pretrain_loss,5.10223,,1920,ok
16K-seed0,16K,15872,finetuned,arith,0.01,probes,arith,id_loss,5.22855,,67,ok
32K-seed0,32K,32000,base,,,mini,mini_corpus_language,bits_per_byte,3.22199,,16,ok
32K-seed0,32K,32000,base,,,mini,mini_arithmetic,acc,0.1875,0.100778,16,ok
32K-seed0,32K,32000,base,,,mini,mini_arithmetic,acc_norm,0.1875,0.100778,16,ok
32K-seed0,32K,32000,base,,,mini,mini_topic_classification,acc,0.125,0.0853913,16,ok
32K-seed0,32K,32000,base,,,mini,mini_topic_classification,acc_norm,0.125,0.0853913,16,ok
32K-seed0,32K,32000,base,,,probes,,pretrain_loss,3.87703,,1920,ok
32K-seed0,32K,32000,base,,,probes,arith,id_loss,6.23812,,67,ok
32K-seed0,32K,32000,base,,,probes,lang,id_loss,3.93383,,1049,ok
32K-seed0,32K,32000,base,,,probes,topic,id_loss,5.43424,,84,ok
32K-seed0,32K,32000,finetuned,arith,0.001,mini,mini_corpus_language,bits_per_byte,3.24683,,16,ok
32K-seed0,32K,32000,finetuned,arith,0.001,mini,mini_arithmetic,acc,0.25,0.111803,16,ok
32K-seed0,32K,32000,finetuned,arith,0.001,mini,mini_arithmetic,acc_norm,0.25,0.111803,16,ok
32K-seed0,32K,32000,finetuned,arith,0.001,mini,mini_topic_classification,acc,0.125,0.0853913,16,ok
32K-seed0,32K,32000,finetuned,arith,0.001,mini,mini_topic_classification,acc_norm,0.125,0.0853913,16,ok
32K-seed0,32K,32000,finetuned,arith,0.001,probes,,pretrain_loss,3.91466,,1920,ok
32K-seed0,32K,32000,finetuned,arith,0.001,probes,arith,id_loss,5.41124,,67,ok
32K-seed0,32K,32000,finetuned,arith,0.01,mini,mini_corpus_language,bits_per_byte,3.97559,,16,ok
32K-seed0,32K,32000,finetuned,arith,0.01,mini,mini_arithmetic,acc,0.125,0.0853913,16,ok
32K-seed0,32K,32000,finetuned,arith,0.01,mini,mini_arithmetic,acc_norm,0.125,0.0853913,16,ok
32K-seed0,32K,32000,finetuned,arith,0.01,mini,mini_topic_classification,acc,0.125,0.0853913,16,ok
32K-seed0,32K,32000,finetuned,arith,0.01,mini,mini_topic_classification,acc_norm,0.125,0.0853913,16,ok
32K-seed0,32K,32000,finetuned,arith,0.01,probes,,pretrain_loss,4.80869,,1920,ok
32K-seed0,32K,32000,finetuned,arith,0.01,probes,arith,id_loss,5.0121,,67,ok
16K-seed0,16K,15872,perturbed,,,sensitivity,,loss_increase,0.0809061,,1920,ok
"""


def tiny_run_rows() -> list[dict]:
    frame = pd.read_csv(io.StringIO(TINY_RUN))
    rows = []
    for record in frame.to_dict("records"):
        r = dict.fromkeys(aggregate.SCHEMA.names)
        r.update({k: None if pd.isna(v) else v for k, v in record.items()})
        r.update(family="tiny", pretrain_seed=0, tokens=int(r["tokens"]))
        if r["n"] is not None:
            r["n"] = int(r["n"])
        if r["model"] == "finetuned":
            r["ft_seed"] = 0
        rows.append(r)
    return rows


def test_the_tiny_run_gives_one_lr_per_checkpoint_and_honest_verdicts(tmp_path):
    rows = tiny_run_rows()
    m = metrics(rows)
    best = A.best_lr(m)
    own = [r for r in rows if r["model"] == "finetuned" and r["metric"] == "id_loss"]
    for ckpt in ("16K-seed0", "32K-seed0"):
        lowest = min((r for r in own if r["checkpoint"] == ckpt), key=lambda r: r["value"])
        chosen = one(best, checkpoint=ckpt)
        assert (chosen.lr, chosen.value, chosen.n_lrs) == (lowest["lr"], lowest["value"], 2)
    over = A.overtraining(m, best)
    curves = {(r.metric, None if pd.isna(r.eval_task) else r.eval_task) for r in over.itertuples()}
    lm_tasks = ["mini_arithmetic", "mini_topic_classification", "average"]
    assert curves == {("pretrain_loss", None), ("id_loss", "arith")} | {
        (metric, task) for metric in ("acc", "acc_norm") for task in lm_tasks
    }
    assert len(over) == len(curves) * 3  # tuned, and each of the two fixed LRs
    assert (over.n_checkpoints == 2).all() and (over.verdict == "inconclusive").all()
    assert over.reason.str.startswith("only 2 checkpoint").all()
    # the tuned LR is 0.01 at both budgets, so the tuned curve is the 0.01 curve
    tuned = over[over.lr_mode == "tuned"].reset_index(drop=True)
    at_001 = over[over.lr == 0.01].reset_index(drop=True)
    assert tuned.best_value.tolist() == at_001.best_value.tolist()
    assert tuned.last_value.tolist() == at_001.last_value.tolist()
    A.write(over, tmp_path / "o.parquet", A.OVERTRAINING_SCHEMA, {})
    A.write(best, tmp_path / "b.parquet", A.BEST_LR_SCHEMA, {})
    # A check on the workflow's own output (tests/test_workflow.py, `finished`) belongs there.


def test_the_rule_entry_writes_both_tables_and_logs_the_verdicts(tmp_path):
    source = tmp_path / "metrics.parquet"
    aggregate.write_parquet(tiny_run_rows(), source, {"config_hash": "abc"})
    smk = types.SimpleNamespace(
        input=types.SimpleNamespace(metrics=str(source)),
        output=types.SimpleNamespace(
            best_lr=str(tmp_path / "best_lr.parquet"),
            overtraining=str(tmp_path / "overtraining.parquet"),
        ),
        params=types.SimpleNamespace(config_hash="abc"),
        log=[str(tmp_path / "analysis.log")],
    )
    code = (
        "import pickle, runpy, sys\n"
        "smk = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "runpy.run_path('scripts/analysis.py', init_globals={'snakemake': smk})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, pickle.dumps(smk).hex()],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    log = (tmp_path / "analysis.log").read_text()
    assert result.returncode == 0, result.stderr + log
    assert "verdict" in log and "inconclusive" in log
    for name, schema in (("best_lr", A.BEST_LR_SCHEMA), ("overtraining", A.OVERTRAINING_SCHEMA)):
        table = pq.read_table(tmp_path / f"{name}.parquet")
        assert table.schema.remove_metadata().equals(schema) and table.num_rows
        meta = table.schema.metadata
        assert json.loads(meta[b"config_hash"]) == "abc" and b"rule" in meta
        sha = hashlib.sha256(source.read_bytes()).hexdigest()
        assert json.loads(meta[b"metrics_sha256"]) == sha

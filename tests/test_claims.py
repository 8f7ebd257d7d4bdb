"""overtrained.analysis.claims: the paper's claims (a)-(e) read off a run's tables.

Every frame is built from curves of known shape (monotone, U, flat), seeds placed
symmetrically around the designed mean, so each expected verdict follows from the
construction."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from overtrained.analysis import analysis, claims
from tests.builders import TOKENS, metrics, row

SPREAD = (-0.01, 0.0, 0.01)  # three seeds around each designed mean


def noise_rows(means, family="f", gamma=0.1, spread=SPREAD) -> list[dict]:
    return [
        row(
            t,
            m + d,
            metric="loss_increase",
            model="perturbed",
            suite="sensitivity",
            family=family,
            scaling="rms",
            gamma=gamma,
            noise_seed=i,
        )
        for t, m in zip(TOKENS, means, strict=True)
        for i, d in enumerate(spread)
    ]


def retention_rows(means, lr=1e-3, task="t", family="f", spread=SPREAD, status="ok"):
    return [
        row(t, m + d, lr=lr, ft_task=task, family=family, ft_seed=i, status=status)
        for t, m in zip(TOKENS, means, strict=True)
        for i, d in enumerate(spread)
    ]


U = [4.0, 3.6, 3.4, 3.6, 4.0]  # minimum at TOKENS[2]
FALLING = [4.0, 3.8, 3.6, 3.4, 3.2]
RISING = [3.0, 3.2, 3.4, 3.6, 3.8]


def only(rows: list[dict], **where) -> dict:
    picked = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(picked) == 1, picked
    return picked[0]


@pytest.mark.parametrize(
    ("means", "verdict"),
    [
        ([0.1, 0.2, 0.3, 0.4, 0.5], "reproduced"),
        ([0.1, 0.3, 0.25, 0.4, 0.5], "partly"),  # one step down, last >> first
        ([0.1, 0.3, 0.25, 0.2, 0.1], "not reproduced"),  # up, then back down
        ([0.3, 0.3, 0.3, 0.3, 0.3], "not reproduced"),
        ([0.5, 0.4, 0.3, 0.2, 0.1], "not reproduced"),
    ],
)
def test_noise_growth_verdicts(means, verdict):
    (result,) = claims.noise_growth(metrics(noise_rows(means)))
    assert result["verdict"] == verdict
    assert result["estimate"] == pytest.approx(means[-1] - means[0])
    if verdict != "not reproduced":  # Welch on 3 + 3 values with sd 0.01: a tight interval
        assert result["ci_low"] > 0 and result["ci_high"] < 2 * result["estimate"]


def test_one_replicate_gives_no_interval_and_at_most_partly():
    (result,) = claims.noise_growth(metrics(noise_rows([0.1, 0.2, 0.3, 0.4, 0.5], spread=(0,))))
    assert result["verdict"] == "partly" and math.isnan(result["ci_low"])
    rows = []
    for lr, minimum in zip((1e-3, 1e-2), (3, 1), strict=True):
        rows += retention_rows(shifted_u(minimum), lr=lr, spread=(0,))
    b_rows, turning = claims.u_shapes(metrics(rows))
    assert all(r["verdict"] == "partly" and math.isnan(r["ci_low"]) for r in b_rows)
    (c_row,) = claims.turning_shift(turning)  # ordered LRs, but no interval to order them
    assert c_row["verdict"] == "partly" and math.isnan(c_row["ci_low"])


def test_every_step_up_with_a_wide_interval_is_partly():
    (result,) = claims.noise_growth(
        metrics(noise_rows([0.1, 0.2, 0.3, 0.4, 0.5], spread=(-0.5, 0.5)))
    )
    assert result["ci_low"] < 0 and result["verdict"] == "partly"


def test_noise_replicates_are_pretraining_seeds_when_there_are_several():
    rows = []
    for seed, shift in ((0, -0.05), (1, 0.0), (2, 0.05)):
        for r in noise_rows([0.1, 0.2, 0.3, 0.4, 0.5]):
            r.update(pretrain_seed=seed, value=r["value"] + shift)
            rows.append(r)
    reps = claims.replicates(metrics(rows).query("tokens == 1000"), "noise_seed")
    assert sorted(reps["value"].round(6)) == [0.05, 0.1, 0.15]  # noise seeds averaged first


def test_u_shape_verdicts_and_the_minimum():
    rows = (
        retention_rows(U, lr=1e-3)
        + retention_rows(FALLING, lr=1e-2)
        + retention_rows(RISING, lr=1e-1)
        + retention_rows(U, lr=3e-1, spread=(-0.5, 0.0, 0.5))  # a U lost in seed noise
    )
    result, _ = claims.u_shapes(metrics(rows))
    u = only(result, subject="t, LR 0.001")
    assert u["verdict"] == "reproduced" and "minimum at 4K" in u["evidence"]
    assert u["estimate"] == pytest.approx(U[-1] - U[2]) and u["ci_low"] > 0
    assert only(result, subject="t, LR 0.01")["verdict"] == "not reproduced"
    assert only(result, subject="t, LR 0.1")["verdict"] == "partly"
    noisy = only(result, subject="t, LR 0.3")
    assert noisy["verdict"] == "partly" and noisy["ci_low"] < 0


def test_a_diverged_lr_is_not_testable():
    rows = retention_rows(U, lr=1e-3) + retention_rows(U, lr=1.0, status="diverged")
    result, turning = claims.u_shapes(metrics(rows))
    assert only(result, subject="t, LR 1")["verdict"] == "not testable"
    assert set(turning) == {("f", "t", 1e-3)}


def shifted_u(minimum: int) -> list[float]:
    return [3.0 + 0.2 * abs(i - minimum) for i in range(len(TOKENS))]


@pytest.mark.parametrize(
    ("minima", "verdict", "rho"),
    [
        ((3, 2, 1), "reproduced", -1.0),  # larger LR, earlier minimum
        ((3, 1, 2), "partly", -0.5),
        ((1, 2, 3), "not reproduced", 1.0),
    ],
)
def test_turning_shift_with_the_lr(minima, verdict, rho):
    rows = []
    for lr, minimum in zip((1e-3, 1e-2, 1e-1), minima, strict=True):
        rows += retention_rows(shifted_u(minimum), lr=lr)
    _, turning = claims.u_shapes(metrics(rows))
    (result,) = claims.turning_shift(turning)
    assert result["verdict"] == verdict
    assert result["estimate"] == pytest.approx(rho)
    assert result["ci_low"] <= result["estimate"] <= result["ci_high"]


def test_turning_points_ordered_only_within_seed_noise_are_partly():
    rows = []
    for lr, minimum in zip((1e-3, 1e-2, 1e-1), (3, 2, 1), strict=True):
        rows += retention_rows(shifted_u(minimum), lr=lr, spread=(-0.4, 0.0, 0.4))
    _, turning = claims.u_shapes(metrics(rows))
    (result,) = claims.turning_shift(turning)
    assert result["estimate"] == pytest.approx(-1.0)  # the means are ordered ...
    assert result["verdict"] == "partly"  # ... the bootstrap intervals overlap
    assert "[" in result["evidence"] and "LR 0.1: 2K [" in result["evidence"]


BASE = [3.5, 3.3, 3.1, 3.0, 2.95]  # still improving, ever more slowly
GAP = [0.3, 0.4, 0.5, 0.9, 1.3]  # forgetting at a fixed LR, growing faster
# so the fine-tuned loss BASE + GAP is a U: 3.8, 3.7, 3.6, 3.9, 4.25


def decomposed_rows(base=BASE, gap=GAP, seeds=(-0.01, 0.0, 0.01)) -> list[dict]:
    """Three pre-training seeds; each checkpoint's base loss and its fine-tuned model's."""
    rows = []
    for seed, shift in enumerate(seeds):
        for t, b, g in zip(TOKENS, base, gap, strict=True):
            rows.append(
                row(t, b + shift, model="base", suite="probes", ft_task=None, lr=None,
                    ft_seed=None, pretrain_seed=seed)
            )  # fmt: skip
            rows.append(row(t, b + g + 2 * shift, lr=0.1, ft_seed=0, pretrain_seed=seed))
    return rows


def test_the_u_is_decomposed_into_base_improvement_and_growing_forgetting():
    frame = metrics(decomposed_rows())
    table = claims.evaluate(frame, analysis.overtraining(frame))
    by_claim = {r.claim: r for r in table.itertuples()}
    assert by_claim["b"].verdict == "reproduced" and "minimum at 4K" in by_claim["b"].evidence
    b1, b2 = by_claim["b1"], by_claim["b2"]
    assert b1.verdict == "reproduced" and b1.estimate == pytest.approx(BASE[0] - BASE[-1])
    assert b1.ci_low > 0 and "3 replicates" in b1.evidence
    assert b2.verdict == "reproduced" and b2.estimate == pytest.approx(GAP[-1] - GAP[0])
    assert b2.subject == "t, LR 0.1" and b2.ci_low > 0
    assert list(table["claim"]) == sorted(table["claim"], key=list(claims.CLAIMS).index)


def test_a_base_that_stops_improving_and_a_flat_gap_are_not_reproduced():
    frame = metrics(decomposed_rows(base=[3.5, 3.3, 3.2, 3.25, 3.3], gap=[0.5] * 5))
    (b1,) = claims.base_improvement(frame)
    (b2,) = claims.forgetting_growth(frame)
    assert b1.get("verdict") == "partly"  # first - last is clearly > 0, but it turned up
    assert b2["verdict"] == "not reproduced"


def test_tuned_degradation_needs_one_task_that_degrades_and_one_that_does_not():
    rows = []
    for task, curve in (("a", U), ("b", FALLING)):
        rows += retention_rows(curve, task=task)
        rows += [  # its own-task loss selects the only LR
            row(t, 1.0 + d, metric="id_loss", ft_task=task, eval_task=task, ft_seed=i)
            for t in TOKENS
            for i, d in enumerate(SPREAD)
        ]
    frame = metrics(rows)
    over = analysis.overtraining(frame)
    (result,) = [r for r in claims.tuned_degradation(over) if r["subject"].startswith("pretrain")]
    assert result["verdict"] == "reproduced" and result["estimate"] == 1.0
    assert "a: degrades" in result["evidence"] and "b: no degradation" in result["evidence"]


CFG = {
    "families": {
        name: {
            "source": "pretrain",
            "model": {"hidden_size": 8, "num_hidden_layers": 2},
            "training": {"schedule": schedule},
        }
        for name, schedule in (("cos", "cosine"), ("const", "constant"))
    }
}


@pytest.mark.parametrize(
    ("const_means", "verdict"),
    [
        ([0.1, 0.2, 0.3, 0.4, 0.5], "no difference detected"),
        ([0.1, 0.4, 0.7, 1.0, 1.3], "schedules differ"),
    ],
)
def test_schedule_effects_compare_intervals_at_one_size(const_means, verdict):
    rows = noise_rows([0.1, 0.2, 0.3, 0.4, 0.5], family="cos")
    rows += noise_rows(const_means, family="const")
    a_rows = claims.noise_growth(metrics(rows), CFG)
    assert {r["schedule"] for r in a_rows} == {"cosine", "constant"}
    (result,) = claims.schedule_effects(a_rows, CFG)
    assert result["verdict"] == verdict
    assert result["family"] in ("const vs cos", "cos vs const") and result["size"] == "h8 x 2"


def test_evaluate_and_markdown_cover_every_claim():
    rows = noise_rows([0.1, 0.2, 0.3, 0.4, 0.5]) + retention_rows(U)
    frame = metrics(rows)
    table = claims.evaluate(frame, analysis.overtraining(frame))
    assert list(table.columns) == claims.SCHEMA.names
    assert set(table["claim"]) == {"a", "b", "c"}  # c: one LR, not testable
    text = claims.markdown(table)
    for letter, claim in claims.CLAIMS.items():
        assert f"({letter}) {claim}" in text
    assert "nothing measured" in text  # (d) has no tuned rows without an id_loss, (e) one family
    assert math.isnan(table.loc[table["claim"] == "c", "estimate"].iloc[0])
    pd.testing.assert_frame_equal(table, claims.evaluate(frame, analysis.overtraining(frame)))


def test_a_seed_split_shows_where_a_verdict_hangs_on_the_seeds():
    """Six pre-training seeds: noise growth that every seed shows, and a U that only seeds
    0-2 show (3-5 fall through the last budget): (a) agrees across the halves, (b) not."""
    rows = []
    for seed in range(6):
        shift = 0.01 * (seed % 3 - 1)
        for r in noise_rows([0.1, 0.2, 0.3, 0.4, 0.5], spread=(shift,)):
            rows.append({**r, "pretrain_seed": seed, "checkpoint": f"{r['budget']}-seed{seed}"})
        curve = U if seed < 3 else FALLING
        for t, m in zip(TOKENS, curve, strict=True):
            rows.append(row(t, m + shift, lr=0.1, pretrain_seed=seed))
    split = claims.seed_split(metrics(rows), [[0, 1, 2], [3, 4, 5]])
    a = only(split.to_dict("records"), claim="a")
    assert a["verdict 0,1,2"] == a["verdict 3,4,5"] == "reproduced" and a["agree"]
    b = only(split.to_dict("records"), claim="b")
    assert (b["verdict 0,1,2"], b["verdict 3,4,5"], b["agree"]) == (
        "reproduced",
        "not reproduced",
        False,
    )
    text = claims.seed_split_markdown(split)
    assert "- (a): 1 of 1 rows agree" in text and "- (b): 0 of 1 rows agree" in text
    assert "| seeds 0,1,2 | seeds 3,4,5 |" in text


def test_a_seed_split_needs_disjoint_sets_that_exist():
    frame = metrics(noise_rows([0.1, 0.2, 0.3, 0.4, 0.5]))  # noise seeds 0, 1, 2
    with pytest.raises(ValueError, match="overlap"):
        claims.seed_split(frame, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="no rows for seeds 7"):
        claims.seed_split(frame, [[0, 1], [7]])
    split = claims.seed_split(frame, [[0], [2]])  # one pre-training seed: the noise seeds
    assert len(split) == 1 and split["agree"].all()


def test_the_seed_split_command_prints_and_writes_the_table(tmp_path, capsys):
    from overtrained import cli

    (tmp_path / "tables").mkdir()
    metrics(noise_rows([0.1, 0.2, 0.3, 0.4, 0.5])).to_parquet(tmp_path / "tables/metrics.parquet")
    out = tmp_path / "split.md"
    assert cli.main(["seed-split", str(tmp_path), "--sets", "0", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text() and "| seeds 0 | seeds 2 | agree |" in printed
    assert cli.main(["seed-split", str(tmp_path), "--sets", "0,1", "1"]) == 2
    assert "overlap" in capsys.readouterr().err
    assert cli.main(["seed-split", str(tmp_path / "nowhere"), "--sets", "0"]) == 2


def test_one_fine_tuning_task_cannot_test_some_tasks_against_others():
    rows = retention_rows(U) + [
        row(t, 1.0 + d, metric="id_loss", eval_task="t", ft_seed=i)
        for t in TOKENS
        for i, d in enumerate(SPREAD)
    ]
    frame = metrics(rows)
    results = claims.tuned_degradation(analysis.overtraining(frame))
    assert results and all(r["verdict"] == "not testable" for r in results)
    assert "one fine-tuning task (t)" in results[0]["evidence"]

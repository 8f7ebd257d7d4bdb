"""Figures draw one curve per setting, split by family, at the LR the tables chose; the
report's pages show the tables; provenance scrubs secrets.

The figures are checked through the curves they return (also written as JSON next to each
PNG/SVG), on hand-made frames shaped like metrics.parquet, best_lr.parquet and
overtraining.parquet."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overtrained import workflow
from overtrained.analysis import aggregate, drawing, figures, report_pages
from overtrained.analysis.figures import BASE
from overtrained.core import provenance

TOKENS = (1000, 2000, 4000)
TASKS = {"t1": (1e-3, 1e-2), "t2": (1e-3,)}
BENCH = ("b1", "b2")
ENTROPY = 5.5


def acc(tokens, task=None, lr=None, bench="b1", seed=0):
    """Accuracy of a model: base rises with tokens; fine-tuned depends on lr and task."""
    k = math.log2(tokens / 1000)
    if task is None:
        return 0.30 + 0.01 * k + 0.1 * BENCH.index(bench) + 0.001 * seed
    bonus = 0.05 if task == "t1" else 0.02
    return 0.40 + bonus + lr - 0.02 * k * (lr * 100) + 0.1 * BENCH.index(bench) + 0.001 * seed


def metrics_rows(family="a", seeds=(0, 1), tokens=TOKENS, tasks=TASKS, bench=BENCH):
    """A metrics.parquet in miniature: probes, an lm-eval suite, perturbations, the entropy."""
    rows = [
        {"family": family, "model": "corpus", "suite": "corpus", "value": ENTROPY}
        | {"metric": "heldout_unigram_entropy"}
    ]
    for seed in seeds:
        for t in tokens:
            k = math.log2(t / 1000)
            ckpt = {
                "family": family,
                "checkpoint": f"{t}-seed{seed}",
                "budget": str(t),
                "tokens": t,
                "pretrain_seed": seed,
            }
            base = {**ckpt, "model": "base"}
            rows.append(
                {**base, "suite": "probes", "metric": "pretrain_loss", "value": 4 - 0.1 * k}
            )
            for i, task in enumerate(tasks):
                rows.append(
                    {**base, "suite": "probes", "metric": "id_loss", "eval_task": task}
                    | {"value": 6 - 0.1 * k - i}
                )
            for b in bench:
                for metric in ("acc", "acc_norm"):
                    rows.append(
                        {**base, "suite": "bench", "eval_task": b, "metric": metric}
                        | {"value": acc(t, bench=b, seed=seed)}
                    )
            for task, lrs in tasks.items():
                for lr in lrs:
                    ft = {**ckpt, "model": "finetuned", "ft_task": task, "lr": lr, "ft_seed": 0}
                    rows += [
                        {**ft, "suite": "probes", "metric": "pretrain_loss"}
                        | {"value": 4 - 0.1 * k + lr * 10 * (1 + k) + 0.01 * seed},
                        {**ft, "suite": "probes", "metric": "id_loss", "eval_task": task}
                        | {"value": 3 - 0.1 * k - lr * 10 + 0.01 * seed},
                        {**ft, "suite": "train", "metric": "final_train_loss", "value": 1.0},
                    ]
                    for b in bench:
                        rows.append(
                            {**ft, "suite": "bench", "eval_task": b, "metric": "acc"}
                            | {"value": acc(t, task, lr, b, seed)}
                        )
            for gamma in (0.1, 0.2):
                for noise_seed in (0, 1):
                    pert = {**ckpt, "model": "perturbed", "suite": "sensitivity"}
                    pert |= {"scaling": "rms", "gamma": gamma, "noise_seed": noise_seed}
                    increase = gamma * (1 + k) + 0.01 * noise_seed
                    rows += [
                        {**pert, "metric": "loss_increase", "value": increase},
                        {**pert, "metric": "perturbed_loss", "value": 4 - 0.1 * k + increase},
                    ]
    return rows


def tuned(tokens):
    """The LR best_lr picks: the larger one early, the smaller one late."""
    return 1e-2 if tokens < 4000 else 1e-3


def best_lr_frame(family="a", seeds=(0, 1), tokens=TOKENS, tasks=TASKS):
    rows = [
        {
            "family": family,
            "checkpoint": f"{t}-seed{seed}",
            "tokens": t,
            "pretrain_seed": seed,
            "ft_task": task,
            "lr": tuned(t) if len(lrs) > 1 else lrs[0],
            "status": "ok",
        }
        for seed in seeds
        for t in tokens
        for task, lrs in tasks.items()
    ]
    return pd.DataFrame(rows)


def overtraining_frame(family="a"):
    """Fixed-LR verdicts on pretrain_loss: t1 at 1e-2 degrades after 2000 tokens."""
    rows = [
        ("t1", 1e-3, 4000, "no degradation"),
        ("t1", 1e-2, 2000, "degrades"),
        ("t2", 1e-3, 4000, "inconclusive"),
    ]
    fixed = [
        {"family": family, "ft_task": task, "suite": "probes", "metric": "pretrain_loss"}
        | {"lr_mode": "fixed", "lr": lr, "best_tokens": best, "last_tokens": 4000}
        | {"verdict": verdict, "change": 0.1, "ci_low": 0.05, "ci_high": 0.15, "rule": "R"}
        for task, lr, best, verdict in rows
    ]
    tuned_row = {**fixed[0], "lr_mode": "tuned", "lr": None, "verdict": "inconclusive"}
    return pd.DataFrame([tuned_row, *fixed])


@pytest.fixture
def frames():
    return pd.DataFrame(metrics_rows()), best_lr_frame(), overtraining_frame()


def panels_of(name, frames):
    return figures.plotted(figures.figure_panels(name, *frames))


# --- the figures, panel by panel -------------------------------------------------------------


def test_headline_averages_a_suite_at_the_tuned_lr_against_the_base(frames):
    panels = panels_of("benchmarks", frames)
    assert set(panels) == {"bench: mean acc over 2 tasks"}
    curves = panels["bench: mean acc over 2 tasks"]
    assert set(curves) == {BASE, "fine-tuned on t1", "fine-tuned on t2"}
    t1 = curves["fine-tuned on t1"]
    assert t1["x"] == list(TOKENS)
    for t, y, err in zip(t1["x"], t1["y"], t1["err"], strict=True):
        mean_over_bench = [sum(acc(t, "t1", tuned(t), b, s) for b in BENCH) / 2 for s in (0, 1)]
        assert y == pytest.approx(sum(mean_over_bench) / 2)
        assert err == pytest.approx(0.0005)  # +- one std over the two pre-training seeds
    base = curves[BASE]
    assert base["y"][0] == pytest.approx((acc(1000, bench="b1") + acc(1000, bench="b2")) / 2 + 5e-4)


def test_no_lm_eval_suite_means_no_headline_panel_but_a_figure(frames, tmp_path):
    metrics, best, over = frames
    metrics = metrics[metrics["suite"] != "bench"]
    assert panels_of("benchmarks", (metrics, best, over)) == {}
    drawn = figures.make_all(metrics, best, over, tmp_path)
    assert drawn["benchmarks"] == {}
    assert json.loads((tmp_path / "benchmarks.json").read_text()) == {}
    assert (tmp_path / "benchmarks.png").stat().st_size > 1000
    assert drawn["retention"]  # the other figures are unaffected


def test_id_and_ood_after_tuned_fine_tuning_with_the_base_dashed(frames):
    panels = panels_of("id_ood", frames)
    assert list(panels) == [
        "ID: held-out loss on t1",
        "ID: held-out loss on t2",
        "OOD: b1",
        "OOD: b2",
    ]
    assert set(panels["ID: held-out loss on t1"]) == {"fine-tuned on t1", BASE}
    assert set(panels["OOD: b1"]) == {BASE, "fine-tuned on t1", "fine-tuned on t2"}
    own = panels["ID: held-out loss on t1"]["fine-tuned on t1"]
    assert own["y"] == pytest.approx(
        [3.005 - 0.1 * k - tuned(t) * 10 for k, t in enumerate(TOKENS)]
    )
    assert own["err"] == pytest.approx([0.005] * 3)


def test_a_judge_score_gets_its_own_id_panel(frames):
    metrics, best, over = frames
    judged = metrics[(metrics["model"] == "finetuned") & (metrics["metric"] == "id_loss")]
    judged = judged.assign(suite="judge", metric="judge_score", value=7.0)
    panels = panels_of("id_ood", (pd.concat([metrics, judged]), best, over))
    assert panels["ID: judge score on t1"]["fine-tuned on t1"]["y"] == [7.0, 7.0, 7.0]


def test_sensitivity_has_a_curve_per_gamma_and_the_unperturbed_loss(frames):
    panels = panels_of("sensitivity", frames)
    assert list(panels) == [
        "loss increase, noise scaled by rms",
        "perturbed loss, noise scaled by rms",
    ]
    increase = panels["loss increase, noise scaled by rms"]
    assert set(increase) == {"gamma 0.1", "gamma 0.2"}
    assert increase["gamma 0.2"]["y"] == pytest.approx([0.2 * (1 + k) + 0.005 for k in range(3)])
    assert increase["gamma 0.2"]["err"] == pytest.approx([0.005] * 3)  # over noise seeds
    perturbed = panels["perturbed loss, noise scaled by rms"]
    assert set(perturbed) == {"gamma 0.1", "gamma 0.2", "base (no noise)"}
    assert perturbed["base (no noise)"]["y"] == pytest.approx([4 - 0.1 * k for k in range(3)])


def test_one_curve_per_gamma_and_panels_per_family():
    df = pd.DataFrame(metrics_rows("a") + metrics_rows("b", seeds=(0,)))
    panels = figures.plotted(figures.figure_panels("sensitivity", df))
    assert set(panels) == {
        f"{family}: {what}, noise scaled by rms"
        for family in ("a", "b")
        for what in ("loss increase", "perturbed loss")
    }
    curve = panels["b: loss increase, noise scaled by rms"]["gamma 0.2"]
    assert curve["x"] == [1000, 2000, 4000]
    assert curve["y"] == pytest.approx([0.205, 0.405, 0.605])  # the mean over noise seeds only


def test_retention_and_in_distribution_draw_a_curve_per_fixed_lr_per_task(frames):
    for name in ("retention", "in_distribution"):
        panels = figures.figure_panels(name, *frames)
        assert list(panels) == ["fine-tuned on t1", "fine-tuned on t2"]
        assert set(panels["fine-tuned on t1"].curves) == {"lr 0.001", "lr 0.01", BASE}
        assert set(panels["fine-tuned on t2"].curves) == {"lr 0.001", BASE}
    retention = figures.figure_panels("retention", *frames)["fine-tuned on t1"]
    assert retention.reference == ("unigram entropy of the held-out text", ENTROPY)


def test_a_diverged_run_is_left_out_of_the_fixed_lr_curves_and_counted(frames):
    metrics, best, over = frames
    run = (metrics["ft_task"] == "t1") & (metrics["lr"] == 1e-2) & (metrics["tokens"] == 4000)
    diverged = run & (metrics["suite"] == "train") & (metrics["pretrain_seed"] == 1)
    metrics = metrics.assign(status=None)
    metrics.loc[diverged, "status"] = "diverged"
    for name in ("retention", "in_distribution"):
        panel = figures.figure_panels(name, metrics, best, over)["fine-tuned on t1"]
        assert panel.note == "1 diverged run left out"
        assert panel.curves["lr 0.01"]["err"] == pytest.approx([0.005, 0.005, 0.0])  # seed 0
        assert panel.curves["lr 0.001"]["err"] == pytest.approx([0.005] * 3)


def test_turning_point_against_lr_and_the_tuned_lr_against_tokens(frames):
    panels = figures.figure_panels("turning_point", *frames)
    turning = panels["turning point of the pre-training loss vs fixed LR"]
    assert not turning.x_tokens and turning.y_tokens
    assert turning.curves["fine-tuned on t1"] == {
        "x": [1e-3, 1e-2],
        "y": [4000, 2000],
        "err": [0.0, 0.0],
        "open": [True, False],  # only a degradation establishes a turning point
    }
    assert turning.curves["fine-tuned on t2"]["open"] == [True]
    chosen = panels["fine-tuning LR tuned at each checkpoint"]
    assert chosen.ylog
    assert chosen.curves["fine-tuned on t1"]["y"] == pytest.approx([1e-2, 1e-2, 1e-3])
    assert chosen.curves["fine-tuned on t2"]["y"] == pytest.approx([1e-3] * 3)


def test_tuned_losses_follow_best_lr_and_skip_all_diverged_checkpoints(frames):
    metrics, best, over = frames
    best = best.copy()
    diverged = (best["ft_task"] == "t1") & (best["tokens"] == 2000)
    best.loc[diverged, ["lr", "status"]] = [float("nan"), "all diverged"]
    panels = panels_of("tuned_losses", (metrics, best, over))
    assert list(panels) == [
        "pre-training loss after fine-tuning",
        "held-out loss on t1",
        "held-out loss on t2",
    ]
    retained = panels["pre-training loss after fine-tuning"]
    assert set(retained) == {"fine-tuned on t1", "fine-tuned on t2", BASE}
    assert retained["fine-tuned on t1"]["x"] == [1000, 4000]  # no tuned LR at 2000
    assert retained["fine-tuned on t1"]["y"] == pytest.approx([4.105, 3.805 + 1e-3 * 30])


def test_hub_checkpoints_without_a_seed_join_their_tuned_lr(frames):
    metrics, best, over = frames
    metrics = metrics[metrics["pretrain_seed"].isna() | (metrics["pretrain_seed"] == 0)]
    metrics = metrics.assign(pretrain_seed=None)
    best = best[best["pretrain_seed"] == 0].assign(pretrain_seed=None)
    panels = panels_of("tuned_losses", (metrics, best, over))
    assert panels["held-out loss on t1"]["fine-tuned on t1"]["x"] == list(TOKENS)
    # the fixed-LR figures too (their diverged-run filter once failed on a missing seed)
    assert panels_of("retention", (metrics, best, over))


def test_every_figure_is_written_as_png_svg_and_json(frames, tmp_path):
    metrics, best, over = frames
    metrics_path, best_path, over_path = tmp_path / "m.parquet", tmp_path / "b.parquet", None
    metrics.to_parquet(metrics_path)
    best.to_parquet(best_path)
    drawn = figures.make_all(metrics_path, best_path, over_path, tmp_path / "fig")
    assert tuple(drawn) == figures.FIGURES
    for name in figures.FIGURES:
        assert (tmp_path / f"fig/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert ET.parse(tmp_path / f"fig/{name}.svg").getroot().tag.endswith("svg")
        assert json.loads((tmp_path / f"fig/{name}.json").read_text()) == drawn[name]
    assert drawn["turning_point"].keys() == {"fine-tuning LR tuned at each checkpoint"}
    svg = (tmp_path / "fig/sensitivity.svg").read_bytes()
    figures.make_all(metrics_path, best_path, over_path, tmp_path / "fig")
    assert (tmp_path / "fig/sensitivity.svg").read_bytes() == svg  # reproducible bytes


def test_the_workflow_draws_the_figures_this_module_makes():
    assert tuple(workflow.FIGURES) == figures.FIGURES


def test_tick_labels_name_budgets():
    assert [drawing.tick_label(t) for t in (249856, 999424, 7999488)] == ["250K", "1M", "8M"]


# --- the report's pages ----------------------------------------------------------------------


def test_the_overtraining_page_has_a_row_per_curve_coloured_by_verdict(frames):
    over = frames[2]
    text = report_pages.overtraining_page(over)
    assert text.count("<tr class=") == len(over)
    assert text.count('class="degrades"') == 1 and text.count('class="inconclusive"') == 2
    assert "<b>Rule:</b> R" in text and "2K (2,000)" in text


def test_the_best_lr_page_states_the_selection_rule(frames):
    best = frames[1].assign(selection_rule="lowest id_loss")
    text = report_pages.best_lr_page(best)
    assert "<b>Rule:</b> lowest id_loss" in text
    assert text.count("<tr>") == len(best) + 1


def test_the_provenance_page_shows_config_checkpoints_and_hides_secrets(tmp_path):
    rows = [
        {name: r.get(name) for name in aggregate.SCHEMA.names}
        | {"checkpoint_sha": "f" * 64, "producer": f"p{i}", "device": "cpu"}
        for i, r in enumerate(metrics_rows())
    ]
    path = tmp_path / "metrics.parquet"
    table = pa.Table.from_pylist(rows, schema=aggregate.SCHEMA)
    pq.write_table(table.replace_schema_metadata({b"config_hash": b'"abc123"'}), path)
    config = {"families": {"a": {"budgets": ["1K"]}}, "judge": {"command": "x hf_abcdefghijkl"}}
    text = report_pages.provenance_page(path, config)
    assert "abc123" in text and "f" * 64 in text
    assert "budgets:" in text and "hf_abcdefghijkl" not in text and "&lt;redacted&gt;" in text


def test_written_json_is_scrubbed_of_tokens(tmp_path):
    provenance.write_json(tmp_path / "p.json", {"a": ["url?token=abc123", "hf_abcdefghijkl"]})
    text = (tmp_path / "p.json").read_text()
    assert "abc123" not in text and "hf_abcdefghijkl" not in text
    assert text.count("<redacted>") == 2

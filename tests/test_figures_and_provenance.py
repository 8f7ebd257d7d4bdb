"""Figures split by family and draw one curve per setting; provenance scrubs secrets."""

import pandas as pd

from overtrained import figures, provenance


def sensitivity_rows(family, gammas, tokens=(1000, 2000, 4000), seeds=(0, 1)):
    return [
        {
            "family": family,
            "model": "perturbed",
            "metric": "loss_increase",
            "scaling": "rms",
            "gamma": g,
            "tokens": t,
            "pretrain_seed": s,
            "value": g * t / 1000,
        }
        for g in gammas
        for t in tokens
        for s in seeds
    ]


def test_one_curve_per_gamma_and_panels_per_family(tmp_path):
    df = pd.DataFrame(sensitivity_rows("a", [0.1, 0.2]) + sensitivity_rows("b", [0.1]))
    panels, _ = figures.family_panels(df, "sensitivity")
    assert set(panels) == {"a: noise scaled by rms", "b: noise scaled by rms"}
    assert len(panels["a: noise scaled by rms"]) == 2 and len(panels["b: noise scaled by rms"]) == 1
    curve = panels["a: noise scaled by rms"]["gamma 0.2"]
    assert curve["x"] == [1000, 2000, 4000]
    assert curve["y"] == [0.2, 0.4, 0.8]  # the mean over seeds, not over families
    assert curve["err"] == [0.0, 0.0, 0.0]


def test_tick_labels_name_budgets():
    assert [figures.tick_label(t) for t in (249856, 999424, 7999488)] == ["250K", "1M", "8M"]


def test_written_json_is_scrubbed_of_tokens(tmp_path):
    provenance.write_json(tmp_path / "p.json", {"a": ["url?token=abc123", "hf_abcdefghijkl"]})
    text = (tmp_path / "p.json").read_text()
    assert "abc123" not in text and "hf_abcdefghijkl" not in text
    assert text.count("<redacted>") == 2

"""Does a run reproduce the paper's qualitative claims? Each claim, per family (and task,
LR or noise scale), as a row with an estimate, a 95% interval and a verdict.

The claims (Springer et al. 2025, "Overtrained Language Models Are Harder to Fine-Tune",
arXiv 2503.19206):
  (a) the Gaussian-noise loss increase grows monotonically with pre-training tokens;
  (b) at a fixed fine-tuning LR, the fine-tuned model's pre-training loss is U-shaped in
      tokens, the sum of two opposing trends measured as claims of their own:
      (b1) the base model keeps improving, and
      (b2) the forgetting (fine-tuned minus base) grows with tokens;
  (c) larger fine-tuning LRs move the turning point to fewer tokens;
  (d) with the LR tuned per checkpoint, degradation remains for some tasks and not others;
  (e) the pre-training schedule matters: (a)-(c) compared across schedules at one size.

Verdicts: `reproduced`, `partly` (the direction is there, the evidence is not decisive),
`not reproduced`, `not testable` (the run lacks what the claim needs). The rule of each is
in `RULES` and in every row. Replicates are seeds: pre-training seeds when there are several
(noise or fine-tuning seeds averaged within each), else the noise or fine-tuning seeds.
Intervals: Welch t for a difference of two budgets' means (statistics.change_ci); a percentile
bootstrap over replicates (BOOTSTRAP resamples, fixed seed) for turning points and rank
correlations, which have no closed form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from overtrained.analysis import analysis, statistics

SCHEMA = pa.schema(
    [
        ("claim", pa.string()),  # a | b | c | d | e
        ("family", pa.string()),  # e: the families compared, joined by ' vs '
        ("schedule", pa.string()),
        ("size", pa.string()),  # the model shape, e.g. "h16 x 2 layers"
        ("subject", pa.string()),  # what the row is about: a noise scale, task and LR, ...
        ("estimate", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("unit", pa.string()),
        ("verdict", pa.string()),
        ("evidence", pa.string()),  # the numbers behind the verdict, for a reader
    ]
)
CLAIMS = {
    "a": "the Gaussian-noise loss increase grows monotonically with tokens",
    "b": "at a fixed fine-tuning LR, the fine-tuned pre-training loss is U-shaped in tokens",
    "b1": "the base model's pre-training loss keeps falling with tokens",
    "b2": "at a fixed fine-tuning LR, the forgetting (fine-tuned minus base pre-training "
    "loss) grows with tokens",
    "c": "larger fine-tuning LRs move the turning point to fewer tokens",
    "d": "with the LR tuned per checkpoint, degradation remains for some tasks, not others",
    "e": "the pre-training schedule changes (a)-(c)",
}
RULES = {
    "a": "reproduced: every step between consecutive budgets raises the mean increase and the "
    "95% CI of (last - first) is above 0; partly: one of the two (every step up, or the CI "
    "above 0); else not reproduced",
    "b": "reproduced: the minimum is at an interior budget and the 95% CI of (last - minimum) "
    "is above 0; partly: an interior minimum with a CI that includes 0, or a curve that rises "
    "from the first budget (a turn below the range); else not reproduced",
    "b1": "as (a), for the fall of the base model's loss: reproduced: every step between "
    "consecutive budgets lowers the mean and the 95% CI of (first - last) is above 0; partly: "
    "one of the two; else not reproduced",
    "b2": "as (a), for the forgetting gap of each fixed LR: reproduced: every step raises the "
    "mean gap and the 95% CI of (last - first) is above 0; partly: one of the two; else not "
    "reproduced. (b) is the sum of (b1) and (b2): the U appears where (b2) outpaces (b1)",
    "c": "reproduced: the turning budget never grows with the LR, and the 95% bootstrap "
    "interval of the largest LR's turning budget lies below that of the smallest LR; partly: "
    "Spearman rho(LR, turning budget) < 0 without such intervals; else not reproduced (LRs "
    "whose curve diverged anywhere are left out)",
    "d": "reproduced: at the tuned LR at least one task degrades and at least one shows no "
    "degradation (analysis.VERDICT_RULE); partly: some degrade, the others are inconclusive; "
    "else not reproduced",
    "e": "schedules differ: for some measure of (a)-(c), the 95% intervals of two schedules "
    "at the same model size do not overlap; else no difference detected",
}
BOOTSTRAP = 2000
SEED = 0


def _row(claim: str, family: str, cfg: Mapping | None, **fields) -> dict:
    schedule, size = _family_shape(cfg, family)
    return {
        "claim": claim,
        "family": family,
        "schedule": schedule,
        "size": size,
        "estimate": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "unit": "",
        **fields,
    }


def _family_shape(cfg: Mapping | None, family: str) -> tuple[str, str]:
    fam = (cfg or {}).get("families", {}).get(family)
    if not fam or fam.get("source") != "pretrain":
        return "", ""
    model = fam["model"]
    return fam["training"]["schedule"], f"h{model['hidden_size']} x {model['num_hidden_layers']}"


def replicates(rows: pd.DataFrame, inner: str) -> pd.DataFrame:
    """One value per (tokens, replicate): with several pre-training seeds, the mean over the
    `inner` seeds (noise or fine-tuning) of each; else the `inner` seeds themselves."""
    rows = rows.assign(pretrain_seed=rows["pretrain_seed"].fillna(-1))
    if rows["pretrain_seed"].nunique() > 1:
        grouped = rows.groupby(["tokens", "pretrain_seed"], as_index=False)["value"].mean()
        return grouped.rename(columns={"pretrain_seed": "replicate"})
    return rows.rename(columns={inner: "replicate"})[["tokens", "replicate", "value"]]


def _points(reps: pd.DataFrame) -> list[tuple[int, np.ndarray]]:
    return [
        (int(tokens), group["value"].to_numpy(dtype="float64"))
        for tokens, group in reps.groupby("tokens", sort=True)
    ]


def _welch(first: np.ndarray, last: np.ndarray) -> tuple[float, float, float]:
    """Mean of last - mean of first, with its 95% Welch interval (NaN: too few replicates)."""
    change = float(last.mean() - first.mean())
    low, high, _ = statistics.change_ci(
        pd.Series({"values": first, "stderr": math.nan}),
        pd.Series({"values": last, "stderr": math.nan}),
        change,
    )
    return change, low, high


def _bootstrap(points: list[tuple[int, np.ndarray]], statistic, rng) -> np.ndarray:
    """`statistic(means per budget)` over resamples of each budget's replicates (NaN when a
    budget has a single replicate: nothing to resample)."""
    if min(len(values) for _, values in points) < 2:
        return np.full(BOOTSTRAP, np.nan)
    out = []
    for _ in range(BOOTSTRAP):
        means = [rng.choice(values, size=len(values)).mean() for _, values in points]
        out.append(statistic(np.asarray(means)))
    return np.asarray(out, dtype="float64")


def _interval(samples: np.ndarray) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if not len(samples) or len(finite) < 0.9 * len(samples):
        return math.nan, math.nan
    return float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))


def _tokens(n: float) -> str:
    from overtrained.analysis.drawing import tick_label

    return tick_label(n) if np.isfinite(n) else "-"


# --- (a), (b1), (b2): a quantity that should move one way with tokens ---------------------


def _trend(
    claim: str,
    family: str,
    subject: str,
    points: list[tuple[int, np.ndarray]],
    cfg: Mapping | None,
    sign: float = 1.0,
    what: str = "mean",
) -> dict:
    """One row for "this grows (sign +1) or falls (sign -1) with tokens": reproduced when
    every step between budgets moves the mean that way and the 95% Welch interval of the
    change from the first budget to the last excludes 0 on that side."""
    if len(points) < 2:
        return _row(
            claim, family, cfg, subject=subject, verdict="not testable",
            evidence="fewer than 2 budgets",
        )  # fmt: skip
    signed = [(t, sign * v) for t, v in points]
    means = [values.mean() for _, values in signed]
    steps = sum(b > a for a, b in zip(means, means[1:], strict=False))
    change, low, high = _welch(signed[0][1], signed[-1][1])
    significant = sum(
        _welch(a, b)[1] > 0 for (_, a), (_, b) in zip(signed, signed[1:], strict=False)
    )
    monotone = steps == len(points) - 1
    if monotone and low > 0:
        verdict = "reproduced"
    elif monotone or low > 0:
        verdict = "partly"
    else:
        verdict = "not reproduced"
    curve = ", ".join(f"{_tokens(t)} {v.mean():.3g}" for t, v in points)
    direction = "up" if sign > 0 else "down"
    return _row(
        claim,
        family,
        cfg,
        subject=subject,
        estimate=change,
        ci_low=low,
        ci_high=high,
        unit="nats (last - first budget)" if sign > 0 else "nats (first - last budget)",
        verdict=verdict,
        evidence=f"{steps}/{len(points) - 1} steps {direction} ({significant} with a 95% CI "
        f"excluding 0), {len(points[0][1])} replicates; {what}: {curve}",
    )


def noise_growth(metrics: pd.DataFrame, cfg: Mapping | None = None) -> list[dict]:
    pert = metrics[(metrics["model"] == "perturbed") & (metrics["metric"] == "loss_increase")]
    return [
        _trend(
            "a",
            family,
            f"noise {scaling}, gamma {gamma:g}",
            _points(replicates(group, "noise_seed")),
            cfg,
            what="mean increase",
        )
        for (family, scaling, gamma), group in pert.groupby(["family", "scaling", "gamma"])
    ]


def _base_losses(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[
        (metrics["model"] == "base")
        & (metrics["suite"] == "probes")
        & (metrics["metric"] == "pretrain_loss")
    ]


def base_improvement(metrics: pd.DataFrame, cfg: Mapping | None = None) -> list[dict]:
    """(b1) one half of the U: does the base model still improve over the budgets?"""
    base = _base_losses(metrics)
    return [
        _trend(
            "b1",
            family,
            "base model",
            _points(replicates(group.assign(inner=0), "inner")),
            cfg,
            sign=-1.0,
            what="mean base loss",
        )
        for family, group in base.groupby("family")
    ]


def forgetting_growth(metrics: pd.DataFrame, cfg: Mapping | None = None) -> list[dict]:
    """(b2) the other half: fine-tuned minus base pre-training loss of the same checkpoint,
    per fixed LR (LRs that diverged anywhere are left out, as in (b))."""
    base = _base_losses(metrics)[["family", "checkpoint", "value"]]
    curves = _retention_curves(metrics)
    gaps = curves.merge(base, on=["family", "checkpoint"], suffixes=("", "_base"))
    gaps = gaps.assign(value=gaps["value"] - gaps["value_base"])
    rows = []
    for (family, task, lr), group in gaps.groupby(["family", "ft_task", "lr"]):
        subject = f"{task}, LR {lr:g}"
        if group["any_diverged"].any():
            rows.append(
                _row(
                    "b2",
                    family,
                    cfg,
                    subject=subject,
                    verdict="not testable",
                    evidence="diverged at some budget or seed",
                )  # fmt: skip
            )
            continue
        points = _points(replicates(group, "ft_seed"))
        rows.append(_trend("b2", family, subject, points, cfg, what="mean gap"))
    return rows


# --- (b), (c) ---------------------------------------------------------------------------------


def _retention_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    prepared = analysis.finetuned_rows(metrics)
    ft = prepared[(prepared["suite"] == "probes") & (prepared["metric"] == "pretrain_loss")]
    diverged = analysis.lrs_at_checkpoints(prepared)
    bad = diverged.loc[diverged["diverged"], ["family", "ft_task", "lr"]].drop_duplicates()
    marked = ft.merge(bad.assign(any_diverged=True), on=["family", "ft_task", "lr"], how="left")
    return marked.assign(any_diverged=marked["any_diverged"].fillna(False).astype(bool))


def _turning(means: np.ndarray, tokens: np.ndarray) -> float:
    return float(tokens[int(np.argmin(means))])


def u_shapes(metrics: pd.DataFrame, cfg: Mapping | None = None) -> tuple[list[dict], dict]:
    """(b) rows, and per (family, task) the turning points' data for (c)."""
    rows, turning = [], {}
    rng = np.random.default_rng(SEED)
    curves = _retention_curves(metrics)
    for (family, task, lr), group in curves.groupby(["family", "ft_task", "lr"]):
        subject = f"{task}, LR {lr:g}"
        if group["any_diverged"].any():
            rows.append(
                _row(
                    "b",
                    family,
                    cfg,
                    subject=subject,
                    verdict="not testable",
                    evidence="diverged at some budget or seed",
                )
            )
            continue
        points = _points(replicates(group, "ft_seed"))
        tokens = np.asarray([t for t, _ in points], dtype="float64")
        means = np.asarray([v.mean() for _, v in points])
        if len(points) < analysis.MIN_CHECKPOINTS:
            rows.append(
                _row(
                    "b",
                    family,
                    cfg,
                    subject=subject,
                    verdict="not testable",
                    evidence=f"only {len(points)} budgets",
                )
            )
            continue
        lowest = int(np.argmin(means))
        change, low, high = 0.0, math.nan, math.nan  # best at the last budget: nothing to test
        if lowest < len(points) - 1:
            change, low, high = _welch(points[lowest][1], points[-1][1])
        turns = _bootstrap(points, lambda m, t=tokens: _turning(m, t), rng)
        turn_low, turn_high = _interval(turns)
        turning[(family, task, lr)] = (points, tokens, turn_low, turn_high)
        if lowest == len(points) - 1:
            shape, verdict = "falls through the last budget", "not reproduced"
        elif lowest == 0:
            shape, verdict = "rises from the first budget", "partly"
        else:
            shape = f"U, minimum at {_tokens(tokens[lowest])}"
            verdict = "reproduced" if low > 0 else "partly"
        curve = ", ".join(f"{_tokens(t)} {m:.3f}" for t, m in zip(tokens, means, strict=True))
        rows.append(
            _row(
                "b",
                family,
                cfg,
                subject=subject,
                estimate=change,
                ci_low=low,
                ci_high=high,
                unit="nats (last - minimum)",
                verdict=verdict,
                evidence=f"{shape} (95% bootstrap interval of the minimum: "
                f"{_tokens(turn_low)}-{_tokens(turn_high)}); {len(points[0][1])} replicates; "
                f"mean: {curve}",
            )
        )
    return rows, turning


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def turning_shift(turning: dict, cfg: Mapping | None = None) -> list[dict]:
    rows = []
    rng = np.random.default_rng(SEED)
    by_task: dict[tuple[str, str], list] = {}
    for (family, task, lr), data in sorted(turning.items()):
        by_task.setdefault((family, task), []).append((lr, *data))
    for (family, task), entries in by_task.items():
        if len(entries) < 2:
            rows.append(
                _row(
                    "c",
                    family,
                    cfg,
                    subject=task,
                    verdict="not testable",
                    evidence="fewer than 2 LRs that never diverged",
                )
            )
            continue
        lrs = np.asarray([lr for lr, *_ in entries])
        turns = np.asarray(
            [_turning(np.asarray([v.mean() for _, v in p]), t) for _, p, t, *_ in entries]
        )
        rho = _spearman(lrs, turns)
        samples = []
        single = min(len(v) for _, p, *_ in entries for _, v in p) < 2
        for _ in range(0 if single else BOOTSTRAP // 4):
            resampled = [
                _turning(np.asarray([rng.choice(v, len(v)).mean() for _, v in p]), t)
                for _, p, t, *_ in entries
            ]
            samples.append(_spearman(lrs, np.asarray(resampled)))
        low, high = _interval(np.asarray(samples))
        # The largest LR's interval below the smallest's: the order is not one resample's.
        (_, _, _, small_low, _), (_, _, _, _, large_high) = entries[0], entries[-1]
        separated = bool(large_high < small_low)
        if (np.diff(turns) <= 0).all() and turns[-1] < turns[0] and separated:
            verdict = "reproduced"
        elif np.isfinite(rho) and rho < 0:
            verdict = "partly"
        else:
            verdict = "not reproduced"
        listing = ", ".join(
            f"LR {lr:g}: {_tokens(t)} [{_tokens(lo)}-{_tokens(hi)}]"
            for (lr, _, _, lo, hi), t in zip(entries, turns, strict=True)
        )
        rows.append(
            _row(
                "c",
                family,
                cfg,
                subject=task,
                estimate=rho,
                ci_low=low,
                ci_high=high,
                unit="Spearman rho(LR, turning budget)",
                verdict=verdict,
                evidence=f"turning budget (minimum of the mean curve) [95% bootstrap interval] "
                f"by LR: {listing}",
            )
        )
    return rows


# --- (d) --------------------------------------------------------------------------------------


def _edge_note(r) -> str:
    edges = getattr(r, "n_at_grid_edge", None)
    if pd.isna(edges) or not edges:
        return ""
    return f" (tuned LR at an end of its grid at {edges} checkpoints: a bound, not a tuning)"


def tuned_degradation(over: pd.DataFrame, cfg: Mapping | None = None) -> list[dict]:
    tuned = over[(over["lr_mode"] == "tuned") & over["metric"].isin(["pretrain_loss", "id_loss"])]
    rows = []
    for (family, metric), group in tuned.groupby(["family", "metric"]):
        verdicts = dict(zip(group["ft_task"], group["verdict"], strict=True))
        if len(verdicts) < 2:  # "some tasks, not others" needs two tasks to compare
            rows.append(
                _row(
                    "d",
                    family,
                    cfg,
                    subject=f"{metric} at the tuned LR",
                    verdict="not testable",
                    evidence=f"one fine-tuning task ({', '.join(verdicts)}); needs 2 or more",
                )  # fmt: skip
            )
            continue
        degrades = sorted(t for t, v in verdicts.items() if v == "degrades")
        clean = sorted(t for t, v in verdicts.items() if v == "no degradation")
        if degrades and clean:
            verdict = "reproduced"
        elif degrades and len(degrades) < len(verdicts):
            verdict = "partly"
        else:
            verdict = "not reproduced"
        parts = [
            f"{r.ft_task}: {r.verdict}, change {r.change:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
            f" best at {_tokens(r.best_tokens)}" + _edge_note(r)
            for r in group.itertuples()
        ]
        rows.append(
            _row(
                "d",
                family,
                cfg,
                subject=f"{metric} at the tuned LR",
                estimate=float(len(degrades)),
                unit=f"tasks degrading of {len(verdicts)}",
                verdict=verdict,
                evidence="; ".join(parts),
            )
        )
    return rows


# --- (e) --------------------------------------------------------------------------------------


def schedule_effects(rows: list[dict], cfg: Mapping | None = None) -> list[dict]:
    """For each (claim, subject) measured on families of one size with different schedules:
    do two schedules' 95% intervals fail to overlap?"""
    frame = pd.DataFrame(rows)
    frame = frame[frame["claim"].isin(["a", "b", "b1", "b2", "c"]) & (frame["schedule"] != "")]
    out = []
    for (claim, size, subject), group in frame.groupby(["claim", "size", "subject"]):
        if group["schedule"].nunique() < 2:
            continue
        measured = group[np.isfinite(group["ci_low"]) & np.isfinite(group["ci_high"])]
        apart = [
            f"{a.schedule} vs {b.schedule}"
            for i, a in enumerate(measured.itertuples())
            for b in list(measured.itertuples())[i + 1 :]
            if a.schedule != b.schedule and (a.ci_high < b.ci_low or b.ci_high < a.ci_low)
        ]
        listing = "; ".join(
            f"{r.schedule}: {r.estimate:.3g} [{r.ci_low:.3g}, {r.ci_high:.3g}] ({r.verdict})"
            for r in group.itertuples()
        )
        out.append(
            {
                "claim": "e",
                "family": " vs ".join(group["family"]),
                "schedule": ", ".join(group["schedule"]),
                "size": size,
                "subject": f"({claim}) {subject}",
                "estimate": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "unit": group["unit"].iloc[0],
                "verdict": "schedules differ" if apart else "no difference detected",
                "evidence": listing + (f"; non-overlapping: {', '.join(apart)}" if apart else ""),
            }
        )
    return out


def evaluate(metrics: pd.DataFrame, over: pd.DataFrame, cfg: Mapping | None = None):
    """Every claim's rows (SCHEMA)."""
    rows = noise_growth(metrics, cfg)
    b_rows, turning = u_shapes(metrics, cfg)
    rows += b_rows + base_improvement(metrics, cfg) + forgetting_growth(metrics, cfg)
    rows += turning_shift(turning, cfg) + tuned_degradation(over, cfg)
    rows += schedule_effects(rows, cfg)
    frame = pd.DataFrame(rows, columns=SCHEMA.names)
    return frame.sort_values(
        ["claim", "size", "family", "subject"], key=_in_claim_order, kind="stable",
        ignore_index=True,
    )  # fmt: skip


def _in_claim_order(column: pd.Series) -> pd.Series:
    """Sort key: claims in the order of CLAIMS ((b1) and (b2) after (b)), other columns as
    they are."""
    if column.name != "claim":
        return column
    return column.map({claim: i for i, claim in enumerate(CLAIMS)})


def split_replicates(metrics: pd.DataFrame, seeds) -> pd.DataFrame:
    """The rows of one set of replicates: pre-training seeds when the run has several, else
    fine-tuning and noise seeds (the replicates `replicates` counts)."""
    seeds = {int(s) for s in seeds}
    pretrain_seeds = metrics["pretrain_seed"].dropna().unique()
    if len(pretrain_seeds) > 1:
        return metrics[metrics["pretrain_seed"].isin(seeds)]
    keep = pd.Series(True, index=metrics.index)
    for column in ("ft_seed", "noise_seed"):
        keep &= metrics[column].isna() | metrics[column].isin(seeds)
    return metrics[keep]


def seed_split(metrics: pd.DataFrame, seed_sets: list, cfg: Mapping | None = None) -> pd.DataFrame:
    """Every claim evaluated on each of several disjoint seed sets, side by side: a verdict
    that changes with the seeds is a property of the seeds, not of the method. One row per
    (claim, family, subject); `agree` when every set gives the same verdict."""
    names = [",".join(str(s) for s in sorted(seeds)) for seeds in seed_sets]
    flat = [int(s) for seeds in seed_sets for s in seeds]
    if len(flat) != len(set(flat)):
        raise ValueError(f"the seed sets {' / '.join(names)} overlap; give disjoint sets")
    keys = ["claim", "family", "subject"]
    merged = None
    for name, seeds in zip(names, seed_sets, strict=True):
        part = split_replicates(metrics, seeds)
        if part.empty or part[part["model"] != "corpus"].empty:
            raise ValueError(f"no rows for seeds {name}: the run has no such replicates")
        table = evaluate(part, analysis.overtraining(part), cfg)
        table = table[[*keys, "verdict", "estimate"]].rename(
            columns={"verdict": f"verdict {name}", "estimate": f"estimate {name}"}
        )
        merged = table if merged is None else merged.merge(table, on=keys, how="outer")
    verdicts = merged[[f"verdict {name}" for name in names]]
    merged["agree"] = verdicts.nunique(axis=1, dropna=False).eq(1) & verdicts.notna().all(axis=1)
    return merged.sort_values(keys, key=_in_claim_order, ignore_index=True)


def seed_split_markdown(split: pd.DataFrame) -> str:
    sets = [c.removeprefix("verdict ") for c in split.columns if c.startswith("verdict ")]
    lines = []
    for claim in CLAIMS:
        rows = split[split["claim"] == claim]
        if len(rows):
            lines.append(f"- ({claim}): {int(rows['agree'].sum())} of {len(rows)} rows agree")
    head = ["claim", "family", "subject", *(f"seeds {s}" for s in sets), "agree"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in split.to_dict("records"):
        cells = [f"({r['claim']})", r["family"], r["subject"]]
        for s in sets:
            verdict, estimate = r[f"verdict {s}"], _number(r[f"estimate {s}"])
            cells.append(f"{verdict} ({estimate})" if estimate else verdict)
        cells.append("yes" if r["agree"] else "**no**")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def overview(claims: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: how many rows reach each verdict."""
    lines = []
    for claim, text in CLAIMS.items():
        rows = claims[claims["claim"] == claim]
        counts = rows["verdict"].value_counts()
        tally = ", ".join(f"{n} {v}" for v, n in counts.items()) or "nothing measured"
        lines.append({"claim": f"({claim}) {text}", "verdicts": tally})
    return pd.DataFrame(lines)


def _number(x: float) -> str:
    return "" if not np.isfinite(x) else f"{x:.3g}"


def markdown(claims: pd.DataFrame) -> str:
    """The overview, then every row, as Markdown tables (for the README and reviewers)."""
    head = overview(claims)
    text = ["| claim | verdicts |", "|---|---|"]
    text += [f"| {r.claim} | {r.verdicts} |" for r in head.itertuples()]
    text += [
        "",
        "| claim | family | subject | estimate [95% CI] | unit | verdict | evidence |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in claims.itertuples():
        ci = f" [{_number(r.ci_low)}, {_number(r.ci_high)}]" if np.isfinite(r.ci_low) else ""
        text.append(
            f"| ({r.claim}) | {r.family} | {r.subject} | {_number(r.estimate)}{ci} | {r.unit} "
            f"| {r.verdict} | {r.evidence} |"
        )
    text += ["", "Rules:", *(f"- ({k}) {v}" for k, v in RULES.items())]
    return "\n".join(text) + "\n"


def write(metrics_path, overtraining_path, cfg: Mapping | None, outputs) -> pd.DataFrame:
    """The claims of a run as Parquet (typed), CSV and Markdown (`outputs`: parquet, csv, md)."""
    from pathlib import Path

    from overtrained.core import provenance

    table = evaluate(pd.read_parquet(metrics_path), pd.read_parquet(overtraining_path), cfg)
    metadata = {
        "rules": RULES,
        "claims": CLAIMS,
        "metrics_sha256": provenance.sha256_file(metrics_path),
        "code_version": provenance.code_version(),
        "created": provenance.now(),
    }
    analysis.write(table, outputs.parquet, SCHEMA, metadata)
    table.to_csv(outputs.csv, index=False)
    Path(outputs.md).write_text(markdown(table))
    return table


PUBLISHED_TABLES = ("claims.csv", "overtraining.parquet", "best_lr.parquet")


def publish(run: str, out: str) -> list[str]:
    """Copy what a README cites from a finished run (its claims, verdicts, tuned LRs as CSV
    and Markdown, every figure as PNG) into `out`, so reviewers compare without re-running."""
    import shutil
    from pathlib import Path

    results, target = Path(run) / "results", Path(out)
    missing = [p for p in ("claims.md", "tables/claims.csv") if not (results / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{results} has no {', '.join(missing)}: run the workflow there first "
            "(snakemake --configfile CONFIG --directory RUN)"
        )
    (target / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    shutil.copyfile(results / "claims.md", target / "claims.md")
    written.append("claims.md")
    for name in PUBLISHED_TABLES:
        source = results / "tables" / name
        if name.endswith(".parquet"):
            name = name.replace(".parquet", ".csv")
            pd.read_parquet(source).to_csv(target / name, index=False)
        else:
            shutil.copyfile(source, target / name)
        written.append(name)
    for png in sorted((results / "figures").glob("*.png")):
        shutil.copyfile(png, target / "figures" / png.name)
        written.append(f"figures/{png.name}")
    return written

"""Statistics shared by the analysis and the claims: 95% intervals of a change between two
points of a curve, from replicates (Welch t) or from standard errors (normal)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Z_95 = 1.959963984540054
# Two-sided 95% Student t quantiles, df 1..30 (beyond: a Cornish-Fisher expansion).
T_95 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_95(df: float) -> float:
    """Two-sided 95% Student t quantile (df rounded down: slightly conservative)."""
    if not np.isfinite(df) or df <= 0:
        return Z_95
    k = int(df + 1e-9)  # a float df of 3.9999999 is 4
    if k <= len(T_95):
        return T_95[max(k, 1) - 1]
    z = Z_95
    return z + (z**3 + z) / (4 * k) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * k**2)


def change_ci(best: pd.Series, last: pd.Series, change: float) -> tuple[float, float, str]:
    """95% CI of the change between two curve points (each: values = replicate values,
    stderr = the point mean's standard error from its measurements' standard errors).

    'seeds' when both points have >= 2 replicates (pre-training x fine-tuning seeds):
    Welch's t interval; else 'stderr' when both have a standard error: normal interval with
    the errors added in quadrature; else 'none' (NaN bounds)."""
    vb, vl = np.asarray(best["values"]), np.asarray(last["values"])
    if len(vb) >= 2 and len(vl) >= 2:
        qb, ql = vb.var(ddof=1) / len(vb), vl.var(ddof=1) / len(vl)
        se = math.sqrt(qb + ql)
        if se > 0:
            df = (qb + ql) ** 2 / (qb**2 / (len(vb) - 1) + ql**2 / (len(vl) - 1))
        else:
            df = len(vb) + len(vl) - 2
        half = t_95(df) * se
        return change - half, change + half, "seeds"
    if np.isfinite(best["stderr"]) and np.isfinite(last["stderr"]):
        half = Z_95 * math.hypot(best["stderr"], last["stderr"])
        return change - half, change + half, "stderr"
    return math.nan, math.nan, "none"

"""Rank and linear correlations of a recovered reward with the ground truth R* (DESIGN §5; FA-IRL App. C)."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["correlations"]

NAN = float("nan")


def correlations(r_hat, r_gt) -> dict[str, float]:
    """Pearson, Spearman and Kendall (tau-b) correlation of r̂ with r_gt (scipy.stats).

    Returns ``{"pearson": ..., "spearman": ..., "kendall": ...}`` as Python floats; each is ``nan`` when it is
    undefined (fewer than 2 outputs, or either reward constant).
    """
    from scipy import stats

    a = np.asarray(r_hat, dtype=np.float64).reshape(-1)
    b = np.asarray(r_gt, dtype=np.float64).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"length mismatch: r_hat={len(a)}, r_gt={len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("rewards must be finite (got NaN or inf)")
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson": NAN, "spearman": NAN, "kendall": NAN}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "pearson": float(stats.pearsonr(a, b).statistic),
            "spearman": float(stats.spearmanr(a, b).statistic),
            "kendall": float(stats.kendalltau(a, b).statistic),
        }

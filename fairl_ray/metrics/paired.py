"""Paired statistics for method comparisons (DESIGN §6b "Paired statistics"; Agarwal et al., 2021, "Deep RL at the
Edge of the Statistical Precipice", the ``rliable`` methods).

* :func:`paired_comparison` -- per seed the difference d_s = treatment_s − control_s on the same split; the mean
  d̄ with a 95% CI, both a t interval over seeds (d̄ ± t_{0.975, n−1}·sd(d)/√n, sd with ddof = 1) and a paired
  percentile bootstrap (seeds resampled with replacement, their differences kept paired); a verdict only where
  the t interval excludes 0, and none with fewer than :data:`MIN_SEEDS` paired seeds.
* :func:`mcnemar_exact` -- McNemar's exact test on a disagreement table: under H0 each discordant output is
  "only treatment right" with probability 1/2, so b ~ Binomial(b + c, 1/2); two-sided p-value.
* :func:`interquartile_mean`, :func:`iqm_with_ci` and :func:`probability_of_improvement` -- across many runs
  (rliable): the mean of the middle 50% of scores with a bootstrap CI, and P(X > Y) + ½·P(X = Y) for a run X of
  the treatment against a run Y of the control.

Pure numpy/scipy; every function returns plain Python floats (or dicts/lists of them) for JSON and MLflow.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MIN_SEEDS",
    "N_RESAMPLES",
    "bootstrap_interval",
    "interquartile_mean",
    "iqm_with_ci",
    "mcnemar_exact",
    "paired_comparison",
    "probability_of_improvement",
    "t_interval",
    "verdict",
]

NAN = float("nan")

#: Below this many paired seeds no verdict is given: a t interval on 2–4 differences is too wide to mean much,
#: and the bootstrap on so few values is too narrow to trust (DESIGN §6b: "over ≥ 5 seeds").
MIN_SEEDS = 5
#: Bootstrap resamples (seeded: the same inputs give the same interval).
N_RESAMPLES = 10_000


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean: x̄ ± t_{(1+confidence)/2, n−1} · s/√n with s the ddof = 1 std.

    ``(nan, nan)`` with fewer than 2 values; ``(x̄, x̄)`` when all values are equal.
    """
    from scipy import stats

    a = _finite(values)
    if len(a) < 2:
        return NAN, NAN
    mean, half = float(a.mean()), 0.0
    sd = float(a.std(ddof=1))
    if sd > 0:
        half = float(stats.t.ppf(0.5 + confidence / 2, df=len(a) - 1)) * sd / np.sqrt(len(a))
    return mean - half, mean + half


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_interval(
    values, statistic=np.mean, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (default the mean) over ``values`` resampled with replacement.

    ``statistic`` takes an array of shape ``(n_resamples, n)`` and ``axis=1`` (numpy reductions do). Pass the
    paired differences to get the paired bootstrap: resampling d_s keeps each seed's two runs together.
    ``(nan, nan)`` with fewer than 2 values.
    """
    a = _finite(values)
    if len(a) < 2:
        return NAN, NAN
    stats = statistic(a[_resample_indices(len(a), n_resamples, seed)], axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def verdict(
    ci, n_seeds: int, higher_is_better: bool = True, better: str = "treatment better", worse: str = "control better"
) -> str:
    """The verdict on a difference treatment − control with 95% interval ``ci``: ``better`` / ``worse`` only where
    the interval excludes 0, ``"tie (CI includes 0)"`` where it does not, and ``"too few seeds (n<5)"`` (no verdict)
    with fewer than :data:`MIN_SEEDS` seeds behind it."""
    lo, hi = ci
    if n_seeds < MIN_SEEDS:
        return f"too few seeds (n<{MIN_SEEDS})"
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 <= hi:
        return "tie (CI includes 0)"
    return better if (lo > 0) == higher_is_better else worse


def paired_comparison(treatment, control, higher_is_better: bool = True, seed: int = 0) -> dict:
    """Paired difference treatment − control over seeds (the i-th entries of both come from the same seed/split).

    Returns ``n`` (paired seeds with both values finite), ``treatment_mean``, ``control_mean``, ``mean_diff``,
    ``ci95_t`` and ``ci95_bootstrap`` ([low, high] of the mean difference), ``diffs`` (per seed) and ``verdict``:

    * ``"too few seeds (n<5)"`` with fewer than :data:`MIN_SEEDS` pairs (the intervals are still reported);
    * ``"treatment better"`` / ``"control better"`` where the t interval excludes 0 (``higher_is_better`` says
      which sign is better: False for STARC);
    * ``"tie (CI includes 0)"`` otherwise.

    The verdict reads the t interval (a two-sided paired t-test at α = .05); the bootstrap is shown beside it
    because it does not assume normal differences, but with few seeds it is the narrower, less safe one.
    """
    t = np.asarray(treatment, dtype=np.float64).reshape(-1)
    c = np.asarray(control, dtype=np.float64).reshape(-1)
    if len(t) != len(c):
        raise ValueError(f"paired values need equal lengths, got treatment={len(t)}, control={len(c)}")
    keep = np.isfinite(t) & np.isfinite(c)  # a seed counts only when both of its runs have the metric
    t, c = t[keep], c[keep]
    d = t - c
    n = len(d)
    ci_t, ci_boot = t_interval(d), bootstrap_interval(d, seed=seed)
    mean = lambda a: float(a.mean()) if len(a) else NAN  # noqa: E731
    return {
        "n": n,
        "treatment_mean": mean(t),
        "control_mean": mean(c),
        "mean_diff": mean(d),
        "ci95_t": list(ci_t),
        "ci95_bootstrap": list(ci_boot),
        "diffs": [float(x) for x in d],
        "verdict": verdict(ci_t, n, higher_is_better),
    }


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for the discordant counts b (only treatment right) and c (only control right).

    Under H0 (both equally often right) b ~ Binomial(b + c, ½); the two-sided p-value of the exact binomial test,
    p = min(1, 2·P(X ≤ min(b, c))). 1.0 when there is no discordant output.
    """
    from scipy import stats

    b, c = int(round(b)), int(round(c))
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * stats.binom.cdf(min(b, c), b + c, 0.5)))


def interquartile_mean(values, axis=None):
    """Interquartile mean (rliable): the mean of the middle 50% of the values (scipy ``trim_mean`` cutting 25% each
    side). Robust to outlier runs yet less noisy than the median."""
    from scipy import stats

    return stats.trim_mean(values, proportiontocut=0.25, axis=axis)


def iqm_with_ci(values, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """IQM of many runs with a 95% percentile-bootstrap interval over the runs: ``{"iqm", "ci95", "n"}``."""
    a = _finite(values)
    if len(a) == 0:
        return {"iqm": NAN, "ci95": [NAN, NAN], "n": 0}
    lo, hi = bootstrap_interval(a, statistic=interquartile_mean, n_resamples=n_resamples, seed=seed)
    return {"iqm": float(interquartile_mean(a)), "ci95": [lo, hi], "n": int(len(a))}


def probability_of_improvement(treatment, control, higher_is_better: bool = True) -> float:
    """P(X > Y) + ½·P(X = Y) over every (treatment run X, control run Y) pair (rliable; the Mann–Whitney U / (n·m)).

    0.5 = neither tends to beat the other. ``nan`` when either side has no finite value.
    """
    x, y = _finite(treatment), _finite(control)
    if len(x) == 0 or len(y) == 0:
        return NAN
    if not higher_is_better:
        x, y = -x, -y
    diff = x[:, None] - y[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))

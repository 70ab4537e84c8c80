"""Aggregate statistics across seeds and completions, as the RL community reports them (Agarwal et al., 2021, "Deep
RL at the Edge of the Statistical Precipice": the ``rliable`` methods), for the HTML report.

* :func:`iqm` -- the interquartile mean: the mean of the middle 50% of the runs (robust to one odd seed, less noisy
  than the median).
* :func:`bootstrap_ci` -- a percentile-bootstrap interval of any statistic over the runs (seeds resampled with
  replacement).
* :func:`probability_of_improvement` -- P(X > Y) + ½·P(X = Y) over every pair of runs (the Mann–Whitney form).
* :func:`bootstrap_rate_ci` -- a rate over 0/1 flags (the toxicity rate of a model's completions) with its
  percentile-bootstrap interval over the completions.

Small on purpose (no ``rliable`` dependency): the arithmetic is :mod:`fairl_ray.metrics.paired`'s, whose functions
the evaluation's comparisons already use; this module gives them the report's signatures.
"""

from __future__ import annotations

import numpy as np

from fairl_ray.metrics.paired import bootstrap_interval, interquartile_mean
from fairl_ray.metrics.paired import probability_of_improvement as paired_probability_of_improvement

__all__ = ["bootstrap_ci", "bootstrap_rate_ci", "iqm", "probability_of_improvement"]

NAN = float("nan")
#: resamples of the report's intervals: enough for a stable 95% percentile interval, cheap for dozens of cells
N_RESAMPLES = 2000


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def iqm(values, axis=None):
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``). With ``axis=None`` the
    non-finite values are left out and an empty input gives ``nan``; with an ``axis`` (what :func:`bootstrap_ci`
    passes) the array is reduced as is."""
    if axis is not None:
        return interquartile_mean(values, axis=axis)
    a = _finite(values)
    return float(interquartile_mean(a)) if len(a) else NAN


def bootstrap_ci(
    values, statistic=np.mean, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap ``level`` interval of ``statistic`` over ``values`` (one per seed) resampled with
    replacement; ``statistic`` reduces an ``(n_resamples, n)`` array along ``axis=1`` (numpy reductions and
    :func:`iqm` do). Seeded, so a report rebuilt from the same results shows the same interval. ``(nan, nan)`` with
    fewer than 2 finite values: one seed has no spread to resample."""
    return bootstrap_interval(values, statistic=statistic, confidence=level, n_resamples=n_resamples, seed=seed)


def probability_of_improvement(x, y, higher_is_better: bool = True) -> float:
    """P(X > Y) + ½·P(X = Y) for a run X of ``x`` against a run Y of ``y``, over all pairs (the Mann–Whitney U
    divided by n·m). 0.5: neither tends to beat the other; ``nan`` when a side has no finite value."""
    return paired_probability_of_improvement(x, y, higher_is_better=higher_is_better)


def bootstrap_rate_ci(flags, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict:
    """The rate of ``flags`` (booleans, one per completion: toxic or not) with its percentile-bootstrap interval over
    the completions: ``{"rate", "ci", "n"}`` (``nan`` rate and interval for no flags).

    Resampling n 0/1 flags with replacement makes the resampled count Binomial(n, rate) exactly, so the resamples are
    drawn as binomials: the same distribution as the explicit bootstrap at O(n_resamples) cost, not O(n·n_resamples).
    """
    a = np.asarray(flags, dtype=bool).reshape(-1)
    n = len(a)
    if n == 0:
        return {"rate": NAN, "ci": [NAN, NAN], "n": 0}
    rate = float(a.mean())
    rates = np.random.default_rng(seed).binomial(n, rate, size=n_resamples) / n
    alpha = (1 - level) / 2
    lo, hi = np.quantile(rates, [alpha, 1 - alpha])
    return {"rate": rate, "ci": [float(lo), float(hi)], "n": n}

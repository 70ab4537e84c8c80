"""The report's statistics across seeds (fairl_ray.metrics.aggregate), against values computed by hand."""

import math

import numpy as np
import pytest

from fairl_ray.metrics.aggregate import bootstrap_ci, bootstrap_rate_ci, iqm, probability_of_improvement


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)  # order does not matter
    assert iqm([1, 2, 3, 4, 5, 6, 7, 1000]) == pytest.approx(4.5)  # an outlier seed is cut
    assert iqm([1, 2, 3, 4, float("nan")]) == pytest.approx(iqm([1, 2, 3, 4]))  # 25% of 4 cuts 1 each side: 2.5
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)
    assert math.isnan(iqm([]))


def test_probability_of_improvement_counts_every_pair_ties_as_half():
    # (1,0) win, (1,2) loss, (2,0) win, (2,2) tie: (1 + 0 + 1 + 0.5) / 4
    assert probability_of_improvement([1, 2], [0, 2]) == pytest.approx(0.625)
    assert probability_of_improvement([0, 2], [1, 2]) == pytest.approx(0.375)  # the complement
    assert probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert probability_of_improvement([1, 2], [0, 2], higher_is_better=False) == pytest.approx(0.375)
    assert math.isnan(probability_of_improvement([], [1]))


def test_bootstrap_ci_is_the_percentile_interval_over_resampled_seeds():
    assert bootstrap_ci([0.7, 0.7, 0.7], np.mean) == pytest.approx((0.7, 0.7))  # no spread, no width
    assert all(math.isnan(x) for x in bootstrap_ci([0.7], np.mean))  # one seed: nothing to resample
    # two seeds 0 and 1: resampled means are 0, .5, 1 with probabilities 1/4, 1/2, 1/4: the 95% interval is [0, 1]
    assert bootstrap_ci([0.0, 1.0], np.mean) == (0.0, 1.0)
    # the same interval as resampling by hand with the same generator
    values = np.array([0.61, 0.64, 0.7, 0.72, 0.9])
    idx = np.random.default_rng(0).integers(0, 5, size=(2000, 5))
    by_hand = np.quantile(values[idx].mean(axis=1), [0.025, 0.975])
    assert bootstrap_ci(values, np.mean) == pytest.approx(tuple(by_hand))
    lo, hi = bootstrap_ci(values, iqm)
    assert lo <= iqm(values) <= hi
    narrow = bootstrap_ci(values, np.mean, level=0.5)
    assert lo <= narrow[0] <= narrow[1] <= hi + 1e-12
    assert bootstrap_ci(values, np.mean, seed=1) != bootstrap_ci(values, np.mean, seed=0)


def test_bootstrap_rate_ci_over_completions():
    assert bootstrap_rate_ci([False] * 10) == {"rate": 0.0, "ci": [0.0, 0.0], "n": 10}
    out = bootstrap_rate_ci([True] * 30 + [False] * 70)
    assert out["rate"] == pytest.approx(0.3) and out["n"] == 100
    # the normal approximation: 0.3 ± 1.96·√(0.3·0.7/100) = [0.210, 0.390]
    assert out["ci"][0] == pytest.approx(0.21, abs=0.02) and out["ci"][1] == pytest.approx(0.39, abs=0.02)
    # and the explicit bootstrap of the flags' mean agrees
    flags = np.array([1] * 30 + [0] * 70)
    explicit = np.quantile(flags[np.random.default_rng(1).integers(0, 100, (4000, 100))].mean(1), [0.025, 0.975])
    assert out["ci"] == pytest.approx(list(explicit), abs=0.015)
    assert math.isnan(bootstrap_rate_ci([])["rate"])

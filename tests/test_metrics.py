"""Metrics pinned to hand-computed values (arithmetic in comments) plus invariance properties."""

import math

import numpy as np
import pytest

from fairl_ray.metrics import (
    affine_mse,
    classification_metrics,
    correlations,
    fit_threshold,
    interquartile_mean,
    iqm_with_ci,
    majority_baseline_accuracy,
    mcnemar_exact,
    pair_accuracy,
    paired_comparison,
    probability_of_improvement,
    reward_metrics,
    rstar_pair_agreement,
    rstar_ties,
    starc_distance,
)
from fairl_ray.metrics.paired import bootstrap_interval, t_interval

# ---------------------------------------------------------------- threshold


def test_fit_threshold_hand_example_with_tie():
    # sorted: 0.1(y0) 0.35(y1) 0.4(y0) 0.8(y1); candidate k = number of distinct values predicted negative:
    # k=0: 0+2=2, k=1 (t=.225): 1+2=3, k=2 (t=.375): 1+1=2, k=3 (t=.6): 2+1=3, k=4: 2+0=2
    # optimal plateau {1, 3} -> lower median -> k=1 -> midpoint(0.1, 0.35) = 0.225
    t = fit_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert t == pytest.approx(0.225)


def test_fit_threshold_separable_and_degenerate():
    assert fit_threshold([0.9, 0.1, 0.7, 0.2], [1, 0, 1, 0]) == pytest.approx(0.45)  # (0.2+0.7)/2
    assert fit_threshold([1, 2, 3, 4], [0, 1, 1, 1]) == pytest.approx(1.5)
    # one class only: mean gap between distinct scores = 1 -> outer candidates sit 0.5 outside the range
    assert fit_threshold([1, 2, 3], [1, 1, 1]) == pytest.approx(0.5)
    assert fit_threshold([1, 2, 3], [0, 0, 0]) == pytest.approx(3.5)
    # all scores equal, positives in the majority: everything positive, 0.5 below
    assert fit_threshold([2, 2, 2], [1, 0, 1]) == pytest.approx(1.5)
    assert fit_threshold([2, 2, 2], [0, 0, 1]) == pytest.approx(2.5)
    assert fit_threshold([5.0], [True]) == pytest.approx(4.5)  # bools accepted
    with pytest.raises(ValueError):
        fit_threshold([], [])
    with pytest.raises(ValueError, match="labels"):
        fit_threshold([1, 2], [-1, 1])  # pairs-file convention must be converted first
    with pytest.raises(ValueError):
        fit_threshold([1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="length"):
        fit_threshold([1, 2, 3], [0, 1])


def test_classification_metrics_hand_values():
    # threshold 0.225: pred = [0, 1, 1, 1]; TP=2 FP=1 FN=0 TN=1
    m = classification_metrics([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.225)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)  # 2 * (2/3) * 1 / (2/3 + 1)
    # AUC: (pos, neg) pairs ranked right: .35>.1, .8>.1, .8>.4 (not .35>.4) -> 3/4
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["positive_rate"] == pytest.approx(0.75)
    # toxic (label 0) as positive: predicted toxic = {0.1} -> TP=1 FP=0 FN=1 (0.4 missed)
    assert m["precision_toxic"] == pytest.approx(1.0) and m["recall_toxic"] == pytest.approx(0.5)
    assert m["f1_toxic_positive"] == pytest.approx(2 / 3)  # 2 * 1 * .5 / 1.5
    assert m["f1_nontoxic_positive"] == m["f1"]
    assert m["balanced_accuracy"] == pytest.approx(0.75)  # (recall non-toxic 1 + recall toxic .5) / 2
    assert all(isinstance(v, float) for v in m.values())
    # score == threshold is positive
    assert classification_metrics([1.0], [1], 1.0)["accuracy"] == 1.0


def test_classification_metrics_degenerate():
    m = classification_metrics([0.1, 0.2], [1, 1], 0.5)  # nothing predicted positive, one class
    assert m["accuracy"] == 0.0 and m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert math.isnan(m["roc_auc"])
    e = classification_metrics([], [], 0.0)
    assert math.isnan(e["accuracy"]) and e["n"] == 0.0


def test_imbalanced_all_non_toxic_prediction_looks_accurate_but_is_not():
    # 8 toxic outputs of 128, every score above the threshold: everything predicted non-toxic
    labels = np.array([0] * 8 + [1] * 120)
    m = classification_metrics(np.ones(128), labels, threshold=0.0)
    assert round(m["accuracy"], 3) == 0.938  # 120 / 128 = .9375
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # (recall non-toxic 1 + recall toxic 0) / 2
    assert m["recall_toxic"] == 0.0 and m["f1_toxic_positive"] == 0.0 and m["precision_toxic"] == 0.0
    assert m["f1_nontoxic_positive"] == pytest.approx(2 * 0.9375 / 1.9375)  # precision .9375, recall 1
    # the majority-class baseline (train majority = non-toxic) gets the same accuracy: no skill shown
    assert majority_baseline_accuracy(labels, labels) == pytest.approx(0.9375)


def test_majority_baseline_accuracy():
    assert majority_baseline_accuracy([1, 1, 0], [0, 0, 1, 1]) == pytest.approx(0.5)  # majority 1
    assert majority_baseline_accuracy([0, 0, 1], [0, 0, 0, 1]) == pytest.approx(0.75)  # majority 0
    assert majority_baseline_accuracy([1, 0], [0, 0, 1]) == pytest.approx(1 / 3)  # tie -> class 1
    assert math.isnan(majority_baseline_accuracy([], [1]))


# ---------------------------------------------------------------- pairs


def test_pair_accuracy_and_rstar_agreement():
    # Δ = [1, 0, -2, 3]: strictly positive 2 of 4 (tie counts wrong)
    assert pair_accuracy([1, 2, 3, 4], [0, 2, 5, 1]) == pytest.approx(0.5)
    assert math.isnan(pair_accuracy([], []))
    # ΔR* = [1, 0, -1, 1]: pair 1 dropped; signs of Δ̂ [+, -, +] match -> 3/3
    assert rstar_pair_agreement([1, 2, 3, 4], [0, 2, 5, 1], [1, 0, 0, 1], [0, 0, 1, 0]) == pytest.approx(1.0)
    # ΔR* = [1, 1, -1, 1]: pair 1 now counts and Δ̂ = 0 there is a disagreement -> 3/4
    assert rstar_pair_agreement([1, 2, 3, 4], [0, 2, 5, 1], [1, 1, 0, 1], [0, 0, 1, 0]) == pytest.approx(0.75)
    assert math.isnan(rstar_pair_agreement([1], [0], [0.5], [0.5]))


def test_rstar_agreement_leaves_out_rstar_ties():
    # ΔR* = [1, 1e-12, 0, -2]: pairs 1 and 2 are R* ties (|ΔR*| <= 1e-9); Δ̂ = [1, 1, 1, -1]
    hat_c, hat_r = [1, 1, 1, 0], [0, 0, 0, 1]
    gt_c, gt_r = [1.0, 0.5 + 1e-12, 0.3, 0.0], [0.0, 0.5, 0.3, 2.0]
    # pair accuracy rewards following the (arbitrary) preference on the ties: 3/4
    assert pair_accuracy(hat_c, hat_r) == pytest.approx(0.75)
    # against R*: pair 0 agrees (+,+), pair 3 agrees (−,−) -> 2/2 over the non-tied pairs
    assert rstar_pair_agreement(hat_c, hat_r, gt_c, gt_r) == pytest.approx(1.0)
    assert rstar_ties(gt_c, gt_r) == 2
    # with atol = 0 the 1e-12 gap counts as an ordering, and Δ̂ = +1 agrees with it: 3/3
    assert rstar_pair_agreement(hat_c, hat_r, gt_c, gt_r, atol=0.0) == pytest.approx(1.0)
    assert rstar_ties(gt_c, gt_r, atol=0.0) == 1
    # the tied pairs left out: flipping Δ̂ there changes nothing
    assert rstar_pair_agreement([1, 0, 0, 0], [0, 1, 1, 1], gt_c, gt_r) == pytest.approx(1.0)


# ---------------------------------------------------------------- paired statistics


def test_t_interval_on_five_numbers():
    # mean 3, s = sqrt(2.5) = 1.5811, s/√5 = 0.70711, t_{.975, 4} = 2.776445 -> half-width 1.963243
    lo, hi = t_interval([1, 2, 3, 4, 5])
    assert lo == pytest.approx(3 - 1.963243, abs=1e-6) and hi == pytest.approx(3 + 1.963243, abs=1e-6)
    assert t_interval([2, 2, 2]) == (2.0, 2.0)
    assert all(math.isnan(x) for x in t_interval([1.0]))


def test_paired_bootstrap_is_seeded_and_inside_the_range():
    lo, hi = bootstrap_interval([1, 2, 3, 4, 5])
    assert (lo, hi) == bootstrap_interval([1, 2, 3, 4, 5])  # seeded: same numbers, same interval
    assert 1 < lo < 3 < hi < 5  # a mean of resampled values never leaves [min, max]
    assert hi - lo < 2 * 1.963243  # narrower than the t interval on 5 values (why the verdict reads t)
    assert bootstrap_interval([4, 4, 4]) == (4.0, 4.0)


def test_paired_comparison_verdicts():
    control = [0.5, 0.6, 0.7, 0.8, 0.9]
    better = paired_comparison([c + d for c, d in zip(control, [1, 2, 3, 4, 5])], control)
    assert better["n"] == 5 and better["mean_diff"] == pytest.approx(3.0)
    assert better["ci95_t"] == pytest.approx([3 - 1.963243, 3 + 1.963243], abs=1e-6)
    assert better["diffs"] == pytest.approx([1, 2, 3, 4, 5])
    assert better["treatment_mean"] == pytest.approx(3.7) and better["control_mean"] == pytest.approx(0.7)
    assert better["verdict"] == "treatment better"
    # lower is better (STARC): the same differences mean the control wins
    assert paired_comparison(np.add(control, [1, 2, 3, 4, 5]), control, higher_is_better=False)["verdict"] == (
        "control better"
    )
    tie = paired_comparison(np.add(control, [-2, -1, 0, 1, 2]), control)
    assert tie["verdict"] == "tie (CI includes 0)"
    few = paired_comparison([2, 3, 4, 5], [0, 0, 0, 0])
    assert few["verdict"] == "too few seeds (n<5)" and few["ci95_t"][0] > 0  # intervals shown, no verdict
    # a seed counts only when both runs have the metric
    assert paired_comparison([1, float("nan"), 3], [0, 0, float("nan")])["n"] == 1
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([1, 2], [1])


def test_mcnemar_exact_hand_values():
    # b + c = 7 discordant; P(X <= 1 | Bin(7, ½)) = (1 + 7) / 128 -> two-sided 0.125
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)  # symmetric
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_interquartile_mean_and_probability_of_improvement():
    # the middle 50% of 8 values: 3, 4, 5, 6 -> 4.5, whatever the outer runs are
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(4.5)
    iqm = iqm_with_ci([1, 2, 3, 4, 5, 6, 7, 100])
    assert iqm["iqm"] == pytest.approx(4.5) and iqm["n"] == 8 and iqm["ci95"][0] <= 4.5 <= iqm["ci95"][1]
    # x = [1, 2, 3] vs y = [2, 2]: of 6 pairs, 2 wins and 2 ties -> 2/6 + ½·2/6 = 0.5
    assert probability_of_improvement([1, 2, 3], [2, 2]) == pytest.approx(0.5)
    assert probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert probability_of_improvement([3, 4], [1, 2], higher_is_better=False) == 0.0
    assert math.isnan(probability_of_improvement([], [1]))


# ---------------------------------------------------------------- STARC / eq. 10


def test_starc_hand_value():
    # r_gt = [0,1,2]: c = [-1,0,1], ‖c‖₁ = 2 -> s = [-.5, 0, .5]
    # r̂ = [0,0,3]: mean 1, c = [-1,-1,2], ‖c‖₁ = 4 -> s = [-.25, -.25, .5]
    # ‖ŝ - s_gt‖₁ = .25 + .25 + 0 = 0.5
    assert starc_distance([0, 0, 3], [0, 1, 2]) == pytest.approx(0.5)
    assert starc_distance([0, 1, 2], [0, 0, 3]) == pytest.approx(0.5)  # symmetric


def test_starc_properties():
    rng = np.random.default_rng(0)
    r = rng.normal(size=50)
    assert starc_distance(3 * r + 2, r) == pytest.approx(0.0, abs=1e-12)
    assert starc_distance(0.001 * r - 7, r) == pytest.approx(0.0, abs=1e-12)
    assert starc_distance(-r, r) == pytest.approx(2.0)  # maximum: ŝ = -s_gt, ‖2 s‖₁ = 2
    for _ in range(20):
        d = starc_distance(rng.normal(size=50), r)
        assert 0.0 <= d <= 2.0
    # invariant to positive affine maps of either argument
    x = rng.normal(size=50)
    assert starc_distance(5 * x + 1, r) == pytest.approx(starc_distance(x, 0.5 * r - 3))
    # constant rewards canonicalise to 0: constant vs non-constant = 1, both constant = 0
    assert starc_distance(np.full(5, 3.0), np.arange(5.0)) == pytest.approx(1.0)
    assert starc_distance(np.full(5, 3.0), np.full(5, -1.0)) == 0.0
    assert starc_distance([1.0], [2.0]) == 0.0
    with pytest.raises(ValueError):
        starc_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        starc_distance([], [])


def test_affine_mse_hand_values():
    # eq. 10 (map on R*): target r̂ = [0,0,3] (var 2), x = r_gt = [0,1,2] (var 2/3), cov = (1+0+2)/3 = 1
    # residual var 2 - 1²/(2/3) = 0.5; check: a = 1.5, b = -0.5 -> [-.5, 1, 2.5], errors [.5,-1,.5] -> .5
    assert affine_mse([0, 0, 3], [0, 1, 2]) == pytest.approx(0.5)
    assert affine_mse([0, 0, 3], [0, 1, 2], normalise=True) == pytest.approx(0.25)  # 0.5 / 2
    # map on r̂: 2/3 - 1²/2 = 1/6
    assert affine_mse([0, 0, 3], [0, 1, 2], affine_on="hat") == pytest.approx(1 / 6)
    # negative slope: a clipped to 0+, b = mean -> var(r̂) = 2/3
    assert affine_mse([2, 1, 0], [0, 1, 2]) == pytest.approx(2 / 3)
    assert affine_mse([2, 1, 0], [0, 1, 2], normalise=True) == pytest.approx(1.0)
    # exact positive affine relation -> 0
    r = np.random.default_rng(1).normal(size=30)
    assert affine_mse(3 * r + 2, r) == pytest.approx(0.0, abs=1e-12)
    assert affine_mse(3 * r + 2, r, affine_on="hat") == pytest.approx(0.0, abs=1e-12)
    # constant R*: slope irrelevant -> var(r̂)
    assert affine_mse([0, 0, 3], [1, 1, 1]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        affine_mse([1, 2], [1, 2], affine_on="x")


def test_correlations_hand_values():
    c = correlations([0, 0, 3], [0, 1, 2])
    # Pearson: cov 1 / sqrt(2 * 2/3) = sqrt(3)/2
    assert c["pearson"] == pytest.approx(math.sqrt(3) / 2)
    # Spearman: ranks [1.5,1.5,3] vs [1,2,3]: 1.5 / sqrt(1.5 * 2) = sqrt(3)/2
    assert c["spearman"] == pytest.approx(math.sqrt(3) / 2)
    # Kendall tau-b: C=2, D=0, one tie in r̂ among 3 pairs: 2 / sqrt((3-1) * 3)
    assert c["kendall"] == pytest.approx(2 / math.sqrt(6))
    assert all(math.isnan(v) for v in correlations([1, 1, 1], [0, 1, 2]).values())
    assert all(math.isnan(v) for v in correlations([1], [2]).values())


def test_reward_metrics_bundle():
    m = reward_metrics(
        train_scores=[0.1, 0.4, 0.35, 0.8],
        train_labels=[0, 0, 1, 1],
        test_scores=[0, 0, 3],
        test_labels=[0, 0, 1],
        test_gt=[0, 1, 2],
        chosen_scores=[1, 2, 3, 4],
        rejected_scores=[0, 2, 5, 1],
        chosen_gt=[1, 0, 0, 1],
        rejected_gt=[0, 0, 1, 0],
    )
    assert m["threshold"] == pytest.approx(0.225)
    assert m["train_accuracy"] == pytest.approx(0.75)
    assert m["test_accuracy"] == pytest.approx(1.0)  # [0,0,3] >= .225 -> [0,0,1]
    assert m["starc"] == pytest.approx(0.5)
    assert m["affine_mse"] == pytest.approx(0.5)
    assert m["pair_accuracy"] == pytest.approx(0.5)
    assert m["rstar_pair_agreement"] == pytest.approx(1.0)
    assert m["rstar_pair_ties"] == 1.0  # pair 1: ΔR* = 0
    assert m["test_balanced_accuracy"] == pytest.approx(1.0)
    assert m["majority_baseline_accuracy"] == pytest.approx(1 / 3)  # train tie -> class 1; test [0, 0, 1]
    assert 0.0 <= m["pair_starc"] <= 2.0
    assert all(isinstance(v, float) for v in m.values())
    assert reward_metrics() == {}

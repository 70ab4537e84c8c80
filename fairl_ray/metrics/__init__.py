"""Metrics for recovered rewards (FA-IRL §5 and Appendix C; Insights §3-4).

* classification: :func:`fit_threshold`, :func:`classification_metrics` (accuracy, balanced accuracy, F1 with the
  non-toxic and with the toxic class as positive, ...), :func:`majority_baseline_accuracy`, :func:`pair_accuracy`,
  :func:`rstar_pair_agreement` (tie-aware) and :func:`rstar_ties`
* fidelity to R*: :func:`starc_distance` (eq. 4), :func:`affine_mse` (eq. 10), :func:`correlations`
* paired statistics for comparisons (``fairl_ray.metrics.paired``): :func:`paired_comparison`,
  :func:`mcnemar_exact`, :func:`interquartile_mean`, :func:`iqm_with_ci`, :func:`probability_of_improvement`
* :func:`reward_metrics` bundles them into one flat ``{name: float}`` dict, ready for MLflow.

Label convention here: 1 = positive / non-toxic / preferred, 0 = negative; ``score >= threshold`` ⇒ positive.
"""

from __future__ import annotations

import numpy as np

from fairl_ray.metrics.classification import (
    as_binary_labels,
    classification_metrics,
    fit_threshold,
    majority_baseline_accuracy,
    pair_accuracy,
    rstar_pair_agreement,
    rstar_ties,
)
from fairl_ray.metrics.correlation import correlations
from fairl_ray.metrics.paired import (
    interquartile_mean,
    iqm_with_ci,
    mcnemar_exact,
    paired_comparison,
    probability_of_improvement,
)
from fairl_ray.metrics.starc import affine_mse, canonicalise, starc_distance

__all__ = [
    "affine_mse",
    "as_binary_labels",
    "canonicalise",
    "classification_metrics",
    "correlations",
    "fit_threshold",
    "fidelity_metrics",
    "interquartile_mean",
    "iqm_with_ci",
    "majority_baseline_accuracy",
    "mcnemar_exact",
    "pair_accuracy",
    "paired_comparison",
    "probability_of_improvement",
    "reward_metrics",
    "rstar_pair_agreement",
    "rstar_ties",
    "starc_distance",
]


def fidelity_metrics(r_hat, r_gt) -> dict[str, float]:
    """STARC (eq. 4), affine MSE (eq. 10, plus its normalised and "map r̂ onto R*" forms) and correlations.

    Keys: ``starc``, ``affine_mse`` (eq. 10 exactly), ``affine_mse_norm`` (eq. 10 / var r̂),
    ``affine_mse_hat`` (min_{a>0,b} MSE of a·r̂+b vs R*, in R* units), ``pearson``, ``spearman``, ``kendall``.
    """
    return {
        "starc": starc_distance(r_hat, r_gt),
        "affine_mse": affine_mse(r_hat, r_gt),
        "affine_mse_norm": affine_mse(r_hat, r_gt, normalise=True),
        "affine_mse_hat": affine_mse(r_hat, r_gt, affine_on="hat"),
        **correlations(r_hat, r_gt),
    }


def reward_metrics(
    *,
    train_scores=None,
    train_labels=None,
    test_scores=None,
    test_labels=None,
    test_gt=None,
    chosen_scores=None,
    rejected_scores=None,
    chosen_gt=None,
    rejected_gt=None,
    threshold: float | None = None,
) -> dict[str, float]:
    """All metrics of one trained reward as a flat ``{name: float}`` dict; every argument is optional.

    * ``threshold``: given, or fitted with :func:`fit_threshold` on (``train_scores``, ``train_labels``);
      reported as ``threshold`` when available.
    * ``train_*`` / ``test_*`` classification (labels in {0, 1}, 1 = non-toxic): keys ``train_accuracy``,
      ``train_f1``, ..., ``test_accuracy``, ``test_balanced_accuracy``, ``test_f1`` (= ``test_f1_nontoxic_positive``),
      ``test_f1_toxic_positive``, ``test_precision``, ``test_recall``, ``test_precision_toxic``,
      ``test_recall_toxic``, ``test_roc_auc``, ``test_positive_rate``, ``test_n``; with both label sets also
      ``majority_baseline_accuracy`` (the train majority class predicted on test).
    * ``test_gt`` (R* of the test outputs): fidelity keys from :func:`fidelity_metrics` on
      (``test_scores``, ``test_gt``): ``starc``, ``affine_mse``, ``affine_mse_norm``, ``affine_mse_hat``,
      ``pearson``, ``spearman``, ``kendall``.
    * pairs: ``pair_accuracy`` from (``chosen_scores``, ``rejected_scores``); with ``chosen_gt`` and
      ``rejected_gt`` also ``rstar_pair_agreement`` (tie-aware), ``rstar_pair_ties`` and ``pair_starc`` (eq. 4 over
      the 2N pair outputs, chosen then rejected).
    """
    out: dict[str, float] = {}
    if threshold is None and train_scores is not None and train_labels is not None:
        threshold = fit_threshold(train_scores, train_labels)
    if threshold is not None:
        out["threshold"] = float(threshold)
        for split, s, y in (("train", train_scores, train_labels), ("test", test_scores, test_labels)):
            if s is not None and y is not None:
                for k, v in classification_metrics(s, y, threshold).items():
                    out[f"{split}_{k}"] = v
    if train_labels is not None and test_labels is not None:
        out["majority_baseline_accuracy"] = majority_baseline_accuracy(train_labels, test_labels)
    if test_scores is not None and test_gt is not None:
        out.update(fidelity_metrics(test_scores, test_gt))
    if chosen_scores is not None and rejected_scores is not None:
        out["pair_accuracy"] = pair_accuracy(chosen_scores, rejected_scores)
        if chosen_gt is not None and rejected_gt is not None:
            out["rstar_pair_agreement"] = rstar_pair_agreement(chosen_scores, rejected_scores, chosen_gt, rejected_gt)
            out["rstar_pair_ties"] = float(rstar_ties(chosen_gt, rejected_gt))
            r_hat = np.concatenate([np.ravel(chosen_scores), np.ravel(rejected_scores)])
            r_gt = np.concatenate([np.ravel(chosen_gt), np.ravel(rejected_gt)])
            out["pair_starc"] = starc_distance(r_hat, r_gt)
    return out

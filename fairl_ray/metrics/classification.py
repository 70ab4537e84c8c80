"""Reward-as-classifier metrics (FA-IRL §5 "Evaluation Metrics", Appendix C; Insights §3-4).

A recovered reward R is used as a binary classifier of outputs: ``score >= threshold`` means *positive*
(label 1 = non-toxic / good / preferred), otherwise *negative* (label 0). The threshold is fitted on the
training split to maximise accuracy and then held fixed on the test split (FA-IRL §5).

Pair metrics work on preference pairs: Δ_i = R(o_i+) − R(o_i−) (FA-IRL §3 notation).

All functions take array-likes (numpy in) and return plain Python floats (or dicts of them), so results can be
logged to MLflow or dumped to JSON without conversion. Metrics of an empty selection are ``nan`` (failure
slices can be empty); fitting on an empty selection is an error.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NO_CLASS",
    "as_binary_labels",
    "classification_metrics",
    "fit_threshold",
    "fit_threshold_labelled",
    "majority_baseline_accuracy",
    "pair_accuracy",
    "rstar_pair_agreement",
    "rstar_ties",
]

NAN = float("nan")
#: The class of an output without a label (``recovery.data.output_classes``): left out of classification metrics.
NO_CLASS = -1


def _scores(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1) if np.ndim(x) else np.asarray([x], dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: scores must be finite (got NaN or inf)")
    return a


def as_binary_labels(labels, name: str = "labels") -> np.ndarray:
    """Labels as an int8 array in {0, 1} (1 = positive / non-toxic / preferred).

    Accepts bools and numbers equal to 0 or 1. Pairs files use {-1, 0, 1} (0 = unknown); convert those with
    :func:`fairl_ray.pairs_io.labels_to_binary` first -- a -1 here is an error rather than silently "negative".
    """
    a = np.asarray(labels).reshape(-1)
    if a.dtype == bool:
        return a.astype(np.int8)
    try:
        f = a.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: labels must be 0/1 numbers or bools") from exc
    bad = ~((f == 0) | (f == 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: labels must be in {{0, 1}} (1 = positive/non-toxic), got {a[i]!r} at index {i}; "
            "pairs-file labels in {-1, 0, 1} need fairl_ray.pairs_io.labels_to_binary"
        )
    return f.astype(np.int8)


def _check_same_len(*arrays: np.ndarray, names: tuple[str, ...]) -> None:
    n = {len(a) for a in arrays}
    if len(n) > 1:
        raise ValueError("length mismatch: " + ", ".join(f"{k}={len(a)}" for k, a in zip(names, arrays)))


def fit_threshold(scores, labels) -> float:
    """Threshold that maximises training accuracy of ``score >= threshold ⇒ positive`` (FA-IRL §5).

    Candidates are the midpoints between consecutive distinct scores plus one point below the minimum
    ("everything positive") and one above the maximum ("everything negative"); the outer points sit half the
    mean gap between distinct scores (or 0.5 when all scores are equal) outside the range. Midpoints rather
    than observed scores keep a margin on both sides for the held-out split.

    Ties: when several candidates reach the best accuracy, the median one (lower median, in increasing
    threshold order) is returned, i.e. the middle of the optimal plateau when it is contiguous. Degenerate
    inputs fall out of the same rule: all labels positive -> a threshold below every score, all negative ->
    above every score; all scores equal -> below (if positives are the majority or tied) or above.

    Args:
        scores: reward scores, shape (n,), finite.
        labels: {0, 1} (or bool) labels, 1 = positive / non-toxic / preferred.

    Returns:
        The threshold as a Python float.

    Raises:
        ValueError: empty input, non-finite scores, labels outside {0, 1}, or length mismatch.
    """
    s = _scores(scores, "scores")
    y = as_binary_labels(labels)
    _check_same_len(s, y, names=("scores", "labels"))
    if len(s) == 0:
        raise ValueError("fit_threshold: no scores to fit on")

    u, inv = np.unique(s, return_inverse=True)  # u sorted ascending
    pos_at = np.bincount(inv, weights=y, minlength=len(u))
    neg_at = np.bincount(inv, weights=1 - y, minlength=len(u))
    # Candidate k (k = 0..len(u)) puts the threshold just below u[k] (k = len(u): above everything):
    # predicted negative = values u[:k], predicted positive = values u[k:].
    neg_below = np.concatenate([[0.0], np.cumsum(neg_at)])  # correct negatives
    pos_above = np.concatenate([np.cumsum(pos_at[::-1])[::-1], [0.0]])  # correct positives
    correct = neg_below + pos_above
    best = np.flatnonzero(correct == correct.max())
    k = int(best[(len(best) - 1) // 2])

    gap = 0.5 * float(np.mean(np.diff(u))) if len(u) > 1 else 0.5
    if k == 0:
        return float(u[0] - gap)
    if k == len(u):
        return float(u[-1] + gap)
    return float(0.5 * (u[k - 1] + u[k]))


def fit_threshold_labelled(scores, classes) -> float:
    """:func:`fit_threshold` on the outputs that have a class (``classes`` != :data:`NO_CLASS`); 0.0 (the mean of a
    normalised reward) when none has, since then there is nothing to fit and every classification metric is nan."""
    s, c = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(classes).reshape(-1)
    labelled = c != NO_CLASS
    return fit_threshold(s[labelled], c[labelled]) if labelled.any() else 0.0


def classification_metrics(scores, labels, threshold: float) -> dict[str, float]:
    """Accuracy, F1, precision, recall, ROC-AUC and balanced accuracy of ``score >= threshold ⇒ positive`` (FA-IRL
    §5, App. C), with both class conventions named.

    * ``f1``, ``precision``, ``recall``: NON-TOXIC (label 1) as the positive class, this module's convention;
      ``f1_nontoxic_positive`` is ``f1`` under its explicit name.
    * ``f1_toxic_positive``, ``precision_toxic``, ``recall_toxic``: the toxic class (label 0) as positive, the
      convention of Insights' released code (a toxicity classifier). On imbalanced data these are the ones that
      show a reward that never flags a toxic output (recall_toxic = 0 at accuracy .94 with 8 toxic of 128).
    * ``balanced_accuracy``: the mean of the two classes' recalls (sensitivity and specificity), 0.5 for a
      constant prediction whatever the class balance; with one class present, that class's recall.

    Precision / recall / F1 follow scikit-learn with ``zero_division=0`` (e.g. precision is 0 when nothing is
    predicted positive). ``roc_auc`` is threshold-free and ``nan`` when only one class is present. Also returns
    ``n`` (number of examples) and ``positive_rate`` (fraction predicted positive, i.e. non-toxic). Empty input ->
    all ``nan`` (``n`` = 0).
    """
    s = _scores(scores, "scores")
    y = as_binary_labels(labels)
    _check_same_len(s, y, names=("scores", "labels"))
    keys = (
        "accuracy", "balanced_accuracy", "f1", "precision", "recall", "f1_nontoxic_positive", "f1_toxic_positive",
        "precision_toxic", "recall_toxic", "roc_auc", "positive_rate",
    )  # fmt: skip
    if len(s) == 0:
        return {**{k: NAN for k in keys}, "n": 0.0}
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    pred = (s >= float(threshold)).astype(np.int8)
    # One call for both classes: index 0 = toxic (label 0) as positive, index 1 = non-toxic (label 1) as positive.
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    present = support > 0  # a class absent from the labels has no recall to average
    out = {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(np.mean(recall[present])),
        "f1": float(f1[1]),
        "precision": float(precision[1]),
        "recall": float(recall[1]),
        "f1_nontoxic_positive": float(f1[1]),
        "f1_toxic_positive": float(f1[0]),
        "precision_toxic": float(precision[0]),
        "recall_toxic": float(recall[0]),
        "roc_auc": float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else NAN,
        "positive_rate": float(pred.mean()),
        "n": float(len(s)),
    }
    return out


def majority_baseline_accuracy(train_labels, test_labels) -> float:
    """Accuracy on ``test_labels`` of always predicting the majority class of ``train_labels`` (ties: class 1, as
    :func:`fit_threshold` puts a constant score's threshold below it when the classes tie). The floor a reward's
    accuracy must clear on imbalanced data. ``nan`` when either split is empty.
    """
    train, test = as_binary_labels(train_labels, "train_labels"), as_binary_labels(test_labels, "test_labels")
    if len(train) == 0 or len(test) == 0:
        return NAN
    majority = 1 if 2 * int(train.sum()) >= len(train) else 0
    return float(np.mean(test == majority))


def pair_accuracy(chosen_scores, rejected_scores) -> float:
    """Pair ranking accuracy: mean(Δ_i > 0) with Δ_i = R(o_i+) − R(o_i−); ties count as wrong.

    ``nan`` for zero pairs.
    """
    c = _scores(chosen_scores, "chosen_scores")
    r = _scores(rejected_scores, "rejected_scores")
    _check_same_len(c, r, names=("chosen_scores", "rejected_scores"))
    if len(c) == 0:
        return NAN
    return float(np.mean(c - r > 0))


#: |ΔR*| at or below this counts as an R* tie (exact ties up to float round-off).
RSTAR_TIE_ATOL = 1e-9


def rstar_pair_agreement(chosen_hat, rejected_hat, chosen_gt, rejected_gt, atol: float = RSTAR_TIE_ATOL) -> float:
    """Tie-aware agreement with R*: the fraction of pairs with |ΔR*| > ``atol`` where sign(Δ̂) equals sign(ΔR*).

    Δ̂ = R̂(o+) − R̂(o−) from the recovered reward, ΔR* = R*(o+) − R*(o−) from the ground truth. Why beside pair
    accuracy: on an R* tie the preference direction is arbitrary (a coin flip of the world), so pair accuracy
    rewards fitting noise there; this metric leaves those pairs out (DESIGN §6b) and orders the rest as R* does,
    whichever way the preference went. :func:`rstar_ties` counts the pairs left out. A tie Δ̂ = 0 counts as
    disagreement. ``nan`` when every pair is an R* tie.
    """
    ch, rh = _scores(chosen_hat, "chosen_hat"), _scores(rejected_hat, "rejected_hat")
    cg, rg = _scores(chosen_gt, "chosen_gt"), _scores(rejected_gt, "rejected_gt")
    _check_same_len(ch, rh, cg, rg, names=("chosen_hat", "rejected_hat", "chosen_gt", "rejected_gt"))
    d_gt = cg - rg
    keep = np.abs(d_gt) > atol
    if not keep.any():
        return NAN
    d_hat = (ch - rh)[keep]
    return float(np.mean(np.sign(d_hat) == np.sign(d_gt[keep])))


def rstar_ties(chosen_gt, rejected_gt, atol: float = RSTAR_TIE_ATOL) -> int:
    """How many pairs :func:`rstar_pair_agreement` leaves out as R* ties (|ΔR*| ≤ ``atol``)."""
    cg, rg = _scores(chosen_gt, "chosen_gt"), _scores(rejected_gt, "rejected_gt")
    _check_same_len(cg, rg, names=("chosen_gt", "rejected_gt"))
    return int(np.sum(np.abs(cg - rg) <= atol))

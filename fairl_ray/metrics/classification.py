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
    "as_binary_labels",
    "classification_metrics",
    "fit_threshold",
    "pair_accuracy",
    "rstar_pair_agreement",
]

NAN = float("nan")


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


def classification_metrics(scores, labels, threshold: float) -> dict[str, float]:
    """Accuracy, F1, precision, recall and ROC-AUC of ``score >= threshold ⇒ positive`` (FA-IRL §5, App. C).

    Precision / recall / F1 follow scikit-learn with ``zero_division=0`` (e.g. precision is 0 when nothing is
    predicted positive). ``roc_auc`` is threshold-free and ``nan`` when only one class is present. Also returns
    ``n`` (number of examples) and ``positive_rate`` (fraction predicted positive). Empty input -> all ``nan``
    (``n`` = 0).
    """
    s = _scores(scores, "scores")
    y = as_binary_labels(labels)
    _check_same_len(s, y, names=("scores", "labels"))
    keys = ("accuracy", "f1", "precision", "recall", "roc_auc", "positive_rate")
    if len(s) == 0:
        return {**{k: NAN for k in keys}, "n": 0.0}
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    pred = (s >= float(threshold)).astype(np.int8)
    out = {
        "accuracy": float(np.mean(pred == y)),
        "f1": float(f1_score(y, pred, zero_division=0, labels=[0, 1])),
        "precision": float(precision_score(y, pred, zero_division=0, labels=[0, 1])),
        "recall": float(recall_score(y, pred, zero_division=0, labels=[0, 1])),
        "roc_auc": float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else NAN,
        "positive_rate": float(pred.mean()),
        "n": float(len(s)),
    }
    return out


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


def rstar_pair_agreement(chosen_hat, rejected_hat, chosen_gt, rejected_gt, atol: float = 0.0) -> float:
    """Fraction of pairs where sign(Δ̂) equals sign(ΔR*), over pairs with |ΔR*| > atol (ΔR* ≠ 0 by default).

    Δ̂ = R̂(o+) − R̂(o−) from the recovered reward, ΔR* = R*(o+) − R*(o−) from the ground truth. A tie Δ̂ = 0
    counts as disagreement. ``nan`` when no pair has a non-zero ΔR*.
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

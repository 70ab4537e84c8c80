"""Score fitted rewards on held-out pairs (FA-IRL §5, Appendix C; Insights §3–4) and compute the failure analyses
of FA-IRL §6 (``fairl_ray.analyses``), in memory: the caller writes what it keeps (``stages.evaluate``).

Per member (method × seed): classification of the labelled held-out outputs (each output's class is its own
label; unlabelled ones are left out) with the threshold fixed on train (accuracy, balanced accuracy, F1 /
precision / recall with either class positive, ROC-AUC, and the majority-class baseline), pair ranking accuracy
(Δ̂ > 0), and — where R* is known — STARC l1/l1 (eq. 4), the affine-MSE distance (eq. 10), Pearson/Spearman/
Kendall with R*, and the tie-aware sign agreement of Δ̂ with ΔR*. Per method: mean ± std over seeds. Then every
analysis of ``analyses.EVALUATION_ANALYSES`` (the paired scoreboard, failure-path share and ablation, failure
slices, disagreement tables with McNemar, subtype distribution of failures, dispersion across seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fairl_ray.analyses import EVALUATION_ANALYSES, EvalContext, MemberScores
from fairl_ray.metrics.classification import (
    NO_CLASS,
    classification_metrics,
    majority_baseline_accuracy,
    pair_accuracy,
    rstar_pair_agreement,
    rstar_ties,
)
from fairl_ray.metrics.correlation import correlations
from fairl_ray.metrics.starc import affine_mse, starc_distance
from fairl_ray.recovery.data import PairData, Split
from fairl_ray.recovery.fit import FittedRewards, calibration

#: the held-out columns (FA-IRL Table 1's Jigsaw set): ``heldout_<key>`` in per_member / per_method
HELDOUT_PREFIX = "heldout_"
HELDOUT_METRICS = ("accuracy", "balanced_accuracy", "f1", "f1_toxic_positive", "recall_toxic", "roc_auc")


def member_metrics(
    scores: np.ndarray,
    threshold: float,
    classes: np.ndarray,
    gt: np.ndarray | None,
    train_classes: np.ndarray | None = None,
) -> dict:
    """The metrics of one reward on the evaluated outputs ``scores`` (o⁺ rows, then o⁻ rows).

    Classification (``classification_metrics``: accuracy, balanced accuracy, F1 / precision / recall in both class
    conventions, ROC-AUC) runs on the labelled outputs only (``classes`` != ``NO_CLASS``; none: no such keys); with
    ``train_classes``
    also ``majority_baseline_accuracy``. Rank and fidelity metrics use every output: ``pair_accuracy``, and with R*
    (``gt``) ``starc``, ``affine_mse``, Pearson/Spearman/Kendall, the tie-aware ``rstar_pair_agreement`` and
    ``rstar_pair_ties`` (evaluated pairs it leaves out as R* ties)."""
    n = len(scores) // 2
    labelled = classes != NO_CLASS
    metrics = {}
    if labelled.any():  # no labelled output (a world without a judge): no classification to report, not NaNs
        metrics = classification_metrics(scores[labelled], classes[labelled], threshold)
    if train_classes is not None and labelled.any():
        train_labelled = train_classes[train_classes != NO_CLASS]
        metrics["majority_baseline_accuracy"] = majority_baseline_accuracy(train_labelled, classes[labelled])
    metrics["pair_accuracy"] = pair_accuracy(scores[:n], scores[n:])
    if gt is not None:
        metrics["starc"] = starc_distance(scores, gt)
        metrics["affine_mse"] = affine_mse(scores, gt)
        metrics.update(correlations(scores, gt))
        metrics["rstar_pair_agreement"] = rstar_pair_agreement(scores[:n], scores[n:], gt[:n], gt[n:])
        metrics["rstar_pair_ties"] = float(rstar_ties(gt[:n], gt[n:]))
    return {k: (float(v) if v is not None else None) for k, v in metrics.items()}


def heldout_metrics(scores, labels, threshold: float, train_classes: np.ndarray) -> dict:
    """Classification of a world's held-out labelled texts with the train-fitted threshold: labels +1 good / −1 bad
    → classes 1 / 0, label 0 (unknown) left out; keys ``heldout_<k>`` for k in :data:`HELDOUT_METRICS` and
    ``heldout_majority_baseline_accuracy``."""
    labels = np.asarray(labels).reshape(-1)
    known = labels != 0
    classes = (labels[known] > 0).astype(np.int8)
    held = classification_metrics(np.asarray(scores, dtype=np.float64)[known], classes, threshold)
    out = {HELDOUT_PREFIX + k: held[k] for k in HELDOUT_METRICS}
    train_labelled = train_classes[train_classes != NO_CLASS]
    out[HELDOUT_PREFIX + "majority_baseline_accuracy"] = majority_baseline_accuracy(train_labelled, classes)
    return out


def aggregate(per_member: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {metric: {"mean": .., "std": .., "n": ..}}}`` over seeds (std with ddof=0)."""
    out: dict = {}
    for method in dict.fromkeys(m["method"] for m in per_member):
        rows = [m for m in per_member if m["method"] == method]
        keys = [k for k in rows[0] if k not in ("method", "seed")]
        out[method] = {}
        for k in keys:
            values = np.array([r[k] for r in rows if r.get(k) is not None], dtype=np.float64)
            values = values[np.isfinite(values)]
            out[method][k] = {
                "mean": float(values.mean()) if len(values) else float("nan"),
                "std": float(values.std()) if len(values) else float("nan"),
                "n": int(len(values)),
            }
    return out


@dataclass
class Evaluation:
    """What :func:`score` found: ``summary`` (``test_pairs``, ``per_member``, ``per_method`` and, with analyses,
    ``analyses``: what ``metrics.json`` / ``analyses.json`` hold), every member's scores on the evaluated outputs
    and their R* (None where unknown), for the plots."""

    summary: dict
    members: list[MemberScores] = field(default_factory=list)
    rstar: np.ndarray | None = None

    @property
    def n_pairs(self) -> int:
        return int(self.summary["test_pairs"])


def score(
    fitted: FittedRewards,
    data: PairData,
    split: Split = "test",
    heldout: tuple[np.ndarray, list[int]] | None = None,
    scored_rewards: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    analyses: bool = True,
    scored_heldout: dict[str, np.ndarray] | None = None,
) -> Evaluation:
    """Score ``split`` (``test``; a search scores ``val``) with every fitted member; the calibration's classes are
    ``data``'s train pairs.

    ``heldout``: a world's held-out labelled texts as ``(features, labels)``, scored by each IRL member with its
    train threshold (:func:`heldout_metrics`). ``scored_rewards``: rewards that are not IRL members, given as their
    values on every pair (``{name: (chosen [N], rejected [N])}``, e.g. the implicit reward of
    ``stages.implicit_reward``); each is one member (seed 0), normalised and thresholded on train as an IRL reward
    is (:func:`~fairl_ray.recovery.fit.calibration`), with the same metrics and analyses; with ``scored_heldout``
    (``{name: its raw values on the held-out texts}``, e.g. the implicit reward scored without a prompt) the same
    held-out columns as an IRL member. ``analyses=False`` (search trials): metrics only.
    """
    evaluated, train = data.mask(split), data.train
    test_classes, train_classes = data.output_classes(split), data.output_classes("train")
    gt = data.rstar(split)
    x_test, x_train = data.outputs(split), data.outputs("train")

    per_member, scored = [], []
    for member in fitted.members:
        reward = member.reward_model()
        scores = np.asarray(reward.score_features(x_test), dtype=np.float64)
        m = MemberScores(member.label, member.seed, scores, float(member.threshold))
        if analyses and reward.has_failure_path:  # the failure-path share and ablation (search trials skip them)
            m.base_train = reward.path_rewards(x_train)["base"]
            paths = reward.path_rewards(x_test)
            m.base_test, m.fail_test = paths["base"], paths["fail"]
        scored.append(m)
        row = {
            "method": m.method,
            "seed": m.seed,
            **member_metrics(scores, m.threshold, test_classes, gt, train_classes),
        }
        if heldout is not None:
            row.update(heldout_metrics(reward.score_features(heldout[0]), heldout[1], m.threshold, train_classes))
        per_member.append(row)
    for name, (pos, neg) in (scored_rewards or {}).items():
        pos, neg = np.asarray(pos), np.asarray(neg)
        mean, std, threshold = calibration(np.concatenate([pos[train], neg[train]]), train_classes)
        scores = (np.concatenate([pos[evaluated], neg[evaluated]]).astype(np.float64) - mean) / std
        m = MemberScores(name, 0, scores, threshold)
        scored.append(m)
        row = {"method": name, "seed": 0, **member_metrics(scores, m.threshold, test_classes, gt, train_classes)}
        if heldout is not None and scored_heldout and name in scored_heldout:
            held = (np.asarray(scored_heldout[name], dtype=np.float64) - mean) / std
            row.update(heldout_metrics(held, heldout[1], threshold, train_classes))
        per_member.append(row)

    n_evaluated = int(evaluated.sum())
    summary = {"test_pairs": n_evaluated, "per_member": per_member, "per_method": aggregate(per_member)}
    if analyses and n_evaluated:
        ctx = EvalContext(
            test_classes,
            train_classes,
            data.output_subtypes(split),
            scored,
            metrics_fn=lambda s, t: member_metrics(s, t, test_classes, gt, train_classes),
            test_gt=gt,
            test_texts=data.output_texts(split),
        )
        summary["analyses"] = {analysis.name: analysis.compute(ctx) for analysis in EVALUATION_ANALYSES}
    return Evaluation(summary, scored, gt)

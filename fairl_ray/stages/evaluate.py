"""Evaluate every extracted reward on the held-out test pairs (FA-IRL §5, Appendix C; Insights §3–4), and run
the failure analyses of FA-IRL §6 (``fairl_ray/analyses``).

Per member (method × seed): classification of the labelled test outputs (each output's class is its own label;
unlabelled ones are left out) with the threshold fixed on train (accuracy, balanced accuracy, F1 / precision /
recall with either class positive, ROC-AUC, and the majority-class baseline), pair ranking accuracy (Δ̂ > 0),
and — where R* is known — STARC l1/l1 (eq. 4), the affine-MSE distance (eq. 10), Pearson/Spearman/Kendall with
R*, and the tie-aware sign agreement of Δ̂ with ΔR*. Per method: mean ± std over seeds. Then every analysis of
``analyses.EVALUATION_ANALYSES`` (the paired scoreboard, failure-path share and ablation, failure slices,
disagreement tables with McNemar, subtype distribution of failures, dispersion across seeds): ``analyses.json``
plus one CSV per table and a figure each. Also draws the recovered reward's distributions over o+ and o−
beside R*'s, and the IRL training curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fairl_ray.analyses import EVALUATION_ANALYSES, EvalContext, MemberScores, write_outputs
from fairl_ray.irl.reward import RewardModel
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
from fairl_ray.stages.irl_fit import calibration, output_classes


def output_subtypes(rows: list[dict]) -> list[str]:
    """Per output (every row's o⁺, then every row's o⁻): its toxic subtype when known, else ``non-toxic`` /
    ``toxic`` / ``unlabelled``. Uses ``chosen_subtype`` / ``rejected_subtype`` when the pairs file has them; with
    only the pair-level ``subtype`` (the subtype of o−, else of o⁺) an output gets it when it is the pair's toxic
    output it was taken from."""

    def one(row: dict, side: str) -> str:
        label = int(row.get(f"{side}_label") or 0)
        if label > 0:
            return "non-toxic"
        if label == 0:
            return "unlabelled"
        if f"{side}_subtype" in row:
            return row[f"{side}_subtype"] or "toxic"
        own = side == "rejected" or int(row.get("rejected_label") or 0) >= 0
        return (row.get("subtype") or "toxic") if own else "toxic"

    return [one(r, "chosen") for r in rows] + [one(r, "rejected") for r in rows]


def member_metrics(
    scores: np.ndarray,
    threshold: float,
    classes: np.ndarray,
    gt: np.ndarray | None,
    train_classes: np.ndarray | None = None,
) -> dict:
    """The metrics of one reward on the test outputs ``scores`` (o⁺ rows, then o⁻ rows).

    Classification (``classification_metrics``: accuracy, balanced accuracy, F1 / precision / recall in both class
    conventions, ROC-AUC) runs on the labelled outputs only (``classes`` != ``NO_CLASS``); with ``train_classes``
    also ``majority_baseline_accuracy``. Rank and fidelity metrics use every output: ``pair_accuracy``, and with R*
    (``gt``) ``starc``, ``affine_mse``, Pearson/Spearman/Kendall, the tie-aware ``rstar_pair_agreement`` and
    ``rstar_pair_ties`` (test pairs it leaves out as R* ties)."""
    n = len(scores) // 2
    labelled = classes != NO_CLASS
    metrics = classification_metrics(scores[labelled], classes[labelled], threshold)
    if train_classes is not None:
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


#: the held-out columns (FA-IRL Table 1's Jigsaw set): ``heldout_<key>`` in per_member / per_method
HELDOUT_PREFIX = "heldout_"
HELDOUT_METRICS = ("accuracy", "balanced_accuracy", "f1", "f1_toxic_positive", "recall_toxic", "roc_auc")


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


def _rewards(rows: list[dict]) -> np.ndarray | None:
    if not rows or any(r.get("chosen_reward") is None or r.get("rejected_reward") is None for r in rows):
        return None
    return np.array([r["chosen_reward"] for r in rows] + [r["rejected_reward"] for r in rows], dtype=np.float64)


def evaluate_rewards(
    rows: list[dict],
    chosen: np.ndarray,
    rejected: np.ndarray,
    irl_dir: Path,
    members: list[dict],
    out_dir: Path,
    plots: bool = True,
    analyses: bool = True,
    heldout: tuple[np.ndarray, list[int]] | None = None,
    scored_rewards: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """Score the test split with each member's reward; write metrics.json (and, unless switched off as in search
    trials, the analyses and plots); return the summary (``per_member``, ``per_method``, ``analyses``).

    ``scored_rewards``: rewards that are not IRL members, given as their values on every pair
    (``{name: (chosen [N], rejected [N])}``, e.g. the implicit reward of ``stages.implicit_reward``). Each is one
    member (seed 0), normalised and thresholded on train as ``irl_fit`` does an IRL reward, with the same metrics
    and analyses; it has no held-out columns (the held-out texts have no prompt to condition a policy on)."""
    test = [i for i, r in enumerate(rows) if r.get("split") == "test"]
    train = [i for i, r in enumerate(rows) if r.get("split", "train") != "test"]
    test_rows, train_rows = [rows[i] for i in test], [rows[i] for i in train]
    test_classes = np.concatenate(output_classes(test_rows))
    train_classes = np.concatenate(output_classes(train_rows))
    gt = _rewards(test_rows)
    x_test = np.concatenate([chosen[test], rejected[test]])
    x_train = np.concatenate([chosen[train], rejected[train]])

    per_member, scored = [], []
    for member in members:
        reward = RewardModel.from_dir(Path(irl_dir) / member["reward_dir"])
        scores = np.asarray(reward.score_features(x_test), dtype=np.float64)
        m = MemberScores(member["method"], member["seed"], scores, float(reward.card["threshold"]))
        if analyses and reward.has_failure_path:  # the failure-path share and ablation (search trials skip them)
            m.base_train = reward.path_rewards(x_train)["base"]
            paths = reward.path_rewards(x_test)
            m.base_test, m.fail_test = paths["base"], paths["fail"]
        scored.append(m)
        metrics = member_metrics(scores, m.threshold, test_classes, gt, train_classes)
        row = {"method": m.method, "seed": m.seed, **metrics}
        if heldout is not None:
            row.update(heldout_metrics(reward.score_features(heldout[0]), heldout[1], m.threshold, train_classes))
        per_member.append(row)
    for name, (pos, neg) in (scored_rewards or {}).items():
        mean, std, threshold = calibration(np.concatenate([pos[train], neg[train]]), train_classes)
        scores = (np.concatenate([pos[test], neg[test]]).astype(np.float64) - mean) / std
        m = MemberScores(name, 0, scores, threshold)
        scored.append(m)
        per_member.append(
            {"method": name, "seed": 0, **member_metrics(scores, m.threshold, test_classes, gt, train_classes)}
        )

    summary = {"test_pairs": len(test), "per_member": per_member, "per_method": aggregate(per_member)}
    if analyses and test:
        ctx = EvalContext(
            test_classes,
            train_classes,
            output_subtypes(test_rows),
            scored,
            metrics_fn=lambda s, t: member_metrics(s, t, test_classes, gt, train_classes),
            test_gt=gt,
        )
        summary["analyses"] = {}
        for analysis in EVALUATION_ANALYSES:
            result = analysis.compute(ctx)
            summary["analyses"][analysis.name] = result
            write_outputs(analysis, result, out_dir, plots=plots)
        (out_dir / "analyses.json").write_text(json.dumps(summary["analyses"], indent=2))
    (out_dir / "metrics.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "analyses"}, indent=2))
    if not plots:
        return summary
    n = len(test)
    scores_for_plot = {}
    for m in scored:
        scores_for_plot.setdefault(m.method, (m.test[:n], m.test[n:]))
    if gt is not None:
        scores_for_plot["R* (ground truth)"] = (gt[:n], gt[n:])
    plot_reward_distributions(scores_for_plot, out_dir / "reward_distributions.png")
    curves_file = Path(irl_dir) / "curves.json"
    if curves_file.is_file():
        plot_training_curves(json.loads(curves_file.read_text()), out_dir / "irl_training_curves.png")
    return summary


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


def plot_reward_distributions(scores: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """One panel per reward: histograms of its values over o+ (expert) and o− (base)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(scores)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False)
    for ax, (name, (pos, neg)) in zip(axes[0], scores.items()):
        bins = np.linspace(min(pos.min(), neg.min()), max(pos.max(), neg.max()) + 1e-9, 30)
        ax.hist(neg, bins=bins, alpha=0.6, color="tab:red", label="o− (base)")
        ax.hist(pos, bins=bins, alpha=0.6, color="tab:green", label="o+ (expert)")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("reward" if name.startswith("R*") else "recovered reward (normalised)", fontsize=8)
    axes[0][0].set_ylabel("test outputs")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Reward distributions on held-out pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curves(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Loss per epoch for every ensemble member, one panel per method: methods minimise different objectives
    (hinge, log-likelihood, plus FA-IRL's failure term), so their losses share no scale and get no common axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_method: dict[str, list[dict[str, list[float]]]] = {}
    for name, curve in curves.items():
        by_method.setdefault(name.split("/")[0], []).append(curve)
    n = len(by_method)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax, (method, members) in zip(axes.flat, by_method.items()):
        # Validation loss only: the train loss of FA-IRL adds λ_t times its failure term, another scale again.
        for curve in members:
            values = curve.get("val_loss") or curve.get("train_loss") or []
            ax.plot(np.arange(1, len(values) + 1), values, color="C0", alpha=0.7)
        ax.set_xscale("log")  # most of the drop happens in the first epochs
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("validation loss (its base objective)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"IRL training curves: one panel per method, one line per seed ({len(curves)} members)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

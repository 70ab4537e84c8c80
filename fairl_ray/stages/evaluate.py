"""Evaluate every extracted reward on the held-out test pairs (FA-IRL §5, Appendix C; Insights §3–4).

Per member (method × seed): classification of the test outputs with the threshold fixed on train (accuracy,
F1, precision, recall, ROC-AUC), pair ranking accuracy (Δ̂ > 0), and — where R* is known — STARC l1/l1
(eq. 4), the affine-MSE distance (eq. 10), Pearson/Spearman/Kendall with R*, and sign agreement of Δ̂ with
ΔR*. Per method: mean ± std over seeds. Also draws the recovered reward's distributions over o+ and o−
beside R*'s, and the IRL training curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fairl_ray.irl.reward import RewardModel
from fairl_ray.metrics.classification import classification_metrics, pair_accuracy, rstar_pair_agreement
from fairl_ray.metrics.correlation import correlations
from fairl_ray.metrics.starc import affine_mse, starc_distance
from fairl_ray.stages.irl_fit import output_classes

TABLE_METRICS = ("accuracy", "f1", "roc_auc", "starc", "pair_accuracy")


def evaluate_rewards(
    rows: list[dict], chosen: np.ndarray, rejected: np.ndarray, irl_dir: Path, members: list[dict], out_dir: Path,
    plots: bool = True,
) -> dict:
    """Score the test split with each member's reward; write metrics.json (and the plots unless ``plots`` is
    False, as in search trials, whose outputs nobody looks at); return the summary."""
    test = [i for i, r in enumerate(rows) if r.get("split") == "test"]
    test_rows = [rows[i] for i in test]
    class_chosen, class_rejected = output_classes(test_rows)
    classes = np.concatenate([class_chosen, class_rejected])
    has_rstar = bool(test_rows) and all(r.get("chosen_reward") is not None for r in test_rows)
    if has_rstar:
        gt_chosen = np.array([r["chosen_reward"] for r in test_rows], dtype=np.float64)
        gt_rejected = np.array([r["rejected_reward"] for r in test_rows], dtype=np.float64)

    per_member, scores_for_plot = [], {}
    for member in members:
        reward = RewardModel.from_dir(Path(irl_dir) / member["reward_dir"])
        s_chosen = np.asarray(reward.score_features(chosen[test]), dtype=np.float64)
        s_rejected = np.asarray(reward.score_features(rejected[test]), dtype=np.float64)
        scores = np.concatenate([s_chosen, s_rejected])
        metrics = classification_metrics(scores, classes, reward.card["threshold"])
        metrics["pair_accuracy"] = pair_accuracy(s_chosen, s_rejected)
        if has_rstar:
            gt = np.concatenate([gt_chosen, gt_rejected])
            metrics["starc"] = starc_distance(scores, gt)
            metrics["affine_mse"] = affine_mse(scores, gt)
            metrics.update(correlations(scores, gt))
            metrics["rstar_pair_agreement"] = rstar_pair_agreement(s_chosen, s_rejected, gt_chosen, gt_rejected)
        per_member.append({"method": member["method"], "seed": member["seed"], **_floats(metrics)})
        scores_for_plot.setdefault(member["method"], (s_chosen, s_rejected))

    summary = {"test_pairs": len(test), "per_member": per_member, "per_method": aggregate(per_member)}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    if not plots:
        return summary
    if has_rstar:
        scores_for_plot["R* (ground truth)"] = (gt_chosen, gt_rejected)
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
    """Validation loss per epoch for every ensemble member (one line each, coloured by method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 3.5))
    colours = {}
    for name, curve in curves.items():
        method = name.split("/")[0]
        values = curve.get("val_loss") or curve.get("train_loss") or []
        colour = colours.setdefault(method, f"C{len(colours) % 10}")
        label = method if method not in ax.get_legend_handles_labels()[1] else None
        ax.plot(np.arange(1, len(values) + 1), values, color=colour, alpha=0.7, label=label)
    # Most of the drop happens in the first epochs and hinge losses reach exactly 0: log x, small linear y band.
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (base objective)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("IRL training curves (every member)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _floats(metrics: dict) -> dict:
    return {k: (float(v) if v is not None else None) for k, v in metrics.items()}

"""The evaluation's outputs on disk (FA-IRL §5, §6): what ``recovery.score`` computed, written where a run keeps
it — ``metrics.json``, ``analyses.json`` with one CSV per analysis table and a figure each, the recovered
rewards' distributions over o+ and o− beside R*'s, and the IRL training curves. The evaluate stage of the
pipeline and ``fairl irl`` both write through :func:`write_evaluation`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fairl_ray.analyses import ANALYSES, write_outputs
from fairl_ray.recovery.score import Evaluation


def write_evaluation(
    evaluation: Evaluation, out_dir: Path, plots: bool = True, curves: dict[str, dict[str, list[float]]] | None = None
) -> None:
    """Write ``metrics.json`` (the summary without its analyses) and, when the evaluation has analyses,
    ``analyses.json`` and each analysis's CSVs (and figures, with ``plots``); with ``plots`` also
    ``reward_distributions.png`` and, given the members' training ``curves``, ``irl_training_curves.png``."""
    out_dir = Path(out_dir)
    summary = evaluation.summary
    if "analyses" in summary:
        for name, result in summary["analyses"].items():
            write_outputs(ANALYSES[name], result, out_dir, plots=plots)
        (out_dir / "analyses.json").write_text(json.dumps(summary["analyses"], indent=2))
    (out_dir / "metrics.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "analyses"}, indent=2))
    if not plots:
        return
    n = evaluation.n_pairs
    scores_for_plot = {}
    for m in evaluation.members:
        scores_for_plot.setdefault(m.method, (m.test[:n], m.test[n:]))
    if evaluation.rstar is not None:
        scores_for_plot["R* (ground truth)"] = (evaluation.rstar[:n], evaluation.rstar[n:])
    plot_reward_distributions(scores_for_plot, out_dir / "reward_distributions.png")
    if curves is not None:
        plot_training_curves(curves, out_dir / "irl_training_curves.png")


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

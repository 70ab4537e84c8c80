"""The failure path's share of each FA-IRL reward and its ablation (FA-IRL §4.1: R = R_D + R_F).

share = std(R_F) / std(R) over the evaluated test outputs (0: the failure path contributes nothing). The ablation
scores the same member with R_F removed: R_D alone, normalised by its own train mean/std and classified with a
threshold fit on train exactly as the full reward's was, then evaluated with the same metric code.
"""

from __future__ import annotations

import numpy as np

from fairl_ray.metrics.classification import fit_threshold_labelled

from .base import Analysis, EvalContext, fmt, mean_std, plt

METRICS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced acc."),
    ("f1", "F1 (non-toxic +)"),
    ("f1_toxic_positive", "F1 (toxic +)"),
    ("roc_auc", "ROC-AUC"),
    ("starc", "STARC ↓"),
    ("pair_accuracy", "pair acc."),
)


class FailurePath(Analysis):
    name = "failure_path"
    title = "Failure path: share of the reward and ablation (R_F removed)"

    def compute(self, ctx: EvalContext) -> dict:
        out = {}
        for method, seeds in ctx.by_method().items():
            rows = []
            for seed, m in seeds.items():
                if m.fail_test is None:
                    continue
                full = m.base_test + m.fail_test
                mu, sd = float(m.base_train.mean()), float(m.base_train.std()) or 1.0
                ablated_train, ablated_test = (m.base_train - mu) / sd, (m.base_test - mu) / sd
                threshold = fit_threshold_labelled(ablated_train, ctx.train_classes)
                rows.append(
                    {
                        "seed": seed,
                        "share": float(np.std(m.fail_test) / max(np.std(full), 1e-12)),
                        "full": ctx.metrics_fn(m.test, m.threshold),
                        "ablated": ctx.metrics_fn(ablated_test, threshold),
                    }
                )
            if rows:
                keys = [k for k, _ in METRICS if k in rows[0]["full"]]
                out[method] = {
                    "share": mean_std(r["share"] for r in rows),
                    "full": {k: mean_std(r["full"][k] for r in rows) for k in keys},
                    "ablated": {k: mean_std(r["ablated"][k] for r in rows) for k in keys},
                    "per_seed": rows,
                }
        return out

    def tables(self, result: dict):
        if not result:
            return []
        header = ["method", "failure-path share"] + [f"{title}: full / R_F removed" for _, title in METRICS]
        rows = []
        for method, r in result.items():
            cells = [method, fmt(r["share"])]
            for key, _ in METRICS:
                cells.append(f"{fmt(r['full'].get(key))} / {fmt(r['ablated'].get(key))}" if key in r["full"] else "n/a")
            rows.append(cells)
        return [(self.title + " (mean ± std over seeds)", header, rows)]

    def plot(self, result: dict, path) -> bool:
        if not result:
            return False
        pyplot = plt()
        methods = list(result)
        fig, axes = pyplot.subplots(1, 2, figsize=(9, 3.8))
        share = [result[m]["share"] for m in methods]
        axes[0].bar(methods, [s["mean"] for s in share], yerr=[s["std"] for s in share], color="tab:purple")
        # A reference, not a test: below 5% of the reward's spread the failure path barely moves any score.
        axes[0].axhline(0.05, color="grey", ls="--", lw=0.8, label="5% (below: R_F barely matters)")
        axes[0].set_ylabel("std(R_F) / std(R) on test outputs", fontsize=8)
        axes[0].set_title("failure-path share of the reward (mean ± std over seeds)", fontsize=9)
        axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.22))
        x = np.arange(len(methods))
        key = "roc_auc" if "roc_auc" in result[methods[0]]["full"] else "pair_accuracy"
        for off, which, colour in ((-0.2, "full", "tab:green"), (0.2, "ablated", "tab:grey")):
            vals = [result[m][which][key] for m in methods]
            axes[1].bar(
                x + off,
                [v["mean"] for v in vals],
                0.4,
                yerr=[v["std"] for v in vals],
                color=colour,
                label="R_D + R_F" if which == "full" else "R_F removed",
            )
        axes[1].set_xticks(x, methods)
        axes[1].set_ylabel(f"test {key}", fontsize=8)
        axes[1].set_title(f"ablation: test {key} with and without R_F", fontsize=9)
        # below the axes, where no bar can be (inside, it covered the bars of ROC-AUCs near 1)
        axes[1].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(0.0, -0.22))
        for ax in axes:
            ax.tick_params(axis="x", labelrotation=20, labelsize=7)
            ax.set_xlabel("FA-IRL method", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        pyplot.close(fig)
        return True

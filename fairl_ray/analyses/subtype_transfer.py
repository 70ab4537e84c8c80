"""Cross-subtype transfer (FA-IRL §6, Figure 3): each method trained on ONE toxic subtype's training pairs, its
pair ranking accuracy on the test pairs of every subtype.

This analysis trains, so it is computed by the reward recovery (``recovery.transfer.subtype_transfer``: one fit
per training subtype) and runs as its own pipeline stage; here are its tables and its figure, read from that
result's JSON like every other analysis's.
"""

from __future__ import annotations

import numpy as np

from .base import Analysis, plt


class SubtypeTransfer(Analysis):
    name = "subtype_transfer"
    title = "Cross-subtype transfer: pair accuracy on each test subtype (rows: the subtype trained on)"

    def tables(self, result: dict):
        tables = []
        tests = result.get("test_subtypes", [])
        for method, grid in result.get("methods", {}).items():
            header = ["trained on ↓ / tested on →"] + [f"{t} (n={result['n_test'][t]})" for t in tests]
            rows = [[f"{s} (n={result['n_train'][s]})"] + [f"{grid[s][t]:.3f}" for t in tests] for s in grid]
            tables.append((f"{self.title}: {method}", header, rows))
        return tables

    def plot(self, result: dict, path) -> bool:
        methods = result.get("methods", {})
        if not methods:
            return False
        pyplot = plt()
        tests, trains = result["test_subtypes"], result["train_subtypes"]
        fig, axes = pyplot.subplots(1, len(methods), figsize=(2.4 * len(methods) + 1.5, 3.0), squeeze=False)
        for ax, (method, grid) in zip(axes[0], methods.items()):
            m = np.array([[grid[s][t] for t in tests] for s in trains])
            im = ax.imshow(m, vmin=0.5, vmax=1.0, cmap="viridis")
            ax.set_xticks(range(len(tests)), tests, rotation=45, ha="right", fontsize=6)
            ax.set_yticks(range(len(trains)), trains if ax is axes[0][0] else [""] * len(trains), fontsize=6)
            ax.set_title(method, fontsize=8)
            ax.set_xlabel("tested on", fontsize=7)
            for i in range(len(trains)):
                for j in range(len(tests)):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if m[i, j] > 0.8 else "white",
                    )
        fig.colorbar(im, ax=axes[0].tolist(), fraction=0.02).set_label("test pair accuracy", fontsize=7)
        axes[0][0].set_ylabel("trained on (one subtype's train pairs)", fontsize=7)
        fig.suptitle("Cross-subtype transfer: trained on one subtype, pair accuracy on each test subtype", fontsize=9)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        pyplot.close(fig)
        return True

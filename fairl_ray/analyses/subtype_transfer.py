"""Cross-subtype transfer (FA-IRL §6, Figure 3): train each method on ONE toxic subtype's training pairs, test its
pair ranking accuracy on the test pairs of every subtype.

A pair's subtype is the pairs file's ``subtype`` column (the toxic subtype of o−, else of o+). Subtypes with fewer
than ``MIN_TRAIN_PAIRS`` training pairs are skipped (too few to train on), and so are test subtypes without a test
pair. Unlike the other analyses this one trains: one batched ensemble per training subtype (every method of the
run, first seed), so it runs as its own pipeline stage.
"""

from __future__ import annotations

import numpy as np
import torch

from fairl_ray.irl.heads import reward_from_params
from fairl_ray.irl.hyperparameters import IRLConfig

from .base import Analysis, plt

MIN_TRAIN_PAIRS = 8


def _subtype(row: dict) -> str | None:
    return row.get("subtype") or None


class SubtypeTransfer(Analysis):
    name = "subtype_transfer"
    title = "Cross-subtype transfer: pair accuracy on each test subtype (rows: the subtype trained on)"

    def train_and_score(
        self, rows: list[dict], chosen: np.ndarray, rejected: np.ndarray, members: list[IRLConfig], device: str = "cpu"
    ) -> dict:
        from fairl_ray.irl.trainer import train_ensemble
        from fairl_ray.stages.irl_fit import pair_features

        train_idx: dict[str, list[int]] = {}
        test_idx: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            s = _subtype(r)
            if s is None:
                continue
            (test_idx if r.get("split") == "test" else train_idx).setdefault(s, []).append(i)
        trainable = sorted(s for s, idx in train_idx.items() if len(idx) >= MIN_TRAIN_PAIRS)
        testable = sorted(test_idx)
        result = {
            "train_subtypes": trainable,
            "test_subtypes": testable,
            "n_train": {s: len(train_idx[s]) for s in sorted(train_idx)},
            "n_test": {s: len(test_idx[s]) for s in testable},
            "skipped": sorted(s for s in train_idx if s not in trainable),
            "methods": {},
        }
        if not trainable or not testable:
            return result
        x = {t: (torch.from_numpy(chosen[idx]), torch.from_numpy(rejected[idx])) for t, idx in test_idx.items()}
        for s in trainable:
            idx = train_idx[s]
            train = pair_features(chosen[idx], rejected[idx], [rows[i] for i in idx])
            for member in train_ensemble(train, members, device=device):
                accs = result["methods"].setdefault(member.config.method, {}).setdefault(s, {})
                with torch.no_grad():
                    for t, (xc, xr) in x.items():
                        delta = reward_from_params(member.params, xc) - reward_from_params(member.params, xr)
                        accs[t] = float((delta > 0).float().mean())
        return result

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

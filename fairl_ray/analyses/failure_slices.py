"""Failure-slice metrics (FA-IRL §6: "improvements concentrate on failure slices: misclassified or near-tie pairs
where standard IRL objectives provide little guidance").

Slices are defined by the plain baseline of each FA-IRL variant (same base loss, same seed): its MISCLASSIFIED
test outputs (where the baseline has accuracy 0 by construction), and its NEAR-TIE test pairs (the 20% of pairs
with the smallest |Δ̂| of the baseline's normalised reward). Both methods are then scored on the same slice.
"""

from __future__ import annotations

import numpy as np

from .base import Analysis, EvalContext, fmt, mean_std

NEAR_TIE_FRACTION = 0.2


class FailureSlices(Analysis):
    name = "failure_slices"
    title = "Failure slices of the baseline (misclassified outputs, near-tie pairs)"

    def compute(self, ctx: EvalContext) -> dict:
        out = {}
        methods = ctx.by_method()
        for fa, base in ctx.comparisons():
            rows = []
            for seed in ctx.matched_seeds(fa, base):
                f, b = methods[fa][seed], methods[base][seed]
                wrong = ~b.correct(ctx.test_classes)
                d_base, d_fa = b.delta(), f.delta()
                k = max(1, int(round(NEAR_TIE_FRACTION * len(d_base))))
                ties = np.argsort(np.abs(d_base), kind="stable")[:k]
                rows.append(
                    {
                        "seed": seed,
                        "misclassified_n": int(wrong.sum()),
                        "misclassified_fa_accuracy": float(f.correct(ctx.test_classes)[wrong].mean())
                        if wrong.any()
                        else float("nan"),
                        "near_tie_n": k,
                        "near_tie_fa_pair_accuracy": float((d_fa[ties] > 0).mean()),
                        "near_tie_baseline_pair_accuracy": float((d_base[ties] > 0).mean()),
                    }
                )
            out[f"{fa} vs {base}"] = (
                {key: mean_std(r[key] for r in rows) for key in rows[0] if key != "seed"} if rows else {}
            )
        return out

    def tables(self, result: dict):
        if not result:
            return []
        header = ["FA-IRL vs baseline", "slice", "n", "baseline", "FA-IRL"]
        rows = []
        for name, r in result.items():
            if not r:
                continue
            rows.append(
                [
                    name,
                    "outputs the baseline misclassifies (accuracy)",
                    fmt(r["misclassified_n"], 1),
                    "0.000",
                    fmt(r["misclassified_fa_accuracy"]),
                ]
            )
            rows.append(
                [
                    name,
                    f"{NEAR_TIE_FRACTION:.0%} nearest-tie pairs of the baseline (pair accuracy)",
                    fmt(r["near_tie_n"], 1),
                    fmt(r["near_tie_baseline_pair_accuracy"]),
                    fmt(r["near_tie_fa_pair_accuracy"]),
                ]
            )
        return [(self.title + " (mean ± std over seeds)", header, rows)]

"""Failure-slice metrics (FA-IRL §6: "improvements concentrate on failure slices: misclassified or near-tie pairs
where standard IRL objectives provide little guidance").

For every fair comparison ``(treatment, control, kind)`` the slices are defined by the CONTROL (same seed): its
MISCLASSIFIED labelled test outputs (where the control has accuracy 0 by construction), and its NEAR-TIE test pairs
(the 20% of pairs with the smallest |Δ̂| of the control's normalised reward; both outputs of each pair). Both methods
are scored on the same slice: accuracy (misclassified) or pair accuracy (near ties) and, when R* is known, the
fidelity on the slice's outputs (STARC l1/l1, eq. 4, and Spearman with R*). Each slice metric is a paired
comparison over seeds (``metrics.paired.paired_comparison``: mean difference, 95% CI, verdict).

A slice picked by the control's errors favours the treatment by construction (regression to the mean: any other
reward is right on some of them); the placebo comparison, whose control shares everything but the failures, is the
fair reading of this table.
"""

from __future__ import annotations

import numpy as np

from fairl_ray.metrics.correlation import correlations
from fairl_ray.metrics.paired import paired_comparison
from fairl_ray.metrics.starc import starc_distance

from .base import Analysis, EvalContext, fmt, fmt_ci, mean_std

NEAR_TIE_FRACTION = 0.2
NAN = float("nan")
#: slice metric -> True when higher is better
HIGHER = {"accuracy": True, "pair_accuracy": True, "starc": False, "spearman": True}


def _fidelity(scores: np.ndarray, gt: np.ndarray | None, sel: np.ndarray) -> dict:
    """STARC and Spearman with R* on the outputs ``sel`` (fewer than 2 outputs: nan, nothing to rank)."""
    if gt is None:
        return {}
    if len(sel) < 2:
        return {"starc": NAN, "spearman": NAN}
    return {"starc": starc_distance(scores[sel], gt[sel]), "spearman": correlations(scores[sel], gt[sel])["spearman"]}


def _slices(ctx: EvalContext, t, c) -> dict:
    """One seed: both slices of the control ``c``, each with its size and both members' metrics on it."""
    labelled = np.flatnonzero(ctx.labelled)
    wrong = labelled[~c.correct(ctx.test_classes)[labelled]]
    t_right = t.correct(ctx.test_classes)
    n = ctx.n_pairs
    k = max(1, int(round(NEAR_TIE_FRACTION * n)))
    ties = np.argsort(np.abs(c.delta()), kind="stable")[:k]
    tie_outputs = np.concatenate([ties, n + ties])
    out = {
        "misclassified": {
            "n": len(wrong),
            "treatment": {"accuracy": float(t_right[wrong].mean()) if len(wrong) else NAN},
            "control": {"accuracy": 0.0 if len(wrong) else NAN},
        },
        "near_tie": {
            "n": k,
            "treatment": {"pair_accuracy": float((t.delta()[ties] > 0).mean())},
            "control": {"pair_accuracy": float((c.delta()[ties] > 0).mean())},
        },
    }
    for name, sel in (("misclassified", wrong), ("near_tie", tie_outputs)):
        for side, m in (("treatment", t), ("control", c)):
            out[name][side].update(_fidelity(m.test, ctx.test_gt, sel))
    return out


class FailureSlices(Analysis):
    name = "failure_slices"
    title = "Failure slices of the control (misclassified outputs, near-tie pairs)"

    def compute(self, ctx: EvalContext) -> dict:
        out = {}
        methods = ctx.by_method()
        for treatment, control, kind in ctx.comparisons():
            seeds = ctx.matched_seeds(treatment, control)
            per_seed = [_slices(ctx, methods[treatment][s], methods[control][s]) for s in seeds]
            slices = {}
            # no labelled output (a world without a judge): nothing is misclassified, only near ties are a slice
            for name in ("misclassified", "near_tie") if ctx.labelled.any() else ("near_tie",):
                if not per_seed:
                    break
                rows = [p[name] for p in per_seed]
                slices[name] = {
                    "n": mean_std(r["n"] for r in rows),
                    "metrics": {
                        metric: paired_comparison(
                            [r["treatment"][metric] for r in rows],
                            [r["control"][metric] for r in rows],
                            higher_is_better=HIGHER[metric],
                        )
                        for metric in rows[0]["treatment"]
                    },
                }
            out[f"{treatment} vs {control}"] = {
                "treatment": treatment,
                "control": control,
                "kind": kind,
                "seeds": seeds,
                "slices": slices,
            }
        return out

    def tables(self, result: dict):
        titles = {
            "misclassified": "outputs the control misclassifies",
            "near_tie": f"{NEAR_TIE_FRACTION:.0%} nearest-tie pairs of the control",
        }
        header = ["treatment vs control", "slice", "n", "metric", "control", "treatment", "Δ [95% t CI]", "verdict"]
        rows = []
        for name, r in result.items():
            for slice_name, sl in r["slices"].items():
                for metric, m in sl["metrics"].items():
                    rows.append(
                        [
                            name,
                            titles[slice_name],
                            fmt(sl["n"], 1),
                            metric if HIGHER[metric] else metric + " ↓",
                            fmt(m["control_mean"]),
                            fmt(m["treatment_mean"]),
                            fmt_ci(m["mean_diff"], m["ci95_t"], signed=True),
                            m["verdict"],
                        ]
                    )
        if not rows:
            return []
        return [(self.title + " (means over seeds; paired difference treatment − control)", header, rows)]

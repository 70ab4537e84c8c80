"""The honest scoreboard: each FA-IRL variant against its plain baseline, metric by metric, with a verdict only
where the gap of the means exceeds the seed spread (the sum of the two standard deviations over seeds) and the
printed precision (``MIN_GAP``: a gap that shows as ±0.000 is a tie, however small the spread)."""

from __future__ import annotations

from .base import Analysis, EvalContext, fmt, mean_std

MIN_GAP = 1e-3

#: metric -> True when higher is better
METRICS = {"accuracy": True, "f1": True, "roc_auc": True, "starc": False, "pair_accuracy": True}


class Scoreboard(Analysis):
    name = "scoreboard"
    title = "Scoreboard: FA-IRL variant vs its baseline (a verdict only where the gap exceeds the seed spread)"

    def compute(self, ctx: EvalContext) -> dict:
        out = {}
        methods = ctx.by_method()
        for fa, base in ctx.comparisons():
            seeds = ctx.matched_seeds(fa, base)
            scores = {
                name: [ctx.metrics_fn(methods[name][s].test, methods[name][s].threshold) for s in seeds]
                for name in (fa, base)
            }
            rows = {}
            for metric, higher in METRICS.items():
                if metric not in scores[fa][0]:
                    continue
                a, b = mean_std(r[metric] for r in scores[fa]), mean_std(r[metric] for r in scores[base])
                gap = a["mean"] - b["mean"]
                spread = a["std"] + b["std"]
                better = gap > 0 if higher else gap < 0
                verdict = (
                    "within seed spread"
                    if abs(gap) <= max(spread, MIN_GAP)
                    else ("FA-IRL better" if better else "baseline better")
                )
                rows[metric] = {"fa_irl": a, "baseline": b, "gap": gap, "spread": spread, "verdict": verdict}
            out[f"{fa} vs {base}"] = {"seeds": seeds, "metrics": rows}
        return out

    def tables(self, result: dict):
        if not result:
            return []
        header = ["FA-IRL vs baseline", "metric", "FA-IRL", "baseline", "gap", "seed spread", "verdict"]
        rows = [
            [name, metric, fmt(m["fa_irl"]), fmt(m["baseline"]), f"{m['gap']:+.3f}", f"{m['spread']:.3f}", m["verdict"]]
            for name, r in result.items()
            for metric, m in r["metrics"].items()
        ]
        return [(self.title, header, rows)]

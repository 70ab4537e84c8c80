"""The scoreboard as a paired test (DESIGN §6b): for every fair comparison ``(treatment, control, kind)`` of
``irl.methods.comparisons`` (FA-IRL vs its plain baseline, vs its no-failure placebo, joint vs split routing) and every
metric, the per-seed difference treatment − control on the same split, its mean with a 95% CI over seeds (t interval
and paired bootstrap, ``metrics.paired.paired_comparison``), and a verdict only where the t interval excludes 0 and
at least 5 seeds are paired. Also the probability of improvement (rliable): P(treatment run beats control run).
"""

from __future__ import annotations

from fairl_ray.metrics.paired import paired_comparison, probability_of_improvement

from .base import Analysis, EvalContext, fmt, fmt_ci

#: metric -> True when higher is better (metrics a member lacks, e.g. STARC without R*, are skipped)
METRICS = {
    "accuracy": True,
    "balanced_accuracy": True,
    "f1_nontoxic_positive": True,
    "f1_toxic_positive": True,
    "roc_auc": True,
    "starc": False,
    "spearman": True,
    "pair_accuracy": True,
    "rstar_pair_agreement": True,
}


class Scoreboard(Analysis):
    name = "scoreboard"
    title = (
        "Scoreboard: paired difference treatment − control per IRL seed (95% CI; a verdict only where it excludes 0). "
        "The seeds vary the IRL initialisation and minibatch order on this run's one draw of pairs and split; "
        "no correction for the number of comparisons"
    )

    def compute(self, ctx: EvalContext) -> dict:
        out = {}
        methods = ctx.by_method()
        for treatment, control, kind in ctx.comparisons():
            seeds = ctx.matched_seeds(treatment, control)
            scores = {
                name: [ctx.metrics_fn(methods[name][s].test, methods[name][s].threshold) for s in seeds]
                for name in (treatment, control)
            }
            rows = {}
            for metric, higher in METRICS.items():
                if not seeds or metric not in scores[treatment][0]:
                    continue
                t = [r[metric] for r in scores[treatment]]
                c = [r[metric] for r in scores[control]]
                rows[metric] = {
                    **paired_comparison(t, c, higher_is_better=higher),
                    "higher_is_better": higher,
                    "probability_of_improvement": probability_of_improvement(t, c, higher_is_better=higher),
                }
            out[f"{treatment} vs {control}"] = {
                "treatment": treatment,
                "control": control,
                "kind": kind,
                "seeds": seeds,
                "metrics": rows,
            }
        return out

    def tables(self, result: dict):
        if not result:
            return []
        header = [
            "treatment vs control",
            "kind",
            "metric",
            "n",
            "treatment",
            "control",
            "Δ mean [95% t CI]",
            "95% bootstrap CI",
            "P(improve)",
            "verdict",
        ]
        rows = []
        for name, r in result.items():
            for metric, m in r["metrics"].items():
                arrow = "" if m["higher_is_better"] else " ↓"
                rows.append(
                    [
                        name,
                        r["kind"],
                        metric + arrow,
                        str(m["n"]),
                        fmt(m["treatment_mean"]),
                        fmt(m["control_mean"]),
                        fmt_ci(m["mean_diff"], m["ci95_t"], signed=True),
                        fmt_ci(None, m["ci95_bootstrap"], signed=True),
                        fmt(m["probability_of_improvement"], 2),
                        m["verdict"],
                    ]
                )
        return [(self.title, header, rows)]

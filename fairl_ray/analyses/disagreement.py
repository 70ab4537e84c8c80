"""Disagreement tables (FA-IRL Tables 2 and 3): on each labelled test output, is the treatment right, its control
right, both, or neither (output classification with each reward's own train-fitted threshold), overall and per
toxic subtype, for every fair comparison ``(treatment, control, kind)``. Counts are means over matched seeds.

McNemar's exact test (``metrics.paired.mcnemar_exact``) on the discordant counts b = only treatment right, c = only
control right: per seed, and pooled (b and c summed over seeds). The per-seed p-values are the valid ones; the
pooled one treats the same outputs under different seeds as independent, so it overstates the evidence when the
seeds agree (read it as a summary, not a test)."""

from __future__ import annotations

import numpy as np

from fairl_ray.metrics.paired import mcnemar_exact

from .base import Analysis, EvalContext, plt

CATEGORIES = ("both", "only_treatment", "only_control", "neither")
TITLES = {
    "both": "both right",
    "only_treatment": "only treatment",
    "only_control": "only control",
    "neither": "neither",
}


def _counts(t_right: np.ndarray, c_right: np.ndarray) -> dict[str, int]:
    return {
        "both": int((t_right & c_right).sum()),
        "only_treatment": int((t_right & ~c_right).sum()),
        "only_control": int((~t_right & c_right).sum()),
        "neither": int((~t_right & ~c_right).sum()),
    }


class Disagreement(Analysis):
    name = "disagreement"
    title = "Disagreement between treatment and control on labelled test outputs"

    def compute(self, ctx: EvalContext) -> dict:
        out = {}
        methods = ctx.by_method()
        labelled = ctx.labelled  # unlabelled outputs have no right answer to agree on
        if not labelled.any():  # no labels at all (a world without a judge): nothing to count
            return out
        subtypes = np.asarray(ctx.test_subtypes)[labelled]
        for treatment, control, kind in ctx.comparisons():
            seeds = ctx.matched_seeds(treatment, control)
            overall, per_subtype = [], {s: [] for s in dict.fromkeys(subtypes.tolist())}
            for seed in seeds:
                t_right = methods[treatment][seed].correct(ctx.test_classes)[labelled]
                c_right = methods[control][seed].correct(ctx.test_classes)[labelled]
                overall.append(_counts(t_right, c_right))
                for s in per_subtype:
                    sel = subtypes == s
                    per_subtype[s].append(_counts(t_right[sel], c_right[sel]))
            mean = lambda rows: {c: float(np.mean([r[c] for r in rows])) for c in CATEGORIES}  # noqa: E731
            b, c = (sum(r[k] for r in overall) for k in ("only_treatment", "only_control"))
            out[f"{treatment} vs {control}"] = {
                "treatment": treatment,
                "control": control,
                "kind": kind,
                "seeds": seeds,
                "n_outputs": int(labelled.sum()),
                "overall": mean(overall) if seeds else {},
                "per_subtype": {s: mean(rows) for s, rows in per_subtype.items()} if seeds else {},
                "mcnemar_p_per_seed": [mcnemar_exact(r["only_treatment"], r["only_control"]) for r in overall],
                "mcnemar_pooled": {"only_treatment": b, "only_control": c, "p": mcnemar_exact(b, c)},
            }
        return out

    def tables(self, result: dict):
        result = {name: r for name, r in result.items() if r["overall"]}
        if not result:
            return []
        header = ["treatment vs control"] + [TITLES[c] for c in CATEGORIES] + ["McNemar p per seed", "pooled p"]
        overall = [
            [name]
            + [f"{r['overall'][c]:.1f}" for c in CATEGORIES]
            + [", ".join(f"{p:.3g}" for p in r["mcnemar_p_per_seed"]), f"{r['mcnemar_pooled']['p']:.3g}"]
            for name, r in result.items()
        ]
        sub_header = ["treatment vs control", "subtype"] + [TITLES[c] for c in CATEGORIES]
        per_subtype = [
            [name, s] + [f"{counts[c]:.1f}" for c in CATEGORIES]
            for name, r in result.items()
            for s, counts in sorted(r["per_subtype"].items())
        ]
        return [
            (self.title + " (Table 2; output counts, mean over seeds; McNemar exact, two-sided)", header, overall),
            ("Disagreement per subtype (Table 3)", sub_header, per_subtype),
        ]

    def plot(self, result: dict, path) -> bool:
        """Where the two disagree (both-right outputs are in the labels: they would dwarf the rest)."""
        result = {name: r for name, r in result.items() if r["overall"]}
        if not result:
            return False
        pyplot = plt()
        names = list(result)
        shown = ("only_treatment", "only_control", "neither")
        colours = {"only_treatment": "tab:green", "only_control": "tab:red", "neither": "tab:grey"}
        fig, ax = pyplot.subplots(figsize=(8, 1.4 + 0.6 * len(names)))
        y = np.arange(len(names))
        for i, c in enumerate(shown):
            vals = [result[n]["overall"][c] for n in names]
            ax.barh(y + (i - 1) * 0.27, vals, 0.27, color=colours[c], label=TITLES[c])
        ax.set_yticks(y, [f"{n}\n(both right: {result[n]['overall']['both']:.1f})" for n in names], fontsize=7)
        ax.set_xlabel("test outputs (mean over seeds)")
        ax.set_ylabel("treatment vs control", fontsize=8)
        ax.set_title("Disagreement (Table 2): test outputs right by only one reward, or by neither", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        pyplot.close(fig)
        return True

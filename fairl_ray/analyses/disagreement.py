"""Disagreement tables (FA-IRL Tables 2 and 3): on each test output, is the FA-IRL variant right, its plain
baseline right, both, or neither (output classification with each reward's own train-fitted threshold), overall
and per toxic subtype. Counts are means over matched seeds."""

from __future__ import annotations

import numpy as np

from .base import Analysis, EvalContext, plt

CATEGORIES = ("both", "only_fa_irl", "only_baseline", "neither")
TITLES = {"both": "both right", "only_fa_irl": "only FA-IRL", "only_baseline": "only baseline", "neither": "neither"}


def _counts(fa_right: np.ndarray, base_right: np.ndarray) -> dict[str, int]:
    return {
        "both": int((fa_right & base_right).sum()),
        "only_fa_irl": int((fa_right & ~base_right).sum()),
        "only_baseline": int((~fa_right & base_right).sum()),
        "neither": int((~fa_right & ~base_right).sum()),
    }


class Disagreement(Analysis):
    name = "disagreement"
    title = "Disagreement between each FA-IRL variant and its baseline on test outputs"

    def compute(self, ctx: EvalContext) -> dict:
        out = {}
        methods = ctx.by_method()
        subtypes = np.asarray(ctx.test_subtypes)
        for fa, base in ctx.comparisons():
            seeds = ctx.matched_seeds(fa, base)
            overall, per_subtype = [], {s: [] for s in dict.fromkeys(ctx.test_subtypes)}
            for seed in seeds:
                f_right = methods[fa][seed].correct(ctx.test_classes)
                b_right = methods[base][seed].correct(ctx.test_classes)
                overall.append(_counts(f_right, b_right))
                for s in per_subtype:
                    sel = subtypes == s
                    per_subtype[s].append(_counts(f_right[sel], b_right[sel]))
            mean = lambda rows: {c: float(np.mean([r[c] for r in rows])) for c in CATEGORIES}  # noqa: E731
            out[f"{fa} vs {base}"] = {
                "seeds": seeds,
                "overall": mean(overall),
                "per_subtype": {s: mean(rows) for s, rows in per_subtype.items()},
            }
        return out

    def tables(self, result: dict):
        if not result:
            return []
        header = ["FA-IRL vs baseline"] + [TITLES[c] for c in CATEGORIES]
        overall = [[name] + [f"{r['overall'][c]:.1f}" for c in CATEGORIES] for name, r in result.items()]
        sub_header = ["FA-IRL vs baseline", "subtype"] + [TITLES[c] for c in CATEGORIES]
        per_subtype = [
            [name, s] + [f"{counts[c]:.1f}" for c in CATEGORIES]
            for name, r in result.items()
            for s, counts in sorted(r["per_subtype"].items())
        ]
        return [
            (self.title + " (Table 2; output counts, mean over seeds)", header, overall),
            ("Disagreement per subtype (Table 3)", sub_header, per_subtype),
        ]

    def plot(self, result: dict, path) -> bool:
        """Where the two disagree (both-right outputs are in the labels: they would dwarf the rest)."""
        if not result:
            return False
        pyplot = plt()
        names = list(result)
        shown = ("only_fa_irl", "only_baseline", "neither")
        colours = {"only_fa_irl": "tab:green", "only_baseline": "tab:red", "neither": "tab:grey"}
        fig, ax = pyplot.subplots(figsize=(7, 0.8 + 0.6 * len(names)))
        y = np.arange(len(names))
        for i, c in enumerate(shown):
            vals = [result[n]["overall"][c] for n in names]
            ax.barh(y + (i - 1) * 0.27, vals, 0.27, color=colours[c], label=TITLES[c])
        ax.set_yticks(y, [f"{n}\n(both right: {result[n]['overall']['both']:.1f})" for n in names], fontsize=7)
        ax.set_xlabel("test outputs (mean over seeds)")
        ax.legend(fontsize=7, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        pyplot.close(fig)
        return True

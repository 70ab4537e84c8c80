"""Where each reward fails: the subtype distribution of its misclassified labelled test outputs (mean counts over
seeds; unlabelled outputs have no class to miss and are left out)."""

from __future__ import annotations

import numpy as np

from .base import Analysis, EvalContext, plt


class FailureSubtypes(Analysis):
    name = "failure_subtypes"
    title = "Subtype distribution of each method's misclassified test outputs"

    def compute(self, ctx: EvalContext) -> dict:
        labelled = ctx.labelled
        if not labelled.any():  # no labels at all (a world without a judge): no misclassified output to count
            return {"outputs_per_subtype": {}, "methods": {}}
        subtypes = np.asarray(ctx.test_subtypes)[labelled]
        names = list(dict.fromkeys(subtypes.tolist()))
        out = {"outputs_per_subtype": {s: int((subtypes == s).sum()) for s in names}, "methods": {}}
        for method, seeds in ctx.by_method().items():
            wrong = [~m.correct(ctx.test_classes)[labelled] for m in seeds.values()]
            counts = [{s: int((w & (subtypes == s)).sum()) for s in names} for w in wrong]
            out["methods"][method] = {s: float(np.mean([c[s] for c in counts])) for s in names}
        return out

    def tables(self, result: dict):
        if not result.get("methods"):
            return []
        names = list(result["outputs_per_subtype"])
        header = ["method"] + [f"{s} (of {result['outputs_per_subtype'][s]})" for s in names] + ["total"]
        rows = []
        for method, counts in result["methods"].items():
            total = sum(counts.values())
            rows.append([method] + [f"{counts[s]:.1f}" for s in names] + [f"{total:.1f}"])
        return [(self.title + " (mean over seeds)", header, rows)]

    def plot(self, result: dict, path) -> bool:
        if not result.get("methods"):
            return False
        pyplot = plt()
        methods = list(result["methods"])
        names = list(result["outputs_per_subtype"])
        fig, ax = pyplot.subplots(figsize=(7, 3.2))
        bottom = np.zeros(len(methods))
        for i, s in enumerate(names):
            vals = np.array([result["methods"][m][s] for m in methods])
            ax.bar(methods, vals, bottom=bottom, label=s, color=f"C{i % 10}")
            bottom += vals
        ax.set_ylabel("misclassified test outputs")
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelrotation=20, labelsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        pyplot.close(fig)
        return True

"""Plain-text tables of a pipeline's results (printed at the end of ``fairl run`` and saved as report.md)."""

from __future__ import annotations

import math
import re

#: Classification beside accuracy (what a reviewer asks on imbalanced data): the majority-class baseline, balanced
#: accuracy and F1 in both conventions (non-toxic positive = this project's, toxic positive = Insights' code).
COLUMNS = (
    ("accuracy", "accuracy"),
    ("majority_baseline_accuracy", "majority-class acc."),
    ("balanced_accuracy", "balanced acc."),
    ("f1_nontoxic_positive", "F1 (non-toxic +)"),
    ("f1_toxic_positive", "F1 (toxic +)"),
    ("precision_toxic", "toxic precision"),
    ("recall_toxic", "toxic recall"),
    ("roc_auc", "ROC-AUC"),
    ("starc", "STARC l1/l1 ↓"),
    ("pair_accuracy", "pair acc."),
    ("rstar_pair_agreement", "R* agreement (ties out)"),
)
#: shown when the world has held-out labelled texts (FA-IRL Table 1's Jigsaw columns)
HELDOUT_COLUMNS = (
    ("heldout_accuracy", "held-out acc."),
    ("heldout_majority_baseline_accuracy", "held-out majority-class acc."),
    ("heldout_balanced_accuracy", "held-out balanced acc."),
    ("heldout_f1", "held-out F1 (non-toxic +)"),
    ("heldout_f1_toxic_positive", "held-out F1 (toxic +)"),
    ("heldout_recall_toxic", "held-out toxic recall"),
    ("heldout_roc_auc", "held-out ROC-AUC"),
)


def mean_std(stats: dict | None) -> str:
    if not stats or stats.get("mean") is None or not math.isfinite(stats["mean"]):
        return "n/a"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


_EMPTY_CELL = re.compile(r"^(n/a|\[n/a\]|[\s/])*$")


def drop_empty_columns(header: list[str], rows: list[list]) -> tuple[list[str], list[list]]:
    """Leave out the columns whose every row is ``n/a`` (a metric this run could not compute: STARC without R*,
    accuracy without labels), so a table shows what was measured."""
    keep = [i for i in range(len(header)) if i == 0 or not rows or any(not _EMPTY_CELL.match(str(r[i])) for r in rows)]
    return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def metrics_table(per_method: dict, n_seeds: int) -> str:
    columns = COLUMNS
    if any("heldout_accuracy" in metrics for metrics in per_method.values()):
        columns += HELDOUT_COLUMNS
    header = ["method"] + [title for _, title in columns]
    rows = [[method] + [mean_std(metrics.get(key)) for key, _ in columns] for method, metrics in per_method.items()]
    title = f"Reward recovery on held-out test pairs (mean ± std over {n_seeds} seeds)"
    table = f"{title}\n\n" + markdown_table(*drop_empty_columns(header, rows))
    ties = next((m["rstar_pair_ties"]["mean"] for m in per_method.values() if "rstar_pair_ties" in m), None)
    if ties is not None:  # the pairs "R* agreement" leaves out: say how many
        table += f"\n\nR* agreement leaves out {ties:.0f} test pairs tied in R* (|ΔR*| ≤ 1e-9)."
    return table


def methods_legend(methods) -> str:
    """What each method in the tables is (the method table's own words: loss, failure source, routing, placebo)."""
    from fairl_ray.irl.methods import METHOD_TABLE

    rows = [[m, METHOD_TABLE[m].paper] for m in methods if m in METHOD_TABLE]
    return "Methods\n\n" + markdown_table(["method", "what it is"], rows) if rows else ""


def implicit_reward_note(methods, beta: float | None = None) -> str:
    """What the implicit-reward rows are, when the evaluation has them (``stages.implicit_reward``)."""
    if "implicit_reward" not in methods:
        return ""
    where = f"β = {beta:g}" if beta is not None else "β = expert_rlhf.beta"
    return (
        "implicit_reward is β·(log π_E − log π0) of each completion given its prompt (the KL-regularised RLHF optimum "
        f"π_E ∝ π0·exp(R/β) gives R − β·log Z(x)), {where} (the KL coefficient that trained π_E here, or the one "
        "given with it); implicit_reward_per_token divides it by the "
        "completion's token count. Nothing is trained (one seed). β only scales the reward: rank metrics do not "
        "depend on it, and like every reward here it is normalised on train, so no metric in these tables does."
    )


def toxicity_table(toxicity: dict | str) -> str:
    if isinstance(toxicity, str):  # a world without a policy: why there is no table
        return f"Toxicity on held-out prompts: {toxicity}"
    header = ["model", "toxicity rate", "mean R*", "completions"]
    rows = [[name, f"{t['toxicity_rate']:.1%}", f"{t['mean_rstar']:+.3f}", str(t["n"])] for name, t in toxicity.items()]
    return "Toxicity on held-out prompts (same prompts and sampling seed for every model)\n\n" + markdown_table(
        header, rows
    )


def analyses_report(analyses: dict | None) -> str:
    """Every failure-analysis table (FA-IRL §6) of ``analyses`` (``{name: result}``) as markdown sections."""
    from fairl_ray.analyses import render

    return "\n\n".join(
        f"{title}\n\n{markdown_table(*drop_empty_columns(header, rows))}"
        for title, header, rows in render(analyses or {})
        if rows
    )


#: said at the top of a report whose world has no judge (``judge.kind: none``)
NO_GROUND_TRUTH = (
    "**No judge: R* is unknown.** This run shows only what needs no ground truth: pair accuracy on held-out "
    "pairs (does the reward prefer π_E's completion to π0's?), agreement between the rewards and with the implicit "
    "reward, dispersion across seeds, and the texts each reward scores highest and lowest. No recovery metric that "
    "needs R* (STARC, correlations with R*, R* agreement), no toxicity and no re-alignment is reported; held-out "
    "classification appears only when labelled held-out texts were given."
)


def format_report(results: dict) -> str:
    parts = [
        "# fairl-ray results",
        NO_GROUND_TRUTH if results.get("ground_truth") is False else "",
        metrics_table(results["metrics"]["per_method"], len(results.get("seeds", []))),
        methods_legend(results["metrics"]["per_method"]),
        implicit_reward_note(results["metrics"]["per_method"], results.get("implicit_reward_beta")),
        toxicity_table(results["toxicity"]),
        "## Failure analyses (FA-IRL §6)" if results.get("analyses") else "",
        analyses_report(results.get("analyses")),
        f"Pairs: {results['pairs'].get('train', '?')} train / {results['pairs'].get('test', '?')} test.  "
        f"MLflow run: {results['mlflow']['parent_run_id']}.  Wall time: {results.get('seconds', '?')} s.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"

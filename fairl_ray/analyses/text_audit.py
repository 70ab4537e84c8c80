"""What an auditor reads first (issue 16): which texts each recovered reward scores highest and lowest, how sure the
seed ensemble is about each text, and where the rewards disagree — with each other and with the implicit reward
β·log π_E/π0. None of it needs R*, so it is the core of a report without a judge.

Per evaluated output (the test split's o⁺ and o⁻; every reward normalised on train, as everywhere in the
evaluation): each method's mean and std of its reward over seeds; the CONSENSUS, the mean over the IRL methods of
their seed means, and the method SPREAD, the std over the IRL methods of those means. Tables: agreement between the
rewards (Spearman of their seed-mean rewards over the outputs, and the mean seed std, i.e. per-text uncertainty);
the :data:`TOP_K` highest- and lowest-scored texts by consensus; the texts where the IRL methods disagree most
(largest spread; with one method, largest seed std); where the consensus and the implicit reward differ most
(largest |consensus − implicit|, both in normalised units). Only those rows are kept (results.json stays small).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from fairl_ray.irl.methods import METHOD_TABLE

from .base import Analysis, EvalContext, plt

#: texts per table
TOP_K = 10
#: characters of a text shown in a table cell
TEXT_CHARS = 120
#: the scored reward the IRL consensus is compared with (``stages.implicit_reward``)
IMPLICIT = "implicit_reward"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


class TextAudit(Analysis):
    name = "text_audit"
    title = "Auditor's view: per-text uncertainty, top and bottom texts, disagreements"

    def compute(self, ctx: EvalContext) -> dict:
        if ctx.test_texts is None or ctx.n_pairs == 0:
            return {}
        methods = ctx.by_method()
        mean = {m: np.mean([s.test for s in seeds.values()], axis=0) for m, seeds in methods.items()}
        std = {m: np.std([s.test for s in seeds.values()], axis=0) for m, seeds in methods.items()}
        irl = [m for m in methods if m in METHOD_TABLE]
        if not irl:
            return {}
        consensus = np.mean([mean[m] for m in irl], axis=0)
        spread = np.std([mean[m] for m in irl], axis=0)
        seed_std = np.mean([std[m] for m in irl], axis=0)
        implicit = mean.get(IMPLICIT)
        n = ctx.n_pairs

        def row(i: int) -> dict:
            return {
                "text": ctx.test_texts[i],
                "side": "chosen (π_E)" if i < n else "rejected (π0)",
                "consensus": float(consensus[i]),
                "method_spread": float(spread[i]),
                "seed_std": float(seed_std[i]),
                "implicit": None if implicit is None else float(implicit[i]),
                "per_method": {m: [float(mean[m][i]), float(std[m][i])] for m in irl},
            }

        order = np.argsort(-consensus, kind="stable")
        disagreement = spread if len(irl) > 1 else seed_std
        out = {
            "methods": irl,
            "outputs": int(len(consensus)),
            "agreement": {a: {b: _spearman(mean[a], mean[b]) for b in mean} for a in mean},
            "mean_seed_std": {m: float(std[m].mean()) for m in mean},
            "top": [row(int(i)) for i in order[:TOP_K]],
            "bottom": [row(int(i)) for i in order[::-1][:TOP_K]],
            "disagree_methods": [row(int(i)) for i in np.argsort(-disagreement, kind="stable")[:TOP_K]],
            "disagreement_measure": "method_spread" if len(irl) > 1 else "seed_std",
        }
        if implicit is not None:
            gap = np.abs(consensus - implicit)
            out["disagree_implicit"] = [row(int(i)) for i in np.argsort(-gap, kind="stable")[:TOP_K]]
            out["consensus_vs_implicit"] = {
                "spearman": _spearman(consensus, implicit),
                "consensus": [float(x) for x in consensus],
                "implicit": [float(x) for x in implicit],
            }
        return out

    def tables(self, result: dict):
        if not result:
            return []
        names = list(result["agreement"])
        agreement = [
            [a, f"{result['mean_seed_std'][a]:.3f}"] + [_num(result["agreement"][a][b]) for b in names] for a in names
        ]
        tables = [
            (
                "Agreement between the rewards: Spearman of their seed-mean normalised rewards over the "
                f"{result['outputs']} test outputs, and each reward's per-text std over seeds (mean over texts)",
                ["reward", "per-text std over seeds"] + names,
                agreement,
            )
        ]
        header = ["text", "side", "consensus", "spread over methods", "std over seeds", "implicit reward"]
        listing = [
            ("top", f"Highest-scored test texts (consensus of {', '.join(result['methods'])})"),
            ("bottom", "Lowest-scored test texts (consensus)"),
            (
                "disagree_methods",
                "Texts where the IRL rewards disagree most"
                + (
                    " (spread over methods)"
                    if result["disagreement_measure"] == "method_spread"
                    else " (std over seeds)"
                ),
            ),
            ("disagree_implicit", "Texts where the IRL consensus and the implicit reward differ most"),
        ]
        for key, title in listing:
            if key in result:
                rows = [
                    [
                        _short(r["text"]),
                        r["side"],
                        f"{r['consensus']:+.2f}",
                        f"{r['method_spread']:.2f}",
                        f"{r['seed_std']:.2f}",
                        "n/a" if r["implicit"] is None else f"{r['implicit']:+.2f}",
                    ]
                    for r in result[key]
                ]
                tables.append((title, header, rows))
        return tables

    def plot(self, result: dict, path) -> bool:
        pair = result.get("consensus_vs_implicit") if result else None
        if not pair:
            return False
        pyplot = plt()
        x, y = np.asarray(pair["consensus"]), np.asarray(pair["implicit"])
        n = len(x) // 2
        fig, ax = pyplot.subplots(figsize=(5, 4))
        ax.scatter(x[:n], y[:n], s=10, alpha=0.6, label="chosen (π_E)")
        ax.scatter(x[n:], y[n:], s=10, alpha=0.6, label="rejected (π0)")
        ax.set_xlabel("IRL consensus (normalised)")
        ax.set_ylabel("implicit reward (normalised)")
        ax.set_title(f"Test outputs: Spearman {pair['spearman']:.2f}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        pyplot.close(fig)
        return True


def _short(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "¦")  # a table cell: no column separator inside
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _num(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.2f}"

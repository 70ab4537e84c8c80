"""The perturbation probes' table (Insights Table 6; computed by ``recovery.probes`` in the evaluate stage, which
has the encoder the probes need)."""

from __future__ import annotations

from .base import Analysis, fmt


class Perturbation(Analysis):
    name = "perturbation"
    title = "Perturbation probes (Insights Table 6): reward shift when a text is edited, normalised units"

    def tables(self, result: dict):
        if not result or not result.get("methods"):
            return []
        n = result["probes"]
        header = ["method", "probe", "texts edited", "mean shift", "mean |shift|", "moved the expected way"]
        expect = {"add_toxic": "a toxic word added (↓)", "remove_toxic": "toxic words removed (↑)",
                  "paraphrase": "a filler word inserted (≈ 0)"}  # fmt: skip
        rows = [
            [method, expect[probe], str(n[probe]), fmt(r["shift"]), fmt(r["abs_shift"]), fmt(r["agree"])]
            for method, probes in result["methods"].items()
            for probe, r in probes.items()
        ]
        return [(f"{self.title}; mean ± std over seeds, {result['outputs']} test outputs", header, rows)]

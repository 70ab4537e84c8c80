"""Failure analyses of FA-IRL §6, computed for every run and written to results.json, report.md and MLflow.

Each analysis is one module with an :class:`~fairl_ray.analyses.base.Analysis`; to add one, write the module and
register an instance below (``ANALYSES``: what the report renders and the CLI lists, in this order).
``EVALUATION_ANALYSES`` run inside the evaluate stage on the trained members' scores; ``SUBTYPE_TRANSFER`` trains,
so the pipeline runs it as its own stage.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fairl_ray.registry import Registry

from .base import Analysis, EvalContext, MemberScores, Table
from .disagreement import Disagreement
from .dispersion import Dispersion
from .failure_path import FailurePath
from .failure_slices import FailureSlices
from .failure_subtypes import FailureSubtypes
from .perturbation import Perturbation
from .scoreboard import Scoreboard
from .subtype_transfer import SubtypeTransfer
from .text_audit import TextAudit

EVALUATION_ANALYSES: tuple[Analysis, ...] = (
    Scoreboard(),
    FailurePath(),
    FailureSlices(),
    Disagreement(),
    FailureSubtypes(),
    Dispersion(),
    TextAudit(),
)
SUBTYPE_TRANSFER = SubtypeTransfer()
#: computed in the evaluate stage with the run's encoder (``recovery.probes``), not from the scores alone
PERTURBATION = Perturbation()
ANALYSES: Registry[Analysis] = Registry("analysis")
for _analysis in (*EVALUATION_ANALYSES, PERTURBATION, SUBTYPE_TRANSFER):
    ANALYSES.register(_analysis.name, _analysis)
del _analysis


def table_files(analysis: Analysis, result: dict) -> list[str]:
    """The CSV names of ``result``'s tables: ``<name>.csv``, ``<name>_2.csv``, ... (one per table)."""
    return [
        f"{analysis.name}.csv" if i == 0 else f"{analysis.name}_{i + 1}.csv"
        for i in range(len(analysis.tables(result)))
    ]


def output_files(results: dict[str, dict]) -> list[str]:
    """Every file :func:`write_outputs` writes for ``results`` (``{name: result}``): the tables' CSVs and each
    figure's name (a figure is drawn only when there is something to show: check it exists)."""
    return [
        f
        for name, analysis in ANALYSES.items()
        if name in results
        for f in table_files(analysis, results[name]) + [f"{name}.png"]
    ]


def write_outputs(analysis: Analysis, result: dict, out_dir: Path, plots: bool = True) -> list[str]:
    """One CSV per table (:func:`table_files`) and the figure (``<name>.png``); returns the file names written
    (for MLflow)."""
    written = []
    for name, (_title, header, rows) in zip(table_files(analysis, result), analysis.tables(result)):
        with open(Path(out_dir) / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(name)
    if plots and analysis.plot(result, Path(out_dir) / f"{analysis.name}.png"):
        written.append(f"{analysis.name}.png")
    return written


def render(results: dict[str, dict]) -> list[Table]:
    """Every table of the analyses in ``results`` (``{name: result}``), in listing order."""
    tables = []
    for name, analysis in ANALYSES.items():
        if name in results:
            tables.extend(analysis.tables(results[name]))
    return tables


__all__ = [
    "ANALYSES",
    "Analysis",
    "EVALUATION_ANALYSES",
    "EvalContext",
    "MemberScores",
    "PERTURBATION",
    "SUBTYPE_TRANSFER",
    "Table",
    "render",
    "output_files",
    "table_files",
    "write_outputs",
]

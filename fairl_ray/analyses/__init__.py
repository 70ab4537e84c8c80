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
from .scoreboard import Scoreboard
from .subtype_transfer import SubtypeTransfer

EVALUATION_ANALYSES: tuple[Analysis, ...] = (
    Scoreboard(),
    FailurePath(),
    FailureSlices(),
    Disagreement(),
    FailureSubtypes(),
    Dispersion(),
)
SUBTYPE_TRANSFER = SubtypeTransfer()
ANALYSES: Registry[Analysis] = Registry("analysis")
for _analysis in (*EVALUATION_ANALYSES, SUBTYPE_TRANSFER):
    ANALYSES.register(_analysis.name, _analysis)
del _analysis


def write_outputs(analysis: Analysis, result: dict, out_dir: Path, plots: bool = True) -> list[str]:
    """One CSV per table (``<name>.csv``, ``<name>_2.csv``, ...) and the figure (``<name>.png``); returns the file
    names written (for MLflow)."""
    written = []
    for i, (_title, header, rows) in enumerate(analysis.tables(result)):
        name = f"{analysis.name}.csv" if i == 0 else f"{analysis.name}_{i + 1}.csv"
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
    "SUBTYPE_TRANSFER",
    "Table",
    "render",
    "write_outputs",
]

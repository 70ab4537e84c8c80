"""What every failure analysis sees (:class:`EvalContext`) and the small interface each one implements.

An analysis is one module with one :class:`Analysis` subclass, registered once in ``fairl_ray/analyses/__init__.py``.
``compute`` returns plain JSON (it lands in ``results.json`` and MLflow); ``tables`` turns that JSON into
titled tables (report.md, the CLI, one CSV each); ``plot`` may draw a figure. ``tables`` and ``plot`` only read
the JSON, so a finished run can be re-reported without recomputing anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from fairl_ray.irl.methods import METHOD_TABLE, comparisons
from fairl_ray.metrics.classification import NO_CLASS


@dataclass
class MemberScores:
    """One trained member's rewards on the evaluated outputs (o⁺ rows, then o⁻ rows)."""

    method: str
    seed: int
    test: np.ndarray
    """normalised full reward of the test outputs ``[2·n_test]``"""
    threshold: float
    """classification threshold (fit on train, normalised units)"""
    base_train: np.ndarray | None = None
    """FA-IRL only: raw base-path reward R_D of the train outputs"""
    base_test: np.ndarray | None = None
    """FA-IRL only: raw R_D of the test outputs"""
    fail_test: np.ndarray | None = None
    """FA-IRL only: raw failure-path reward R_F of the test outputs"""

    def correct(self, classes: np.ndarray) -> np.ndarray:
        """Which test outputs this reward classifies right (``score >= threshold`` ⇔ class 1). Meaningless on
        unlabelled outputs (class ``NO_CLASS``): select with :attr:`EvalContext.labelled` first."""
        return (self.test >= self.threshold) == (classes == 1)

    def delta(self) -> np.ndarray:
        """Δ̂ of every test pair."""
        n = len(self.test) // 2
        return self.test[:n] - self.test[n:]


@dataclass
class EvalContext:
    """The evaluated test split and every member's scores on it."""

    test_classes: np.ndarray
    """per test output ``[2n]``, from its own label: 1 = good / non-toxic, 0 = toxic, ``NO_CLASS`` (−1) =
    unlabelled (left out of every classification count; ``recovery.data.output_classes``)"""
    train_classes: np.ndarray
    test_subtypes: list[str]
    """per test output: its toxic subtype, ``non-toxic``, ``toxic (subtype unknown)`` or ``unlabelled``"""
    members: list[MemberScores]
    metrics_fn: object = None
    """``fn(member_like) -> dict`` computing the evaluation metrics of a score vector (the same code as the main
    table; used by the ablation)."""
    test_gt: np.ndarray | None = None
    """R* of the test outputs ``[2n]`` when the world knows it (fidelity on the failure slices)"""
    test_texts: list[str] | None = None
    """the test outputs' texts ``[2n]`` (what an auditor reads: ``text_audit``)"""
    _index: dict = field(default_factory=dict, repr=False)

    @property
    def n_pairs(self) -> int:
        return len(self.test_classes) // 2

    def by_method(self) -> dict[str, dict[int, MemberScores]]:
        if not self._index:
            for m in self.members:
                self._index.setdefault(m.method, {})[m.seed] = m
        return self._index

    @property
    def labelled(self) -> np.ndarray:
        """Which test outputs have a class (a label of their own); the only ones a classification count sees."""
        return self.test_classes != NO_CLASS

    def comparisons(self) -> list[tuple[str, str, str]]:
        """Every fair ``(treatment, control, kind)`` among the methods that ran (``irl.methods.comparisons``: kind
        ``baseline``, ``placebo`` or ``routing``), in run order. Scored rewards that are no IRL method (the implicit
        reward of ``stages.implicit_reward``) have no twin to be compared with fairly, and are left out."""
        return comparisons([m for m in self.by_method() if m in METHOD_TABLE])

    def matched_seeds(self, a: str, b: str) -> list[int]:
        methods = self.by_method()
        return [s for s in methods[a] if s in methods[b]]


Table = tuple[str, list[str], list[list]]
"""(title, header, rows)."""


class Analysis(ABC):
    """One failure analysis (FA-IRL §6). Subclasses set ``name`` and ``title`` and implement ``tables``, and
    ``compute`` when they run on the evaluate stage's scores (``EVALUATION_ANALYSES``; one that trains, the subtype
    transfer, has its own entry point instead)."""

    name: str = ""
    title: str = ""

    def compute(self, ctx: EvalContext) -> dict:
        """The analysis of the evaluated members, as plain JSON (``results.json``, MLflow)."""
        raise NotImplementedError(f"analysis {self.name!r} does not run on the evaluate stage's scores")

    @abstractmethod
    def tables(self, result: dict) -> list[Table]:
        """The result as titled tables (report.md, the CLI, one CSV each)."""

    def plot(self, result: dict, path) -> bool:
        """Draw a figure at ``path`` (PNG); return False if this analysis has none (or nothing to show)."""
        return False


def mean_std(values) -> dict:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(a) == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "n": int(len(a))}


def fmt(stats: dict | float | None, digits: int = 3) -> str:
    if stats is None:
        return "n/a"
    if isinstance(stats, dict):
        if stats.get("n", 1) == 0 or not np.isfinite(stats.get("mean", float("nan"))):
            return "n/a"
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return "n/a" if not np.isfinite(stats) else f"{stats:.{digits}f}"


def fmt_ci(mean: float | None, ci, digits: int = 3, signed: bool = False) -> str:
    """``mean [low, high]`` (either part may be None: ``[low, high]`` alone); ``n/a`` for a missing value."""
    sign = "+" if signed else ""
    finite = lambda x: x is not None and np.isfinite(x)  # noqa: E731
    parts = []
    if mean is not None:
        parts.append(f"{mean:{sign}.{digits}f}" if finite(mean) else "n/a")
    if ci is not None:
        lo, hi = ci
        parts.append(f"[{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]" if finite(lo) and finite(hi) else "[n/a]")
    return " ".join(parts)


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot

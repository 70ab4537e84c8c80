"""Corollary 1 measured (FA-IRL §4.4: failure constraints shrink the feasible reward set, so "any dispersion measure
over admissible rewards — such as variance across seeds — cannot increase under FA-IRL").

Dispersion of a method = the mean pairwise STARC l1/l1 distance (eq. 4) between its seeds' normalised rewards on
the test outputs, (2 / K(K−1)) Σ_{i<j} ‖s_i − s_j‖₁ with s the canonical form of eq. 4: 0 = every seed recovered the
same reward up to scale and shift. It needs no R*.

Interval: a percentile bootstrap over SEEDS — the seeds are what the dispersion is about. Each resample draws K of
the K seeds with replacement and averages the distances of the pairs of distinct seeds it holds; a comparison
draws the same seeds for both methods (matched seeds), so the difference is paired. The verdict on "does the
treatment reduce dispersion?" is given only where that interval excludes 0 AND at least 5 seeds are matched
(``metrics.paired.verdict``). (A first version resampled the test outputs with the seeds fixed: on 20 seeds of one
method split at random into two groups of 5, its interval excluded 0 in 34 of 60 splits — not a test.)
"""

from __future__ import annotations

import numpy as np

from fairl_ray.metrics.paired import verdict
from fairl_ray.metrics.starc import canonicalise

from .base import Analysis, EvalContext, fmt, fmt_ci

#: Bootstrap resamples of the seeds (each is a mean over a K × K distance table: cheap).
N_RESAMPLES = 10_000


def distance_table(rewards) -> np.ndarray:
    """STARC l1/l1 distance between every two rows of ``rewards`` ``[K, N]`` (canonical forms of eq. 4): ``[K, K]``."""
    s = canonicalise(np.asarray(rewards, dtype=np.float64))
    return np.abs(s[:, None, :] - s[None, :, :]).sum(axis=-1)


def dispersion(rewards) -> float:
    """Mean pairwise STARC distance between the rows of ``rewards`` ``[K, N]`` (K ≥ 2 seeds); nan for K < 2."""
    k = np.asarray(rewards).shape[0]
    if k < 2:
        return float("nan")
    i, j = np.triu_indices(k, 1)
    return float(distance_table(rewards)[i, j].mean())


def bootstrap_dispersions(table: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """The dispersion on ``n_resamples`` resamples of the K seeds of a distance table ``[K, K]``: each draws K seeds
    with replacement and averages the distances of its pairs of DISTINCT seeds (a resample of one seed repeated has
    none: NaN). The same ``seed`` draws the same seeds, which is what pairs two methods' resamples."""
    k = table.shape[0]
    idx = np.random.default_rng(seed).integers(0, k, size=(n_resamples, k))
    a, b = np.triu_indices(k, 1)
    ia, ib = idx[:, a], idx[:, b]
    distinct = ia != ib
    total = np.where(distinct, table[ia, ib], 0.0).sum(axis=1)
    count = distinct.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def percentile_interval(values: np.ndarray) -> list[float]:
    return [float(x) for x in np.nanquantile(values, [0.025, 0.975])]


class Dispersion(Analysis):
    name = "dispersion"
    title = "Reward dispersion across seeds (Corollary 1): mean pairwise STARC between seeds ↓"

    def compute(self, ctx: EvalContext) -> dict:
        methods = ctx.by_method()
        stack = lambda method, seeds: np.stack([methods[method][s].test for s in seeds])  # noqa: E731
        out = {"resampled": "seeds", "n_resamples": N_RESAMPLES, "methods": {}, "comparisons": {}}
        for method, members in methods.items():
            seeds = list(members)
            if len(seeds) < 2:
                continue
            r = stack(method, seeds)
            out["methods"][method] = {
                "seeds": seeds,
                "seed_pairs": len(seeds) * (len(seeds) - 1) // 2,
                "dispersion": dispersion(r),
                "ci95_bootstrap": percentile_interval(bootstrap_dispersions(distance_table(r))),
            }
        for treatment, control, kind in ctx.comparisons():
            seeds = ctx.matched_seeds(treatment, control)
            if len(seeds) < 2:
                continue
            t, c = stack(treatment, seeds), stack(control, seeds)
            # the same bootstrap seed draws the same (matched) seeds for both methods: a paired difference
            ci = percentile_interval(
                bootstrap_dispersions(distance_table(t)) - bootstrap_dispersions(distance_table(c))
            )
            out["comparisons"][f"{treatment} vs {control}"] = {
                "treatment": treatment,
                "control": control,
                "kind": kind,
                "seeds": seeds,
                "treatment_dispersion": dispersion(t),
                "control_dispersion": dispersion(c),
                "diff": dispersion(t) - dispersion(c),
                "ci95_bootstrap": ci,
                "verdict": verdict(ci, len(seeds), False, "treatment less dispersed", "control less dispersed"),
            }
        return out

    def tables(self, result: dict):
        tables = []
        if result.get("methods"):
            header = ["method", "seeds", "seed pairs", "dispersion [95% CI, bootstrap over seeds]"]
            rows = [
                [m, str(len(r["seeds"])), str(r["seed_pairs"]), fmt_ci(r["dispersion"], r["ci95_bootstrap"])]
                for m, r in result["methods"].items()
            ]
            tables.append((self.title, header, rows))
        if result.get("comparisons"):
            header = ["treatment vs control", "kind", "seeds", "treatment", "control", "Δ [95% CI]", "verdict"]
            rows = [
                [
                    name,
                    r["kind"],
                    str(len(r["seeds"])),
                    fmt(r["treatment_dispersion"]),
                    fmt(r["control_dispersion"]),
                    fmt_ci(r["diff"], r["ci95_bootstrap"], signed=True),
                    r["verdict"],
                ]
                for name, r in result["comparisons"].items()
            ]
            tables.append(
                (
                    "Does the treatment reduce dispersion? (matched seeds; paired bootstrap over seeds)",
                    header,
                    rows,
                )
            )
        return tables

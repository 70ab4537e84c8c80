"""Corollary 1 measured (FA-IRL §4.4: failure constraints shrink the feasible reward set, so "any dispersion measure
over admissible rewards — such as variance across seeds — cannot increase under FA-IRL").

Dispersion of a method = the mean pairwise STARC l1/l1 distance (eq. 4) between its seeds' normalised rewards on
the test outputs, (2 / K(K−1)) Σ_{i<j} ‖s_i − s_j‖₁ with s the canonical form of eq. 4: 0 = every seed recovered the
same reward up to scale and shift. It needs no R*.

Interval: a percentile bootstrap over TEST OUTPUTS (the same resampled outputs for every seed of a method, and for
both methods of a comparison, so the difference is paired). The seeds are held fixed: the interval says how much
the dispersion depends on which outputs were evaluated, not how it would change with other seeds. Hence the
verdict on "does the treatment reduce dispersion?" is given only where that interval excludes 0 AND at least 5
seeds are matched (``metrics.paired.verdict``).
"""

from __future__ import annotations

import numpy as np

from fairl_ray.metrics.paired import verdict
from fairl_ray.metrics.starc import canonicalise

from .base import Analysis, EvalContext, fmt, fmt_ci

#: Bootstrap resamples of the test outputs (each one re-canonicalises K rewards: dearer than a mean).
N_RESAMPLES = 2_000
_CHUNK = 250  # resamples per vectorised block (K × chunk × N floats in memory)


def dispersion(rewards) -> float:
    """Mean pairwise STARC distance between the rows of ``rewards`` ``[K, N]`` (K ≥ 2 seeds); nan for K < 2."""
    return float(_dispersions(np.asarray(rewards, dtype=np.float64)[:, None, :])[0])


def _dispersions(rewards: np.ndarray) -> np.ndarray:
    """``rewards [K, B, N]`` → the dispersion of each of the B reward sets ``[B]``."""
    k = rewards.shape[0]
    if k < 2:
        return np.full(rewards.shape[1], np.nan)
    s = canonicalise(rewards)
    i, j = np.triu_indices(k, 1)
    return np.abs(s[i] - s[j]).sum(axis=-1).mean(axis=0)


def bootstrap_dispersions(rewards: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """The dispersion of ``rewards [K, N]`` on ``n_resamples`` resamples of the N test outputs (with replacement).
    The same ``seed`` draws the same outputs, which is what pairs two methods' resamples."""
    rng = np.random.default_rng(seed)
    n = rewards.shape[1]
    out = []
    for start in range(0, n_resamples, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))
        out.append(_dispersions(rewards[:, idx]))
    return np.concatenate(out)


def _interval(values: np.ndarray) -> list[float]:
    return [float(x) for x in np.quantile(values, [0.025, 0.975])]


class Dispersion(Analysis):
    name = "dispersion"
    title = "Reward dispersion across seeds (Corollary 1): mean pairwise STARC between seeds ↓"

    def compute(self, ctx: EvalContext) -> dict:
        methods = ctx.by_method()
        stack = lambda method, seeds: np.stack([methods[method][s].test for s in seeds])  # noqa: E731
        out = {"resampled": "test outputs", "n_resamples": N_RESAMPLES, "methods": {}, "comparisons": {}}
        for method, members in methods.items():
            seeds = list(members)
            if len(seeds) < 2:
                continue
            r = stack(method, seeds)
            out["methods"][method] = {
                "seeds": seeds,
                "seed_pairs": len(seeds) * (len(seeds) - 1) // 2,
                "dispersion": dispersion(r),
                "ci95_bootstrap": _interval(bootstrap_dispersions(r)),
            }
        for treatment, control, kind in ctx.comparisons():
            seeds = ctx.matched_seeds(treatment, control)
            if len(seeds) < 2:
                continue
            t, c = stack(treatment, seeds), stack(control, seeds)
            ci = _interval(bootstrap_dispersions(t) - bootstrap_dispersions(c))  # same seed → same resampled outputs
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
            header = ["method", "seeds", "seed pairs", "dispersion [95% CI over test outputs]"]
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
                    "Does the treatment reduce dispersion? (matched seeds; paired bootstrap over test outputs)",
                    header,
                    rows,
                )
            )
        return tables

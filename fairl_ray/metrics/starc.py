"""Reward-fidelity distances to the ground truth R*: STARC l1/l1 (FA-IRL eq. 4) and the affine MSE (eq. 10).

Both compare a recovered reward r̂ and the ground truth r_gt evaluated on the same N outputs.

* :func:`starc_distance` -- FA-IRL §5, eq. 4 (Skalse et al., 2024):
  s = (r − mean r) / ‖r − mean r‖₁ and STARC = ‖ŝ − s_gt‖₁. Invariant to positive affine maps of either
  reward, in [0, 2]: 0 = equal up to scale and shift, 2 = reversed (r̂ = −r_gt).
* :func:`affine_mse` -- FA-IRL Appendix C, eq. 10 (which the appendix also calls "STARC"; we keep the
  name STARC for eq. 4, the one the main text and Table 1 use):
  min_{a>0, b} (1/N) Σ_i (r̂(o_i) − (a·r_gt(o_i) + b))².
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["affine_mse", "canonicalise", "starc_distance"]

# ‖r − mean r‖₁ at or below this fraction of ‖r‖₁ (floor 1) counts as a constant reward (float round-off).
_CONST_RTOL = 1e-12


def _pair(r_hat, r_gt) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(r_hat, dtype=np.float64).reshape(-1)
    b = np.asarray(r_gt, dtype=np.float64).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"length mismatch: r_hat={len(a)}, r_gt={len(b)}")
    if len(a) == 0:
        raise ValueError("rewards are empty")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("rewards must be finite (got NaN or inf)")
    return a, b


def canonicalise(r) -> np.ndarray:
    """s = (r − mean r) / ‖r − mean r‖₁ (FA-IRL eq. 4), along the last axis (one reward per row of a 2-D array).

    A constant reward (‖r − mean r‖₁ = 0 up to round-off) canonicalises to the zero vector, following STARC's
    convention (Skalse et al.: s(R) = c(R) / n(c(R)) if n(c(R)) ≠ 0, else c(R)).
    """
    r = np.asarray(r, dtype=np.float64)
    r = r.reshape(-1) if r.ndim < 2 else r
    c = r - r.mean(axis=-1, keepdims=True)
    n = np.abs(c).sum(axis=-1, keepdims=True)
    constant = n <= _CONST_RTOL * np.maximum(1.0, np.abs(r).sum(axis=-1, keepdims=True))
    return np.where(constant, 0.0, c / np.where(constant, 1.0, n))


def starc_distance(r_hat, r_gt) -> float:
    """STARC l1/l1 distance ‖ŝ − s_gt‖₁ (FA-IRL eq. 4). Lower is better.

    Properties: 0 iff r̂ = a·r_gt + b with a > 0 (e.g. r̂ = 3·r_gt + 2); 2 for r̂ = −r_gt (both canonical
    vectors have ‖s‖₁ = 1, so the triangle inequality bounds it by 2); symmetric in its arguments.

    Constant rewards (documented choice, STARC's convention): a constant reward canonicalises to 0, so a
    constant r̂ against a non-constant r_gt scores 1 (and vice versa), and two constant rewards score 0.
    A single output (N = 1) is constant by definition.

    Args:
        r_hat: recovered reward on N outputs.
        r_gt: ground-truth reward R* on the same N outputs.
    """
    a, b = _pair(r_hat, r_gt)
    return float(np.abs(canonicalise(a) - canonicalise(b)).sum())


def _affine_fit_mse(target: np.ndarray, x: np.ndarray) -> float:
    """min_{a>0, b} mean((target − a·x − b)²), closed form.

    Least squares gives a* = cov(x, target)/var(x), b* = mean(target) − a*·mean(x) and the residual
    var(target) − cov²/var(x) (population moments). When a* ≤ 0 (or x is constant) the constraint a > 0 is
    active: the infimum is approached as a → 0⁺ with b = mean(target) and equals var(target) (not attained;
    "min" is read as inf).
    """
    xc = x - x.mean()
    tc = target - target.mean()
    var_t = float(np.mean(tc * tc))
    var_x = float(np.mean(xc * xc))
    cov = float(np.mean(xc * tc))
    if var_x <= 0.0 or cov <= 0.0:
        return var_t
    return max(0.0, var_t - cov * cov / var_x)


def affine_mse(r_hat, r_gt, *, affine_on: Literal["gt", "hat"] = "gt", normalise: bool = False) -> float:
    """Affine-aligned mean squared error (FA-IRL Appendix C, eq. 10). Lower is better.

    ``affine_on="gt"`` (default, exactly eq. 10): min_{a>0, b} (1/N) Σ (r̂ − (a·r_gt + b))², "a > 0 rescales
    the ground truth reward, b shifts it". The value is in units of r̂², so it is *not* invariant to rescaling
    r̂: shrinking r̂ shrinks it. Compare methods with ``normalise=True`` or ``affine_on="hat"``.

    ``affine_on="hat"``: min_{a>0, b} (1/N) Σ (r_gt − (a·r̂ + b))², the map applied to the recovered reward;
    in units of R*², comparable across methods scored against the same R*.

    ``normalise=True`` divides by the population variance of the target (r̂ for "gt", r_gt for "hat"), giving
    1 − ρ² when the fitted slope is positive and 1 otherwise (ρ = Pearson correlation); a constant target
    gives 0.

    Closed form: ordinary least squares with the slope clipped at 0 (see ``_affine_fit_mse``); when the
    unconstrained slope is ≤ 0 the infimum over a > 0 is var(target), approached as a → 0⁺.
    """
    a, b = _pair(r_hat, r_gt)
    if affine_on == "gt":
        target, x = a, b
    elif affine_on == "hat":
        target, x = b, a
    else:
        raise ValueError(f"affine_on must be 'gt' or 'hat', got {affine_on!r}")
    mse = _affine_fit_mse(target, x)
    if normalise:
        var_t = float(np.var(target))
        return 0.0 if var_t <= 0.0 else float(mse / var_t)
    return float(mse)

"""Pair losses of the IRL engine: pure functions of reward margins Δ = R(o⁺) − R(o⁻).

Every loss takes ``delta`` with any leading batch dims (e.g. ``[K, B]`` for K ensemble members) and reduces over
the LAST dim (the pairs). Hyperparameters are floats or tensors of shape ``delta.shape[:-1]`` (one value per
member). ``reduction="none"`` returns the elementwise loss; ``mask`` (bool, same shape as ``delta``) turns the
mean into a masked mean over the flagged pairs only, defined as 0 where no pair is flagged (the failure-subset
form L_fail(S_t) of FA-IRL eq. 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fairl_ray.registry import Registry


def _hp(value, delta: Tensor):
    """Broadcast a per-member hyperparameter (shape ``delta.shape[:-1]``) against ``delta``."""
    if isinstance(value, Tensor) and value.ndim >= 1 and value.ndim == delta.ndim - 1:
        return value.unsqueeze(-1)
    return value


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the last dim, restricted to ``mask``; 0 (not NaN) where the mask is empty."""
    if mask is None:
        return values.mean(-1)
    m = mask.to(values.dtype)
    return (values * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def _reduce(values: Tensor, reduction: str, mask: Tensor | None) -> Tensor:
    if reduction == "none":
        return values
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return masked_mean(values, mask)


def max_margin_loss(delta: Tensor, margin=0.8, *, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """FA-IRL eq. 1: ``mean max(0, M − Δ)``."""
    return _reduce(torch.clamp_min(_hp(margin, delta) - delta, 0.0), reduction, mask)


def max_entropy_loss(delta: Tensor, temperature=1.0, *, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """FA-IRL eq. 2: ``mean −log σ(Δ/τ)`` = ``mean softplus(−Δ/τ)`` (computed stably)."""
    return _reduce(F.softplus(-delta / _hp(temperature, delta)), reduction, mask)


def asymmetric_released_loss(delta: Tensor, *, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Insights eq. 1 as released: ``−Δ`` if Δ > 0, ``−2Δ`` if Δ < 0 (0 at Δ = 0). Unbounded below: minimising it
    grows the reward scale without limit, so it never converges on separable data (the released behaviour)."""
    return _reduce(torch.where(delta > 0, -delta, -2.0 * delta), reduction, mask)


def asymmetric_margin_loss(
    delta: Tensor, min_margin=5.0, penalty_factor=5.0, *, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Insights §4 "penalty factor c, minimum reward margin m" form of the asymmetric loss:

    ``L(Δ) = max(0, m − Δ) + (c − 1)·max(0, −Δ)``, i.e. 0 for Δ ≥ m, ``m − Δ`` for 0 ≤ Δ < m and ``m − cΔ``
    for Δ < 0. Continuous, convex, bounded below by 0; mis-ordered pairs (Δ < 0) get slope c instead of 1.
    With c = 2 and m → ∞ it is the released loss plus the constant m (same gradients), so this is a bounded
    generalisation of ``asymmetric_released_loss``.
    """
    m = _hp(min_margin, delta)
    c = _hp(penalty_factor, delta)
    values = torch.clamp_min(m - delta, 0.0) + (c - 1.0) * torch.clamp_min(-delta, 0.0)
    return _reduce(values, reduction, mask)


def failure_max_margin_loss(
    delta: Tensor, margin=0.8, margin_fail=1.6, weight_fail=2.0, *, mask: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """L_fail of the MM variants (Alg. 1 line 11): ``w_fail·max(0, M_fail − Δ)`` with M_fail ≥ M, w_fail ≥ 1.

    Pointwise ≥ the base loss ``max(0, M − Δ)`` for every Δ, and > it wherever Δ < M_fail when w_fail > 1 or
    M_fail > M: stricter on mis-ordered failures (Δ < 0) and on near-ties (0 ≤ Δ < M_fail) alike. ``margin`` is
    unused (the signature matches the ME form)."""
    del margin
    values = _hp(weight_fail, delta) * torch.clamp_min(_hp(margin_fail, delta) - delta, 0.0)
    return _reduce(values, reduction, mask)


def failure_max_entropy_loss(
    delta: Tensor,
    temperature=1.0,
    temperature_fail=0.5,
    weight_fail=2.0,
    *,
    mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """L_fail of the ME variants: ``w_fail·max(softplus(−Δ/τ_fail), softplus(−Δ/τ))`` with τ_fail ≤ τ, w_fail ≥ 1.

    §4.2 offers two ways to make eq. 2 stricter on failures: a lower temperature or a larger weight. A lower
    temperature alone is stricter only for Δ < 0: for a correctly ordered failure (a near-tie or a bottom-k pair
    with Δ > 0) softplus(−Δ/τ_fail) < softplus(−Δ/τ), i.e. the "stricter" loss would push LESS. CHOICE: keep the
    sharper temperature where it is stricter (Δ < 0) and the base temperature elsewhere (the max), times the
    larger weight w_fail (default 2), so that L_fail > L_ME for every Δ, both signs included."""
    sharp = F.softplus(-delta / _hp(temperature_fail, delta))
    base = F.softplus(-delta / _hp(temperature, delta))
    return _reduce(_hp(weight_fail, delta) * torch.maximum(sharp, base), reduction, mask)


# ---- registries: the trainer looks losses up here by the method table's family names (``methods.py``) ----------


@dataclass(frozen=True)
class PairLoss:
    """A loss as the objective calls it, with the ``IRLConfig`` fields it reads.

    ``function(delta, *, mask, **{field: hp.<field>})``: each name in ``hyperparameters`` is both an ``IRLConfig``
    field and a keyword of ``function``; ``hp`` holds them as per-member ``[K]`` tensors
    (:class:`~fairl_ray.irl.objective.MemberHyperparameters` builds exactly these). The declaration is the one list:
    the objective, ``Method.hyperparameters`` (what a method reads, hence the search space checks and the MLflow
    params) all read it."""

    function: Callable[..., Tensor]
    hyperparameters: tuple[str, ...]

    def __call__(self, delta: Tensor, hp, mask: Tensor | None = None) -> Tensor:
        return self.function(delta, mask=mask, **{name: getattr(hp, name) for name in self.hyperparameters})


#: L_base of each loss family (``Method.base_loss``): eq. 1, eq. 2 and the Insights asymmetric losses.
BASE_LOSSES: Registry[PairLoss] = Registry("base loss")
BASE_LOSSES.register("mm", PairLoss(max_margin_loss, ("margin",)))
BASE_LOSSES.register("me", PairLoss(max_entropy_loss, ("temperature",)))
BASE_LOSSES.register("asym_released", PairLoss(asymmetric_released_loss, ()))
BASE_LOSSES.register("asym_margin", PairLoss(asymmetric_margin_loss, ("min_margin", "penalty_factor")))

#: L_fail of the loss families FA-IRL has a stricter form of (Alg. 1 line 11), by the same names.
FAILURE_LOSSES: Registry[PairLoss] = Registry("failure loss")
FAILURE_LOSSES.register("mm", PairLoss(failure_max_margin_loss, ("margin_fail", "weight_fail")))
FAILURE_LOSSES.register("me", PairLoss(failure_max_entropy_loss, ("temperature", "temperature_fail", "weight_fail")))


def fa_irl_loss(base: Tensor, fail: Tensor, lam, fail_sq_norm: Tensor) -> Tensor:
    """FA-IRL eq. 3: ``L_base + λ_t·L_fail(S_t) + (λ_t/2)·‖w_F‖²`` (all per member)."""
    return base + lam * fail + 0.5 * lam * fail_sq_norm

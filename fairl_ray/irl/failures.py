"""Failure identification of FA-IRL (§4.3, Algorithm 1 lines 3-10). Pure functions on the current minibatch.

All masks are boolean tensors of the shape of ``delta`` (any leading batch dims; pairs on the last dim).
Failures are identified from the full reward R = R_D + R_F without gradient (they choose WHICH pairs the
failure loss sees; they are not differentiated).
"""

from __future__ import annotations

import torch
from torch import Tensor


def margin_failure_mask(delta: Tensor, gamma) -> Tensor:
    """F_t^margin = {i : Δ_i ≤ γ_t} (Alg. 1 line 4). ``gamma``: float or per-member tensor ``delta.shape[:-1]``."""
    if isinstance(gamma, Tensor) and gamma.ndim >= 1 and gamma.ndim == delta.ndim - 1:
        gamma = gamma.unsqueeze(-1)
    return delta <= gamma


def supervised_failure_mask(r_chosen: Tensor, r_rejected: Tensor, y_chosen: Tensor | None,
                            y_rejected: Tensor | None) -> Tensor:
    """F_t^sup (Alg. 1 line 6; §4.3 "flag any output o for which y(o)·R(o) ≤ 0").

    Labels y ∈ {+1 (good / non-toxic), −1 (bad / toxic), 0 (unknown)}. A pair is flagged when one of its
    LABELLED outputs is misclassified by the sign of R: ``y·R ≤ 0`` with y ≠ 0. For the usual labelling
    y(o⁺) = +1, y(o⁻) = −1 this is exactly line 6's "R(o⁺) ≤ 0 or R(o⁻) ≥ 0"; we follow the prose rule
    (y(o)R(o) ≤ 0 for every output) because line 6 as printed (y(o⁻)R(o⁻) ≥ 0) would flag a correctly scored
    toxic rejected output. Unknown labels (0) never flag; ``None`` labels mean no supervised failures.
    """
    mask = torch.zeros(r_chosen.shape, dtype=torch.bool, device=r_chosen.device)
    if y_chosen is not None:
        mask |= (y_chosen != 0) & (y_chosen * r_chosen <= 0)
    if y_rejected is not None:
        mask |= (y_rejected != 0) & (y_rejected * r_rejected <= 0)
    return mask


def bottom_k_failure_mask(delta: Tensor, fraction) -> Tensor:
    """Self-supervised "IRL margin failures": the k = ⌊fraction·n⌋ pairs of lowest Δ among the n pairs on the last
    dim (ties broken by position, stable). ``fraction``: float or per-member tensor ``delta.shape[:-1]``."""
    n = delta.shape[-1]
    if isinstance(fraction, Tensor):
        k = torch.floor(fraction.to(torch.float64) * n + 1e-9).to(torch.long)
        if k.ndim >= 1 and k.ndim == delta.ndim - 1:
            k = k.unsqueeze(-1)
        k = k.to(delta.device)
    else:
        k = int(fraction * n + 1e-9)
    ranks = torch.argsort(torch.argsort(delta, dim=-1, stable=True), dim=-1, stable=True)
    return ranks < k


def sample_failures(mask: Tensor, rate, generator: torch.Generator | None = None, *,
                    uniform: Tensor | None = None) -> Tensor:
    """S_t ⊆ F_t: keep each flagged pair independently with probability ``rate`` (Alg. 1 line 10).

    rate 1 returns ``mask`` unchanged and draws nothing; rate 0 returns an empty mask. Otherwise uniforms are
    drawn from ``generator`` (on CPU, so runs are reproducible across devices), or taken from ``uniform`` (same
    shape as mask) when the caller pre-draws them (the trainer draws one per pair per epoch).
    """
    if isinstance(rate, (int, float)):
        if rate >= 1.0:
            return mask
        if rate <= 0.0:
            return torch.zeros_like(mask)
    if uniform is None:
        uniform = torch.rand(mask.shape, generator=generator).to(mask.device)
    if isinstance(rate, Tensor) and rate.ndim >= 1 and rate.ndim == mask.ndim - 1:
        rate = rate.unsqueeze(-1)
    return mask & (uniform < rate)

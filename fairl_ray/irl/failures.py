"""Failure identification of FA-IRL (§4.3, Algorithm 1 lines 3-10). Pure functions on the current minibatch.

All masks are boolean tensors of the shape of ``delta`` (any leading batch dims; pairs on the last dim).
Failures are identified from the full reward R = R_D + R_F without gradient (they choose WHICH pairs the
failure loss sees; they are not differentiated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fairl_ray.registry import Registry


def margin_failure_mask(delta: Tensor, gamma) -> Tensor:
    """F_t^margin = {i : Δ_i ≤ γ_t} (Alg. 1 line 4). ``gamma``: float or per-member tensor ``delta.shape[:-1]``."""
    if isinstance(gamma, Tensor) and gamma.ndim >= 1 and gamma.ndim == delta.ndim - 1:
        gamma = gamma.unsqueeze(-1)
    return delta <= gamma


def supervised_failure_mask(
    r_chosen: Tensor, r_rejected: Tensor, y_chosen: Tensor | None, y_rejected: Tensor | None, zero=0.0
) -> Tensor:
    """F_t^sup (Alg. 1 line 6: "R(o⁺) ≤ 0 or R(o⁻) ≥ 0"; §4.3 "y(o)·R(o) ≤ 0"), against a defined zero of R.

    Labels y ∈ {+1 (good / non-toxic), −1 (bad / toxic), 0 (unknown)}. A pair is flagged when its chosen output
    is labelled good but scored at or below ``zero``, or its rejected output is labelled bad but scored at or
    above it: ``y·(R − zero) ≤ 0`` for each output whose label AGREES with its side of the pair. ``zero``: float
    or per-member tensor ``r_chosen.shape[:-1]``; NaN (no zero known yet) flags nothing.

    CHOICES. (1) The zero: pairwise losses see only differences, so the level of R is arbitrary (its output bias
    never trains); testing the sign of R itself flags about half of all outputs whatever the model learned. The
    trainer passes :func:`label_midpoint` (midpoint between the running mean rewards of good and bad outputs).
    (2) Line 6 is written for pairs whose labels agree with the preference (y(o⁺) = +1, y(o⁻) = −1). A labelled
    output on the "wrong" side — a toxic chosen output, a non-toxic rejected one: a noisy preference — is not a
    failure that L_fail can correct: L_fail can only raise Δ, which moves that output further from its label.
    Flagging such pairs made the failure path chase contradictions (measured: 18% of pairs flagged forever, the
    max-entropy failure path at 2-5% of the reward on the Table-1 world). Unknown labels (0) never flag; ``None``
    labels mean no supervised failures.
    """
    if isinstance(zero, Tensor) and zero.ndim >= 1 and zero.ndim == r_chosen.ndim - 1:
        zero = zero.unsqueeze(-1)
    mask = torch.zeros(r_chosen.shape, dtype=torch.bool, device=r_chosen.device)
    if y_chosen is not None:
        mask |= (y_chosen > 0) & (r_chosen - zero <= 0)
    if y_rejected is not None:
        mask |= (y_rejected < 0) & (r_rejected - zero >= 0)
    return mask


def label_midpoint(
    rewards: Tensor, labels: Tensor, mean_good: Tensor, mean_bad: Tensor, momentum: float = 0.9
) -> tuple[Tensor, Tensor, Tensor]:
    """The zero of R for supervised failures: midpoint of the mean reward of good and of bad outputs.

    ``rewards`` / ``labels``: ``[K, n]`` (the minibatch's outputs, labels in {−1, 0, +1}); ``mean_good`` /
    ``mean_bad``: ``[K]`` running means (NaN = not seen yet). Each class mean is an exponential moving average
    (``momentum``) of its per-minibatch means, started at the first minibatch that has the class; a minibatch
    without the class leaves it unchanged. Returns ``(mean_good, mean_bad, zero)``; ``zero`` is NaN while either
    class is unseen (then no supervised failure is flagged). The midpoint is the Bayes threshold of two classes
    with equal spread, and needs no gradient: it only chooses which outputs count as misclassified.
    """

    def update(prev: Tensor, sel: Tensor) -> Tensor:
        count = sel.sum(-1)
        batch = (rewards * sel).sum(-1) / count.clamp_min(1)
        smoothed = torch.where(torch.isnan(prev), batch, momentum * prev + (1.0 - momentum) * batch)
        return torch.where(count > 0, smoothed, prev)

    mean_good = update(mean_good, labels > 0)
    mean_bad = update(mean_bad, labels < 0)
    return mean_good, mean_bad, 0.5 * (mean_good + mean_bad)


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


def sample_failures(
    mask: Tensor, rate, generator: torch.Generator | None = None, *, uniform: Tensor | None = None
) -> Tensor:
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


def gt_failures(
    r_chosen: Tensor, r_rejected: Tensor, *, gamma, y_chosen=None, y_rejected=None, zero=0.0, **_
) -> Tensor:
    """Failure source ``gt`` (FA-IRL Table 1 "ground-truth failures"): F_t = {Δ ≤ γ_t} ∪ F_t^sup (Alg. 1 lines 4-10);
    without labels only the margin failures."""
    mask = margin_failure_mask(r_chosen - r_rejected, gamma)
    if y_chosen is not None or y_rejected is not None:
        mask = mask | supervised_failure_mask(r_chosen, r_rejected, y_chosen, y_rejected, zero)
    return mask


def bottom_k_failures(r_chosen: Tensor, r_rejected: Tensor, *, fraction, **_) -> Tensor:
    """Failure source ``margin`` (FA-IRL Table 1 "IRL margin failures", self-supervised): the bottom-k_t pairs of
    the minibatch by Δ, k_t = ⌊f_t·B⌋ with f_t going 20% → 0% over the curriculum (§5)."""
    return bottom_k_failure_mask(r_chosen - r_rejected, fraction)


@dataclass(frozen=True)
class FailureSource:
    """How an FA-IRL method finds its failures F_t: ``function(r_chosen, r_rejected, **state) -> [K, n] bool``
    (``state``: the schedule values ``gamma``, ``fraction`` and the labels and zero of the supervised criterion; a
    source takes what it needs and ignores the rest), and the ``IRLConfig`` fields its schedule reads
    (``Method.hyperparameters`` lists them for every method with this source)."""

    function: Callable[..., Tensor]
    hyperparameters: tuple[str, ...]

    def __call__(self, r_chosen: Tensor, r_rejected: Tensor, **state) -> Tensor:
        return self.function(r_chosen, r_rejected, **state)


#: Failure sources by the method table's names (``Method.failure_source``); the trainer then samples S_t ⊆ F_t with
#: :func:`sample_failures`.
FAILURE_SOURCES: Registry[FailureSource] = Registry("failure source")
FAILURE_SOURCES.register("gt", FailureSource(gt_failures, ("gamma_start", "gamma_end")))
FAILURE_SOURCES.register(
    "margin",
    FailureSource(bottom_k_failures, ("failure_fraction_start", "failure_fraction_end", "failure_ranking")),
)

"""The per-minibatch objective of K ensemble members: base losses, FA-IRL's eq. 3, and its failure-path penalty.

This is the code the trainer runs (batched and single-model alike) and the tests check; it only combines the pure
functions of ``losses.py`` (losses), ``failures.py`` (failure sets, S_t sampling) and ``methods.py`` (which method
uses which), per member.

FA-IRL choices (the paper leaves them open; measured on the default world's pairs, natural mix, 3 seeds):

* Gradient routing (§4.1: "a base path, trained on all pairs, and a failure path, trained only on the identified
  failure set"): both losses are evaluated on Δ of the full reward R = R_D + R_F, but ``L_base`` is differentiated
  w.r.t. the base path only (R_F detached) and ``L_fail(S_t)`` w.r.t. the failure path only (R_D detached). R_F
  is then the dedicated correction head of §4.1. (Letting L_fail reach R_D too made the unregularised base path
  absorb every correction: failure-path share 0.02–0.03.)
* The penalty (λ_t/2)·‖w_F‖² covers the failure path's READOUT weights (``fail.w`` of the linear head = θ_F of
  §4.1, ``fail.w2`` of the MLP), not its hidden layer nor its biases, and is applied DECOUPLED from Adam, as AdamW
  applies weight decay: ``w_F ← w_F·(1 − lr·λ_t)`` right before the Adam step (Loshchilov & Hutter 2019). Why:
  with the penalty inside Adam over every failure-path parameter (the first landing), ‖θ_F‖² ≈ 43 at init times
  λ_0/2 = 5 against a base loss below 1 drove R_F to zero within ~10 epochs, and a two-layer path at zero gets
  no gradient back (``fail.w1`` norm 1e-8 against ``base.w1`` 22). Inside Adam even a small penalty moves each
  weight by about lr per step once failures run out (the bottom-k curriculum ends at 0%), so it erases the path
  after the curriculum; decoupled, it shrinks w_F by (1 − lr·λ_t) per step — strongly while λ_t is large, not at
  all once λ_t has decayed — and what R_F learned survives to the returned epoch.
* λ_t in eq. 3 weighs L_fail and the penalty. Under the routing above L_fail is the only loss reaching θ_F, and
  Adam divides a parameter's gradient by its running RMS, so a factor λ_t on it cancels — except through the lag
  of Adam's second moment (β₂ = 0.999, ~30 epochs here), which turned λ_t's decay into a hidden learning-rate
  decay of the failure path and left the max-entropy failure paths at 1–5% of the reward (0.5% and less with the
  penalty inside Adam). So L_fail(S_t) is differentiated without its λ_t factor, λ_t acts through the decoupled
  penalty (the failure path is held near zero while λ_t is large and relaxed as it decays), and the VALUE of
  eq. 3 that is logged keeps every term as printed (``Terms.total``). Measured with this design: share
  0.27–0.67 (MM) and 0.09–0.30 (ME) at the returned epoch.
* L_fail is a MEAN over S_t (0 when S_t is empty), not a sum over the minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .failures import FAILURE_SOURCES, label_midpoint, sample_failures
from .hyperparameters import IRLConfig
from .losses import BASE_LOSSES, FAILURE_LOSSES, fa_irl_loss

_FLOAT_FIELDS = (
    "margin",
    "temperature",
    "min_margin",
    "penalty_factor",
    "margin_fail",
    "temperature_fail",
    "weight_fail",
    "sample_rate",
    "lr",
)


class MemberHyperparameters:
    """The members' hyperparameters as ``[K]`` tensors (attributes named like the ``IRLConfig`` fields), and which
    members use which base loss and failure source (``[K]`` bool selectors)."""

    def __init__(self, cfgs: list[IRLConfig], device):
        for name in _FLOAT_FIELDS:
            setattr(
                self, name, torch.tensor([float(getattr(c, name)) for c in cfgs], dtype=torch.float32, device=device)
            )
        self.any_sampling = any(c.sample_rate < 1.0 for c in cfgs)
        self.losses = self._selectors([c.base_loss for c in cfgs], device)
        self.sources = self._selectors([c.failure_source for c in cfgs], device)

    @staticmethod
    def _selectors(per_member: list, device) -> dict[str, Tensor]:
        """``{key: [K] bool}`` for every key some member has (None: the member has none)."""
        keys = [k for k in dict.fromkeys(per_member) if k is not None]
        return {k: torch.tensor([m == k for m in per_member], device=device) for k in keys}

    def _per_member(self, table: dict, selectors: dict[str, Tensor], *args, **kwargs) -> Tensor:
        out = None
        for key, sel in selectors.items():
            value = table[key](*args, **kwargs)
            out = value if out is None else torch.where(sel.view(-1, *([1] * (value.ndim - 1))), value, out)
        return out

    def base(self, delta: Tensor) -> Tensor:
        """Each member's base loss on its row of ``delta`` ``[K, n]`` → ``[K]``."""
        return self._per_member(BASE_LOSSES, self.losses, delta, self)

    def fail(self, delta: Tensor, mask: Tensor) -> Tensor:
        """Each member's L_fail(S_t) (``mask`` = S_t) → ``[K]``."""
        return self._per_member(FAILURE_LOSSES, self.losses, delta, self, mask)

    def failures(self, r_chosen: Tensor, r_rejected: Tensor, **state) -> Tensor:
        """Each member's failure set F_t ``[K, n]`` from its own failure source (FA-IRL members only)."""
        return self._per_member(FAILURE_SOURCES, self.sources, r_chosen, r_rejected, **state)


@dataclass
class SupervisedZero:
    """Running class means of R per member (``failures.label_midpoint``): the zero that supervised failures test."""

    mean_good: Tensor
    mean_bad: Tensor

    @classmethod
    def empty(cls, k: int, device) -> SupervisedZero:
        nan = torch.full((k,), float("nan"), device=device)
        return cls(nan, nan.clone())

    def update(self, rewards: Tensor, labels: Tensor) -> Tensor:
        self.mean_good, self.mean_bad, zero = label_midpoint(rewards, labels, self.mean_good, self.mean_bad)
        return zero

    def select(self, keep: Tensor) -> SupervisedZero:
        return SupervisedZero(self.mean_good[keep], self.mean_bad[keep])


@dataclass
class Terms:
    """One minibatch's objective per member (all ``[K]``): ``grad_loss`` is what is differentiated (L_base for the
    base path, L_fail for the failure path; the penalty's gradient is applied decoupled, see the module
    docstring); ``total`` is the value of eq. 3."""

    grad_loss: Tensor
    total: Tensor
    base: Tensor
    fail: Tensor
    penalty: Tensor
    n_failures: Tensor


def pair_objective(
    hp: MemberHyperparameters,
    rD_c: Tensor,
    rD_r: Tensor,
    rF_c: Tensor | None = None,
    rF_r: Tensor | None = None,
    *,
    fail_sq_norm: Tensor | None = None,
    lam: Tensor | None = None,
    gamma: Tensor | None = None,
    fraction: Tensor | None = None,
    y_c: Tensor | None = None,
    y_r: Tensor | None = None,
    zero: SupervisedZero | None = None,
    offset: Tensor | None = None,
    uniform: Tensor | None = None,
) -> Terms:
    """Objective of K members on a minibatch; rewards ``[K, b]`` (o⁺ and o⁻ of each pair).

    Without a failure path (``rF_c is None``) it is the base loss. With one, eq. 3 with the routing of the module
    docstring. Rewards may leave out the output offsets (they cancel in Δ); ``offset`` ``[K]`` (b_D + b_F) is added
    back where absolute rewards matter (the supervised criterion). ``uniform`` ``[K, b]``: pre-drawn uniforms for
    sampling S_t ⊆ F_t at rate p_t (None: S_t = F_t)."""
    if rF_c is None:
        base = hp.base(rD_c - rD_r)
        zeros = torch.zeros_like(base)
        return Terms(base, base, base, zeros, zeros, zeros)
    delta_D, delta_F = rD_c - rD_r, rF_c - rF_r
    base = hp.base(delta_D + delta_F.detach())
    with torch.no_grad():
        off = 0.0 if offset is None else offset.detach()[:, None]
        r_c, r_r = rD_c + rF_c + off, rD_r + rF_r + off
        zero_t = 0.0
        if zero is not None and (y_c is not None or y_r is not None):
            zero_t = zero.update(torch.cat([r_c, r_r], 1), torch.cat([y_c, y_r], 1))
        failed = hp.failures(r_c, r_r, gamma=gamma, fraction=fraction, y_chosen=y_c, y_rejected=y_r, zero=zero_t)
        if uniform is not None:
            failed = sample_failures(failed, hp.sample_rate, uniform=uniform)
    fail = hp.fail(delta_D.detach() + delta_F, failed)  # failure path only
    penalty = 0.5 * lam * fail_sq_norm
    # Each path is driven by one term: θ_D by L_base, θ_F by L_fail (its λ_t factor: see the module docstring).
    return Terms(base + fail, fa_irl_loss(base, fail, lam, fail_sq_norm), base, fail, penalty, failed.sum(-1))


def penalised_names(names: list[str]) -> list[str]:
    """The parameters the (λ_t/2)·‖w_F‖² term covers: the failure path's readout weights (θ_F of §4.1)."""
    return [n for n in names if n in ("fail.w", "fail.w2")]


@torch.no_grad()
def apply_failure_penalty_(weights: list[Tensor], lr: Tensor, lam: Tensor) -> None:
    """The decoupled gradient step of (λ_t/2)·‖w_F‖²: ``w_F ← w_F·(1 − lr·λ_t)`` per member (leading dim K).

    ``lr`` and ``lam`` are ``[K]``. Run it right before the Adam step on the same parameters (AdamW order)."""
    factor = 1.0 - lr * lam
    for w in weights:
        w.mul_(factor.view(-1, *([1] * (w.ndim - 1))))


@torch.no_grad()
def failure_path_sq_norm(params: dict[str, Tensor], k: int) -> Tensor:
    """‖w_F‖² per member ``[K]`` over :func:`penalised_names`: the penalty's VALUE in eq. 3 (its gradient is applied
    by :func:`apply_failure_penalty_`, so no graph is kept)."""
    names = penalised_names(list(params))
    return sum(params[n].pow(2).reshape(k, -1).sum(-1) for n in names)

"""The per-minibatch objective of K ensemble members: base losses, FA-IRL's eq. 3, and its failure-path penalty.

This is the code the trainer runs (batched and single-model alike) and the tests check; it only combines the pure
functions of ``losses.py`` (losses), ``failures.py`` (failure sets, S_t sampling) and ``methods.py`` (which method
uses which), per member.

FA-IRL choices (the paper leaves them open):

* ROUTING, per method (``methods.Method.routing``), both in the method table and both tested against
  hand-computed gradients (``tests/test_fair_comparison.py``):

  - ``joint`` — eq. 3 as printed, Algorithm 1 line 12: ONE objective L_base(Δ) + λ_t·L_fail(S_t; Δ) +
    (λ_t/2)·‖w_F‖², Δ from the full reward R = R_D + R_F, differentiated once over ALL parameters (so L_base and
    L_fail reach both paths) and the penalty inside the optimiser (its gradient λ_t·w_F goes through Adam like every
    other term).
  - ``split`` — §4.1's "a base path, trained on all pairs, and a failure path, trained only on the identified
    failure set": both losses see Δ of the full R, but L_base is differentiated w.r.t. R_D only (R_F detached) and
    L_fail w.r.t. R_F only (R_D detached). Under this routing L_fail is the only loss reaching θ_F, and Adam divides
    a parameter's gradient by its running RMS, so a λ_t factor on it would cancel but for the lag of Adam's second
    moment (a hidden learning-rate decay that left max-entropy failure paths at 1–5% of the reward); so L_fail is
    differentiated without λ_t, and the penalty is applied DECOUPLED from Adam, AdamW-style:
    ``w_F ← w_F·(1 − lr·λ_t)`` before each step (inside Adam, even a small penalty moved each weight by ≈ lr per
    step once failures ran out and erased the path after the curriculum).

  Measured (``fairl run tune_configs/fa_irl_table1.yaml``: real comments, R* = 1 − 2·P(offensive), Bradley–Terry
  preferences β = 0.1, MiniLM + MLP, one budget for all, 5 seeds, paired 95% t intervals over seeds): joint beats
  split for every variant on test STARC (by 0.029–0.102) and Spearman with R*; split ties its base method or loses
  (mm_gt_split: STARC +0.058 [+0.028, +0.088] worse). So the default configs list the joint methods. Under joint
  the failure path carries almost nothing (std R_F / std R 0.001–0.010: the penalty inside Adam holds w_F near zero
  while λ_t is large): the gain comes from L_fail reaching R_D, i.e. from a stricter, up-weighted loss on the
  failures, not from a separate correction head. Under split the two paths are large and cancel (share 0.8–4.6), as
  the audit of the first landing found.
* The PLACEBO (``Method.placebo``) is its FA-IRL method with S_t ≡ ∅: the same λ_t and penalty, no L_fail
  (``MemberHyperparameters.failures`` flags nothing for it). A member run with ``lambda_0: 0`` has neither L_fail
  nor the penalty (split's L_fail is on while λ_t > 0, which an exponential decay never ends).
* The failure path's readout starts at ZERO (``heads.init_member_params``), so R_F contributes nothing until a
  failure trains it (§4.1: initialisation "keep[s] early estimates near zero, preventing spurious margins before
  failures have been identified"); its other parameters are drawn from their own RNG stream, so an FA-IRL member
  sees the same base-path initialisation and minibatch order as its base method with the same seed.
* The penalty covers the failure path's READOUT weights (``fail.w`` of the linear head = θ_F of §4.1, ``fail.w2`` of
  the MLP), not its hidden layer nor its biases: eq. 3's ‖w_F‖².
* L_fail is a MEAN over S_t (0 when S_t is empty), not a sum over the minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .failures import FAILURE_SOURCES, label_midpoint, sample_failures
from .hyperparameters import IRLConfig
from .losses import BASE_LOSSES, FAILURE_LOSSES, fa_irl_loss

#: The per-member ``IRLConfig`` fields this module reads itself, besides the losses' own: the learning rate (the
#: decoupled penalty step, :func:`apply_failure_penalty_`) and p_t (S_t sampling).
OBJECTIVE_HYPERPARAMETERS: tuple[str, ...] = ("lr", "sample_rate")


def loss_hyperparameters(loss_families) -> tuple[str, ...]:
    """The ``IRLConfig`` fields the losses of ``loss_families`` (base and, where there is one, failure) read, as
    they declare them (:class:`~fairl_ray.irl.losses.PairLoss`)."""
    names: list[str] = []
    for family in loss_families:
        names += BASE_LOSSES.get(family).hyperparameters
        if family in FAILURE_LOSSES:
            names += FAILURE_LOSSES.get(family).hyperparameters
    return tuple(dict.fromkeys(names))


class MemberHyperparameters:
    """The members' hyperparameters as ``[K]`` tensors (attributes named like the ``IRLConfig`` fields: the ones the
    members' losses declare, and :data:`OBJECTIVE_HYPERPARAMETERS`), and which members use which base loss and
    failure source (``[K]`` bool selectors)."""

    def __init__(self, cfgs: list[IRLConfig], device):
        self.losses = self._selectors([c.base_loss for c in cfgs], device)
        # Every member gets a value of every field a present loss reads: each loss is evaluated on all K rows and
        # the member's own selected afterwards (``_per_member``).
        for name in OBJECTIVE_HYPERPARAMETERS + loss_hyperparameters(self.losses):
            setattr(
                self, name, torch.tensor([float(getattr(c, name)) for c in cfgs], dtype=torch.float32, device=device)
            )
        self.any_sampling = any(c.sample_rate < 1.0 for c in cfgs)
        self.sources = self._selectors([c.failure_source if c.is_failure_aware else None for c in cfgs], device)
        flag = lambda fn: torch.tensor([bool(fn(c)) for c in cfgs], device=device)  # noqa: E731
        self.joint = flag(lambda c: c.routing == "joint")
        """[K] members whose routing is ``joint`` (the rest of a dual-path group is ``split``)."""
        self.learns_failures = flag(lambda c: c.is_failure_aware)
        """[K] FA-IRL members (False for placebos: no failure term at all)."""
        self.dataset_ranked = flag(lambda c: c.failure_source == "margin" and c.failure_ranking == "dataset")
        """[K] members whose bottom-k failures are ranked over the whole training set once per round."""
        self.any_dataset_ranked = bool(self.dataset_ranked.any())

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

    def failures(self, r_chosen: Tensor, r_rejected: Tensor, dataset_failures: Tensor | None = None, **state) -> Tensor:
        """Each member's failure set F_t ``[K, n]`` from its own failure source; empty for members that learn no
        failures (placebos). ``dataset_failures`` ``[K, n]``: the round's dataset-level bottom-k flags of these pairs,
        used for the members ranked over the dataset (``IRLConfig.failure_ranking``)."""
        if not self.sources:
            return torch.zeros(r_chosen.shape, dtype=torch.bool, device=r_chosen.device)
        failed = self._per_member(FAILURE_SOURCES, self.sources, r_chosen, r_rejected, **state)
        if dataset_failures is not None:
            failed = torch.where(self.dataset_ranked[:, None], dataset_failures, failed)
        return failed & self.learns_failures[:, None]


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
    """One minibatch's objective per member (all ``[K]``): ``grad_loss`` is what is differentiated (eq. 3 for joint
    members; L_base + L_fail, each reaching one path, for split members, whose penalty is applied decoupled; see the
    module docstring); ``total`` is the value of eq. 3 as printed."""

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
    fail_weights: list[Tensor] | None = None,
    lam: Tensor | None = None,
    gamma: Tensor | None = None,
    fraction: Tensor | None = None,
    y_c: Tensor | None = None,
    y_r: Tensor | None = None,
    zero: SupervisedZero | None = None,
    offset: Tensor | None = None,
    uniform: Tensor | None = None,
    dataset_failures: Tensor | None = None,
) -> Terms:
    """Objective of K members on a minibatch; rewards ``[K, b]`` (o⁺ and o⁻ of each pair).

    Without a failure path (``rF_c is None``) it is the base loss. With one, eq. 3 in each member's routing (module
    docstring): ``fail_weights`` are the penalised readout weights ``[K, ...]`` (:func:`penalised_names`), with their
    graph, so the joint members' penalty is differentiated; the split members' is applied by
    :func:`apply_failure_penalty_`. Rewards may leave out the output offsets (they cancel in Δ); ``offset`` ``[K]``
    (b_D + b_F) is added back where absolute rewards matter (the supervised criterion). ``uniform`` ``[K, b]``:
    pre-drawn uniforms for sampling S_t ⊆ F_t at rate p_t (None: S_t = F_t). ``dataset_failures`` ``[K, b]``: the
    round's dataset-level bottom-k flags of these pairs (``IRLConfig.failure_ranking = "dataset"``)."""
    if rF_c is None:
        base = hp.base(rD_c - rD_r)
        zeros = torch.zeros_like(base)
        return Terms(base, base, base, zeros, zeros, zeros)
    joint = hp.joint[:, None]
    delta_D, delta_F = rD_c - rD_r, rF_c - rF_r
    # joint: Δ carries the gradient to both paths; split: L_base reaches R_D only, L_fail reaches R_F only
    base = hp.base(delta_D + torch.where(joint, delta_F, delta_F.detach()))
    with torch.no_grad():
        off = 0.0 if offset is None else offset.detach()[:, None]
        r_c, r_r = rD_c + rF_c + off, rD_r + rF_r + off
        zero_t = 0.0
        if zero is not None and (y_c is not None or y_r is not None):
            zero_t = zero.update(torch.cat([r_c, r_r], 1), torch.cat([y_c, y_r], 1))
        failed = hp.failures(
            r_c,
            r_r,
            dataset_failures,
            gamma=gamma,
            fraction=fraction,
            y_chosen=y_c,
            y_rejected=y_r,
            zero=zero_t,
        )
        if uniform is not None:
            failed = sample_failures(failed, hp.sample_rate, uniform=uniform)
    fail = hp.fail(torch.where(joint, delta_D, delta_D.detach()) + delta_F, failed)
    sq_norm = sum(w.pow(2).reshape(w.shape[0], -1).sum(-1) for w in fail_weights)
    # What is differentiated: joint = eq. 3 itself; split = L_base + L_fail (λ_t acts through the decoupled
    # penalty), and L_fail only while λ_t > 0, so that λ_0 = 0 is L_base alone in both routings (a placebo flags no
    # failure, so its L_fail is 0 whatever its weight).
    fail_weight = torch.where(hp.joint, lam, (lam > 0).to(lam.dtype))
    grad_loss = base + fail_weight * fail + torch.where(hp.joint, 0.5 * lam * sq_norm, torch.zeros_like(sq_norm))
    total = fa_irl_loss(base, fail, lam, sq_norm.detach())
    return Terms(grad_loss, total, base, fail, 0.5 * lam * sq_norm.detach(), failed.sum(-1))


def penalised_names(names: list[str]) -> list[str]:
    """The parameters the (λ_t/2)·‖w_F‖² term covers: the failure path's readout weights (θ_F of §4.1)."""
    return [n for n in names if n in ("fail.w", "fail.w2")]


@torch.no_grad()
def apply_failure_penalty_(weights: list[Tensor], hp: MemberHyperparameters, lam: Tensor) -> None:
    """The decoupled gradient step of (λ_t/2)·‖w_F‖² for the SPLIT members: ``w_F ← w_F·(1 − lr·λ_t)`` per member
    (leading dim K); joint members are left alone (their penalty is in the differentiated objective).

    ``lam`` is ``[K]``. Run it right before the Adam step on the same parameters (AdamW order)."""
    factor = torch.where(hp.joint, torch.ones_like(lam), 1.0 - hp.lr * lam)
    for w in weights:
        w.mul_(factor.view(-1, *([1] * (w.ndim - 1))))

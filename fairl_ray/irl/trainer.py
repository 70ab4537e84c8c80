"""Batched IRL trainer: K ensemble members (methods × hyperparameters × seeds) trained as one computation.

Semantics (FA-IRL §4, Algorithm 1; choices the paper leaves open are marked CHOICE):

* Each step draws a minibatch of ``batch_size`` pairs (each member from its own seeded permutation of the
  training pairs, re-drawn every epoch), computes R for both outputs and Δ = R(o⁺) − R(o⁻).
* Non-FA methods minimise their base loss (``losses.py``) on Δ of the single-path head.
* FA-IRL methods (and their placebos) have a dual-path head R = R_D + R_F and minimise eq. 3 in their routing,
  computed by ``objective.pair_objective``
  (gradient routing and the decoupled (λ_t/2)·‖w_F‖² penalty are documented there, with the measurement that
  motivated them). Failures are found on each minibatch from the current R without gradient
  (``failures.FAILURE_SOURCES``); S_t keeps each with probability p_t = ``sample_rate`` (uniforms drawn once per
  epoch per member).
* CHOICE (zero of R for supervised failures): y·(R − z_t) ≤ 0 with z_t the midpoint of the running mean rewards of
  the good and the bad outputs seen in minibatches (``failures.label_midpoint``), kept per member.
* CHOICE: a round is an epoch; λ_t = λ_0·e^(−decay·t), γ_t and f_t linear over ``curriculum_rounds``, all
  evaluated at t = 0-based epoch index and constant within the epoch.
* Early stopping (CHOICE): after each epoch the validation loss is the member's BASE loss (M / τ, no failure terms,
  whose λ_t-weighting would make it non-stationary) of the full reward on all validation pairs. The member stops
  after ``patience`` epochs without a value ``min_delta`` below the best and its best-epoch parameters are returned;
  but NO member — plain, FA-IRL or placebo — stops or checkpoints before ``IRLConfig.min_epochs`` (by default the
  end of the curriculum): one budget and one stopping rule for every method compared (see ``hyperparameters.py``
  for the measurement that made this the rule). A stopped member is frozen: it is dropped from the group's stacked
  tensors (compaction), so it neither changes nor costs compute while the rest of its group trains on.
* Protocol (``IRLConfig.protocol``): an epoch is a pass over all training pairs (FA-IRL), or one random minibatch
  of them (Insights' iterations of 50 + 50 examples); the rest of these semantics hold for both.
* Failure ranking (``IRLConfig.failure_ranking``): bottom-k_t per minibatch (Algorithm 1), or over all training
  pairs once per round, from the reward at the start of the round (``_dataset_bottom_k``).
* Curves per member and epoch: train_loss (eq. 3 value) and val_loss; for FA-IRL also failure_fraction (|S_t|
  summed over the epoch ÷ N), the schedules lambda, gamma and bottom_k_fraction as used, and fail_share = std(R_F) /
  std(R) over the validation outputs (the failure path's share of the reward; 0 means the path is dead).
* Validation split (when ``val`` is None): ``val_fraction`` of the training pairs chosen by a permutation with
  the fixed seed ``VAL_SPLIT_SEED``, the same split for every member (so members are comparable).
* Optimiser: Adam (β = 0.9, 0.999, ε = 1e-8) with each member's own lr; the batched update reproduces
  ``torch.optim.Adam``'s arithmetic on the stacked [K, ...] parameters.
* RNG (reproducible across devices): member k owns ``torch.Generator().manual_seed(seed)`` on CPU, consumed in
  this order: initial parameters of the base path (the failure path has its own stream; see ``heads.py``), then
  per epoch one ``randperm(N)`` and, if ``sample_rate < 1``, one ``rand(N)``.

Members are grouped into batched computations by (head, hidden_dim, batch_size, dual-path); within a group
methods, losses, hyperparameters, schedules, seeds and epoch limits may all differ.

Solver (``IRLConfig.solver``): the members ``exact.solves_exactly`` picks (convex: linear head, single-path method)
are fit full-batch by ``exact.fit_exact``, all in one batched computation, with the same outputs; the rest (MLP
heads, FA-IRL and placebo members, ``solver: adam``) train here as described above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .exact import fit_exact, solves_exactly
from .failures import bottom_k_failure_mask
from .heads import (
    batched_path_forward,
    failure_path_generator,
    final_bias,
    init_member_params,
    param_names,
    path_forward,
)
from .hyperparameters import IRLConfig
from .objective import (
    MemberHyperparameters,
    SupervisedZero,
    apply_failure_penalty_,
    pair_objective,
    penalised_names,
)
from .schedules import failure_fraction_schedule, gamma_schedule, lambda_schedule

VAL_SPLIT_SEED = 0
BETAS = (0.9, 0.999)
EPS = 1e-8


def _as_tensor(x, dtype=torch.float32) -> Tensor | None:
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x).to(dtype)


@dataclass
class PairFeatures:
    """Feature arrays of N preference pairs: ``chosen`` / ``rejected`` ``[N, d]`` (o⁺ / o⁻ features) and optional
    ground-truth labels ``[N]`` for each output (+1 good / non-toxic, −1 bad / toxic, 0 unknown)."""

    chosen: Tensor
    rejected: Tensor
    chosen_label: Tensor | None = None
    rejected_label: Tensor | None = None

    def __post_init__(self) -> None:
        self.chosen = _as_tensor(self.chosen)
        self.rejected = _as_tensor(self.rejected)
        self.chosen_label = _as_tensor(self.chosen_label)
        self.rejected_label = _as_tensor(self.rejected_label)
        if self.chosen.ndim != 2 or self.chosen.shape != self.rejected.shape:
            raise ValueError(
                f"chosen/rejected must both be [N, d], got {tuple(self.chosen.shape)} and {tuple(self.rejected.shape)}"
            )
        for name in ("chosen_label", "rejected_label"):
            lab = getattr(self, name)
            if lab is not None and tuple(lab.shape) != (self.chosen.shape[0],):
                raise ValueError(f"{name} must be [N] = [{self.chosen.shape[0]}], got {tuple(lab.shape)}")

    def __len__(self) -> int:
        return self.chosen.shape[0]

    @property
    def dim(self) -> int:
        return self.chosen.shape[1]

    @property
    def has_labels(self) -> bool:
        return self.chosen_label is not None or self.rejected_label is not None

    def subset(self, idx: Tensor) -> PairFeatures:
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return PairFeatures(self.chosen[idx], self.rejected[idx], pick(self.chosen_label), pick(self.rejected_label))


@dataclass
class TrainedMember:
    """Result for one member: best-validation parameters (``heads.member_params`` format, CPU) and curves."""

    config: IRLConfig
    params: dict[str, Tensor]
    curve: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0


def split_validation(train: PairFeatures, val_fraction: float) -> tuple[PairFeatures, PairFeatures]:
    """Fixed-seed split of ``val_fraction`` of the pairs (at least 1, leaving at least 1 for training)."""
    n = len(train)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if n < 2:
        raise ValueError("need at least 2 training pairs to split a validation set")
    n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return train.subset(perm[n_val:]), train.subset(perm[:n_val])


def _schedule_tensors(cfgs: list[IRLConfig], epoch: int, device):
    lam = [lambda_schedule(epoch, c.lambda_0, c.lambda_decay) if c.dual_path else 0.0 for c in cfgs]
    gam = [gamma_schedule(epoch, c.gamma_start, c.gamma_end, c.curriculum_rounds) for c in cfgs]
    frac = [
        failure_fraction_schedule(epoch, c.failure_fraction_start, c.failure_fraction_end, c.curriculum_rounds)
        for c in cfgs
    ]
    t = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
    return t(lam), t(gam), t(frac), {"lambda": lam, "gamma": gam, "bottom_k_fraction": frac}


def _labels(p: PairFeatures, device):
    if not p.has_labels:
        return None, None
    n = len(p)
    yc = p.chosen_label if p.chosen_label is not None else torch.zeros(n)
    yr = p.rejected_label if p.rejected_label is not None else torch.zeros(n)
    return yc.to(device), yr.to(device)


# ------------------------------------------------------------------------------------------------------------
# batched trainer
# ------------------------------------------------------------------------------------------------------------
def _group_key(c: IRLConfig):
    return (c.head, c.hidden_dim if c.head == "mlp" else 0, c.batch_size, c.dual_path, c.pairs_per_epoch)


def train_ensemble(
    train: PairFeatures,
    members: list[IRLConfig],
    val: PairFeatures | None = None,
    val_fraction: float = 0.1,
    device: str = "cpu",
    progress: bool = False,
) -> list[TrainedMember]:
    """Train every member of ``members`` (one ``IRLConfig`` each: method × hyperparameters × seed) on ``train``.

    The convex members ``exact.solves_exactly`` picks are fit by ``exact.fit_exact`` (one batched computation for
    all of them); the others train with minibatch Adam. Members sharing (head, hidden_dim, batch_size, dual-path)
    train as ONE batched computation (bmm over a leading member dim, batched Adam); each keeps its own
    hyperparameters, schedules, failure sets, minibatch order and early stopping, and ends up with exactly what
    ``train_single`` (or, exact members, ``fit_exact``) gives it alone (up to float rounding). Returns one
    ``TrainedMember`` per config, in input order.
    """
    if not members:
        return []
    if val is None:
        train, val = split_validation(train, val_fraction)
    if val.dim != train.dim:
        raise ValueError(f"val feature dim {val.dim} != train feature dim {train.dim}")
    for i, c in enumerate(members):
        if not isinstance(c, IRLConfig):
            raise TypeError(f"members[{i}] must be an IRLConfig, got {type(c).__name__}")
    out: list[TrainedMember | None] = [None] * len(members)
    exact = [i for i, c in enumerate(members) if solves_exactly(c, members)]
    if exact:
        z_train, z_val = train.chosen - train.rejected, val.chosen - val.rejected
        for i, f in zip(exact, fit_exact(z_train, z_val, [members[i] for i in exact], device)):
            out[i] = TrainedMember(members[i], f.params, f.curve, f.best_epoch, f.epochs_run)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(members):
        if i not in exact:
            groups.setdefault(_group_key(c), []).append(i)
    for gi, idxs in enumerate(groups.values()):
        res = _train_group(
            train,
            val,
            [members[i] for i in idxs],
            torch.device(device),
            progress,
            desc=f"IRL group {gi + 1}/{len(groups)}",
        )
        for i, r in zip(idxs, res):
            out[i] = r
    return out  # type: ignore[return-value]


def _train_group(
    train: PairFeatures,
    val: PairFeatures,
    cfgs: list[IRLConfig],
    device: torch.device,
    progress: bool,
    desc: str = "IRL",
) -> list[TrainedMember]:
    K, N, d = len(cfgs), len(train), train.dim
    c0 = cfgs[0]
    dual, B = c0.dual_path, c0.batch_size
    n_seen = min(N, c0.pairs_per_epoch or N)  # pairs one epoch trains on: all, or one minibatch (insights protocol)
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    inits = [
        init_member_params(c.head, d, c.hidden_dim, dual, g, failure_path_generator(c.seed)) for c, g in zip(cfgs, gens)
    ]
    names = list(inits[0])
    penalised = penalised_names(names)
    best = {n: torch.stack([p[n] for p in inits]).to(device) for n in names}  # all K members, best-val params

    # live state: only members still training (``alive`` = their indices in ``cfgs``), stacked on dim 0.
    # A member that stops is dropped from every stacked tensor (compaction), so it costs nothing afterwards.
    alive = list(range(K))
    params = {n: best[n].clone().requires_grad_(True) for n in names}
    exp_avg = {n: torch.zeros_like(t) for n, t in params.items()}
    exp_avg_sq = {n: torch.zeros_like(t) for n, t in params.items()}
    zero = SupervisedZero.empty(K, device)

    def compact(keep: list[int]) -> None:
        nonlocal alive, params, exp_avg, exp_avg_sq, zero
        pos = torch.tensor(keep, device=device, dtype=torch.long)
        params = {n: t.detach()[pos].clone().requires_grad_(True) for n, t in params.items()}
        exp_avg = {n: t[pos].clone() for n, t in exp_avg.items()}
        exp_avg_sq = {n: t[pos].clone() for n, t in exp_avg_sq.items()}
        zero = zero.select(pos)
        alive = [alive[p] for p in keep]
        gather_buf.clear()

    x_all = torch.cat([train.chosen, train.rejected]).to(device)  # [2N, d]
    y_c, y_r = _labels(train, device)
    y_all = None if y_c is None else torch.cat([y_c, y_r])
    xv = torch.cat([val.chosen, val.rejected]).to(device)
    n_val = len(val)

    tracker = _EarlyStopping(cfgs)
    step = 0
    gather_buf: dict[int, Tensor] = {}
    max_epochs = max(c.epochs for c in cfgs)

    bar = None
    if progress:  # a tqdm bar on a terminal, else a line every 10 s (a log, a Ray worker's forwarded output)
        from fairl_ray.progress import EpochProgress

        bar = EpochProgress(max_epochs, f"{desc} (K={K})")
    for epoch in range(max_epochs):
        keep = [p for p, k in enumerate(alive) if epoch < cfgs[k].epochs]
        if len(keep) < len(alive):
            compact(keep)
        if not alive:
            break
        Ka = len(alive)
        acfgs = [cfgs[k] for k in alive]
        hp = MemberHyperparameters(acfgs, device)
        lrs = [float(c.lr) for c in acfgs]
        leaves = [params[n] for n in names]
        perm = torch.stack([torch.randperm(N, generator=gens[k]) for k in alive]).to(device)
        uni = None
        if hp.any_sampling:
            uni = torch.stack(
                [torch.rand(N, generator=gens[k]) if cfgs[k].sample_rate < 1.0 else torch.zeros(N) for k in alive]
            ).to(device)
        lam_t, gam_t, frac_t, schedules = _schedule_tensors(acfgs, epoch, device)
        ranked = _dataset_bottom_k(params, x_all, N, frac_t) if dual and hp.any_dataset_ranked else None
        loss_sum = torch.zeros(Ka, device=device)
        fail_sum = torch.zeros(Ka, device=device)
        for s in range(0, n_seen, B):
            idx = perm[:, s : s + B]
            b = idx.shape[1]
            if b not in gather_buf:  # reused output buffer: avoids a fresh multi-MB allocation every step
                gather_buf[b] = torch.empty(Ka * 2 * b, d, device=device)
            xb = torch.index_select(x_all, 0, torch.cat([idx, idx + N], 1).view(-1), out=gather_buf[b])
            xb = xb.view(Ka, 2 * b, d)  # [K, 2b, d]: member k's chosen rows then its rejected rows
            rD = batched_path_forward(params, "base", xb, bias=False)
            if dual:
                rF = batched_path_forward(params, "fail", xb, bias=False)
                yb = (None, None) if y_all is None else (y_all[idx], y_all[idx + N])
                terms = pair_objective(
                    hp,
                    rD[:, :b],
                    rD[:, b:],
                    rF[:, :b],
                    rF[:, b:],
                    fail_weights=[params[n] for n in penalised],
                    lam=lam_t,
                    gamma=gam_t,
                    fraction=frac_t,
                    y_c=yb[0],
                    y_r=yb[1],
                    zero=zero,
                    offset=final_bias(params, "base") + final_bias(params, "fail"),
                    uniform=None if uni is None else uni[:, s : s + b],
                    dataset_failures=None if ranked is None else torch.gather(ranked, 1, idx),
                )
                fail_sum += terms.n_failures
            else:
                terms = pair_objective(hp, rD[:, :b], rD[:, b:])
            grads = torch.autograd.grad(terms.grad_loss.sum(), leaves, allow_unused=True)  # offsets: unused (None)
            step += 1
            with torch.no_grad():
                if dual:
                    apply_failure_penalty_([params[n] for n in penalised], hp, lam_t)
                _adam_step(leaves, grads, [exp_avg[n] for n in names], [exp_avg_sq[n] for n in names], lrs, step)
                loss_sum += terms.total.detach() * b
        # ---- end of epoch: validation, early stopping, curves -----------------------------------------------
        with torch.no_grad():
            rv_D = batched_path_forward(params, "base", xv, False)
            rv_F = batched_path_forward(params, "fail", xv, False) if dual else None
            vloss, share = _validation(hp, rv_D, rv_F, n_val)
            keep, improved = tracker.epoch_end(
                alive,
                epoch,
                {
                    "train_loss": (loss_sum / n_seen).cpu().tolist(),
                    "val_loss": vloss,
                    **_fa_curves(dual, (fail_sum / n_seen).cpu().tolist(), schedules, share),
                },
            )
            if improved:
                src = torch.tensor(improved, device=device, dtype=torch.long)
                dst = torch.tensor([alive[p] for p in improved], device=device, dtype=torch.long)
                for n, t in params.items():
                    best[n].index_copy_(0, dst, t.detach()[src])
            if len(keep) < len(alive):
                compact(keep)
        if bar is not None:
            bar.update(active=len(alive))
        if not alive:
            break
    if bar is not None:
        bar.close(active=len(alive))
    best_cpu = {n: t.cpu() for n, t in best.items()}
    return [
        TrainedMember(
            c,
            {n: t[k].clone().contiguous() for n, t in best_cpu.items()},
            tracker.curves[k],
            tracker.best_epoch[k],
            tracker.epochs_run[k],
        )
        for k, c in enumerate(cfgs)
    ]


@torch.no_grad()
def _dataset_bottom_k(params: dict[str, Tensor], x_all: Tensor, n: int, fraction: Tensor) -> Tensor:
    """The round's dataset-level bottom-k_t failures of every member (``IRLConfig.failure_ranking = "dataset"``):
    the ⌊f_t·N⌋ training pairs of lowest Δ under the current full reward, ``[K, N]`` bool. ``x_all`` ``[2N, d]``
    holds the chosen rows then the rejected rows."""
    r = batched_path_forward(params, "base", x_all, bias=False) + batched_path_forward(params, "fail", x_all, False)
    return bottom_k_failure_mask(r[:, :n] - r[:, n:], fraction)


def _fa_curves(dual: bool, failure_fraction: list[float], schedules: dict, share) -> dict:
    """The FA-IRL part of an epoch's curves (schedules as evaluated, |S_t|/N, failure-path share); none otherwise."""
    if not dual:
        return {}
    return {"failure_fraction": failure_fraction, **schedules, "fail_share": share}


def _validation(hp: MemberHyperparameters, r_base: Tensor, r_fail: Tensor | None, n: int):
    """Validation loss (the base loss of the full reward) and the failure path's share std(R_F) / std(R) of each
    member, from the rewards ``[K, 2n]`` of the validation outputs (o⁺ rows then o⁻ rows)."""
    r = r_base if r_fail is None else r_base + r_fail
    vloss = hp.base(r[:, :n] - r[:, n:]).cpu().tolist()
    if r_fail is None:
        return vloss, None
    share = (r_fail.std(-1) / r.std(-1).clamp_min(1e-12)).cpu().tolist()
    return vloss, share


class _EarlyStopping:
    """Per-member curves, best epoch and patience, from epoch ``checkpoint_from`` (the budget every method shares)."""

    def __init__(self, cfgs: list[IRLConfig]):
        self.cfgs = cfgs
        self.best_val = [math.inf] * len(cfgs)
        self.best_epoch = [0] * len(cfgs)
        self.since_best = [0] * len(cfgs)
        self.epochs_run = [0] * len(cfgs)
        self.curves: list[dict[str, list[float]]] = [{} for _ in cfgs]

    def epoch_end(self, alive: list[int], epoch: int, values: dict[str, list[float]]) -> tuple[list[int], list[int]]:
        """Record epoch ``epoch`` (0-based) of the members ``alive`` (``values[name][p]`` for the p-th of them);
        return (positions to keep training, positions whose parameters are a new best)."""
        keep, improved = [], []
        for p, k in enumerate(alive):
            cfg = self.cfgs[k]
            self.epochs_run[k] = epoch + 1
            for name, vals in values.items():
                self.curves[k].setdefault(name, []).append(vals[p])
            if epoch + 1 >= cfg.checkpoint_from:
                # the first epoch allowed to checkpoint always does (even with a NaN loss), so a member never returns
                # its initial parameters
                if self.best_epoch[k] == 0 or values["val_loss"][p] < self.best_val[k] - cfg.min_delta:
                    self.best_val[k], self.best_epoch[k], self.since_best[k] = values["val_loss"][p], epoch + 1, 0
                    improved.append(p)
                else:
                    self.since_best[k] += 1
            if not (cfg.patience > 0 and self.since_best[k] >= cfg.patience):
                keep.append(p)
        return keep, improved


def _adam_step(
    params: list[Tensor],
    grads: list[Tensor | None],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    lrs: list[float],
    step: int,
) -> None:
    """In-place batched Adam over stacked [K, ...] tensors with per-member lr: the same update as
    ``torch.optim.Adam`` (β = 0.9, 0.999, ε = 1e-8, no weight decay), run through PyTorch's fused Adam kernel
    (one pass over p, g, m, v instead of ~8; its rounding differs from the default single-tensor path by ~1 ulp).
    Members are grouped by lr (one kernel call per distinct lr). Parameters without gradient are skipped, as in
    torch."""
    triples = [(p, g, m, v) for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs) if g is not None]
    if not triples:
        return
    device = triples[0][0].device
    step_t = torch.tensor(float(step), device=device)
    by_lr: dict[float, list[int]] = {}
    for k, lr in enumerate(lrs):
        by_lr.setdefault(lr, []).append(k)
    groups = [(lrs[0], None)] if len(by_lr) == 1 else list(by_lr.items())
    for lr, ks in groups:
        if ks is None:
            ps, gs, ms, vs = (list(x) for x in zip(*triples))
        else:
            ps, gs, ms, vs = ([t[k] for t in col for k in ks] for col in zip(*triples))
        torch._fused_adam_(
            ps,
            gs,
            ms,
            vs,
            [],
            [step_t] * len(ps),
            lr=lr,
            beta1=BETAS[0],
            beta2=BETAS[1],
            weight_decay=0.0,
            eps=EPS,
            amsgrad=False,
            maximize=False,
        )


# ------------------------------------------------------------------------------------------------------------
# naive reference: one model, minibatch loop, torch.optim.Adam
# ------------------------------------------------------------------------------------------------------------
def train_single(
    train: PairFeatures,
    config: IRLConfig,
    val: PairFeatures | None = None,
    val_fraction: float = 0.1,
    device: str = "cpu",
) -> TrainedMember:
    """The plain one-model minibatch loop with ``torch.optim.Adam`` (reference for tests and the benchmark).
    Same semantics, RNG consumption and validation split as ``train_ensemble``."""
    if val is None:
        train, val = split_validation(train, val_fraction)
    dev = torch.device(device)
    c = config
    N, d, B, dual = len(train), train.dim, c.batch_size, c.dual_path
    n_seen = min(N, c.pairs_per_epoch or N)
    gen = torch.Generator().manual_seed(c.seed)
    init = init_member_params(c.head, d, c.hidden_dim, dual, gen, failure_path_generator(c.seed))
    params = {n: t.to(dev).requires_grad_(True) for n, t in init.items()}
    names = param_names(c.head, dual)
    penalised = penalised_names(names)
    opt = torch.optim.Adam([params[n] for n in names], lr=c.lr, betas=BETAS, eps=EPS)
    hp = MemberHyperparameters([c], dev)
    zero = SupervisedZero.empty(1, dev)
    x_all = torch.cat([train.chosen, train.rejected]).to(dev)
    y_c, y_r = _labels(train, dev)
    y_all = None if y_c is None else torch.cat([y_c, y_r])
    xv = torch.cat([val.chosen, val.rejected]).to(dev)
    tracker = _EarlyStopping([c])
    best = {n: p.detach().clone() for n, p in params.items()}
    for epoch in range(c.epochs):
        perm = torch.randperm(N, generator=gen).to(dev)
        uni = torch.rand(N, generator=gen).to(dev) if c.sample_rate < 1.0 else None
        lam_t, gam_t, frac_t, schedules = _schedule_tensors([c], epoch, dev)
        ranked = None
        if dual and hp.any_dataset_ranked:
            ranked = _dataset_bottom_k({n: p[None] for n, p in params.items()}, x_all, N, frac_t)[0]
        loss_sum = torch.zeros((), device=dev)  # accumulated on the device: no host sync per step
        fail_sum = torch.zeros((), device=dev)
        for s in range(0, n_seen, B):
            idx = perm[s : s + B]
            b = idx.shape[0]
            xb = x_all[torch.cat([idx, idx + N])]
            rD = path_forward(params, "base", xb, bias=False)[None]
            if dual:
                rF = path_forward(params, "fail", xb, bias=False)[None]
                yb = (None, None) if y_all is None else (y_all[idx][None], y_all[idx + N][None])
                terms = pair_objective(
                    hp,
                    rD[:, :b],
                    rD[:, b:],
                    rF[:, :b],
                    rF[:, b:],
                    fail_weights=[params[n][None] for n in penalised],
                    lam=lam_t,
                    gamma=gam_t,
                    fraction=frac_t,
                    y_c=yb[0],
                    y_r=yb[1],
                    zero=zero,
                    offset=(final_bias(params, "base") + final_bias(params, "fail"))[None],
                    uniform=None if uni is None else uni[None, s : s + b],
                    dataset_failures=None if ranked is None else ranked[idx][None],
                )
                fail_sum += terms.n_failures.sum()
            else:
                terms = pair_objective(hp, rD[:, :b], rD[:, b:])
            opt.zero_grad(set_to_none=True)
            terms.grad_loss.sum().backward()
            if dual:
                apply_failure_penalty_([params[n][None] for n in penalised], hp, lam_t)
            opt.step()
            loss_sum += terms.total.detach().sum() * b
        with torch.no_grad():
            rv_D = path_forward(params, "base", xv, False)[None]
            rv_F = path_forward(params, "fail", xv, False)[None] if dual else None
            vloss, share = _validation(hp, rv_D, rv_F, len(val))
            keep, improved = tracker.epoch_end(
                [0],
                epoch,
                {
                    "train_loss": [float(loss_sum) / n_seen],
                    "val_loss": vloss,
                    **_fa_curves(dual, [float(fail_sum) / n_seen], schedules, share),
                },
            )
        if improved:
            best = {n: p.detach().clone() for n, p in params.items()}
        if not keep:
            break
    return TrainedMember(
        c,
        {n: t.cpu().contiguous() for n, t in best.items()},
        tracker.curves[0],
        tracker.best_epoch[0],
        tracker.epochs_run[0],
    )

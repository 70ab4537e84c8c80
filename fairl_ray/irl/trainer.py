"""Batched IRL trainer: K ensemble members (methods × hyperparameters × seeds) trained as one computation.

Semantics (FA-IRL §4, Algorithm 1; choices the paper leaves open are marked CHOICE):

* Each step draws a minibatch of ``batch_size`` pairs (each member from its own seeded permutation of the
  training pairs, re-drawn every epoch), computes R for both outputs and Δ = R(o⁺) − R(o⁻).
* Non-FA methods minimise their loss (``losses.py``) on Δ of the single-path head.
* FA-IRL methods have a dual-path head R = R_D + R_F and minimise eq. 3,
  ``L_t = L_base + λ_t·L_fail(S_t) + (λ_t/2)·‖θ_F‖²``, where
  - CHOICE (gradient routing): "the base path is trained on all pairs, the failure path only on failures" is
    implemented literally: both losses are evaluated on the margin of the FULL reward R, but L_base is
    differentiated w.r.t. θ_D only (R_F detached) and L_fail w.r.t. θ_F only (R_D detached). Values are
    unchanged by the detaching, so L_t ≥ L_base pointwise (Theorem 1 set-up).
  - CHOICE: ‖θ_F‖² is the squared norm of ALL failure-path parameters (weights and biases).
  - L_fail is the base loss made stricter (M_fail for MM, τ_fail for ME) times ``weight_fail``, as a MEAN over
    S_t (0 when S_t is empty) (CHOICE: mean over |S_t|, not over B).
  - Failures are identified on each minibatch from the current R (no gradient): ``fa_irl_*_gt`` use
    F = {Δ ≤ γ_t} ∪ {pairs with a labelled output scored with the wrong sign} (labels absent → margin only);
    ``fa_irl_*_margin`` use the bottom-k_t pairs of the minibatch by Δ, k_t = ⌊f_t·B⌋ (self-supervised).
    S_t keeps each failure with probability p_t = ``sample_rate`` (uniforms drawn once per epoch per member).
  - CHOICE: a round is an epoch; λ_t = λ_0·e^(−decay·t), γ_t and f_t linear over ``curriculum_rounds``, all
    evaluated at t = 0-based epoch index and constant within the epoch.
* Early stopping (CHOICE): after each epoch the validation loss is the member's BASE loss (M / τ, no failure
  terms, whose λ_t-weighting would make it non-stationary) of the full reward on all validation pairs; the
  member stops after ``patience`` epochs without a strictly lower value and its best-epoch parameters are
  returned. A stopped member is frozen: it is dropped from the group's stacked tensors (compaction), so it
  neither changes nor costs compute while the rest of its group trains on.
* Validation split (when ``val`` is None): ``val_fraction`` of the training pairs chosen by a permutation with
  the fixed seed ``VAL_SPLIT_SEED``, the same split for every member (so members are comparable).
* Optimiser: Adam (β = 0.9, 0.999, ε = 1e-8) with each member's own lr; the batched update reproduces
  ``torch.optim.Adam``'s arithmetic on the stacked [K, ...] parameters.
* RNG (reproducible across devices): member k owns ``torch.Generator().manual_seed(seed)`` on CPU, consumed in
  this order: initial parameters (base path, then failure path; see ``heads.py``), then per epoch one
  ``randperm(N)`` and, if ``sample_rate < 1``, one ``rand(N)``.

Members are grouped into batched computations by (head, hidden_dim, batch_size, dual-path); within a group
methods, losses, hyperparameters, schedules, seeds and epoch limits may all differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .config import IRLConfig
from .failures import bottom_k_failure_mask, margin_failure_mask, supervised_failure_mask
from .heads import batched_path_forward, final_bias, init_member_params, param_names, path_forward
from .losses import base_loss, failure_loss
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
            raise ValueError(f"chosen/rejected must both be [N, d], got {tuple(self.chosen.shape)} and "
                             f"{tuple(self.rejected.shape)}")
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

    def subset(self, idx: Tensor) -> "PairFeatures":
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


# ------------------------------------------------------------------------------------------------------------
# objective (shared by the batched trainer and the single-model reference; leading dim K, K = 1 for single)
# ------------------------------------------------------------------------------------------------------------
class _HP:
    """Per-member hyperparameters as [K] tensors on the device, plus which loss family / failure source each uses."""

    def __init__(self, cfgs: list[IRLConfig], device):
        f = lambda name: torch.tensor([float(getattr(c, name)) for c in cfgs], dtype=torch.float32, device=device)  # noqa: E731
        self.margin, self.temperature = f("margin"), f("temperature")
        self.min_margin, self.penalty_factor = f("min_margin"), f("penalty_factor")
        self.margin_fail, self.temperature_fail, self.weight_fail = f("margin_fail"), f("temperature_fail"), f("weight_fail")
        self.sample_rate = f("sample_rate")
        self.any_sampling = any(c.sample_rate < 1.0 for c in cfgs)
        self.families = {}
        for kind in ("mm", "me", "asym_released", "asym_margin"):
            sel = [c.base_loss == kind for c in cfgs]
            if any(sel):
                self.families[kind] = torch.tensor(sel, device=device)
        self.sources = {}
        for src in ("gt", "margin"):
            sel = [c.failure_source == src for c in cfgs]
            if any(sel):
                self.sources[src] = torch.tensor(sel, device=device)

    def base(self, delta: Tensor) -> Tensor:
        """Base loss of each member on its own row of ``delta`` [K, n] → [K]."""
        out = None
        for kind, sel in self.families.items():
            v = base_loss(kind, delta, margin=self.margin, temperature=self.temperature,
                          min_margin=self.min_margin, penalty_factor=self.penalty_factor)
            out = v if out is None else torch.where(sel, v, out)
        return out

    def fail(self, delta: Tensor, mask: Tensor) -> Tensor:
        out = None
        for kind, sel in self.families.items():
            v = failure_loss(kind, delta, mask, margin_fail=self.margin_fail, temperature_fail=self.temperature_fail,
                             weight_fail=self.weight_fail)
            out = v if out is None else torch.where(sel, v, out)
        return out

    def failures(self, r_c: Tensor, r_r: Tensor, y_c, y_r, gamma: Tensor, fraction: Tensor) -> Tensor:
        delta = r_c - r_r
        out = None
        for src, sel in self.sources.items():
            if src == "gt":
                m = margin_failure_mask(delta, gamma)
                if y_c is not None or y_r is not None:
                    m = m | supervised_failure_mask(r_c, r_r, y_c, y_r)
            else:
                m = bottom_k_failure_mask(delta, fraction)
            out = m if out is None else torch.where(sel[:, None], m, out)
        return out


def pair_objective(hp: _HP, rD_c: Tensor, rD_r: Tensor, rF_c: Tensor | None = None, rF_r: Tensor | None = None,
                   fail_sq_norm: Tensor | None = None, y_c: Tensor | None = None, y_r: Tensor | None = None,
                   lam: Tensor | None = None, gamma: Tensor | None = None, fraction: Tensor | None = None,
                   uniform: Tensor | None = None, offset: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-member objective on a minibatch. Rewards ``[K, b]``; returns (L_t [K], L_base [K], |S_t| [K]).

    Rewards may exclude the output offsets (they cancel in Δ); ``offset`` [K] (b_D + b_F) is then added back for
    the supervised criterion y·R ≤ 0, which needs absolute rewards. Without a failure path (``rF_c is None``)
    L_t = L_base. With one, eq. 3 with the gradient routing described in the module docstring."""
    if rF_c is None:
        base = hp.base(rD_c - rD_r)
        return base, base, torch.zeros_like(base)
    dD = rD_c - rD_r
    dF = rF_c - rF_r
    base = hp.base(dD + dF.detach())
    with torch.no_grad():
        off = 0.0 if offset is None else offset.detach()[:, None]
        fmask = hp.failures(rD_c + rF_c + off, rD_r + rF_r + off, y_c, y_r, gamma, fraction)
        if uniform is not None:
            fmask = fmask & (uniform < hp.sample_rate[:, None])
    fail = hp.fail(dD.detach() + dF, fmask)
    total = base + lam * fail + 0.5 * lam * fail_sq_norm
    return total, base, fmask.sum(-1)


def _schedule_tensors(cfgs: list[IRLConfig], epoch: int, device):
    lam = [lambda_schedule(epoch, c.lambda_0, c.lambda_decay) if c.is_failure_aware else 0.0 for c in cfgs]
    gam = [gamma_schedule(epoch, c.gamma_start, c.gamma_end, c.curriculum_rounds) for c in cfgs]
    frac = [failure_fraction_schedule(epoch, c.failure_fraction_start, c.failure_fraction_end, c.curriculum_rounds)
            for c in cfgs]
    t = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
    return t(lam), t(gam), t(frac), lam


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
    return (c.head, c.hidden_dim if c.head == "mlp" else 0, c.batch_size, c.is_failure_aware)


def train_ensemble(train: PairFeatures, members: list[IRLConfig], val: PairFeatures | None = None,
                   val_fraction: float = 0.1, device: str = "cpu", progress: bool = False) -> list[TrainedMember]:
    """Train every member of ``members`` (one ``IRLConfig`` each: method × hyperparameters × seed) on ``train``.

    Members sharing (head, hidden_dim, batch_size, dual-path) train as ONE batched computation (bmm over a
    leading member dim, batched Adam); each keeps its own hyperparameters, schedules, failure sets, minibatch
    order and early stopping, and ends up with exactly what ``train_single`` gives it alone (up to float
    rounding). Returns one ``TrainedMember`` per config, in input order.
    """
    if not members:
        return []
    if val is None:
        train, val = split_validation(train, val_fraction)
    if val.dim != train.dim:
        raise ValueError(f"val feature dim {val.dim} != train feature dim {train.dim}")
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(members):
        if not isinstance(c, IRLConfig):
            raise TypeError(f"members[{i}] must be an IRLConfig, got {type(c).__name__}")
        groups.setdefault(_group_key(c), []).append(i)
    out: list[TrainedMember | None] = [None] * len(members)
    for gi, idxs in enumerate(groups.values()):
        res = _train_group(train, val, [members[i] for i in idxs], torch.device(device), progress,
                           desc=f"IRL group {gi + 1}/{len(groups)}")
        for i, r in zip(idxs, res):
            out[i] = r
    return out  # type: ignore[return-value]


def _train_group(train: PairFeatures, val: PairFeatures, cfgs: list[IRLConfig], device: torch.device,
                 progress: bool, desc: str = "IRL") -> list[TrainedMember]:
    K, N, d = len(cfgs), len(train), train.dim
    c0 = cfgs[0]
    dual, B = c0.is_failure_aware, c0.batch_size
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    inits = [init_member_params(c.head, d, c.hidden_dim, dual, g) for c, g in zip(cfgs, gens)]
    names = list(inits[0])
    fail_names = [n for n in names if n.startswith("fail.")]
    best = {n: torch.stack([p[n] for p in inits]).to(device) for n in names}  # all K members, best-val params

    # live state: only members still training (``alive`` = their indices in ``cfgs``), stacked on dim 0.
    # A member that stops is dropped from every stacked tensor (compaction), so it costs nothing afterwards.
    alive = list(range(K))
    params = {n: best[n].clone().requires_grad_(True) for n in names}
    exp_avg = {n: torch.zeros_like(t) for n, t in params.items()}
    exp_avg_sq = {n: torch.zeros_like(t) for n, t in params.items()}

    def compact(keep: list[int]) -> None:
        nonlocal alive, params, exp_avg, exp_avg_sq
        pos = torch.tensor(keep, device=device, dtype=torch.long)
        params = {n: t.detach()[pos].clone().requires_grad_(True) for n, t in params.items()}
        exp_avg = {n: t[pos].clone() for n, t in exp_avg.items()}
        exp_avg_sq = {n: t[pos].clone() for n, t in exp_avg_sq.items()}
        alive = [alive[p] for p in keep]
        gather_buf.clear()

    x_all = torch.cat([train.chosen, train.rejected]).to(device)  # [2N, d]
    y_c, y_r = _labels(train, device)
    y_all = None if y_c is None else torch.cat([y_c, y_r])
    xv_c, xv_r = val.chosen.to(device), val.rejected.to(device)

    best_val = [math.inf] * K
    best_epoch = [0] * K
    since_best = [0] * K
    epochs_run = [0] * K
    curves = [{"train_loss": [], "val_loss": [], "failure_fraction": [], "lambda": []} for _ in cfgs]
    step = 0
    gather_buf: dict[int, Tensor] = {}
    max_epochs = max(c.epochs for c in cfgs)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_epochs, desc=f"{desc} (K={K})", unit="epoch")
    for epoch in range(max_epochs):
        keep = [p for p, k in enumerate(alive) if epoch < cfgs[k].epochs]
        if len(keep) < len(alive):
            compact(keep)
        if not alive:
            break
        Ka = len(alive)
        acfgs = [cfgs[k] for k in alive]
        hp = _HP(acfgs, device)
        lrs = [float(c.lr) for c in acfgs]
        leaves = [params[n] for n in names]
        perm = torch.stack([torch.randperm(N, generator=gens[k]) for k in alive]).to(device)
        uni = None
        if hp.any_sampling:
            uni = torch.stack([torch.rand(N, generator=gens[k]) if cfgs[k].sample_rate < 1.0 else torch.zeros(N)
                               for k in alive]).to(device)
        lam_t, gam_t, frac_t, lam_list = _schedule_tensors(acfgs, epoch, device)
        loss_sum = torch.zeros(Ka, device=device)
        fail_sum = torch.zeros(Ka, device=device)
        for s in range(0, N, B):
            idx = perm[:, s:s + B]
            b = idx.shape[1]
            if b not in gather_buf:  # reused output buffer: avoids a fresh multi-MB allocation every step
                gather_buf[b] = torch.empty(Ka * 2 * b, d, device=device)
            xb = torch.index_select(x_all, 0, torch.cat([idx, idx + N], 1).view(-1), out=gather_buf[b])
            xb = xb.view(Ka, 2 * b, d)  # [K, 2b, d]: member k's chosen rows then its rejected rows
            rD = batched_path_forward(params, "base", xb, bias=False)
            if dual:
                rF = batched_path_forward(params, "fail", xb, bias=False)
                off = final_bias(params, "base") + final_bias(params, "fail")
                sq = sum(params[n].pow(2).reshape(Ka, -1).sum(-1) for n in fail_names)
                yb = (None, None) if y_all is None else (y_all[idx], y_all[idx + N])
                total, _, nfail = pair_objective(
                    hp, rD[:, :b], rD[:, b:], rF[:, :b], rF[:, b:], sq, yb[0], yb[1], lam_t, gam_t, frac_t,
                    None if uni is None else uni[:, s:s + b], off)
                fail_sum += nfail
            else:
                total, _, _ = pair_objective(hp, rD[:, :b], rD[:, b:])
            grads = torch.autograd.grad(total.sum(), leaves, allow_unused=True)  # base offset: unused (None)
            step += 1
            with torch.no_grad():
                _adam_step(leaves, grads, [exp_avg[n] for n in names], [exp_avg_sq[n] for n in names], lrs, step,
                           None)
                loss_sum += total.detach() * b
        # ---- end of epoch: validation, early stopping, curves -----------------------------------------------
        with torch.no_grad():
            rv = batched_path_forward(params, "base", xv_c, False) - batched_path_forward(params, "base", xv_r, False)
            if dual:
                rv = (rv + batched_path_forward(params, "fail", xv_c, False)
                      - batched_path_forward(params, "fail", xv_r, False))
            vloss = hp.base(rv).cpu().tolist()
            tloss = (loss_sum / N).cpu().tolist()
            ffrac = (fail_sum / N).cpu().tolist()
            improved, keep = [], []
            for p, k in enumerate(alive):
                epochs_run[k] = epoch + 1
                cv = curves[k]
                cv["train_loss"].append(tloss[p])
                cv["val_loss"].append(vloss[p])
                cv["failure_fraction"].append(ffrac[p])
                cv["lambda"].append(lam_list[p])
                if vloss[p] < best_val[k]:
                    best_val[k], best_epoch[k], since_best[k] = vloss[p], epoch + 1, 0
                    improved.append(p)
                else:
                    since_best[k] += 1
                if not (cfgs[k].patience > 0 and since_best[k] >= cfgs[k].patience):
                    keep.append(p)
            if improved:
                src = torch.tensor(improved, device=device, dtype=torch.long)
                dst = torch.tensor([alive[p] for p in improved], device=device, dtype=torch.long)
                for n, t in params.items():
                    best[n].index_copy_(0, dst, t.detach()[src])
            if len(keep) < len(alive):
                compact(keep)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(active=len(alive))
        if not alive:
            break
    if bar is not None:
        bar.close()
    best_cpu = {n: t.cpu() for n, t in best.items()}
    return [TrainedMember(c, {n: t[k].clone().contiguous() for n, t in best_cpu.items()}, curves[k], best_epoch[k],
                          epochs_run[k]) for k, c in enumerate(cfgs)]


def _adam_step(params: list[Tensor], grads: list[Tensor | None], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
               lrs: list[float], step: int, active: Tensor | None) -> None:
    """In-place batched Adam over stacked [K, ...] tensors with per-member lr: the same update as
    ``torch.optim.Adam`` (β = 0.9, 0.999, ε = 1e-8, no weight decay), run through PyTorch's fused Adam kernel
    (one pass over p, g, m, v instead of ~8; its rounding differs from the default single-tensor path by ~1 ulp).
    Members are grouped by lr (one kernel call per distinct lr); members with ``active[k] == False`` are left
    out, so their parameters and moments stay unchanged. Parameters without gradient are skipped, as in torch."""
    triples = [(p, g, m, v) for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs) if g is not None]
    if not triples:
        return
    device = triples[0][0].device
    step_t = torch.tensor(float(step), device=device)
    act = None if active is None else active.tolist()
    by_lr: dict[float, list[int]] = {}
    for k, lr in enumerate(lrs):
        if act is None or act[k]:
            by_lr.setdefault(lr, []).append(k)
    if act is None and len(by_lr) == 1:
        groups = [(lrs[0], None)]
    else:
        groups = [(lr, ks) for lr, ks in by_lr.items()]
    for lr, ks in groups:
        if ks is None:
            ps, gs, ms, vs = (list(x) for x in zip(*triples))
        else:
            ps, gs, ms, vs = ([t[k] for t in col for k in ks] for col in zip(*triples))
        torch._fused_adam_(ps, gs, ms, vs, [], [step_t] * len(ps), lr=lr, beta1=BETAS[0], beta2=BETAS[1],
                           weight_decay=0.0, eps=EPS, amsgrad=False, maximize=False)


# ------------------------------------------------------------------------------------------------------------
# naive reference: one model, minibatch loop, torch.optim.Adam
# ------------------------------------------------------------------------------------------------------------
def train_single(train: PairFeatures, config: IRLConfig, val: PairFeatures | None = None,
                 val_fraction: float = 0.1, device: str = "cpu") -> TrainedMember:
    """The plain one-model minibatch loop with ``torch.optim.Adam`` (reference for tests and the benchmark).
    Same semantics, RNG consumption and validation split as ``train_ensemble``."""
    if val is None:
        train, val = split_validation(train, val_fraction)
    dev = torch.device(device)
    c = config
    N, d, B, dual = len(train), train.dim, c.batch_size, c.is_failure_aware
    gen = torch.Generator().manual_seed(c.seed)
    params = {n: t.to(dev).requires_grad_(True)
              for n, t in init_member_params(c.head, d, c.hidden_dim, dual, gen).items()}
    names = param_names(c.head, dual)
    opt = torch.optim.Adam([params[n] for n in names], lr=c.lr, betas=BETAS, eps=EPS)
    hp = _HP([c], dev)
    x_all = torch.cat([train.chosen, train.rejected]).to(dev)
    y_c, y_r = _labels(train, dev)
    y_all = None if y_c is None else torch.cat([y_c, y_r])
    xv_c, xv_r = val.chosen.to(dev), val.rejected.to(dev)
    curve = {"train_loss": [], "val_loss": [], "failure_fraction": [], "lambda": []}
    best = {n: p.detach().clone() for n, p in params.items()}
    best_val, best_epoch, since, epochs_run = math.inf, 0, 0, 0
    for epoch in range(c.epochs):
        perm = torch.randperm(N, generator=gen).to(dev)
        uni = torch.rand(N, generator=gen).to(dev) if c.sample_rate < 1.0 else None
        lam_t, gam_t, frac_t, lam_list = _schedule_tensors([c], epoch, dev)
        loss_sum = torch.zeros((), device=dev)  # accumulated on the device: no host sync per step
        fail_sum = torch.zeros((), device=dev)
        for s in range(0, N, B):
            idx = perm[s:s + B]
            b = idx.shape[0]
            xb = x_all[torch.cat([idx, idx + N])]
            rD = path_forward(params, "base", xb, bias=False)[None]
            if dual:
                rF = path_forward(params, "fail", xb, bias=False)[None]
                off = (final_bias(params, "base") + final_bias(params, "fail"))[None]
                sq = sum(params[n].pow(2).sum() for n in names if n.startswith("fail."))[None]
                yb = (None, None) if y_all is None else (y_all[idx][None], y_all[idx + N][None])
                total, _, nfail = pair_objective(hp, rD[:, :b], rD[:, b:], rF[:, :b], rF[:, b:], sq, yb[0], yb[1],
                                                 lam_t, gam_t, frac_t, None if uni is None else uni[None, s:s + b],
                                                 off)
                fail_sum += nfail.sum()
            else:
                total, _, _ = pair_objective(hp, rD[:, :b], rD[:, b:])
            opt.zero_grad(set_to_none=True)
            total.sum().backward()
            opt.step()
            loss_sum += total.detach().sum() * b
        with torch.no_grad():
            rv = path_forward(params, "base", xv_c, False) - path_forward(params, "base", xv_r, False)
            if dual:
                rv = rv + path_forward(params, "fail", xv_c, False) - path_forward(params, "fail", xv_r, False)
            vloss = float(hp.base(rv[None])[0])
        epochs_run = epoch + 1
        curve["train_loss"].append(float(loss_sum) / N)
        curve["val_loss"].append(vloss)
        curve["failure_fraction"].append(float(fail_sum) / N)
        curve["lambda"].append(lam_list[0])
        if vloss < best_val:
            best_val, best_epoch, since = vloss, epoch + 1, 0
            best = {n: p.detach().clone() for n, p in params.items()}
        else:
            since += 1
            if c.patience > 0 and since >= c.patience:
                break
    return TrainedMember(c, {n: t.cpu().contiguous() for n, t in best.items()}, curve, best_epoch, epochs_run)

"""Full-batch solver for the convex IRL members, all of them at once (``IRLConfig.solver``; issue 14 item 5).

Which members: a linear head R(h) = θᵀh + b on one path, so Δ_i = θᵀz_i with z_i = h(o⁺_i) − h(o⁻_i) (the offset b
cancels), and a base loss in ``hyperparameters.CONVEX_BASE_LOSSES``, each convex in θ:

* ``max_margin`` (FA-IRL eq. 1): mean max(0, M − Δ);
* ``asymmetric_margin`` (Insights §4): mean max(0, m − Δ) + (c − 1)·max(0, −Δ);
* ``max_entropy`` (FA-IRL eq. 2): mean softplus(−Δ/τ).

(``asymmetric_released``, −Δ / −2Δ, is convex but unbounded below: no optimum, Adam only.) Under ``solver: auto``
(:func:`solves_exactly`) a convex member goes here unless its ensemble also trains dual-path members: a method and
its FA-IRL variants and placebos are compared under one optimiser and one budget, so they all stay on Adam.

Is there an optimum? The hinges are piecewise linear and bounded below by 0: the minimum is attained (a linear
programme) but the minimiser need not be unique (separable pairs: every large enough separating θ has loss 0;
always: any direction in the null space of Z = [z_i]). The log-loss has a unique finite minimiser on non-separable
pairs (in the row space of Z) and none on separable ones (the loss → 0 as ‖θ‖ → ∞). No regulariser is added: the
objective is the paper's.

What is returned, and why (measured on the Table-1 features, ``fairl run tune_configs/fa_irl_table1.yaml``:
1,350 training / 150 validation pairs, MiniLM d = 384, Z of rank 381; Adam = today's trainer, linear head, 5 seeds):
the exact optimum overfits badly. max_entropy's (the pairs are not separable; ‖θ*‖ = 141) has train loss 0.268 and
validation loss 0.953, against 0.518 for Adam's best epoch; max_margin's (HiGHS LP, 11 s) train 0.187 and validation
0.942, at ‖θ‖ = 5·10⁶ (a vertex far out along near-null directions). So the early-stopping semantics matter here:
the solver's ITERATES form a path from the member's initialisation θ_0 (the same draw as Adam's) to the optimum,
the validation base loss is tracked along it, and the best iterate is returned. Which path is then the choice;
best validation loss along each (ME / MM, seed 0 unless a range is given):

* damped Newton from θ_0: 0.567 at its first iterate, then straight to the optimum's 0.953 (ME); L-BFGS iterates
  jump erratically (their best is luck of the line search);
* the ridge path argmin f(θ) + (μ/2)‖θ − θ_0‖² (8 values of μ per decade, each solved by Newton): 0.5196–0.5198 /
  0.509–0.511; an ℓ∞-ball path: 0.525 / 0.501; nested principal subspaces: 0.518 / 0.515 (test loss 0.538 / 0.521:
  selection noise);
* GRADIENT FLOW, full-batch gradient steps of size 1/L from θ_0: 0.5183, 0.5180, 0.5181 (seeds 0–2, at iterate 9) /
  0.510, 0.508, 0.509, against Adam's 0.5183, 0.5178, 0.5186 / 0.5077, 0.5062, 0.5079; on the test pairs 0.5165 vs
  Adam's 0.515 (ME) and 0.498–0.504 vs 0.506–0.523 (MM).

CHOICE, from these: the path is the gradient flow θ_{t+1} = θ_t − η·∇f(θ_t), one full-batch step per iterate, with
η = 1/L, L = λ_max(ZᵀZ/N)·κ: κ = 1/(4τ²) for the log-loss (its gradient's Lipschitz constant, so every step
decreases f); the piecewise-linear losses have none (their steps are subgradient steps), and κ is the curvature of
the hinge smoothed over its margin's width, 1/M (max_margin) and c/m (asymmetric_margin); scaling η by 1/3 or 3
moved the best validation loss by ≤ 0.003. Nesterov momentum (β ∈ {0.3, …, 0.9}, step (1 − β)/L) was measured and
NOT taken: which β puts every member at or below Adam's validation loss on the Table-1 features is a knife edge
(β = 0.7: 10/10; 0.6: 9/10; 0.8: 7/10; 0.9: 1/10) over differences 20× smaller than their per-pair 95% interval,
and β = 0.7 then misses on the default world's separable pairs (max_entropy 0/5); see ``benchmarks/README.md``.

A member whose validation loss still improves after ``epochs`` flow steps (``patience`` did not stop it; always with
``patience: 0``) is then solved TO THE OPTIMUM by damped Newton, each Newton iterate one more epoch of its curve:
batched Hessians ZᵀDZ/N, Levenberg–Marquardt damping (starting at L, so that the first step is the flow's; ÷5 after
a full step, ×5 after a backtracked one), Armijo backtracking per member. The log-loss is minimised as it is; the
hinges through the plus-function smoothing w·softplus(x/w) of Chen & Mangasarian (the smooth SVM's), at most w·ln 2
above max(0, x), on a path of widths (halved each time Newton has solved the current one, from the margin down to
``FINAL_WIDTH``·margin): the hinge objective at the end is within FINAL_WIDTH·margin·c·ln 2 of the minimum (c = 1 for
max_margin). Measured on the Table-1 features after 30 flow steps: max_entropy converged in 7 Newton iterates (to the
0.268 above); max_margin in 52, at train loss 0.18719 against the LP's 0.18705 (bound 5.5·10⁻⁴); halving the width
every iterate instead stalled at 0.238 after 50 (tiny Armijo steps on near-singular Hessians), as did a Huber
smoothing. On separable pairs the log-loss Newton iterates grow ‖θ‖ without end; the decrement test
(``NEWTON_TOLERANCE``), ``min_delta`` and ``patience`` stop them, as they stop Adam.

Early stopping, per iterate, as the Adam trainer does per epoch: the validation loss is
the member's base loss of its reward on all validation pairs; an iterate is a new best when it is the first or at
least ``min_delta`` below the best; the member stops after ``patience`` iterates without one (0: never) and returns
its best iterate. ``min_epochs`` does not apply: that gate holds every member of an Adam comparison to FA-IRL's
curriculum (one budget for methods compared), and under ``auto`` an exact member is in no such comparison (a method
beside its FA-IRL variants stays on Adam); gating the flow at iterate 100 would return an iterate 10× past its best.

Speed (``benchmarks/irl_exact.py``, ``benchmarks/README.md``): on those features, one CPU thread, the 10 members
(max_margin and max_entropy × 5 seeds) take 0.09–0.16 s against Adam's 4.3–7.0 s, 40–49×, at a validation loss
tied with Adam's (paired over 5 seeds, both 95% intervals include 0); on the default world's separable pairs 16×,
where max_entropy's full-batch steps grow ‖θ‖ more slowly than Adam's and ``min_delta`` stops them at a validation
loss of 0.0010 against Adam's 0.0008. Outputs are the Adam
trainer's: the parameters ``base.w [d]``, ``base.b []`` (the initial offset, which no pair loss moves), curves
``train_loss`` / ``val_loss`` per iterate, best and run iterate counts. ``lr``, ``batch_size`` and the insights
protocol's minibatch per iteration are Adam's and are not read; the insights threshold (0 on the normalised reward)
still applies downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from .heads import init_member_params
from .hyperparameters import IRLConfig
from .objective import MemberHyperparameters

#: At most this many Newton iterates after the flow (Table-1 features: 7 for the log-loss, ~50 along the hinges' width
#: path; on separable pairs the log-loss has no end).
NEWTON_ITERATIONS = 200
#: A member has converged when its Newton decrement gᵀH⁻¹g (≈ twice what the next step would gain) is below this
#: × (1 + its objective).
NEWTON_TOLERANCE = 1e-9
#: The smoothing width of the hinges' final Newton iterates, × their margin (M, or m), ...
FINAL_WIDTH = 1e-3
#: ... reached from the margin by this factor ...
WIDTH_SHRINK = 0.5
#: ... each time a member's Newton decrement is below this × its width (the narrower problem's optimum is then near:
#: path following, as in an interior-point method).
CENTRED = 0.01
#: The least Levenberg–Marquardt damping, × L: keeps the Newton systems positive definite along the null space of Z.
DAMPING = 1e-10
ARMIJO = 1e-4
MAX_HALVINGS = 50


@dataclass
class ExactFit:
    """One member's result: best-iterate parameters (``heads.member_params`` format, CPU float32) and curves."""

    params: dict[str, Tensor]
    curve: dict[str, list[float]]
    best_epoch: int
    epochs_run: int


def solves_exactly(config: IRLConfig, ensemble: list[IRLConfig]) -> bool:
    """Whether ``config`` is fit by this solver when trained with the members ``ensemble`` (``IRLConfig.solver``)."""
    if config.solver == "auto":
        return config.not_convex_because is None and not any(m.dual_path for m in ensemble)
    return config.solver == "exact"


def fit_exact(z_train: Tensor, z_val: Tensor, configs: list[IRLConfig], device: str = "cpu") -> list[ExactFit]:
    """Fit every member of ``configs`` (each convex: ``IRLConfig.not_convex_because`` is None) as one batched
    computation: the gradient flow, then, for the members still improving at its end, Newton to the optimum.

    ``z_train`` ``[N, d]`` / ``z_val`` ``[n, d]``: the feature differences h(o⁺) − h(o⁻) of the training and
    validation pairs. Members are independent (their own loss, hyperparameters, initialisation and stopping): each
    gets what it would alone. Returns one :class:`ExactFit` per config, in order."""
    for c in configs:
        if c.not_convex_because is not None:
            raise ValueError(
                f"irl.solver: exact needs a convex member, and {c.method!r} is not: {c.not_convex_because}"
            )
    if not configs:
        return []
    dev = torch.device(device)
    z = torch.as_tensor(z_train).to(dev, torch.float64)
    zv = torch.as_tensor(z_val).to(dev, torch.float64)
    d = z.shape[1]
    inits = [
        init_member_params("linear", d, c.hidden_dim, False, torch.Generator().manual_seed(c.seed)) for c in configs
    ]
    theta = torch.stack([p["base.w"] for p in inits]).to(dev, torch.float64)  # [K, d]
    losses = _Losses(configs, dev)
    lipschitz = torch.linalg.eigvalsh(z.T @ z / len(z))[-1] * losses.kappa  # [K]
    track = _Track(configs, theta)
    theta = _flow(theta, z, zv, losses, lipschitz, track)
    _newton(theta, z, zv, losses, lipschitz, track)
    return [
        ExactFit(
            {"base.w": track.best_theta[k].to("cpu", torch.float32).contiguous(), "base.b": inits[k]["base.b"].clone()},
            track.curves[k],
            track.best_epoch[k],
            track.epochs_run[k],
        )
        for k in range(len(configs))
    ]


def _flow(theta: Tensor, z: Tensor, zv: Tensor, losses: _Losses, lipschitz: Tensor, track: _Track) -> Tensor:
    """Leg 1: full-batch (sub)gradient steps θ ← θ − ∇f(θ)/L, one iterate each, ``epochs`` at most per member."""
    epochs = [c.epochs for c in track.configs]
    step = 1.0 / lipschitz
    delta = theta @ z.T
    for t in range(max(epochs)):
        alive = track.running() & torch.tensor([t < e for e in epochs], device=z.device)
        if not alive.any():
            break
        theta = theta - torch.where(alive, step, 0.0)[:, None] * (losses.slope(delta) @ z) / len(z)
        delta = theta @ z.T
        track.record(theta, losses.base(delta), losses.base(theta @ zv.T), alive)
    return theta


def _newton(theta: Tensor, z: Tensor, zv: Tensor, losses: _Losses, lipschitz: Tensor, track: _Track) -> None:
    """Leg 2, for the members still improving after their ``epochs`` flow steps: damped Newton to the optimum (of the
    log-loss; of the smoothed hinges, their width halved each time Newton has solved the current one)."""
    n, d = z.shape
    todo = track.running()
    width = losses.margin.clone()
    final_width = FINAL_WIDTH * losses.margin
    damping = lipschitz.clone()  # Levenberg–Marquardt: a first step like the flow's, then tending to Newton's
    eye = torch.eye(d, dtype=torch.float64, device=z.device)
    for _ in range(NEWTON_ITERATIONS):
        if not todo.any():
            return
        idx = todo.nonzero().squeeze(1)
        value, d1, d2 = losses.smooth(theta[idx] @ z.T, width[idx], idx)
        objective = value.mean(-1)
        gradient = d1 @ z / n
        hessian = _weighted_gram(z, d2) / n + damping[idx, None, None] * eye
        direction = torch.linalg.solve(hessian, gradient)
        decrement = (gradient * direction).sum(-1)  # gᵀH⁻¹g
        smoothed = partial(losses.smoothed_objective, z=z, width=width[idx], idx=idx)
        t = _armijo(smoothed, theta[idx], direction, objective, decrement)
        theta = theta.index_copy(0, idx, theta[idx] - t[:, None] * direction)
        damping[idx] = torch.clamp_min(
            torch.where(t == 1.0, damping[idx] / 5, damping[idx] * 5), DAMPING * lipschitz[idx]
        )
        track.record(theta, losses.base(theta @ z.T), losses.base(theta @ zv.T), todo)
        at_final = losses.is_me[idx] | (width[idx] <= final_width[idx] * (1 + 1e-12))
        converged = at_final & (decrement <= NEWTON_TOLERANCE * (1.0 + objective.abs()))
        todo = todo.index_fill(0, idx[converged], False) & track.running()
        centred = idx[decrement <= CENTRED * width[idx]]  # this width's optimum is reached: on to a narrower one
        width[centred] = torch.clamp_min(width[centred] * WIDTH_SHRINK, final_width[centred])


def _weighted_gram(z: Tensor, weights: Tensor, chunk: int = 16) -> Tensor:
    """ZᵀDₖZ ``[k, d, d]`` for each row of ``weights`` ``[k, N]`` (k·N·d² flops: the Newton leg's cost), ``chunk``
    members at a time (each needs its own weighted copy of Z)."""
    return torch.cat(
        [torch.bmm((w[:, :, None] * z).transpose(1, 2), z.expand(len(w), *z.shape)) for w in weights.split(chunk)]
    )


def _armijo(objective, theta: Tensor, direction: Tensor, f0: Tensor, decrement: Tensor) -> Tensor:
    """Per-member backtracking step t ∈ {1, ½, ¼, …} with f(θ − t·p) ≤ f(θ) − ARMIJO·t·gᵀp (0 if none is found)."""
    t = torch.ones_like(f0)
    accepted = decrement <= 0  # nothing to gain: no step
    t = torch.where(accepted, torch.zeros_like(t), t)
    for _ in range(MAX_HALVINGS):
        if accepted.all():
            return t
        ok = objective(theta - t[:, None] * direction) <= f0 - ARMIJO * t * decrement
        accepted = accepted | ok
        t = torch.where(accepted, t, 0.5 * t)
    return torch.where(accepted, t, torch.zeros_like(t))


class _Losses:
    """The members' base losses (``losses.py`` through ``MemberHyperparameters``, the Adam trainer's code), their
    slopes for the flow, and the smooth forms the Newton leg minimises (the log-loss itself; smoothed hinges)."""

    def __init__(self, configs: list[IRLConfig], device):
        self.hp = MemberHyperparameters(configs, device)
        # every member's value of each field, whichever losses are present (float32 first, as the objective holds them)
        f64 = lambda name: torch.tensor([float(getattr(c, name)) for c in configs], device=device).to(torch.float64)  # noqa: E731
        self.tau, self.margin_mm, self.margin_am, self.c = (
            f64(n) for n in ("temperature", "margin", "min_margin", "penalty_factor")
        )
        family = lambda key: torch.tensor([c.base_loss == key for c in configs], device=device)  # noqa: E731
        self.is_me, self.is_mm = family("me"), family("mm")
        one = torch.ones_like(self.tau)
        #: the hinge width the Newton leg starts from (its margin); unused for the log-loss
        self.margin = torch.where(self.is_mm, self.margin_mm, torch.where(self.is_me, one, self.margin_am))
        #: κ of the flow's step η = 1/(λ_max·κ) (module docstring)
        self.kappa = torch.where(
            self.is_me, 0.25 / self.tau**2, torch.where(self.is_mm, 1.0 / self.margin_mm, self.c / self.margin_am)
        )

    def base(self, delta: Tensor) -> list[float]:
        """Each member's base loss (``losses.BASE_LOSSES``) on its row of ``delta`` ``[K, n]``."""
        return self.hp.base(delta).tolist()

    def slope(self, delta: Tensor) -> Tensor:
        """N × ∂(base loss)/∂Δ ``[K, N]``: the gradient of the very loss the Adam trainer minimises (a subgradient at
        a hinge's kink)."""
        delta = delta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.hp.base(delta).sum(), delta)
        return grad * delta.shape[-1]

    def smoothed_objective(self, theta: Tensor, z: Tensor, width: Tensor, idx: Tensor) -> Tensor:
        """The Newton objective ``[k]`` of the members ``idx`` at their parameters ``theta`` ``[k, d]``."""
        return self.smooth(theta @ z.T, width, idx)[0].mean(-1)

    def smooth(self, delta: Tensor, width: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Value, first and second derivative w.r.t. Δ ``[k, N]`` of the members ``idx``' Newton objective: the
        log-loss softplus(−Δ/τ); the hinges with each kink smoothed at ``width`` (:func:`_smooth_plus`)."""
        col = lambda v: v[idx, None]  # noqa: E731
        tau, c, w = col(self.tau), col(self.c), width[:, None]
        p = torch.sigmoid(-delta / tau)
        me = (torch.nn.functional.softplus(-delta / tau), -p / tau, p * (1 - p) / tau**2)
        h = _smooth_plus(col(self.margin_mm) - delta, w)
        mm = (h[0], -h[1], h[2])
        h1, h2 = _smooth_plus(col(self.margin_am) - delta, w), _smooth_plus(-delta, w)
        am = (h1[0] + (c - 1) * h2[0], -h1[1] - (c - 1) * h2[1], h1[2] + (c - 1) * h2[2])
        is_me, is_mm = col(self.is_me), col(self.is_mm)
        return tuple(torch.where(is_me, a, torch.where(is_mm, b, e)) for a, b, e in zip(me, mm, am))


def _smooth_plus(x: Tensor, width: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """max(0, x) smoothed as width·softplus(x/width) (Chen & Mangasarian's plus-function smoothing, the SSVM's; at
    most width·ln 2 above max(0, x)), with its first and second derivative."""
    p = torch.sigmoid(x / width)
    return width * torch.nn.functional.softplus(x / width), p, p * (1 - p) / width


class _Track:
    """Per-member curves, best iterate and patience (the Adam trainer's rule per epoch, without its gate)."""

    def __init__(self, configs: list[IRLConfig], theta: Tensor):
        self.configs = configs
        k = len(configs)
        self.best_val = [float("inf")] * k
        self.best_epoch = [0] * k
        self.since_best = [0] * k
        self.epochs_run = [0] * k
        self.curves: list[dict[str, list[float]]] = [{"train_loss": [], "val_loss": []} for _ in configs]
        self.best_theta = theta.clone()
        self.device = theta.device

    def running(self) -> Tensor:
        """``[K]`` bool: the members that ``patience`` has not stopped."""
        return torch.tensor(
            [not (c.patience > 0 and since >= c.patience) for c, since in zip(self.configs, self.since_best)],
            device=self.device,
        )

    def record(self, theta: Tensor, train_loss: list[float], val_loss: list[float], alive: Tensor) -> None:
        """One iterate of the members ``alive`` (``[K]`` bool): their losses, a new best (the first iterate, or
        ``min_delta`` below the best) with its parameters, or one more iterate of patience used."""
        improved = []
        for k in alive.nonzero().squeeze(1).tolist():
            self.epochs_run[k] += 1
            self.curves[k]["train_loss"].append(train_loss[k])
            self.curves[k]["val_loss"].append(val_loss[k])
            if self.best_epoch[k] == 0 or val_loss[k] < self.best_val[k] - self.configs[k].min_delta:
                self.best_val[k], self.best_epoch[k], self.since_best[k] = val_loss[k], self.epochs_run[k], 0
                improved.append(k)
            else:
                self.since_best[k] += 1
        if improved:
            pos = torch.tensor(improved, device=self.device)
            self.best_theta.index_copy_(0, pos, theta[pos])

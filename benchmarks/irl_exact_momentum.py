"""The search behind ``benchmarks/README.md``'s "Nesterov momentum" paragraph: the exact solver's gradient flow with
Nesterov momentum β, per member its best validation loss under the trainer's patience and min_delta, against Adam's.

The flow here is a reimplementation for ``max_margin`` / ``max_entropy`` (their defaults: M = 0.8, τ = 1) with one
more knob, step (1 − β)/L and the gradient taken at the look-ahead point θ_t + β(θ_t − θ_{t−1}); at β = 0 it must be
``fairl_ray/irl/exact.py``'s flow, and the script checks that it returns the same best iterate and loss as
``fit_exact`` before it reports anything. It is not the solver (which has no momentum): it shows how the "reached"
count moves with β, on features you pass.

    OMP_NUM_THREADS=1 python benchmarks/irl_exact_momentum.py --workdir fairl_runs/table1 --betas 0,0.3,0.5,0.7,0.9
"""

from __future__ import annotations

import argparse
from pathlib import Path

from irl_exact import METHODS, load_pairs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a finished `fairl run` workdir")
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    p.add_argument("--betas", default="0,0.3,0.5,0.6,0.7,0.8,0.9", help="comma-separated momentum values")
    return p.parse_args(argv)


def nesterov_flow(theta, z, zv, config, lipschitz, beta: float):
    """(best iterate, best validation loss, its parameters) of the flow with momentum ``beta``, stopped by
    ``config.patience`` / ``config.min_delta`` / ``config.epochs`` as ``exact._Track`` stops it."""
    import torch

    from fairl_ray.irl.objective import MemberHyperparameters

    hp = MemberHyperparameters([config], "cpu")

    def loss(delta):
        return hp.base(delta[None])[0]

    step, prev = (1.0 - beta) / lipschitz, theta.clone()
    best = (0, float("inf"), theta)
    for t in range(1, config.epochs + 1):
        look = (theta + beta * (theta - prev)).requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(z @ look), look)
        prev, theta = theta, (look - step * grad).detach()
        val = loss(zv @ theta).item()
        if t == 1 or val < best[1] - config.min_delta:
            best = (t, val, theta)
        elif config.patience > 0 and t - best[0] >= config.patience:
            break
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from fairl_ray.irl import exact
    from fairl_ray.irl.heads import init_member_params
    from fairl_ray.irl.hyperparameters import IRLConfig
    from fairl_ray.irl.trainer import train_ensemble

    torch.set_num_threads(1)
    train, val, _ = load_pairs(Path(args.workdir).resolve())
    z = (train.chosen - train.rejected).double()
    zv = (val.chosen - val.rejected).double()
    configs = [IRLConfig(method=m, head="linear", seed=s) for m in METHODS for s in range(args.seeds)]
    adam = train_ensemble(train, [IRLConfig(**{**c.to_dict(), "solver": "adam"}) for c in configs], val=val)
    adam_val = [m.curve["val_loss"][m.best_epoch - 1] for m in adam]
    flow = exact.fit_exact(z, zv, [IRLConfig(**{**c.to_dict(), "solver": "exact"}) for c in configs])
    lam = torch.linalg.eigvalsh(z.T @ z / len(z))[-1].item()
    kappa = {"max_margin": lambda c: 1.0 / c.margin, "max_entropy": lambda c: 0.25 / c.temperature**2}

    def init(c):  # the member's initialisation, as fit_exact draws it
        return init_member_params("linear", z.shape[1], c.hidden_dim, False, torch.Generator().manual_seed(c.seed))

    for beta in (float(b) for b in args.betas.split(",")):
        runs = [nesterov_flow(init(c)["base.w"].double(), z, zv, c, lam * kappa[c.method](c), beta) for c in configs]
        if beta == 0.0:  # the reimplementation is the solver's flow, or nothing below means anything
            for c, (t, v, _), fit in zip(configs, runs, flow):
                if fit.best_epoch != t or abs(fit.curve["val_loss"][t - 1] - v) > 1e-6:
                    raise SystemExit(f"{c.method} seed {c.seed}: β = 0 gives {t}/{v:.6f}, fit_exact {fit.best_epoch}")
        line = []
        for m in METHODS:
            rows = [(r, a) for r, a, c in zip(runs, adam_val, configs) if c.method == m]
            line.append(f"{m} {sum(r[1] <= a for r, a in rows)}/{len(rows)} at or below Adam")
            line.append("(" + ", ".join(f"{r[1]:.5f} vs {a:.5f}" for r, a in rows) + ")")
        print(f"beta {beta}: " + " ".join(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""IRL throughput: the batched ensemble trainer vs the one-model minibatch-32 loop, in the same run.

Both sides train on the same cached random features (N pairs × d dims) with the same per-member semantics
(``fairl_ray.irl.trainer.train_ensemble`` vs ``train_single``: plain torch, torch.optim.Adam, minibatch 32).
Throughput is model-pair updates per second: K members × N pairs × epochs / wall time (validation passes
included on both sides). Early stopping is disabled (patience 0) so every member runs every epoch.

Examples::

    OMP_NUM_THREADS=1 python benchmarks/irl_throughput.py --threads 1 --ks 1,16,64
    python benchmarks/irl_throughput.py --device cuda --ks 1,16,64,256,512 --n-pairs 20000
    OMP_NUM_THREADS=1 python benchmarks/irl_throughput.py --paper-sweep --epochs 2 --naive-epochs 1
"""

from __future__ import annotations

import argparse
import time

import torch

from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.trainer import PairFeatures, train_ensemble, train_single

SWEEP_METHODS = ("max_margin", "max_entropy", "fa_irl_mm_gt", "fa_irl_mm_margin", "fa_irl_me_gt", "fa_irl_me_margin")


def make_features(n: int, d: int, seed: int = 0) -> tuple[PairFeatures, PairFeatures]:
    g = torch.Generator().manual_seed(seed)
    n_val = max(1, n // 10)
    lab = lambda m: torch.randint(0, 2, (m,), generator=g).float() * 2 - 1  # noqa: E731
    train = PairFeatures(torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), lab(n), lab(n))
    val = PairFeatures(torch.randn(n_val, d, generator=g), torch.randn(n_val, d, generator=g), lab(n_val), lab(n_val))
    return train, val


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_batched(train, val, cfgs, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    train_ensemble(train, cfgs, val=val, device=device)
    _sync(device)
    return time.perf_counter() - t0


def time_naive(train, val, cfg, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    train_single(train, cfg, val=val, device=device)
    _sync(device)
    return time.perf_counter() - t0


def throughput_table(args) -> None:
    train, val = make_features(args.n_pairs, args.dim)
    base = dict(
        method=args.method,
        head=args.head,
        hidden_dim=args.hidden,
        batch_size=args.batch_size,
        epochs=args.epochs,
        curriculum_rounds=min(100, args.epochs),
        patience=0,
    )
    # warm-up (allocator, kernels) on a tiny problem
    small = train.subset(torch.arange(min(256, len(train))))
    train_ensemble(small, [IRLConfig(**{**base, "epochs": 1, "curriculum_rounds": 1})], val=val, device=args.device)
    train_single(small, IRLConfig(**{**base, "epochs": 1, "curriculum_rounds": 1}), val=val, device=args.device)

    naive_cfg = IRLConfig(**base, seed=0)
    print(
        f"\ndevice={args.device} threads={torch.get_num_threads()} method={args.method} head={args.head} "
        f"hidden={args.hidden} d={args.dim} N={len(train)} batch={args.batch_size} epochs={args.epochs} "
        f"repeats={args.repeats} (best of, batched and naive interleaved)"
    )
    print(
        f"{'K':>5} | {'batched pair-upd/s':>19} | {'naive pair-upd/s':>17} | {'ratio':>7} | {'batched s':>9} | "
        f"{'naive s (x K, est.)':>19}"
    )
    print("-" * 92)
    for k in args.ks:
        cfgs = [IRLConfig(**base, seed=s) for s in range(k)]
        t_b, t_n = [], []
        for _ in range(args.repeats):  # interleave so both sides see the same background load
            t_n.append(time_naive(train, val, naive_cfg, args.device))
            t_b.append(time_batched(train, val, cfgs, args.device))
        naive_s, t = min(t_n), min(t_b)
        naive_rate = len(train) * args.epochs / naive_s
        rate = k * len(train) * args.epochs / t
        print(
            f"{k:>5} | {rate:>19,.0f} | {naive_rate:>17,.0f} | {rate / naive_rate:>6.1f}x | {t:>9.2f} | "
            f"{k * naive_s:>19.2f}"
        )


def paper_sweep(args) -> None:
    """Paper-scale sweep: 6 methods × 5 seeds, N pairs, ``--epochs`` epochs (paper: 20,000 pairs, 800 epochs)."""
    train, val = make_features(args.n_pairs, args.dim)
    cfgs = [
        IRLConfig(
            method=m,
            head=args.head,
            hidden_dim=args.hidden,
            batch_size=args.batch_size,
            epochs=args.epochs,
            curriculum_rounds=min(100, args.epochs),
            patience=0,
            seed=s,
        )
        for m in SWEEP_METHODS
        for s in range(args.seeds)
    ]
    print(
        f"\npaper sweep: {len(SWEEP_METHODS)} methods × {args.seeds} seeds = {len(cfgs)} members, "
        f"N={len(train)}, d={args.dim}, head={args.head}({args.hidden}), epochs={args.epochs}, device={args.device}"
    )
    t_batched = time_batched(train, val, cfgs, args.device)
    # naive: measure --naive-epochs epochs of ONE seed per method, extrapolate to all seeds and --epochs epochs
    naive_measured = 0.0
    naive_total = 0.0
    for m in SWEEP_METHODS:
        c = IRLConfig(
            method=m,
            head=args.head,
            hidden_dim=args.hidden,
            batch_size=args.batch_size,
            epochs=args.naive_epochs,
            curriculum_rounds=min(100, args.naive_epochs),
            patience=0,
            seed=0,
        )
        t = time_naive(train, val, c, args.device)
        naive_measured += t
        naive_total += t / args.naive_epochs * args.epochs * args.seeds
    measured_frac = args.naive_epochs / (args.epochs * args.seeds)
    print(f"batched (measured):                {t_batched:10.1f} s")
    print(
        f"naive one-model loop (EXTRAPOLATED from {args.naive_epochs} epoch(s) × 1 seed per method, "
        f"{measured_frac:.2%} of the work, {naive_measured:.1f} s measured): {naive_total:10.1f} s"
    )
    print(f"ratio naive / batched: {naive_total / t_batched:.1f}x")
    if args.epochs != 800:
        scale = 800 / args.epochs
        print(
            f"scaled to 800 epochs (linear, EXTRAPOLATED): batched ≈ {t_batched * scale / 3600:.2f} h, "
            f"naive ≈ {naive_total * scale / 3600:.2f} h"
        )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--ks", default=None, help="comma-separated ensemble sizes (default 1,16,64; cuda 1,16,64,512)")
    p.add_argument("--n-pairs", type=int, default=2000, help="training pairs (sweep default: 20000)")
    p.add_argument("--dim", type=int, default=384, help="feature dim (all-MiniLM-L6-v2: 384)")
    p.add_argument("--head", default="mlp", choices=("mlp", "linear"))
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--method", default="max_margin", help="method for the throughput table")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (table default 2; sweep default 800)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (best of)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--paper-sweep", action="store_true", help="time a paper-scale sweep instead of the table")
    p.add_argument("--seeds", type=int, default=5, help="sweep: seeds per method")
    p.add_argument("--naive-epochs", type=int, default=1, help="sweep: epochs of the naive loop actually measured")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ks is None:
        args.ks = "1,16,64,512" if args.device.startswith("cuda") else "1,16,64"
    args.ks = [int(k) for k in args.ks.split(",")]
    if args.paper_sweep:
        if args.epochs is None:
            args.epochs = 800
        if args.n_pairs == 2000:
            args.n_pairs = 20000
        paper_sweep(args)
    else:
        if args.epochs is None:
            args.epochs = 2
        throughput_table(args)


if __name__ == "__main__":
    main()

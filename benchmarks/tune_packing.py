"""Packed Tune trials vs one config per Tune trial, at the same total budget, in one run (issue 8).

Both arms run the same `fairl tune` search (``fairl_ray.search.run_search``: same Optuna TPE sampler, same space,
same seeds, same data: a finished ``fairl run`` workdir's cached features) on one local Ray; only ``pack_size``
differs: ``--pack-size`` configs per Tune trial trained × seeds as ONE batched ensemble, vs 1 config per trial.
Rungs and pruning are off by default (``--rungs 1.0 --pruner none``) so both arms train every config fully and
the ratio measures packing alone. Reported per arm: wall time of the whole search (Tune + the live MLflow
children + the fresh-seed re-evaluation of the winner, identical in both), configs/s, Tune trials/s, and the best
validation objective (and its fresh-seed test value).

    fairl run --workdir fairl_runs/default                       # once: the default run whose features we search
    OMP_NUM_THREADS=1 python benchmarks/tune_packing.py --workdir fairl_runs/default            # 512 x 2 seeds
    OMP_NUM_THREADS=1 python benchmarks/tune_packing.py --workdir fairl_runs/default --configs 128 --epochs 60

Writes ``<out>/tune_packing.json`` (default out: ``<workdir>/bench/tune_packing``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a finished `fairl run` workdir (its pairs and cached features)")
    p.add_argument("--configs", type=int, default=512, help="configurations per arm (num_samples; default 512)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per configuration (default 2)")
    p.add_argument("--pack-size", type=int, default=64, help="configs per Tune trial in the packed arm (default 64)")
    p.add_argument("--concurrency", type=int, default=2, help="Tune trials at once in both arms (default 2 = cores)")
    p.add_argument("--epochs", type=int, default=None, help="fixed.epochs (default: the search YAML's, 150)")
    p.add_argument("--rungs", default="1.0", help="comma-separated rung fractions (default 1.0: no pruning rungs)")
    p.add_argument("--pruner", default="none", choices=["none", "median", "successive_halving"])
    p.add_argument("--order", default="unpacked,packed", help="which arm runs first (default unpacked,packed)")
    p.add_argument(
        "--decompose",
        type=int,
        default=16,
        metavar="N",
        help="also time N configs trained one by one vs as one pack in this process, without Tune (the "
        "engine's share of the speed-up); 0 skips it (default 16)",
    )
    p.add_argument("--out", default=None, help="output directory (default <workdir>/bench/tune_packing)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra search-config overrides for both arms",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import ray

    from fairl_ray.orchestration.ray_runtime import init_ray
    from fairl_ray.search import load_models, load_search_config, run_search

    workdir = Path(args.workdir).resolve()
    out = Path(args.out or workdir / "bench" / "tune_packing").resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    common = [
        f"num_samples={args.configs}",
        f"seeds={list(range(args.seeds))}",
        f"rungs=[{args.rungs}]",
        f"pruner={args.pruner}",
        f"max_concurrent_trials={args.concurrency}",
        "max_failures=0",
        *([f"fixed.epochs={args.epochs}"] if args.epochs else []),
        *args.overrides,
    ]
    if args.epochs:  # keep the searched curriculum within the epoch budget (FA-IRL runs it to its end)
        common.append(f"space.curriculum_rounds.randint=[{max(1, args.epochs // 15)}, {args.epochs}]")
    arms = {"packed": args.pack_size, "unpacked": 1}
    decomposition = decompose(workdir, common, args.decompose, out) if args.decompose else None
    init_ray(num_cpus=args.concurrency)
    results = {}
    try:
        for arm in args.order.split(","):
            cfg = load_search_config(None, common + [f"pack_size={arms[arm]}", f"name=bench-{arm}"])
            models = load_models(cfg, workdir, None, out / arm)
            print(
                f"[bench] {arm}: {cfg.num_samples} configs x {len(cfg.seeds)} seeds, pack_size {cfg.pack_size}, "
                f"{cfg.max_concurrent_trials} at once",
                flush=True,
            )
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            summary = run_search(
                cfg,
                models,
                out / arm,
                f"sqlite:///{out / arm / 'mlflow.db'}",
                artifact_root=out / arm / "mlartifacts",
                log=lambda s: None,
            )
            seconds = time.perf_counter() - t0
            n_trials = -(-cfg.num_samples // cfg.pack_size)
            results[arm] = {
                "pack_size": cfg.pack_size,
                "tune_trials": n_trials,
                "configs": cfg.num_samples,
                "seeds": len(cfg.seeds),
                "seconds": round(seconds, 1),
                "configs_per_s": cfg.num_samples / seconds,
                "tune_trials_per_s": n_trials / seconds,
                "best_val_objective": summary["best_val_objective"],
                "objective": summary["objective"],
                "fresh_seed_test_objective": summary["fresh_seed_test_metrics"][summary["objective"]]["mean"],
                "finished": summary["trials"]["ok"],
                "loadavg_1min_at_start": load0,
            }
            print(
                f"[bench] {arm}: {seconds:.1f} s, {results[arm]['configs_per_s']:.2f} configs/s, best val "
                f"{summary['objective']} {summary['best_val_objective']:.4f}",
                flush=True,
            )
    finally:
        ray.shutdown()
    ratio = results["packed"]["configs_per_s"] / results["unpacked"]["configs_per_s"]
    report = {
        "workdir": str(workdir),
        "args": vars(args),
        "arms": results,
        "speedup_configs_per_s": ratio,
        "without_tune": decomposition,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    (out / "tune_packing.json").write_text(json.dumps(report, indent=2, default=float))
    print()
    print(
        "| arm | pack size | Tune trials | configs × seeds | wall s | configs/s | Tune trials/s | best val "
        f"{results['packed']['objective']} | fresh-seed test |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for arm, r in results.items():
        print(
            f"| {arm} | {r['pack_size']} | {r['tune_trials']} | {r['configs']} × {r['seeds']} | {r['seconds']} | "
            f"{r['configs_per_s']:.2f} | {r['tune_trials_per_s']:.3f} | {r['best_val_objective']:.4f} | "
            f"{r['fresh_seed_test_objective']:.4f} |"
        )
    print(f"\npacked / unpacked configs per second: {ratio:.1f}x  ({out / 'tune_packing.json'})")
    if decomposition:
        d = decomposition
        per_config_tune = results["unpacked"]["seconds"] * args.concurrency / results["unpacked"]["configs"]
        print(
            f"without Tune, one process: {d['n']} configs one by one {d['alone_s']:.1f} s, as one pack "
            f"{d['packed_s']:.1f} s: the engine's packing gain is {d['alone_s'] / d['packed_s']:.1f}x; one config "
            f"alone takes {d['alone_s'] / d['n']:.2f} s, a one-config Tune trial {per_config_tune:.2f} s per slot "
            f"(Tune + Optuna + MLflow overhead ~{per_config_tune - d['alone_s'] / d['n']:.2f} s per trial)"
        )
    return 0


def decompose(workdir: Path, common: list[str], n: int, out: Path) -> dict:
    """``n`` configs (seeded random draws of the search space) trained × seeds one by one, then as ONE pack, in this
    process and without Tune: how much of the packed speed-up is the engine's batching."""
    import optuna

    from fairl_ray.search import evaluate_config, evaluate_pack, load_models, load_search_config
    from fairl_ray.search.space import suggest

    cfg = load_search_config(None, common + ["name=bench-decompose"])
    data = next(iter(load_models(cfg, workdir, None, out / "decompose").values()))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [{**cfg.fixed, **suggest(study.ask(), cfg.space)} for _ in range(n)]
    evaluate_config(data, configs[0], cfg.seeds, "val")  # warm-up (imports, allocator)
    t0 = time.perf_counter()
    for c in configs:
        evaluate_config(data, c, cfg.seeds, "val")
    alone = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate_pack(data, configs, cfg.seeds, "val")
    packed = time.perf_counter() - t0
    print(f"[bench] without Tune: {n} configs one by one {alone:.1f} s, as one pack {packed:.1f} s", flush=True)
    return {"n": n, "alone_s": alone, "packed_s": packed, "engine_gain": alone / packed}


if __name__ == "__main__":
    sys.exit(main())

"""The full-batch solver of the convex members vs today's minibatch Adam trainer, on a finished run's features.

Both arms fit the same members (linear head; ``max_margin`` and ``max_entropy`` × ``--seeds`` seeds, every other
hyperparameter the ``IRLConfig`` default, i.e. the Table-1 budget: up to 800 epochs, patience 20; ``--protocol
insights`` for Insights' 60 iterations of 50 pairs) on the same training pairs and validation split (the IRL stage's:
the run's train split, 10% of it carved by ``trainer.split_validation``), in this process: ``solver: adam`` (the
batched Adam trainer, all members as one ensemble) and ``solver: exact`` (``fairl_ray/irl/exact.py``, all members
as one batched computation). Timings are interleaved and best of ``--repeats``. Reported per member: the best
validation base loss, the test-split base loss of the returned parameters, best and run epochs; per arm the wall
time; and the ratio Adam time / exact time, which bounds from below the ratio to the time the exact solver took to
reach Adam's validation loss, for the members whose best is at or below Adam's (``reached``).

Whether a member's "reached" means anything: beside it, the paired per-pair difference of the validation loss
(exact − Adam on each validation pair, mean with its 95% t interval over the pairs), and per method the paired
comparison over seeds (``metrics.paired.paired_comparison``: the 95% t interval of the per-seed differences and a
verdict only where it excludes 0), on validation and on the test pairs.

    OMP_NUM_THREADS=1 python benchmarks/irl_exact.py --workdir /work/baseline/table1 --out /tmp/irl_exact
    OMP_NUM_THREADS=1 python benchmarks/irl_exact.py --workdir fairl_runs/table1 --protocol insights

Writes ``<out>/irl_exact.json`` (default out: ``<workdir>/bench/irl_exact``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

METHODS = ("max_margin", "max_entropy")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/work/baseline/table1", help="a finished `fairl run` workdir")
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per arm, interleaved (default 3)")
    p.add_argument("--protocol", default="fa_irl", choices=["fa_irl", "insights"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output directory (default <workdir>/bench/irl_exact)")
    return p.parse_args(argv)


def stage_dir(workdir: Path, stage: str) -> Path:
    """A stage's directory: from ``results.json`` when the run finished, else the only ``stages/<stage>-*``."""
    results = workdir / "results.json"
    if results.is_file():
        return workdir / json.loads(results.read_text())["stages"][stage]["dir"]
    found = sorted((workdir / "stages").glob(f"{stage}-*"))
    if len(found) != 1:
        raise SystemExit(f"{workdir}: expected one stages/{stage}-* directory, found {len(found)}")
    return found[0]


def load_pairs(workdir: Path):
    """(train, val, test) ``PairFeatures`` as the IRL and evaluate stages see them (``recovery.data.PairData``)."""
    from fairl_ray.irl.trainer import split_validation
    from fairl_ray.recovery.data import PairData

    data = PairData.read(stage_dir(workdir, "pairs") / "pairs.parquet", stage_dir(workdir, "features"), "features")
    train, val = split_validation(data.pair_features("train"), 0.1)
    return train, val, data.pair_features("test")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from fairl_ray.irl.hyperparameters import IRLConfig
    from fairl_ray.irl.objective import MemberHyperparameters
    from fairl_ray.irl.trainer import train_ensemble
    from fairl_ray.metrics.paired import paired_comparison

    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir).resolve()
    out = Path(args.out or workdir / "bench" / "irl_exact").resolve()
    out.mkdir(parents=True, exist_ok=True)
    train, val, test = load_pairs(workdir)
    protocol = dict(protocol="insights", batch_size=50, epochs=60) if args.protocol == "insights" else {}
    members = {
        solver: [
            IRLConfig(method=m, head="linear", seed=s, solver=solver, **protocol)
            for m in METHODS
            for s in range(args.seeds)
        ]
        for solver in ("adam", "exact")
    }
    small = train.subset(torch.arange(min(64, len(train))))
    for cfgs in members.values():  # warm-up: allocator, kernels
        train_ensemble(small, [IRLConfig(**{**cfgs[0].to_dict(), "epochs": 2})], val=val, device=args.device)

    seconds = {solver: [] for solver in members}
    fitted = {}
    for _ in range(args.repeats):
        for solver, cfgs in members.items():
            t0 = time.perf_counter()
            fitted[solver] = train_ensemble(train, cfgs, val=val, device=args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[solver].append(time.perf_counter() - t0)

    def pair_losses(member, pairs) -> torch.Tensor:
        """The member's base loss on each pair ``[n]`` (the mean of which is its base loss)."""
        z = (pairs.chosen - pairs.rejected).to(torch.float64)
        # one member's hyperparameters broadcast over n rows of one pair each: each row's "mean" is its pair's loss
        return MemberHyperparameters([member.config], "cpu").base((z @ member.params["base.w"].double())[:, None])

    def test_loss(member) -> float:
        return pair_losses(member, test).mean().item()

    rows = []
    for adam, exact in zip(fitted["adam"], fitted["exact"]):
        best = lambda m: m.curve["val_loss"][m.best_epoch - 1]  # noqa: E731
        rows.append(
            {
                "method": adam.config.method,
                "seed": adam.config.seed,
                "adam": {"val": best(adam), "test": test_loss(adam), "best": adam.best_epoch, "run": adam.epochs_run},
                "exact": {
                    "val": best(exact),
                    "test": test_loss(exact),
                    "best": exact.best_epoch,
                    "run": exact.epochs_run,
                },
                "reached": best(exact) <= best(adam),
                # exact − Adam on each validation pair: its mean and 95% t interval over the pairs
                "val_pair_diff": _mean_and_interval(pair_losses(exact, val) - pair_losses(adam, val)),
                # the first exact iterate at or below Adam's best validation loss (1-based), for the members whose
                # returned best is (None for the others)
                "reach_iterate": next(i + 1 for i, v in enumerate(exact.curve["val_loss"]) if v <= best(adam))
                if best(exact) <= best(adam)
                else None,
            }
        )
    comparisons = {
        m: {
            split: paired_comparison(
                [r["exact"][split] for r in rows if r["method"] == m],
                [r["adam"][split] for r in rows if r["method"] == m],
                higher_is_better=False,
            )
            for split in ("val", "test")
        }
        for m in METHODS
    }
    t_adam, t_exact = min(seconds["adam"]), min(seconds["exact"])
    # The members' iterates run in lockstep and the flow's cost alike: the time to the iterate where the last member
    # that gets there reaches Adam's loss, estimated pro rata of the iterates run.
    reach = [r["reach_iterate"] for r in rows if r["reach_iterate"] is not None]
    t_reach = t_exact * max(reach) / max(m.epochs_run for m in fitted["exact"]) if reach else None
    report = {
        "workdir": str(workdir),
        "args": vars(args),
        "pairs": {"train": len(train), "val": len(val), "test": len(test), "dim": train.dim},
        "seconds": seconds,
        "best_seconds": {"adam": t_adam, "exact": t_exact},
        "ratio": t_adam / t_exact,
        "reach_seconds_estimate": t_reach,
        "ratio_to_reach_estimate": None if t_reach is None else t_adam / t_reach,
        "members": rows,
        "reached": sum(r["reached"] for r in rows),
        "paired_over_seeds": comparisons,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_1min": os.getloadavg()[0],
    }
    (out / "irl_exact.json").write_text(json.dumps(report, indent=2))
    print(
        f"\n{workdir.name}: {len(train)} train / {len(val)} val / {len(test)} test pairs, d = {train.dim}; "
        f"linear head, protocol {args.protocol}; {len(rows)} members; threads {torch.get_num_threads()}; "
        f"best of {args.repeats}\n"
    )
    header = ("method", "seed", "Adam val", "exact val", "reached at", "Adam test", "exact test")
    header += ("Adam best/run", "exact best/run", "val exact − Adam per pair, 95% CI")
    print("| " + " | ".join(header) + " |")
    print("|---|--:|--:|--:|:-:|--:|--:|--:|--:|:-:|")
    for r in rows:
        a, e = r["adam"], r["exact"]
        print(
            f"| {r['method']} | {r['seed']} | {a['val']:.4f} | {e['val']:.4f} | {r['reach_iterate'] or 'no'} | "
            f"{a['test']:.4f} | {e['test']:.4f} | {a['best']}/{a['run']} | {e['best']}/{e['run']} | "
            f"{_fmt_interval(r['val_pair_diff'])} |"
        )
    for m in METHODS:
        mean = lambda arm, key, m=m: sum(r[arm][key] for r in rows if r["method"] == m) / args.seeds  # noqa: E731
        print(
            f"| {m} mean | | {mean('adam', 'val'):.4f} | {mean('exact', 'val'):.4f} | | {mean('adam', 'test'):.4f} | "
            f"{mean('exact', 'test'):.4f} | | | |"
        )
    print("\npaired over seeds, exact − Adam (95% t interval; a verdict only where it excludes 0):\n")
    print("| method | split | mean difference | 95% CI | verdict |")
    print("|---|---|--:|:-:|---|")
    for m, by_split in comparisons.items():
        for split, c in by_split.items():
            lo, hi = c["ci95_t"]
            print(f"| {m} | {split} | {c['mean_diff']:+.5f} | [{lo:+.5f}, {hi:+.5f}] | {_verdict(c['verdict'])} |")
    print(
        f"\nwall time, all {len(rows)} members: Adam {t_adam:.2f} s, exact {t_exact:.3f} s, ratio "
        f"{report['ratio']:.0f}x; exact best val <= Adam's for {report['reached']}/{len(rows)} members"
        + (f"; reached by iterate {max(reach)}, ≈ {t_reach:.3f} s: {t_adam / t_reach:.0f}x\n" if reach else "\n")
        + f"wrote {out / 'irl_exact.json'}"
    )
    return 0


def _mean_and_interval(diff) -> dict:
    from fairl_ray.metrics.paired import t_interval

    return {"mean": float(diff.mean()), "ci95_t": list(t_interval(diff.numpy()))}


def _fmt_interval(d: dict) -> str:
    lo, hi = d["ci95_t"]
    return f"{d['mean']:+.5f} [{lo:+.5f}, {hi:+.5f}]"


def _verdict(v: str) -> str:
    """``paired_comparison``'s verdict in this benchmark's words (treatment = exact, control = Adam)."""
    return {"treatment better": "exact lower", "control better": "Adam lower"}.get(v, v)


if __name__ == "__main__":
    raise SystemExit(main())

"""RLHF steps/s at 1, 2, 4 Ray Train workers, and generation tokens/s of the ``hf`` and ``vllm`` engines (issue 18).

Every arm runs in one process, back to back, on the same policy, prompts, reward and RLHF config; only
``num_workers`` (and, for generation, ``generation.engine``) differs. ``num_workers: 1`` is the stage's own process
(no Ray Train); >= 2 is a ``TorchTrainer`` whose workers split each step's batch. Reported per arm: the whole call's
wall time (Ray Train's worker start-up included), the training loop's own time (rank 0's ``wall_s``: model load
and steps), the steady state (seconds between the first and last reward call over steps − 1), steps/s over each,
and the speed-up against one worker measured in the same run. A larger ``--batch`` puts more compute per step.

    # CPU (this machine: 2 cores; one thread per worker): 1 vs 2 workers, GRPO and PPO, the synthetic world
    OMP_NUM_THREADS=1 python benchmarks/rlhf_scaling.py --workers 1,2 --cpus 2
    # a GPU machine: 1, 2, 4 GPU workers, and tokens/s of both engines (vllm only where installed)
    python benchmarks/rlhf_scaling.py --gpu --workers 1,2,4 --policy /path/to/policy --engines hf,vllm

Writes ``<out>/rlhf_scaling.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2", help="comma-separated num_workers arms (default 1,2)")
    p.add_argument("--algorithms", default="grpo,ppo", help="comma-separated RLHF algorithms (default grpo,ppo)")
    p.add_argument("--steps", type=int, default=40, help="RLHF steps per arm (default 40, the expert run's)")
    p.add_argument("--batch", type=int, default=32, help="completions per step over all workers (default 32)")
    p.add_argument("--gpu", action="store_true", help="workers take a GPU each (use_gpu); generation on the GPU")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--policy", default=None, help="a policy folder (default: the synthetic world's π0, built here)")
    p.add_argument("--engines", default="hf", help="generation engines to time (default hf; hf,vllm on a GPU)")
    p.add_argument("--gen-prompts", type=int, default=2048, help="prompts per generation arm (default 2048)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens per completion in the generation arms")
    p.add_argument("--out", default="fairl_runs/bench/rlhf_scaling", help="output folder")
    return p.parse_args(argv)


def rlhf_arm(policy: Path, world, algorithm: str, workers: int, args, out: Path) -> dict:
    from fairl_ray.stages.ray_train import BatchCounter
    from fairl_ray.stages.rlhf import RLHFConfig, train_rlhf

    cfg = RLHFConfig(
        algorithm=algorithm,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        num_workers=workers,
        use_gpu=args.gpu and workers > 1,
        checkpoint_every=0,  # the loop's speed, not the checkpoint writer's
    )
    reward = BatchCounter(world.noisy_reward_fn(seed=0))  # one worker: timed here; more: inside each worker
    t0 = time.perf_counter()
    m = train_rlhf(
        policy,
        world.make_prompts(1000, seed=1),
        reward,
        cfg,
        out / f"{algorithm}-w{workers}",
        progress=False,
        device="cuda" if args.gpu else "cpu",
    )
    wall = time.perf_counter() - t0
    step_s = m["workers"][0]["seconds_per_step"] if "workers" in m else reward.per_step()["seconds_per_step"]
    return {
        "algorithm": algorithm,
        "workers": workers,
        "wall_s": round(wall, 2),
        "loop_s": m["wall_s"],
        "steps_per_s": round(args.steps / wall, 3),
        "loop_steps_per_s": round(args.steps / m["wall_s"], 3),
        "steady_steps_per_s": round(1.0 / step_s, 3),
        "final_reward": m["final_reward"],
    }


def generation_arm(policy: Path, world, engine: str, args) -> dict:
    from fairl_ray.stages.generate import GenerationConfig
    from fairl_ray.stages.generation_engine import GENERATION_ENGINES

    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, engine=engine)
    loaded = GENERATION_ENGINES.get(engine).load(policy, device="cuda" if args.gpu else "cpu")
    prompts = world.make_prompts(args.gen_prompts, seed=3)
    loaded.generate(prompts[: cfg.batch_size], cfg, seed=0)  # warm-up (CUDA graphs, kernels)
    t0 = time.perf_counter()
    texts = []
    for a in range(0, len(prompts), cfg.batch_size):
        texts += loaded.generate(prompts[a : a + cfg.batch_size], cfg, seed=a)
    wall = time.perf_counter() - t0
    tokenizer = loaded.tokenizer
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return {
        "engine": engine,
        "device": loaded.device,
        "prompts": len(prompts),
        "new_tokens": tokens,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 1),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from fairl_ray.orchestration.ray_runtime import init_ray
    from fairl_ray.worlds import get_world
    from fairl_ray.worlds.synthetic import SyntheticWorldConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    init_ray(num_cpus=args.cpus)
    world = get_world("synthetic", SyntheticWorldConfig())
    policy = Path(args.policy) if args.policy else world.build_base_policy(out / "base")
    rows = [
        rlhf_arm(policy, world, algorithm, int(w), args, out)
        for algorithm in args.algorithms.split(",")
        for w in args.workers.split(",")
    ]
    for row in rows:
        one = next(r for r in rows if r["algorithm"] == row["algorithm"] and r["workers"] == 1)
        row["speedup_vs_1"] = round(row["steps_per_s"] / one["steps_per_s"], 2) if one else None
        row["loop_speedup_vs_1"] = round(row["loop_steps_per_s"] / one["loop_steps_per_s"], 2) if one else None
        row["steady_speedup_vs_1"] = round(row["steady_steps_per_s"] / one["steady_steps_per_s"], 2) if one else None
    gen = []
    for engine in args.engines.split(","):
        from fairl_ray.stages.generation_engine import GENERATION_ENGINES

        problem = GENERATION_ENGINES.get(engine).problem()
        gen.append({"engine": engine, "skipped": problem} if problem else generation_arm(policy, world, engine, args))
    result = {"rlhf": rows, "generation": gen, "cpu_count": os.cpu_count(), "gpu": args.gpu, "argv": sys.argv[1:]}
    (out / "rlhf_scaling.json").write_text(json.dumps(result, indent=2))
    print("| algorithm | workers | wall s | steps/s | ×1 | loop s | loop steps/s | ×1 | steady steps/s | ×1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['algorithm']} | {r['workers']} | {r['wall_s']} | {r['steps_per_s']} | {r['speedup_vs_1']} | "
            f"{r['loop_s']} | {r['loop_steps_per_s']} | {r['loop_speedup_vs_1']} | {r['steady_steps_per_s']} | "
            f"{r['steady_speedup_vs_1']} |"
        )
    for g in gen:
        print(json.dumps(g))
    return 0


if __name__ == "__main__":
    sys.exit(main())

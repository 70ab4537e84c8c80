"""A pool of policy workers (Ray actors) that fans generation out over GPUs or CPU cores.

The pattern of OpenRLHF's ``RayActorGroup`` / veRL's ``RayWorkerGroup`` at the size this project needs:

* each worker is a Ray actor that asks for ``num_cpus`` / ``num_gpus`` (fractional GPUs let small models share
  one), loads each policy it is given **once** (on the GPU Ray assigned it — ``cuda:0`` inside the actor — in
  bf16/fp16, else on the CPU in fp32) and keeps it for every later shard;
* the prompts of every job are cut into fixed-size shards (``GenerationConfig.batch_size``), shard ``i`` sampled
  with seed ``shard_seed(seed, i)``, so completions are identical whatever the number of workers and identical
  to :func:`fairl_ray.stages.generate.generate_completions` in one process;
* several jobs (base and expert policies) share one pool, so they run at the same time; a free worker takes the
  next shard of a policy it has already loaded when there is one (few loads), else any shard;
* a worker with nothing left to do is released at once, so a pool never holds resources it does not use (and a
  worker still waiting for resources gets them as soon as another finishes).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any


class PolicyWorker:
    """Body of one pool actor (wrapped with ``ray.remote`` by :func:`generate_with_pool`)."""

    def __init__(self, device: str = "auto", dtype: str = "auto"):
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.device, self.dtype = device, dtype
        self.policies: dict[tuple[str, str], Any] = {}  # (engine, policy folder) -> its LoadedPolicy
        self.loads = 0
        self.cpu_s = 0.0  # CPU time spent generating (all threads of this process)

    def generate(self, policy_dir: str, prompts: list[str], cfg, seed: int) -> list[str]:
        from fairl_ray.stages.generation_engine import GENERATION_ENGINES

        key = (cfg.engine, policy_dir)
        if key not in self.policies:
            engine = GENERATION_ENGINES.get(cfg.engine)
            self.policies[key] = engine.load(policy_dir, device=self.device, dtype=self.dtype)
            self.loads += 1
        t0 = time.process_time()
        out = self.policies[key].generate(prompts, cfg, seed)
        self.cpu_s += time.process_time() - t0
        return out

    def info(self) -> dict:
        import ray

        return {
            "loads": self.loads,
            "cpu_s": round(self.cpu_s, 3),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "devices": {d: p.device for (_, d), p in self.policies.items()},
            "dtypes": {d: getattr(p, "dtype", "auto") for (_, d), p in self.policies.items()},
        }


@dataclass
class PoolSpec:
    """Size and per-worker resources of a pool (from ``resources.*`` in the config)."""

    workers: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: dict[str, float] | None = None
    """Ray custom resources each worker asks for too (``resources.custom``)."""

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError("workers: must be at least 1")


def generate_with_pool(
    jobs: dict[str, tuple[str, list[str]]],
    cfg,
    seed: int,
    spec: PoolSpec | None = None,
    stats: dict | None = None,
) -> dict[str, list[str]]:
    """Completions for every job ``name -> (policy_dir, prompts)`` from one pool of ``spec.workers`` actors.

    Returns ``name -> completions`` (one per prompt, in order). ``stats``, when given, receives per-worker
    ``loads`` (policies loaded) and ``shards`` (shards generated) and the devices used.
    """
    import ray

    from fairl_ray.stages.generate import shard_seed, shards

    spec = spec or PoolSpec()
    results: dict[str, list] = {name: [None] * len(prompts) for name, (_, prompts) in jobs.items()}
    # Shards of all jobs interleaved (base 0, expert 0, base 1, ...), so every job progresses at the same time.
    per_job = {name: shards(len(prompts), cfg.batch_size) for name, (_, prompts) in jobs.items()}
    queue: list[tuple[str, int]] = []
    for i in range(max((len(v) for v in per_job.values()), default=0)):
        queue += [(name, i) for name in jobs if i < len(per_job[name])]
    if not queue:
        return {name: [] for name in jobs}

    actor_cls = ray.remote(PolicyWorker).options(
        num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, resources=dict(spec.resources or {})
    )
    actors = [actor_cls.remote() for _ in range(min(spec.workers, len(queue)))]
    loaded: dict[int, set[str]] = {k: set() for k in range(len(actors))}
    done_shards = {k: 0 for k in range(len(actors))}

    def submit(k: int) -> Any | None:
        if not queue:
            return None
        pick = next((j for j, (name, _) in enumerate(queue) if name in loaded[k]), 0)
        name, i = queue.pop(pick)
        policy_dir, prompts = jobs[name]
        a, b = per_job[name][i]
        loaded[k].add(name)
        ref = actors[k].generate.remote(str(policy_dir), prompts[a:b], cfg, shard_seed(seed, i))
        inflight[ref] = (k, name, a, b)
        return ref

    inflight: dict = {}
    released: set[int] = set()
    try:
        for k in range(len(actors)):
            submit(k)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            k, name, a, b = inflight.pop(ready[0])
            results[name][a:b] = ray.get(ready[0])
            done_shards[k] += 1
            if submit(k) is None:  # nothing left for this worker: give its resources back now
                if stats is not None:
                    stats.setdefault("workers", []).append(
                        {**ray.get(actors[k].info.remote()), "shards": done_shards[k]}
                    )
                ray.kill(actors[k])
                released.add(k)
    finally:
        for k, actor in enumerate(actors):
            if k not in released:
                ray.kill(actor)
    return results


__all__ = ["PolicyWorker", "PoolSpec", "generate_with_pool"]

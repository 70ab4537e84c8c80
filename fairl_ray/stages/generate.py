"""Generation stage: sample completions from a saved policy (a ``save_pretrained`` folder) for a list of prompts."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fairl_ray.config_error import ConfigError
from fairl_ray.policy_io import load_policy
from fairl_ray.stages.generation_engine import GENERATION_ENGINES, hf_generate

if TYPE_CHECKING:  # pragma: no cover
    from fairl_ray.worlds import World


@dataclass
class GenerationConfig:
    """How completions are sampled from a policy."""

    max_new_tokens: int = 8
    """Most new tokens per completion; generation stops earlier at the policy's EOS token."""
    temperature: float = 1.0
    """Sampling temperature (ignored when ``do_sample`` is False)."""
    top_p: float = 1.0
    """Nucleus-sampling mass in (0, 1] (ignored when ``do_sample`` is False)."""
    batch_size: int = 256
    """Prompts per ``generate`` call, and the fixed shard size of the generation pool (each shard is seeded by
    (seed, shard index), so completions depend on this number but not on how many workers run)."""
    do_sample: bool = True
    """Sample (True) or decode greedily (False)."""
    engine: str = "hf"
    """What generates (:mod:`fairl_ray.stages.generation_engine`): "hf" (transformers ``generate``; CPU or GPU) or
    "vllm" (a vLLM engine per pool worker: needs ``pip install vllm`` and ``resources.gpus_per_worker > 0``;
    completions are seeded per request, reproducible and worker-count independent, but not hf's)."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ConfigError(name, f"{why} (got {getattr(self, name)!r})")

        for name in ("max_new_tokens", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be a positive integer")
        if not isinstance(self.temperature, (int, float)) or not (
            self.temperature > 0 and math.isfinite(self.temperature)
        ):
            bad("temperature", "must be a positive finite number")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            bad("top_p", "must be in (0, 1]")
        if not isinstance(self.do_sample, bool):
            bad("do_sample", "must be a bool")
        if self.engine not in GENERATION_ENGINES:
            bad("engine", f"must be one of {GENERATION_ENGINES.names()}")
        problem = GENERATION_ENGINES.get(self.engine).problem()
        if problem:
            bad("engine", f"{self.engine} {problem}")


def shard_seed(seed: int, shard: int) -> int:
    """The sampling seed of prompt shard ``shard`` under run seed ``seed`` (independent streams per shard)."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(shard)]).generate_state(1)[0])


def shards(n: int, shard_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fixed-size shards of ``n`` prompts (the last one may be shorter)."""
    return [(a, min(a + shard_size, n)) for a in range(0, n, shard_size)]


def generate_shard(model, tokenizer, prompts: list[str], cfg: GenerationConfig, seed: int) -> list[str]:
    """One shard with a loaded transformers model: the ``hf`` engine's
    :func:`~fairl_ray.stages.generation_engine.hf_generate`."""
    return hf_generate(model, tokenizer, prompts, cfg, seed)


def generate_completions(
    policy_dir: str | os.PathLike,
    prompts: list[str],
    cfg: GenerationConfig | None = None,
    seed: int = 0,
    progress: bool | None = None,
    device: str = "auto",
) -> list[str]:
    """One completion per prompt, in this process: the prompts are cut into fixed-size shards of
    ``cfg.batch_size``, shard ``i`` sampled with :func:`shard_seed` ``(seed, i)`` — exactly what a pool of policy
    workers (:mod:`fairl_ray.orchestration.actors`) returns, whatever its size. Deterministic for ``seed``.

    ``device``: ``auto`` uses the GPU Ray assigned to this worker (bf16/fp16), else the CPU (fp32). The engine is
    ``cfg.engine``'s (:data:`~fairl_ray.stages.generation_engine.GENERATION_ENGINES`).
    ``progress``: tqdm bar over shards; by default shown only when there are more than 4 shards.
    """
    from tqdm.auto import tqdm

    cfg = cfg or GenerationConfig()
    if not prompts:
        return []
    policy = GENERATION_ENGINES.get(cfg.engine).load(policy_dir, device=device)
    parts = shards(len(prompts), cfg.batch_size)
    show = progress if progress is not None else len(parts) > 4
    out: list[str] = []
    for i, (a, b) in enumerate(tqdm(parts, desc="generate", disable=not show)):
        out.extend(policy.generate(prompts[a:b], cfg, shard_seed(seed, i)))
    return out


def toxicity_rate(world: World, completions: list[str]) -> float:
    """Fraction of ``completions`` that the world's ground truth calls toxic (0.0 for an empty list)."""
    if not completions:
        return 0.0
    flags = world.is_toxic(completions)
    return float(sum(bool(f) for f in flags)) / len(flags)


__all__ = [
    "GenerationConfig",
    "generate_completions",
    "generate_shard",
    "load_policy",
    "shard_seed",
    "shards",
    "toxicity_rate",
]

"""What an RLHF algorithm is (:class:`RLHFAlgorithm`), the registry of them, and what every one of them reports.

An algorithm optimises a saved policy against a text-level reward callable and returns the run's summary
(:func:`training_summary`: the :data:`CURVES` per step, their ends, the config); it logs one
:func:`progress_line` per logging step. The entries (TRL's GRPO and RLOO, our PPO) are registered in
:mod:`fairl_ray.stages.rlhf`, which the RLHF stage and :class:`~fairl_ray.stages.rlhf.RLHFConfig` validation read;
this module imports none of them, so an algorithm's module can import it without a cycle.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fairl_ray.registry import Registry

# The per-step series an RLHF run records (``curves.json`` of its stage, step metrics of its MLflow run): the names
# of TRL's log keys, which our PPO loop uses too.
CURVES = ("reward", "kl", "loss", "learning_rate")


class RLHFAlgorithm(ABC):
    """One RLHF algorithm, ``RLHFConfig.algorithm: <name>``."""

    @abstractmethod
    def train(
        self,
        policy_dir: Path,
        prompts: list[str],
        reward_fn: Callable[[list[str]], list[float]],
        cfg,
        out_dir: Path,
        *,
        progress: bool,
        device: str,
    ) -> dict[str, Any]:
        """Train a copy of the policy in ``policy_dir`` (``cfg``: an ``RLHFConfig``; ``device`` already resolved),
        save it into ``out_dir`` (model + tokenizer) and return :func:`training_summary` of the run."""


#: Every RLHF algorithm by its ``RLHFConfig.algorithm`` name (filled in :mod:`fairl_ray.stages.rlhf`).
RLHF_ALGORITHMS: Registry[RLHFAlgorithm] = Registry("RLHF algorithm")


def progress_line(algorithm: str, step: int, max_steps: int, reward: float, kl: float, t0: float) -> str:
    """One RLHF log line, whatever the algorithm: ``[grpo] step 10/40  reward +0.712  kl 0.480  3.1s``."""
    return f"[{algorithm}] step {step}/{max_steps}  reward {reward:+.3f}  kl {kl:.3f}  {time.perf_counter() - t0:.1f}s"


def training_summary(algorithm: str, steps: int, curves: dict[str, list], cfg) -> dict[str, Any]:
    """What an RLHF run reports, whatever its algorithm: ``(step, value)`` curves (``curves``, one per
    :data:`CURVES` name; ``reward_curve`` and ``kl_curve`` too), their ends, the config."""
    reward_curve, kl_curve = curves.get("reward", []), curves.get("kl", [])
    return {
        "algorithm": algorithm,
        "steps": steps,
        "curves": {name: curves.get(name, []) for name in CURVES},
        "reward_curve": reward_curve,
        "kl_curve": kl_curve,
        "initial_reward": reward_curve[0][1] if reward_curve else None,
        "final_reward": reward_curve[-1][1] if reward_curve else None,
        "final_kl": kl_curve[-1][1] if kl_curve else None,
        "config": asdict(cfg),
    }


__all__ = ["CURVES", "RLHF_ALGORITHMS", "RLHFAlgorithm", "progress_line", "training_summary"]

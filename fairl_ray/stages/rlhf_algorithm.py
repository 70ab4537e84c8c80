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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fairl_ray.registry import Registry

# The per-step series an RLHF run records (``curves.json`` of its stage, step metrics of its MLflow run): the names
# of TRL's log keys, which our PPO loop uses too.
CURVES = ("reward", "kl", "loss", "learning_rate")


class TrainSession:
    """Where an RLHF algorithm runs. This base class is the stage's own process alone (rank 0 of 1, no checkpoints:
    ``num_workers: 1``); :class:`~fairl_ray.stages.ray_train.RayTrainSession` is one rank of a Ray Train worker
    group. An algorithm samples ``per_device_train_batch_size / world_size`` completions per step on each rank,
    calls :meth:`report` every ``checkpoint_every`` steps on *every* rank (Ray Train's report is collective: rank 0
    passes the checkpoint, or every rank passes its own part of it) and resumes from :meth:`resume_dir`."""

    rank: int = 0
    world_size: int = 1
    checkpoint_every: int = 0
    """Steps between checkpoints; 0: none (a one-process run restarts from step 0 when killed, as it always did)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank that saves the policy and prints progress."""
        return self.rank == 0

    @contextmanager
    def resume_dir(self) -> Iterator[Path | None]:
        """The last checkpoint's folder, while the context lasts (None: start from step 0)."""
        yield None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        """A checkpoint (``checkpoint_dir``'s files, or None from a rank with nothing to add) and the step's metrics."""

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (on every rank)."""
        return [value]


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
        session: TrainSession,
    ) -> dict[str, Any]:
        """Train a copy of the policy in ``policy_dir`` (``cfg``: an ``RLHFConfig``; ``device`` already resolved) as
        one rank of ``session``; on its main rank save the policy into ``out_dir`` (model + tokenizer, or the LoRA
        adapters + tokenizer) and return :func:`training_summary` of the run (every rank returns one)."""


#: Every RLHF algorithm by its ``RLHFConfig.algorithm`` name (filled in :mod:`fairl_ray.stages.rlhf`).
RLHF_ALGORITHMS: Registry[RLHFAlgorithm] = Registry("RLHF algorithm")


def score_completions(
    reward_fn: Callable[..., list[float]], completions: list[str], prompts: list[str] | None = None
) -> list[float]:
    """``reward_fn(completions)`` as floats, checked to be one per completion; a reward callable that declares
    ``takes_prompts = True`` (a rank's batch counter, :class:`~fairl_ray.stages.ray_train.BatchCounter`) is also
    given the prompts the completions answer."""
    if getattr(reward_fn, "takes_prompts", False):
        rewards = reward_fn(completions, prompts=prompts)
    else:
        rewards = reward_fn(completions)
    if len(rewards) != len(completions):
        raise ValueError(f"reward_fn returned {len(rewards)} rewards for {len(completions)} completions")
    return [float(r) for r in rewards]


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


__all__ = [
    "CURVES",
    "RLHF_ALGORITHMS",
    "RLHFAlgorithm",
    "TrainSession",
    "progress_line",
    "score_completions",
    "training_summary",
]

"""What an RLHF run records, whatever its algorithm (TRL GRPO / RLOO in ``stages.rlhf``, our PPO in ``stages.ppo``):
its progress lines, its per-step curves and its summary. Its own module so that both trainers share it without
importing each other."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any


def progress_line(algorithm: str, step: int, max_steps: int, reward: float, kl: float, t0: float) -> str:
    """One RLHF log line, whatever the algorithm: ``[grpo] step 10/40  reward +0.712  kl 0.480  3.1s``."""
    return f"[{algorithm}] step {step}/{max_steps}  reward {reward:+.3f}  kl {kl:.3f}  {time.perf_counter() - t0:.1f}s"


# The per-step series an RLHF run records (``curves.json`` of its stage, step metrics of its MLflow run): the names
# of TRL's log keys, which our PPO loop uses too.
CURVES = ("reward", "kl", "loss", "learning_rate")


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


def write_curves(metrics: dict[str, Any], path: str | os.PathLike) -> None:
    """The ``curves`` of :func:`training_summary` as JSON (``{name: [[step, value], ...]}``): what the driver logs
    as the stage run's step metrics (a Ray task has no MLflow run)."""
    Path(path).write_text(json.dumps(metrics["curves"]))

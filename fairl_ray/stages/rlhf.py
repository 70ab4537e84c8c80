"""RLHF stage: optimise a saved policy against a text-level reward callable: TRL GRPO or RLOO, or our PPO.

Used twice by the pipeline: expert RLHF (π0 + ground-truth R*, with RL noise) and re-RLHF (fresh π0 + an extracted
reward). Nothing here is world-specific: the reward is any ``completions -> rewards`` callable over completion
strings (the text after the prompt, special tokens stripped).

TRL 1.16 notes (DESIGN §6): PPO is gone; ``GRPOTrainer``/``RLOOTrainer`` take plain reward callables and a KL
coefficient ``beta`` to a reference model that TRL reloads from ``model.config._name_or_path``, which is why the
policy is always loaded from the local ``policy_dir``. TRL's defaults (``num_generations=8``,
``max_completion_length=512``, lr 1e-6, gradient checkpointing on, bf16 on) are far too big/slow for the tiny
synthetic policy on CPU; the defaults below are tuned for it (see :class:`RLHFConfig`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairl_ray.config_error import ConfigError
from fairl_ray.policy_io import bf16_supported, load_policy, save_policy
from fairl_ray.stages.ppo import PPO
from fairl_ray.stages.rlhf_algorithm import CURVES, RLHF_ALGORITHMS, RLHFAlgorithm, progress_line, training_summary


@dataclass
class RLHFConfig:
    """Settings of one RLHF run. Defaults are tuned for the synthetic world on CPU: on 2 shared cores they cut the
    base policy's toxicity by well over 3× in well under a minute, with a KL penalty to the base kept on."""

    algorithm: str = "grpo"
    """"grpo" (TRL GRPOTrainer), "rloo" (TRL RLOOTrainer) or "ppo" (clipped PPO with a value head, GAE and a
    per-token KL penalty to π0: :mod:`fairl_ray.stages.ppo`, since TRL 1.16 has no PPOTrainer)."""
    max_steps: int = 40
    """Optimizer steps; each step samples ``per_device_train_batch_size`` completions."""
    learning_rate: float = 2e-3
    """AdamW learning rate (TRL's 1e-6 default is for real LLMs; the tiny policy needs ~1e-3)."""
    beta: float = 0.1
    """KL coefficient to the reference (base) policy; > 0 loads a frozen copy of the policy as reference.
    0.1 keeps the per-token KL to π0 around 0.5 nats at the end of the default run (0.04 let it reach ~2.5)."""
    num_generations: int = 4
    """Completions sampled per prompt (the group for GRPO advantages / the RLOO leave-one-out baseline); >= 2."""
    per_device_train_batch_size: int = 32
    """Completions per step (prompts per step = this / ``num_generations``); must be divisible by
    ``num_generations``."""
    max_completion_length: int = 6
    """Most tokens sampled per completion (the synthetic world's completions are at most 5 words + EOS)."""
    temperature: float = 1.0
    """Sampling temperature during RL rollouts."""
    seed: int = 0
    """Seed of TRL/transformers (model init, data order, sampling)."""
    logging_steps: int = 5
    """Log metrics (reward, KL, ...) every this many steps; they form the returned reward curve."""
    lr_scheduler_type: str = "constant"
    """transformers LR schedule name ("constant", "linear", "cosine", ...) (GRPO/RLOO; PPO uses a constant lr)."""
    ppo_epochs: int = 4
    """PPO only: optimisation passes over each rollout batch."""
    num_mini_batches: int = 1
    """PPO only: minibatches per pass (the rollout batch is split into this many)."""
    cliprange: float = 0.2
    """PPO only: clip range ε of the probability ratio."""
    cliprange_value: float = 0.2
    """PPO only: clip range of the value update."""
    vf_coef: float = 0.1
    """PPO only: weight of the value loss."""
    gamma: float = 1.0
    """PPO only: discount over completion tokens."""
    lam: float = 0.95
    """PPO only: GAE λ."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ConfigError(name, f"{why} (got {getattr(self, name)!r})")

        if self.algorithm not in RLHF_ALGORITHMS:
            bad("algorithm", f"must be one of {RLHF_ALGORITHMS.names()}")
        for name in ("max_steps", "per_device_train_batch_size", "max_completion_length", "logging_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be a positive integer")
        if (
            not isinstance(self.num_generations, int)
            or isinstance(self.num_generations, bool)
            or self.num_generations < 2
        ):
            bad("num_generations", "must be an integer >= 2")
        if self.per_device_train_batch_size % self.num_generations != 0:
            bad("per_device_train_batch_size", f"must be divisible by num_generations={self.num_generations}")
        if not isinstance(self.learning_rate, (int, float)) or not (
            self.learning_rate > 0 and math.isfinite(self.learning_rate)
        ):
            bad("learning_rate", "must be a positive finite number")
        if not isinstance(self.beta, (int, float)) or not (self.beta >= 0 and math.isfinite(self.beta)):
            bad("beta", "must be a finite number >= 0")
        if not isinstance(self.temperature, (int, float)) or not (
            self.temperature > 0 and math.isfinite(self.temperature)
        ):
            bad("temperature", "must be a positive finite number")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            bad("seed", "must be an integer")
        for name in ("ppo_epochs", "num_mini_batches"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be a positive integer")
        if self.num_mini_batches > self.per_device_train_batch_size:
            bad("num_mini_batches", f"must be <= per_device_train_batch_size={self.per_device_train_batch_size}")
        for name in ("cliprange", "cliprange_value", "vf_coef"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                bad(name, "must be a positive finite number")
        for name in ("gamma", "lam"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                bad(name, "must be in [0, 1]")
        if not isinstance(self.lr_scheduler_type, str) or not self.lr_scheduler_type:
            bad("lr_scheduler_type", "must be a transformers scheduler name")


def precision_flags(device: str, bf16_supported: bool) -> dict[str, bool]:
    """TRL/transformers precision flags for ``device``: CPU runs fp32 (``use_cpu=True``; bf16 is far slower
    there); a GPU trains fp32 master weights under bf16 autocast when supported, else fp16."""
    if device == "cpu":
        return {"use_cpu": True, "bf16": False, "fp16": False}
    return {"use_cpu": False, "bf16": bool(bf16_supported), "fp16": not bf16_supported}


def write_curves(metrics: dict[str, Any], path: str | os.PathLike) -> None:
    """The ``curves`` of :func:`training_summary` as JSON (``{name: [[step, value], ...]}``): what the driver logs
    as the stage run's step metrics (a Ray task has no MLflow run)."""
    Path(path).write_text(json.dumps(metrics["curves"]))


def _trl_args(cfg: RLHFConfig, output_dir: Path, device: str, config_class):
    """The TRL config object (a ``config_class``: ``GRPOConfig``, ``RLOOConfig``) for ``cfg`` (on ``device``, no
    checkpoints, no reporting)."""
    bf16_ok = bf16_supported(device)
    common: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=0,
        beta=cfg.beta,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=1,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=1.0,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        **precision_flags(device, bf16_ok),
        # TRL turns gradient checkpointing on by default: pure overhead for a tiny model. transformers 5.23 renamed
        # it (`gradient_checkpointing` is a deprecated alias that warns when set), hence the new name.
        activation_checkpointing=False,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,  # replaced by _progress_lines (see train_rlhf)
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    return config_class(**common)


def _reward_adapter(reward_fn: Callable[[list[str]], list[float]]):
    """Wrap a ``completions -> rewards`` callable into TRL's reward-function signature."""

    def text_reward(prompts=None, completions=None, **kwargs):
        rewards = reward_fn(list(completions))
        if len(rewards) != len(completions):
            raise ValueError(f"reward_fn returned {len(rewards)} rewards for {len(completions)} completions")
        return [float(r) for r in rewards]

    text_reward.__name__ = "text_reward"
    return text_reward


def _progress_lines(algorithm: str, max_steps: int):
    """A transformers callback printing ``[grpo] step 10/40  reward +0.712  kl 0.480  3.1s`` per logging step."""
    from transformers import TrainerCallback

    t0 = time.perf_counter()

    class ProgressLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "reward" in logs:
                kl = float(logs.get("kl", float("nan")))
                print(progress_line(algorithm, state.global_step, max_steps, float(logs["reward"]), kl, t0), flush=True)

    return ProgressLines()


class TRLAlgorithm(RLHFAlgorithm):
    """A TRL trainer that takes plain reward callables (``GRPOTrainer``, ``RLOOTrainer``), by its ``trl`` names."""

    def __init__(self, name: str, config_class: str, trainer_class: str):
        self.name, self.config_class, self.trainer_class = name, config_class, trainer_class

    def train(self, policy_dir, prompts, reward_fn, cfg, out_dir, *, progress, device):
        import trl
        from datasets import Dataset

        t0 = time.perf_counter()
        # Loaded from the local folder so that config._name_or_path points at it: TRL rebuilds the reference there.
        model, tokenizer = load_policy(policy_dir)  # fp32 master weights; the trainer moves them to the device
        dataset = Dataset.from_dict({"prompt": list(prompts)})

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.trl.", dir=out_dir.parent))
        try:
            args = _trl_args(cfg, work / "trainer", device, getattr(trl, self.config_class))
            trainer = getattr(trl, self.trainer_class)(
                model=model,
                reward_funcs=_reward_adapter(reward_fn),
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
            )
            # transformers prints every log dict (its PrinterCallback, or the tqdm bar's write): dozens of keys per
            # step. One compact line per logging step reads better, also through Ray's log forwarding.
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            if progress:
                trainer.add_callback(_progress_lines(self.name, cfg.max_steps))
            trainer.train()
            trained = trainer.accelerator.unwrap_model(trainer.model)
            history = list(trainer.state.log_history)
            steps = int(trainer.state.global_step)
            del trainer
        finally:
            shutil.rmtree(work, ignore_errors=True)

        # TRL's log dict per logging step: reward, kl, loss, learning_rate (and more); the end-of-training summary
        # dict has none of these names, so it adds no point.
        curves = {n: [(int(h["step"]), float(h[n])) for h in history if h.get(n) is not None] for n in CURVES}
        metrics = training_summary(self.name, steps, curves, cfg)
        trained.eval()
        trained.config.use_cache = True  # TRL switches the KV cache off for training; generation needs it back
        save_policy(trained, tokenizer, out_dir)
        metrics["wall_s"] = round(time.perf_counter() - t0, 3)
        return metrics


# The RLHF algorithms, in the order ``RLHFConfig.algorithm`` lists them. A new one: a module with an
# ``RLHFAlgorithm`` subclass and one line here.
RLHF_ALGORITHMS.register("grpo", TRLAlgorithm("grpo", "GRPOConfig", "GRPOTrainer"))
RLHF_ALGORITHMS.register("rloo", TRLAlgorithm("rloo", "RLOOConfig", "RLOOTrainer"))
RLHF_ALGORITHMS.register("ppo", PPO())


def train_rlhf(
    policy_dir: str | os.PathLike,
    prompts: list[str],
    reward_fn: Callable[[list[str]], list[float]],
    cfg: RLHFConfig | None = None,
    out_dir: str | os.PathLike = "rlhf_policy",
    progress: bool = True,
    device: str = "auto",
) -> dict[str, Any]:
    """RLHF a copy of the policy in ``policy_dir`` on ``prompts`` with ``reward_fn`` (called on completion strings),
    with the algorithm ``cfg.algorithm`` names (:data:`~fairl_ray.stages.rlhf_algorithm.RLHF_ALGORITHMS`).

    Saves the trained policy (model + tokenizer, safetensors) into ``out_dir`` (atomically: TRL works in a temp dir
    beside it, which becomes ``out_dir`` at the end) and returns metrics::

        {"reward_curve": [(step, mean reward), ...], "kl_curve": [(step, kl), ...],
         "initial_reward": ..., "final_reward": ..., "final_kl": ..., "wall_s": ..., "steps": ..., "config": {...}}

    Rewards in the curve are whatever ``reward_fn`` returned (noisy R* for the expert run). ``device``: see
    :func:`fairl_ray.devices.select_device` (``auto``: the GPU Ray assigned to this worker, bf16/fp16 autocast,
    else the CPU).
    """
    from fairl_ray.devices import select_device

    cfg = cfg or RLHFConfig()
    if not prompts:
        raise ValueError("train_rlhf: prompts is empty")
    algorithm = RLHF_ALGORITHMS.get(cfg.algorithm)
    policy_dir, out_dir, device = Path(policy_dir).resolve(), Path(out_dir), select_device(device)
    return algorithm.train(policy_dir, prompts, reward_fn, cfg, out_dir, progress=progress, device=device)


__all__ = ["RLHF_ALGORITHMS", "RLHFConfig", "TRLAlgorithm", "train_rlhf", "write_curves"]

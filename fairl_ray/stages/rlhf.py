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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairl_ray.config_error import ConfigError
from fairl_ray.policy_io import ADAPTER_CONFIG, bf16_supported, is_adapter, load_policy, save_policy
from fairl_ray.stages.lora import lora_config, parameter_counts
from fairl_ray.stages.ppo import PPO
from fairl_ray.stages.rlhf_algorithm import (
    CURVES,
    RLHF_ALGORITHMS,
    RLHFAlgorithm,
    TrainSession,
    progress_line,
    score_completions,
    training_summary,
)


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

    # -- scaling (Ray Train) -------------------------------------------------------------------------------------
    num_workers: int = 1
    """Data-parallel workers. 1: the stage's own process, as it always ran (no Ray Train, no checkpoints). >= 2: a
    Ray Train job (``TorchTrainer``, :mod:`fairl_ray.stages.ray_train`): each worker samples
    ``per_device_train_batch_size / num_workers`` completions per step (the global batch is unchanged), gradients
    are averaged across workers (gloo on CPU, NCCL on GPU), checkpoints are written every ``checkpoint_every``
    steps and a rerun of a killed stage resumes from the last one. The stage task itself then holds no resources;
    the workers ask for ``resources_per_worker``."""
    use_gpu: bool = False
    """Ray Train workers take one GPU each (``ScalingConfig.use_gpu``; ``num_workers >= 2``)."""
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    """Ray resources per Ray Train worker, e.g. ``{CPU: 4, GPU: 1}``; empty: Ray Train's default (1 CPU, plus 1 GPU
    with ``use_gpu``)."""
    strategy: str = "ddp"
    """With ``num_workers >= 2``: "ddp" (every worker holds the whole policy; gradients all-reduced) or "fsdp"
    (PPO only: PyTorch FSDP2 shards parameters, gradients and optimizer state over the workers and gathers one
    transformer block at a time, for policies that do not fit one device)."""
    checkpoint_every: int = 10
    """With ``num_workers >= 2``: optimizer steps between Ray Train checkpoints (0: none; a killed run restarts)."""

    # -- LoRA (peft) ---------------------------------------------------------------------------------------------
    lora_r: int = 0
    """LoRA rank; 0 trains the whole policy. > 0 trains only low-rank adapters (``peft``), saves only them (a PEFT
    adapter folder whose base is π0's folder), and uses the base with adapters disabled as the KL reference (no
    second copy of the policy in memory)."""
    lora_alpha: float = 16.0
    """LoRA scaling α (the update is scaled by α / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch."""
    lora_target_modules: list[str] | None = None
    """Module names that get adapters; None: PEFT's default for the architecture (GPT-2: ``c_attn``; Llama:
    ``q_proj``, ``v_proj``)."""

    @property
    def on_ray_train(self) -> bool:
        """Whether the run is a Ray Train job (``num_workers >= 2``): its workers hold the resources, it checkpoints
        into a resume folder, and whatever the stage does with a model afterwards runs in a task of its own."""
        return self.num_workers > 1

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
        self._check_scaling(bad)
        self._check_lora(bad)

    def _check_scaling(self, bad) -> None:
        if not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 1:
            bad("num_workers", "must be a positive integer")
        per_worker, rest = divmod(self.per_device_train_batch_size, self.num_workers)
        if rest or per_worker % self.num_generations:
            bad(
                "num_workers",
                f"must split per_device_train_batch_size={self.per_device_train_batch_size} into equal shares of "
                f"whole groups of num_generations={self.num_generations} completions",
            )
        if self.algorithm == "ppo" and self.num_mini_batches > per_worker:  # each rank's PPO update splits its share
            bad(
                "num_mini_batches",
                f"must be <= the completions each worker samples per step (per_device_train_batch_size="
                f"{self.per_device_train_batch_size} / num_workers={self.num_workers} = {per_worker})",
            )
        if not isinstance(self.use_gpu, bool):
            bad("use_gpu", "must be true or false")
        if not isinstance(self.resources_per_worker, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and v >= 0 for k, v in self.resources_per_worker.items()
        ):
            bad("resources_per_worker", "must map resource names to amounts >= 0")
        if self.strategy not in ("ddp", "fsdp"):
            bad("strategy", 'must be "ddp" or "fsdp"')
        if self.strategy == "fsdp" and self.algorithm != "ppo":
            bad("strategy", 'fsdp is implemented for algorithm: ppo (TRL\'s GRPO/RLOO run "ddp")')
        if (
            not isinstance(self.checkpoint_every, int)
            or isinstance(self.checkpoint_every, bool)
            or self.checkpoint_every < 0
        ):
            bad("checkpoint_every", "must be an integer >= 0")

    def _check_lora(self, bad) -> None:
        if not isinstance(self.lora_r, int) or isinstance(self.lora_r, bool) or self.lora_r < 0:
            bad("lora_r", "must be an integer >= 0 (0: no LoRA)")
        if not isinstance(self.lora_alpha, (int, float)) or not (
            self.lora_alpha > 0 and math.isfinite(self.lora_alpha)
        ):
            bad("lora_alpha", "must be a positive finite number")
        if not isinstance(self.lora_dropout, (int, float)) or not 0.0 <= self.lora_dropout < 1.0:
            bad("lora_dropout", "must be in [0, 1)")
        targets = self.lora_target_modules
        if targets is not None and (
            not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets)
        ):
            bad("lora_target_modules", "must be a list of module names, or null for PEFT's default")
        if self.lora_r:
            import importlib.util

            if importlib.util.find_spec("peft") is None:
                bad("lora_r", "needs the peft package (pip install peft)")


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


def _trl_args(cfg: RLHFConfig, output_dir: Path, device: str, config_class, session: TrainSession):
    """The TRL config object (a ``config_class``: ``GRPOConfig``, ``RLOOConfig``) for ``cfg`` as one rank of
    ``session`` (on ``device``; checkpoints only when the session takes them; no reporting)."""
    bf16_ok = bf16_supported(device)
    checkpoints = {"save_strategy": "no"}
    if session.checkpoint_every:
        # transformers.Trainer checkpoints (weights as safetensors; optimizer/scheduler/RNG states read back with
        # torch.load(weights_only=True)); each one is handed to Ray Train by _ReportCheckpoints.
        checkpoints = {"save_strategy": "steps", "save_steps": session.checkpoint_every, "save_total_limit": 1}
    common: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=0,
        beta=cfg.beta,
        num_generations=cfg.num_generations,
        # the global batch is cfg.per_device_train_batch_size whatever the number of workers (TRL's is per process)
        per_device_train_batch_size=cfg.per_device_train_batch_size // session.world_size,
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
        **checkpoints,
        # every parameter gets a gradient: DDP's unused-parameter search would be an extra graph walk per step
        ddp_find_unused_parameters=False if session.world_size > 1 else None,
        report_to="none",
        disable_tqdm=True,  # replaced by _progress_lines (see train_rlhf)
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    return config_class(**common)


def _report_checkpoints(session: TrainSession):
    """A transformers callback handing each ``checkpoint-N`` folder the Trainer saved to ``session`` (Ray Train
    merges the ranks' folders: rank 0 has the weights and optimizer, every rank its RNG state), as Ray's
    ``RayTrainReportCallback`` does."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    class ReportCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            last = get_last_checkpoint(args.output_dir)
            with tempfile.TemporaryDirectory() as tmp:
                if last is not None:
                    shutil.copytree(last, Path(tmp) / "checkpoint")
                session.report({"step": state.global_step}, Path(tmp) if last is not None else None)

    return ReportCheckpoints()


def _reward_adapter(reward_fn: Callable[[list[str]], list[float]]):
    """Wrap a ``completions -> rewards`` callable into TRL's reward-function signature."""

    def text_reward(prompts=None, completions=None, **kwargs):
        return score_completions(reward_fn, list(completions), list(prompts) if prompts is not None else None)

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

    def train(self, policy_dir, prompts, reward_fn, cfg, out_dir, *, progress, device, session):
        import trl
        from datasets import Dataset

        t0 = time.perf_counter()
        # Loaded from the local folder so that config._name_or_path points at it: TRL rebuilds the reference there
        # (with LoRA, TRL's reference is this model with its adapters disabled).
        model, tokenizer = load_policy(policy_dir)  # fp32 master weights; the trainer moves them to the device
        dataset = Dataset.from_dict({"prompt": list(prompts)})

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.trl.", dir=out_dir.parent))
        try:
            args = _trl_args(cfg, work / "trainer", device, getattr(trl, self.config_class), session)
            trainer = getattr(trl, self.trainer_class)(
                model=model,
                reward_funcs=_reward_adapter(reward_fn),
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=lora_config(cfg),
            )
            # transformers prints every log dict (its PrinterCallback, or the tqdm bar's write): dozens of keys per
            # step. One compact line per logging step reads better, also through Ray's log forwarding.
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            if progress:
                trainer.add_callback(_progress_lines(self.name, cfg.max_steps))
            if session.checkpoint_every:
                trainer.add_callback(_report_checkpoints(session))
            with session.resume_dir() as last:
                resumed = last is not None and (last / "checkpoint").is_dir()
                resumed_from = _checkpoint_step(last / "checkpoint") if resumed else 0
                trainer.train(resume_from_checkpoint=str(last / "checkpoint") if resumed else None)
            trained = trainer.accelerator.unwrap_model(trainer.model)
            history = list(trainer.state.log_history)
            steps = int(trainer.state.global_step)
            del trainer
        finally:
            shutil.rmtree(work, ignore_errors=True)

        # TRL's log dict per logging step: reward, kl, loss, learning_rate (and more); the end-of-training summary
        # dict has none of these names, so it adds no point. A resumed run's history starts at its checkpoint's.
        curves = {n: [(int(h["step"]), float(h[n])) for h in history if h.get(n) is not None] for n in CURVES}
        metrics = {**training_summary(self.name, steps, curves, cfg), **parameter_counts(trained)}
        metrics["resumed_from_step"] = resumed_from
        trained.eval()
        trained.config.use_cache = True  # TRL switches the KV cache off for training; generation needs it back
        if session.is_main:
            save_policy(trained, tokenizer, out_dir, base_dir=policy_dir)
        metrics["wall_s"] = round(time.perf_counter() - t0, 3)
        return metrics


def _checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a ``transformers.Trainer`` checkpoint was saved at (its ``trainer_state.json``)."""
    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


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
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """RLHF a copy of the policy in ``policy_dir`` on ``prompts`` with ``reward_fn`` (called on completion strings),
    with the algorithm ``cfg.algorithm`` names (:data:`~fairl_ray.stages.rlhf_algorithm.RLHF_ALGORITHMS`).

    Saves the trained policy (model + tokenizer, safetensors; with ``lora_r > 0`` the adapters + tokenizer) into
    ``out_dir`` (atomically: TRL works in a temp dir beside it, which becomes ``out_dir`` at the end) and returns
    metrics::

        {"reward_curve": [(step, mean reward), ...], "kl_curve": [(step, kl), ...],
         "initial_reward": ..., "final_reward": ..., "final_kl": ..., "wall_s": ..., "steps": ...,
         "trainable_parameters": ..., "total_parameters": ..., "config": {...}}

    Rewards in the curve are whatever ``reward_fn`` returned (noisy R* for the expert run). ``device``: see
    :func:`fairl_ray.devices.select_device` (``auto``: the GPU Ray assigned to this worker, bf16/fp16 autocast,
    else the CPU). With ``cfg.num_workers >= 2`` the run is a Ray Train job
    (:func:`~fairl_ray.stages.ray_train.train_on_ray_train`; ``device`` is then each worker's Ray Train device)
    that checkpoints into ``checkpoint_dir`` and, rerun with the same ``checkpoint_dir``, resumes from the last
    checkpoint; the metrics add ``workers`` (per rank: completions and prompts per step).
    """
    from fairl_ray.devices import select_device

    cfg = cfg or RLHFConfig()
    if not prompts:
        raise ValueError("train_rlhf: prompts is empty")
    algorithm = RLHF_ALGORITHMS.get(cfg.algorithm)
    policy_dir, out_dir = Path(policy_dir).resolve(), Path(out_dir)
    if is_adapter(policy_dir):  # its trained adapters would be read as a base's, and its base path go stale
        raise ValueError(
            f"train_rlhf: {policy_dir} holds LoRA adapters ({ADAPTER_CONFIG}), not a whole policy: RLHF starts from "
            f"a full model; merge it first (fairl_ray.policy_io.load_policy(dir) merges; save_pretrained the result)"
        )
    if cfg.on_ray_train:
        from fairl_ray.stages.ray_train import train_on_ray_train

        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        return train_on_ray_train(
            algorithm, policy_dir, prompts, reward_fn, cfg, out_dir, progress=progress, checkpoint_dir=ckpt
        )
    return algorithm.train(
        policy_dir,
        prompts,
        reward_fn,
        cfg,
        out_dir,
        progress=progress,
        device=select_device(device),
        session=TrainSession(),
    )


__all__ = ["RLHF_ALGORITHMS", "RLHFConfig", "TRLAlgorithm", "train_rlhf", "write_curves"]

"""RLHF as a Ray Train job: ``num_workers >= 2`` data-parallel workers under ``ray.train.torch.TorchTrainer``.

:func:`train_on_ray_train` starts a ``TorchTrainer`` (Ray Train V2) whose workers each run the configured
:class:`~fairl_ray.stages.rlhf_algorithm.RLHFAlgorithm` as one rank of a :class:`RayTrainSession`:

* **Scaling.** ``ScalingConfig(num_workers, use_gpu, resources_per_worker)`` from :class:`RLHFConfig`; Ray Train
  starts the process group (gloo on CPU, NCCL on GPU) and puts the workers in one placement group. Each rank
  samples ``per_device_train_batch_size / num_workers`` completions per step, so the global batch, and with it
  the learning dynamics' scale, is the one-worker run's; gradients are averaged (DDP), or parameters, gradients
  and optimizer state are sharded (``strategy: fsdp``, PyTorch FSDP2).
* **Checkpoints** every ``checkpoint_every`` steps into ``checkpoint_dir`` (Ray Train's ``RunConfig(name="rlhf",
  storage_path=checkpoint_dir)``; only the newest is kept). A rerun with the same ``checkpoint_dir`` resumes from
  the newest: Ray Train V2 restores its checkpoint manager from that storage and ``ray.train.get_checkpoint()``
  hands it to the workers. The pipeline passes a folder beside the stage's output that survives a killed run
  and is removed once the stage's output is published
  (:func:`~fairl_ray.orchestration.stage_store.resume_dir`). On a multi-node cluster it must be storage every
  node reaches (NFS, or a ``workdir`` on one), as Ray Train requires.
* **The result.** Rank 0 saves the trained policy and the run's summary into the final checkpoint; the caller's
  process copies it into ``out_dir``. The summary adds ``workers`` (per rank: completions and distinct prompts
  per step), which is how a test sees the batch split.

No pickles are read back from a checkpoint: PPO's is safetensors + JSON; TRL's is the ``transformers.Trainer``
checkpoint (safetensors weights; optimizer, scheduler and RNG states read with ``torch.load(weights_only=True)``,
the safe tensor-only loader).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fairl_ray.stages.rlhf_algorithm import RLHFAlgorithm, TrainSession

#: Ray Train's run name inside ``checkpoint_dir`` (fixed: a rerun must find the same run to resume it).
RUN_NAME = "rlhf"
FINAL = "final.json"  # in the last checkpoint: the run's summary (its presence means training finished)


class RayTrainSession(TrainSession):
    """One rank of a Ray Train worker group (see :class:`~fairl_ray.stages.rlhf_algorithm.TrainSession`)."""

    def __init__(self, checkpoint_every: int):
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.checkpoint_every = checkpoint_every

    @contextmanager
    def resume_dir(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)

    def gather(self, value: Any) -> list[Any]:
        import torch.distributed as dist

        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


class BatchCounter:
    """Wraps a ``completions -> rewards`` callable and counts, per call, the completions it scored and the distinct
    prompts they came from: what one rank saw of each step's batch."""

    takes_prompts = True  # see rlhf_algorithm.score_completions

    def __init__(self, reward_fn: Callable[[list[str]], list[float]]):
        self.reward_fn = reward_fn
        self.calls: list[tuple[int, int]] = []
        self.times: list[float] = []

    def __call__(self, completions: list[str], prompts: list[str] | None = None) -> list[float]:
        self.calls.append((len(completions), len(set(prompts)) if prompts is not None else 0))
        self.times.append(time.perf_counter())
        return self.reward_fn(completions)

    def per_step(self) -> dict[str, float]:
        """Mean completions and distinct prompts per reward call (one call per step), and the steady-state seconds
        per step (between the first and the last reward call: start-up excluded)."""
        n = max(1, len(self.calls))
        return {
            "completions_per_step": sum(c for c, _ in self.calls) / n,
            "prompts_per_step": sum(p for _, p in self.calls) / n,
            "reward_calls": len(self.calls),
            "seconds_per_step": (self.times[-1] - self.times[0]) / (n - 1) if n > 1 else None,
        }


def _worker_loop(config: dict[str, Any]) -> None:
    """Body of every Ray Train worker: one rank of the RLHF run (the final report carries the policy)."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    session = RayTrainSession(config["cfg"].checkpoint_every)
    algorithm: RLHFAlgorithm = config["algorithm"]
    with session.resume_dir() as last:
        if last is not None and (last / FINAL).is_file():  # finished, killed before the caller copied the policy
            with tempfile.TemporaryDirectory() as tmp:
                if session.is_main:
                    shutil.copytree(last, tmp, dirs_exist_ok=True)
                session.report({"step": -1}, Path(tmp) if session.is_main else None)
            return
    rewards = BatchCounter(config["reward_fn"])
    device = _worker_device()
    with tempfile.TemporaryDirectory(prefix="fairl-rlhf-") as tmp:
        out = Path(tmp) / "policy"
        summary = algorithm.train(
            Path(config["policy_dir"]),
            config["prompts"],
            rewards,
            config["cfg"],
            out,
            progress=config["progress"] and session.is_main,
            device=device,
            session=session,
        )
        summary["workers"] = session.gather({"rank": session.rank, **rewards.per_step()})
        if session.is_main:
            (Path(tmp) / FINAL).write_text(json.dumps(summary, default=str))
        session.report({"step": summary.get("steps", 0)}, Path(tmp) if session.is_main else None)


def _worker_device() -> str:
    """``cuda:<local rank>``'s device Ray Train assigned this worker, else the CPU."""
    import ray.train.torch

    device = ray.train.torch.get_device()
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


def train_on_ray_train(
    algorithm: RLHFAlgorithm,
    policy_dir: Path,
    prompts: list[str],
    reward_fn: Callable[[list[str]], list[float]],
    cfg,
    out_dir: Path,
    *,
    progress: bool,
    checkpoint_dir: Path | None,
) -> dict[str, Any]:
    """Run ``algorithm`` on ``cfg.num_workers`` Ray Train workers (see the module docstring); save the policy into
    ``out_dir`` and return the run's summary. ``checkpoint_dir``: where checkpoints live and a rerun resumes
    from (None: a temporary folder beside ``out_dir``, removed afterwards: no resume)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from fairl_ray.policy_io import copy_policy

    if not ray.is_initialized():  # TorchTrainer.fit would start a Ray of its own, with Ray's defaults
        raise RuntimeError(
            "RLHF with num_workers >= 2 runs on Ray Train: start Ray first "
            "(fairl_ray.orchestration.ray_runtime.init_ray(); `fairl run` does)"
        )
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = None
    if checkpoint_dir is None:
        scratch = checkpoint_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.ray-train.", dir=out_dir.parent))
    checkpoint_dir = Path(checkpoint_dir).resolve()
    # Ray Train's print patch re-routes workers' stdout through its logger: every progress line came out twice, and
    # code that captures stdout (dill, under datasets' fingerprinting) leaked disassembly into the log.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "algorithm": algorithm,
            "policy_dir": str(policy_dir),
            "prompts": list(prompts),
            "reward_fn": reward_fn,
            "cfg": cfg,
            "progress": progress,
        },
        scaling_config=scaling_config(cfg),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=str(checkpoint_dir),
            # A failed worker fails the stage (the pipeline's rerun resumes); Ray Train's own retries would hide it.
            failure_config=FailureConfig(max_failures=0),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    # TorchTrainer.fit installs a SIGINT handler of its own in the main thread (abort the run) and leaves it there
    # (Ray 2.60): a Ctrl-C after the run then called abort on its finished controller and no longer interrupted
    # this process, and a later Tune search in the same process hung. The handler is put back once the job ends.
    sigint = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    try:
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"the Ray Train RLHF run in {checkpoint_dir} ended without its final checkpoint")
        with result.checkpoint.as_directory() as final:
            summary = json.loads((Path(final) / FINAL).read_text())
            copy_policy(Path(final) / "policy", out_dir, base_dir=policy_dir)
    finally:
        if sigint is not None:
            signal.signal(signal.SIGINT, sigint)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return summary


def scaling_config(cfg):
    """Ray Train's ``ScalingConfig`` of ``cfg`` (:class:`~fairl_ray.stages.rlhf.RLHFConfig`): its workers, GPUs and
    per-worker resources."""
    from ray.train import ScalingConfig

    return ScalingConfig(
        num_workers=cfg.num_workers,
        use_gpu=cfg.use_gpu,
        resources_per_worker=dict(cfg.resources_per_worker) or None,
    )


def on_one_worker(cfg, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a Ray task holding what one worker of ``cfg``'s :func:`scaling_config` holds (Ray Train's
    rule: 1 CPU, or none with ``use_gpu`` or a ``resources_per_worker`` without ``CPU``; 1 GPU with ``use_gpu``;
    the rest of ``resources_per_worker``). A stage that ran a Ray Train job holds no resources of its own (its
    workers held them), so the model work it does afterwards (sampling the trained policy) runs here, on a device
    Ray assigned, not unaccounted in the stage's process."""
    import ray

    scaling = scaling_config(cfg)
    extra = dict(scaling.additional_resources_per_worker)
    memory = extra.pop("memory", None)  # a task takes memory as its own option, not as a custom resource
    extra.pop("object_store_memory", None)
    task = ray.remote(
        num_cpus=scaling.num_cpus_per_worker,
        num_gpus=scaling.num_gpus_per_worker,
        memory=memory,
        resources=extra or None,
        max_retries=0,
    )(fn)
    return ray.get(task.remote(*args))


__all__ = ["BatchCounter", "RUN_NAME", "RayTrainSession", "on_one_worker", "scaling_config", "train_on_ray_train"]

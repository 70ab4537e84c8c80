"""The ONE device rule for model work (policies, judges, encoders, IRL): what this process was *assigned* first.

* An explicit request wins: ``cpu``; ``cuda`` (= ``cuda:0``) or ``cuda:N`` — an error if this process has no CUDA.
* ``auto`` inside a Ray worker: ``cuda:0`` when Ray assigned this worker a GPU (Ray sets ``CUDA_VISIBLE_DEVICES``
  to the assigned ones, so the first is ``cuda:0`` inside the worker), else the CPU — a worker given no GPU stays
  on the CPU even on a machine that has one (Ray does not hide the GPUs from a ``num_gpus=0`` task).
* ``auto`` outside Ray (a driver, a test, ``fairl irl`` without a cluster): ``cuda:0`` when CUDA is available, else
  the CPU. This is the rule ``policy_io`` has always applied; ``features`` used to take CUDA whenever the machine
  had it, Ray worker or not, and now follows this rule too.

:func:`resolve_device` is the rule as a pure function (tested without a GPU or Ray); :func:`select_device` applies it
to this process.
"""

from __future__ import annotations


def resolve_device(requested: str = "auto", gpu_ids: list | None = None, cuda_available: bool = False) -> str:
    """The torch device for ``requested`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), given the GPUs Ray assigned
    this worker (``gpu_ids``: ``ray.get_gpu_ids()``; None outside a Ray worker) and whether CUDA is available."""
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not cuda_available:
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available in this process")
        return "cuda:0" if requested == "cuda" else requested
    if requested != "auto":
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {requested!r}")
    if gpu_ids is not None:
        return "cuda:0" if gpu_ids and cuda_available else "cpu"
    return "cuda:0" if cuda_available else "cpu"


def ray_gpu_ids() -> list | None:
    """The GPUs Ray assigned this process when it is a Ray worker; None when it is not (a driver, no Ray)."""
    try:
        import ray

        if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
            return list(ray.get_gpu_ids())
    except Exception:  # pragma: no cover - Ray absent or not a worker: decide from CUDA alone
        return None
    return None


def select_device(requested: str = "auto") -> str:
    """:func:`resolve_device` for this process."""
    import torch

    return resolve_device(requested, ray_gpu_ids(), torch.cuda.is_available())


__all__ = ["ray_gpu_ids", "resolve_device", "select_device"]

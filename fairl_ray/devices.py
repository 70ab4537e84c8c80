"""One device rule for every model computation (policies, the sentence encoder, the IRL ensemble): Ray's assignment
first. An explicit ``cpu`` / ``cuda`` / ``cuda:N`` wins; ``auto`` is the GPU Ray assigned to this worker, the CPU in a
Ray worker assigned none (even on a machine with GPUs: another task owns them), and outside Ray the GPU when CUDA is
available."""

from __future__ import annotations


def resolve_device(requested: str = "auto", gpu_ids: list | None = None, cuda_available: bool = False) -> str:
    """The torch device for model work, decided from what this process was *assigned* (pure, testable on CPU).

    ``requested``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. ``auto`` is ``cuda:0`` when Ray assigned
    GPUs to this worker (``gpu_ids`` from ``ray.get_gpu_ids()``: Ray sets ``CUDA_VISIBLE_DEVICES``, so the first
    assigned GPU is ``cuda:0`` inside the worker) or, outside Ray (``gpu_ids`` None), when CUDA is available;
    a Ray worker given no GPU stays on the CPU even if the machine has one.
    """
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


def select_device(requested: str = "auto") -> str:
    """:func:`resolve_device` for this process (Ray's GPU assignment when inside a Ray worker)."""
    import torch

    gpu_ids = None
    try:
        import ray

        if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
            gpu_ids = list(ray.get_gpu_ids())
    except Exception:  # pragma: no cover - Ray absent or not a worker: decide from CUDA alone
        gpu_ids = None
    return resolve_device(requested, gpu_ids, torch.cuda.is_available())

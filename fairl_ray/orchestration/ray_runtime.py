"""Starting Ray (locally or on a cluster) and describing the resources a stage asks for."""

from __future__ import annotations

import os

# Ray >= 2.5x writes an auth token and warns unless told otherwise; a local session needs none (DESIGN §6).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def init_ray(address: str | None = None, temp_dir: str | None = None, num_cpus: int | None = None) -> dict:
    """Connect to ``address`` (an existing cluster, e.g. ``auto`` or ``ray://host:10001``) or start a local Ray.

    The local session is kept small (no dashboard, a 200 MB object store): stages pass file paths, not data.
    Returns the cluster's resources. Safe to call twice.
    """
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    # Workers inherit the driver's environment; keep tiny-model work on one thread per task (DESIGN §6).
    env_vars = {
        k: os.environ[k]
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                  "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "RAY_AUTH_MODE")
        if k in os.environ
    }
    env_vars.setdefault("OMP_NUM_THREADS", "1")
    env_vars.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Ray forwards worker output line by line: a tqdm bar redrawn 10×/s floods the driver. Redraw every 5 s.
    env_vars.setdefault("TQDM_MININTERVAL", os.environ.get("TQDM_MININTERVAL", "5"))
    kwargs: dict = {"runtime_env": {"env_vars": env_vars}, "log_to_driver": True, "logging_level": "WARNING"}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            object_store_memory=200 * 1024 * 1024,
            _temp_dir=temp_dir,
            **kwargs,
        )
    return ray.cluster_resources()


def gpus_available() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))

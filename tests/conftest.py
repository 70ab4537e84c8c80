"""Test-session set-up: offline hubs, one thread per op, and one Ray session for the whole run."""

import os

# Set before torch / transformers / ray are imported anywhere.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
# What `fairl` sets for a redirected log before it imports ray (ray_runtime.configure_log_environment): the shared
# test session must not colour or de-duplicate worker lines either, or in-process runs print what fairl never would.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_COLOR_PREFIX", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One real local Ray session shared by every test that needs it (starting Ray costs ~5 s)."""
    import ray

    from fairl_ray.orchestration.ray_runtime import init_ray

    init_ray(address=None, temp_dir=str(tmp_path_factory.mktemp("ray")), num_cpus=2)
    yield ray
    ray.shutdown()

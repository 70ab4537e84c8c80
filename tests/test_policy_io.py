"""Device/dtype selection for model work (decided from what Ray assigned, testable on CPU) and resource config."""

import pytest
import torch

from fairl_ray.config import ConfigError, load_config
from fairl_ray.devices import resolve_device
from fairl_ray.policy_io import load_policy, resolve_dtype
from fairl_ray.stages.rlhf import precision_flags


def test_device_follows_ray_assignment():
    # Inside a Ray worker: the GPU Ray assigned is cuda:0 (CUDA_VISIBLE_DEVICES); none assigned -> CPU,
    # even on a machine that has CUDA.
    assert resolve_device("auto", gpu_ids=[3], cuda_available=True) == "cuda:0"
    assert resolve_device("auto", gpu_ids=[], cuda_available=True) == "cpu"
    assert resolve_device("auto", gpu_ids=[0], cuda_available=False) == "cpu"
    # Outside Ray: CUDA if present.
    assert resolve_device("auto", gpu_ids=None, cuda_available=True) == "cuda:0"
    assert resolve_device("auto", gpu_ids=None, cuda_available=False) == "cpu"
    assert resolve_device("cpu", gpu_ids=[0], cuda_available=True) == "cpu"
    assert resolve_device("cuda", gpu_ids=None, cuda_available=True) == "cuda:0"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda:1", gpu_ids=None, cuda_available=False)
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_dtype_and_precision_flags():
    assert resolve_dtype("cpu") is torch.float32
    assert resolve_dtype("cuda:0", bf16_supported=True) is torch.bfloat16
    assert resolve_dtype("cuda:0", bf16_supported=False) is torch.float16
    assert resolve_dtype("cpu", "bfloat16") is torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("cpu", "int8")
    assert precision_flags("cpu", True) == {"use_cpu": True, "bf16": False, "fp16": False}
    assert precision_flags("cuda:0", True) == {"use_cpu": False, "bf16": True, "fp16": False}
    assert precision_flags("cuda:0", False) == {"use_cpu": False, "bf16": False, "fp16": True}


def test_load_policy_device_and_dtype(tmp_path):
    from fairl_ray.worlds.synthetic import SyntheticWorldConfig, build_base_policy

    d = build_base_policy(SyntheticWorldConfig(sft_corpus_size=64, sft_epochs=1), tmp_path / "p")
    model, tok = load_policy(d, device="auto")  # no GPU here: CPU, fp32
    assert model.device.type == "cpu" and model.dtype is torch.float32 and tok.padding_side == "left"
    model, _ = load_policy(d, device="cpu", dtype="bfloat16")
    assert model.dtype is torch.bfloat16


def test_resources_come_from_config():
    cfg = load_config(overrides=["resources.gpus_per_worker=0.25", "resources.generation_workers=4"])
    assert cfg.resources.gpus_per_worker == 0.25 and cfg.resources.generation_workers == 4
    assert load_config().resources.gpus_per_worker == 0.0
    for bad in ("resources.gpus_per_worker=-1", "resources.gpus_per_worker=1.5", "resources.generation_workers=0"):
        with pytest.raises(ConfigError, match="resources"):
            load_config(overrides=[bad])

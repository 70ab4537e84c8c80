"""The one device rule (fairl_ray.devices): explicit wins; auto is Ray's assignment inside a worker, CUDA outside."""

import pytest
import torch

from fairl_ray.devices import ray_gpu_ids, resolve_device, select_device


def test_explicit_requests_win():
    assert select_device("cpu") == "cpu"
    assert resolve_device("cpu", gpu_ids=[0], cuda_available=True) == "cpu"
    assert resolve_device("cuda:1", gpu_ids=[], cuda_available=True) == "cuda:1"  # explicit beats Ray's "no GPU"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        select_device("gpu")


def test_auto_outside_ray_is_cuda_when_available():
    assert ray_gpu_ids() is None  # this test process is no Ray worker (a driver, whether or not Ray is up)
    assert select_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_auto_in_a_ray_task_without_a_gpu_is_the_cpu(ray_session):
    ray = ray_session

    @ray.remote(num_gpus=0)
    def where():
        from fairl_ray.devices import ray_gpu_ids, select_device

        return ray_gpu_ids(), select_device("auto"), select_device("cpu")

    assert ray.get(where.remote()) == ([], "cpu", "cpu")
    # what the rule gives when the worker was assigned a GPU (pure: no GPU needed to check it)
    assert resolve_device("auto", gpu_ids=[3], cuda_available=True) == "cuda:0"
    assert resolve_device("auto", gpu_ids=[], cuda_available=True) == "cpu"


def test_the_feature_encoder_follows_the_rule():
    from fairl_ray.features import load_encoder

    encoder = load_encoder("all-MiniLM-L6-v2")
    expected = select_device("auto")
    assert str(encoder.model.device).startswith(expected.split(":")[0])

"""Loading and saving a policy (causal LM + tokenizer) as a ``save_pretrained`` folder (safetensors)."""

from __future__ import annotations

import os
from pathlib import Path

from fairl_ray.atomic_io import atomic_directory
from fairl_ray.devices import select_device

__all__ = ["bf16_supported", "load_policy", "resolve_dtype", "save_policy", "select_dtype"]


def resolve_dtype(device: str, requested: str = "auto", bf16_supported: bool = False):
    """The torch dtype for inference on ``device``: ``auto`` is fp32 on CPU (bf16 is far slower there) and bf16
    on a GPU that supports it, else fp16. ``requested`` may also be ``float32``, ``bfloat16`` or ``float16``."""
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if requested != "auto":
        if requested not in names:
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {requested!r}")
        return names[requested]
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if bf16_supported else torch.float16


def bf16_supported(device: str) -> bool:
    """Whether ``device`` is a GPU of this process that computes in bf16."""
    import torch

    return device != "cpu" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def select_dtype(device: str, requested: str = "auto"):
    """:func:`resolve_dtype` for this process."""
    return resolve_dtype(device, requested, bf16_supported(device))


def load_policy(policy_dir: str | os.PathLike, device: str = "cpu", dtype: str = "auto"):
    """(model, tokenizer) from a local folder, eval mode, left padding, on ``device`` in ``dtype``.

    ``device``: ``cpu`` (default), ``auto`` (the GPU Ray assigned to this worker, else CPU; see
    :func:`fairl_ray.devices.select_device`), ``cuda`` or ``cuda:N``. ``dtype``: ``auto`` (fp32 on CPU, bf16/fp16 on
    a GPU) or a torch dtype name. Local files only and ``trust_remote_code`` off: a policy folder is data, never code.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = select_device(device)
    torch_dtype = select_dtype(device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir), local_files_only=True, trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(policy_dir), dtype=torch_dtype, local_files_only=True, trust_remote_code=False
    )
    model.to(device)
    model.eval()
    return model, tokenizer


def save_policy(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Save into ``out_dir`` atomically (see :func:`fairl_ray.atomic_io.atomic_directory`)."""
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)

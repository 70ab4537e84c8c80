"""Loading and saving a policy (causal LM + tokenizer) as a ``save_pretrained`` folder (safetensors)."""

from __future__ import annotations

import os
from pathlib import Path

from fairl_ray.atomic_io import atomic_directory


def load_policy(policy_dir: str | os.PathLike):
    """(model, tokenizer) from a local folder: fp32 (bf16 is far slower on CPU), eval mode, left padding.

    Local files only and ``trust_remote_code`` off: a policy folder is data, never code.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir), local_files_only=True, trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(policy_dir), dtype=torch.float32, local_files_only=True, trust_remote_code=False
    )
    model.eval()
    return model, tokenizer


def save_policy(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Save into ``out_dir`` atomically (see :func:`fairl_ray.atomic_io.atomic_directory`)."""
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)

"""Loading and saving a policy (causal LM + tokenizer) as a ``save_pretrained`` folder (safetensors)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


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
    """Save into ``out_dir`` atomically: written to a temp folder beside it, then renamed into place."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir

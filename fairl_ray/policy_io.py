"""Loading and saving a policy (causal LM + tokenizer) as a ``save_pretrained`` folder (safetensors).

A policy folder is either a whole model or, from a LoRA RLHF run (``RLHFConfig.lora_r > 0``), the adapters alone
(``adapter_config.json`` + ``adapter_model.safetensors``, PEFT's format) with the tokenizer; the adapter's config
names its base policy folder by a path relative to the adapter folder, so a moved or copied workdir still reads
it. :func:`load_policy` loads either; adapters are merged into the base on load ("merge on export"), so generation
and scoring run a plain model at full speed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from fairl_ray.atomic_io import atomic_directory
from fairl_ray.devices import select_device

__all__ = [
    "ADAPTER_CONFIG",
    "adapter_base",
    "bf16_supported",
    "copy_policy",
    "is_adapter",
    "load_base_and_tokenizer",
    "load_policy",
    "load_tokenizer",
    "resolve_dtype",
    "save_policy",
    "select_dtype",
]

ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: its presence makes a policy folder a LoRA adapter


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


def is_adapter(policy_dir: str | os.PathLike) -> bool:
    """Whether ``policy_dir`` holds LoRA adapters (PEFT's ``adapter_config.json``) rather than a whole model."""
    return (Path(policy_dir) / ADAPTER_CONFIG).is_file()


def adapter_base(policy_dir: str | os.PathLike) -> Path:
    """The base policy folder a LoRA adapter folder was trained on (its config's ``base_model_name_or_path``,
    relative to the adapter folder, or absolute). Raises ValueError naming the file when the base or the
    safetensors weights are missing, or when the adapter carries pickled weights (never loaded)."""
    policy_dir = Path(policy_dir)
    config_file = policy_dir / ADAPTER_CONFIG
    pickled = [p.name for p in policy_dir.glob("adapter_model*") if p.suffix != ".safetensors"]
    if pickled:
        raise ValueError(f"{policy_dir}: adapter weights {pickled} are not safetensors; fairl never loads pickles")
    if not (policy_dir / "adapter_model.safetensors").is_file():
        raise ValueError(f"{policy_dir}: {ADAPTER_CONFIG} without adapter_model.safetensors")
    base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise ValueError(f"{config_file}: base_model_name_or_path is missing")
    path = Path(base) if Path(base).is_absolute() else (policy_dir / base).resolve()
    if not (path / "config.json").is_file():
        raise ValueError(f"{config_file}: base_model_name_or_path {base!r} is not a policy folder ({path})")
    return path


def load_tokenizer(policy_dir: str | os.PathLike):
    """A policy folder's tokenizer: left padding (generation), the EOS as pad token where it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir), local_files_only=True, trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_and_tokenizer(policy_dir: str | os.PathLike, torch_dtype):
    """(model, tokenizer) of a whole-model folder on the CPU, from local files only, ``trust_remote_code`` off."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(policy_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(policy_dir), dtype=torch_dtype, local_files_only=True, trust_remote_code=False
    )
    return model, tokenizer


def load_policy(policy_dir: str | os.PathLike, device: str = "cpu", dtype: str = "auto"):
    """(model, tokenizer) from a local folder, eval mode, left padding, on ``device`` in ``dtype``.

    ``device``: ``cpu`` (default), ``auto`` (the GPU Ray assigned to this worker, else CPU; see
    :func:`fairl_ray.devices.select_device`), ``cuda`` or ``cuda:N``. ``dtype``: ``auto`` (fp32 on CPU, bf16/fp16 on
    a GPU) or a torch dtype name. Local files only and ``trust_remote_code`` off: a policy folder is data, never code.
    A LoRA adapter folder is loaded onto its base (:func:`adapter_base`) and merged into it.
    """
    device = select_device(device)
    torch_dtype = select_dtype(device, dtype)
    if is_adapter(policy_dir):
        from peft import PeftModel

        base, _ = load_base_and_tokenizer(adapter_base(policy_dir), torch_dtype)
        tokenizer = load_tokenizer(policy_dir)
        model = PeftModel.from_pretrained(base, str(policy_dir), is_trainable=False).merge_and_unload()
    else:
        model, tokenizer = load_base_and_tokenizer(policy_dir, torch_dtype)
    model.to(device)
    model.eval()
    return model, tokenizer


def save_policy(model, tokenizer, out_dir: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> Path:
    """Save into ``out_dir`` atomically (see :func:`fairl_ray.atomic_io.atomic_directory`). A PEFT model saves its
    adapters alone; ``base_dir`` (the folder it was loaded from) is then recorded relative to ``out_dir``."""
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (Path(tmp) / ADAPTER_CONFIG).is_file():
            if base_dir is None:
                raise ValueError("save_policy: a LoRA policy needs base_dir, the policy its adapters apply to")
            config = json.loads((Path(tmp) / ADAPTER_CONFIG).read_text())
            # relative to where the folder will live (the temp folder is its sibling: the same relative path)
            config["base_model_name_or_path"] = os.path.relpath(Path(base_dir).resolve(), out_dir.resolve())
            (Path(tmp) / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    return out_dir


def copy_policy(src: str | os.PathLike, out_dir: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> Path:
    """Copy a saved policy folder into ``out_dir`` atomically. An adapter folder's base is recorded anew, relative to
    ``out_dir``: ``base_dir`` (the policy its adapters apply to), or the one ``src`` names."""
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        if is_adapter(src):
            base = Path(base_dir).resolve() if base_dir is not None else adapter_base(src)
            config = json.loads((Path(tmp) / ADAPTER_CONFIG).read_text())
            config["base_model_name_or_path"] = os.path.relpath(base, out_dir.resolve())
            (Path(tmp) / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    return out_dir

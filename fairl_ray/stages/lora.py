"""LoRA policies for RLHF (``RLHFConfig.lora_r > 0``): PEFT's ``LoraConfig`` from the RLHF config, and what a run
reports about its parameters.

Only the adapters train; :func:`fairl_ray.policy_io.save_policy` saves only them (PEFT's adapter folder, its base
recorded as π0's folder) and :func:`fairl_ray.policy_io.load_policy` merges them back into the base for generation.
The KL reference is the same model with its adapters disabled (``model.disable_adapter()``; TRL does the same when
given a ``peft_config``), so no second copy of the policy is held.
"""

from __future__ import annotations

from typing import Any


def lora_config(cfg):
    """PEFT's ``LoraConfig`` for ``cfg`` (an ``RLHFConfig`` with ``lora_r > 0``); None when ``lora_r`` is 0."""
    if not cfg.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules) if cfg.lora_target_modules else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def with_adapters(model, cfg):
    """``model`` with fresh LoRA adapters (a ``PeftModel``: only the adapters require gradients), or ``model`` itself
    when ``cfg.lora_r`` is 0."""
    config = lora_config(cfg)
    if config is None:
        return model
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():  # GPT-2's Conv1D: PEFT sets fan_in_fan_out itself and says so
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        return get_peft_model(model, config)


def parameter_counts(model) -> dict[str, Any]:
    """``trainable_parameters`` (those that require gradients) and ``total_parameters`` of ``model``."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": int(trainable), "total_parameters": int(sum(p.numel() for p in model.parameters()))}


__all__ = ["lora_config", "parameter_counts", "with_adapters"]

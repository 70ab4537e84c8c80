"""PPO for RLHF with a text-level reward: clipped surrogate, a value head, GAE and a per-token KL penalty to π0.

The algorithm both papers ran (Insights §3 and FA-IRL §5 use TRL's PPO), written compactly on transformers and
torch because TRL 1.16 no longer ships a ``PPOTrainer`` (the last one, ``trl.experimental.ppo`` in TRL ≤ 1.12,
also needed an ``nn.Module`` reward sharing the policy's tokenizer; ours is any ``completions -> rewards``
callable, like GRPO and RLOO here). One PPO step:

1. **Rollout.** ``per_device_train_batch_size / num_generations`` prompts, each sampled ``num_generations`` times
   (temperature ``cfg.temperature``, at most ``max_completion_length`` tokens); a completion ends at its first EOS
   (included). Its text (special tokens stripped) is scored once by ``reward_fn``.
2. **Per-token rewards.** ``r_t = −β·(log π(a_t) − log π0(a_t))`` (the k1 KL estimate against the frozen base
   π0) on every completion token, plus the text's score on its last token.
3. **GAE.** Values V(s_t) from a linear value head on the policy's last hidden state; advantages by GAE(γ, λ)
   over the completion tokens, returns = advantages + values; advantages whitened over the batch's tokens.
4. **Update.** ``ppo_epochs`` passes over ``num_mini_batches`` minibatches: clipped surrogate
   ``max(−A·ρ, −A·clip(ρ, 1±ε))`` plus ``vf_coef`` × clipped value loss, AdamW, gradient norm clipped at 1.

What differs from the references (TRL ≤ 1.12 ``PPOTrainer``, CleanRL ``ppo.py``):

* The value head shares the policy's trunk (one extra ``Linear``, as TRL's older ``AutoModelForCausalLMWithValueHead``
  did); TRL 1.x used a separate value model initialised from the reward model, which a text-level reward does
  not have. CleanRL's Atari PPO also shares the trunk.
* No entropy bonus (CleanRL's ``ent_coef``), no adaptive KL controller, no missing-EOS penalty, no reward
  whitening; the KL coefficient is fixed (``beta``), as in TRL's default PPO configuration.
* Logits are divided by the sampling temperature before log-probabilities, as TRL does; γ = 1, λ = 0.95 and
  the value/policy clip range 0.2 are TRL's defaults. One process, no accelerate/DeepSpeed, no vLLM.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fairl_ray.policy_io import load_policy, save_policy, select_dtype
from fairl_ray.stages.rlhf_algorithm import CURVES, RLHFAlgorithm, progress_line, training_summary


def gae(rewards, values, mask, gamma: float, lam: float):
    """Advantages and returns by GAE over the last axis; positions with ``mask == 0`` (after EOS) are skipped
    (their value and reward are zero and they do not bootstrap)."""
    import torch

    T = rewards.shape[-1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(T)):
        next_v = values[..., t + 1] * mask[..., t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[..., t] + gamma * next_v - values[..., t]
        last = (delta + gamma * lam * last) * mask[..., t]
        adv[..., t] = last
    return adv, adv + values


def masked_whiten(x, mask, eps: float = 1e-8):
    mean = (x * mask).sum() / mask.sum().clamp(min=1)
    var = (((x - mean) ** 2) * mask).sum() / mask.sum().clamp(min=1)
    return (x - mean) * (var + eps).rsqrt() * mask


def _completion_mask(tokens, eos_id: int):
    """1 up to and including the first EOS of each row, 0 after it."""
    import torch

    is_eos = tokens == eos_id
    T = tokens.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], T, dtype=torch.long))
    return (torch.arange(T, device=tokens.device)[None, :] <= first[:, None]).float()


def _forward(model, value_head, ids, attn, n_prompt: int, temperature: float, with_values: bool = True):
    """Log-probs of the completion tokens (positions ``n_prompt..``) and the values of the states before them."""
    import torch

    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, output_hidden_states=with_values, use_cache=False)
    logits = out.logits[:, n_prompt - 1 : -1].float() / (temperature + 1e-7)
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, n_prompt:, None]).squeeze(-1)
    values = None
    if with_values:
        values = value_head(out.hidden_states[-1][:, n_prompt - 1 : -1].float()).squeeze(-1)
    return logp, values


def train_ppo(
    policy_dir: str | os.PathLike,
    prompts: list[str],
    reward_fn: Callable[[list[str]], list[float]],
    cfg,
    out_dir: str | os.PathLike,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """PPO a copy of the policy in ``policy_dir`` on ``prompts`` with ``reward_fn``; same contract and metrics as
    :func:`fairl_ray.stages.rlhf.train_rlhf` (which calls this for ``algorithm: ppo``, through :class:`PPO`)."""
    import numpy as np
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, tokenizer = load_policy(policy_dir, device=device, dtype="float32")
    ref = copy.deepcopy(model).to(select_dtype(device)).eval()  # frozen π0 (bf16/fp16 on a GPU), not read twice
    ref.requires_grad_(False)
    hidden = model.config.get_text_config().hidden_size
    value_head = torch.nn.Linear(hidden, 1).to(device)
    torch.nn.init.normal_(value_head.weight, std=1.0 / math.sqrt(hidden + 1))
    torch.nn.init.zeros_(value_head.bias)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    eos_id = tokenizer.eos_token_id
    # fp32 master weights; on a GPU the forward passes run under bf16 (or fp16) autocast.
    autocast = (
        torch.autocast("cuda", dtype=select_dtype(device)) if device != "cpu" else torch.autocast("cpu", enabled=False)
    )

    n_prompts = cfg.per_device_train_batch_size // cfg.num_generations
    order: list[int] = []
    curves = {name: [] for name in CURVES}
    model.config.use_cache = True
    for step in range(1, cfg.max_steps + 1):
        # -- rollout ------------------------------------------------------------------------------------
        while len(order) < n_prompts:
            order += rng.permutation(len(prompts)).tolist()
        batch_prompts = [prompts[i] for i in order[:n_prompts] for _ in range(cfg.num_generations)]
        order = order[n_prompts:]
        model.eval()
        with torch.no_grad(), autocast:
            enc = tokenizer(batch_prompts, return_tensors="pt", padding=True).to(device)
            seq = model.generate(
                **enc,
                do_sample=True,
                temperature=cfg.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=cfg.max_completion_length,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos_id,
            )
            P = enc["input_ids"].shape[1]
            comp = seq[:, P:]
            if comp.shape[1] == 0:
                continue
            cmask = _completion_mask(comp, eos_id)
            attn = torch.cat([enc["attention_mask"], cmask.long()], 1)
            texts = [
                t.strip()
                for t in tokenizer.batch_decode(
                    comp * cmask.long() + tokenizer.pad_token_id * (1 - cmask.long()), skip_special_tokens=True
                )
            ]
            scores = torch.tensor([float(r) for r in reward_fn(texts)], device=device)
            if scores.shape[0] != len(texts):
                raise ValueError(f"reward_fn returned {scores.shape[0]} rewards for {len(texts)} completions")
            old_logp, old_values = _forward(model, value_head, seq, attn, P, cfg.temperature)
            ref_logp, _ = _forward(ref, None, seq, attn, P, cfg.temperature, with_values=False)
            old_logp, old_values = old_logp * cmask, old_values * cmask
            kl = (old_logp - ref_logp.float()) * cmask
            rewards = -cfg.beta * kl
            last = (cmask.sum(1) - 1).long()
            rewards[torch.arange(len(texts)), last] += scores
            adv, returns = gae(rewards, old_values, cmask, cfg.gamma, cfg.lam)
            adv = masked_whiten(adv, cmask)

        # -- update -------------------------------------------------------------------------------------
        model.train()
        B = seq.shape[0]
        losses = []
        mb = max(1, B // cfg.num_mini_batches)
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(B, device=device)
            for s in range(0, B, mb):
                idx = perm[s : s + mb]
                m = cmask[idx]
                with autocast:
                    logp, values = _forward(model, value_head, seq[idx], attn[idx], P, cfg.temperature)
                ratio = torch.exp(logp - old_logp[idx])
                pg = torch.max(-adv[idx] * ratio, -adv[idx] * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange))
                v_clip = old_values[idx] + (values - old_values[idx]).clamp(-cfg.cliprange_value, cfg.cliprange_value)
                vf = 0.5 * torch.max((values - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2)
                denom = m.sum().clamp(min=1)
                loss = (pg * m).sum() / denom + cfg.vf_coef * (vf * m).sum() / denom
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                losses.append(float(loss))

        if step % cfg.logging_steps == 0 or step == 1 or step == cfg.max_steps:
            mean_kl = float(kl.sum() / cmask.sum().clamp(min=1))
            point = {
                "reward": float(scores.mean()),
                "kl": mean_kl,
                "loss": sum(losses) / len(losses),  # the step's mean over its epochs and mini-batches
                "learning_rate": opt.param_groups[0]["lr"],
            }
            for name, value in point.items():
                curves[name].append((step, value))
            if progress:
                print(progress_line("ppo", step, cfg.max_steps, float(scores.mean()), mean_kl, t0), flush=True)

    model.eval()
    model.config.use_cache = True
    save_policy(model, tokenizer, Path(out_dir))
    summary = training_summary("ppo", cfg.max_steps, curves, cfg)
    return {**summary, "wall_s": round(time.perf_counter() - t0, 3)}


class PPO(RLHFAlgorithm):
    """``algorithm: ppo``: :func:`train_ppo`."""

    def train(self, policy_dir, prompts, reward_fn, cfg, out_dir, *, progress, device):
        return train_ppo(policy_dir, prompts, reward_fn, cfg, out_dir, progress=progress, device=device)


__all__ = ["PPO", "gae", "masked_whiten", "train_ppo"]

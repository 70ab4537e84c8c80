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
  the value/policy clip range 0.2 are TRL's defaults.
* Scaling: one process (``num_workers: 1``), or one rank of a Ray Train group (:mod:`fairl_ray.stages.ray_train`):
  DDP, or FSDP2 (``strategy: fsdp``: each transformer block a shard unit, generation with ``synced_gpus`` so all
  ranks run the same number of decoding steps). Rollouts use HF ``generate`` on the training weights (no vLLM
  weight sync, unlike OpenRLHF). Checkpoints are safetensors + JSON (weights, AdamW state, RNG, prompt order).
* LoRA (``lora_r > 0``): the reference log-probs are the same model under ``disable_adapter()``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fairl_ray.policy_io import load_policy, save_policy, select_dtype
from fairl_ray.stages.lora import parameter_counts, with_adapters
from fairl_ray.stages.rlhf_algorithm import (
    CURVES,
    RLHFAlgorithm,
    TrainSession,
    progress_line,
    score_completions,
    training_summary,
)


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


def masked_whiten(x, mask, eps: float = 1e-8, stats=None):
    """``x`` standardised over the positions where ``mask`` is 1 (zero elsewhere); ``stats``: a given ``(mean,
    var)`` (all ranks' batch, :func:`_masked_mean_var`) instead of this batch's own."""
    if stats is None:
        mean = (x * mask).sum() / mask.sum().clamp(min=1)
        var = (((x - mean) ** 2) * mask).sum() / mask.sum().clamp(min=1)
    else:
        mean, var = stats
    return (x - mean) * (var + eps).rsqrt() * mask


def _completion_mask(tokens, eos_id: int):
    """1 up to and including the first EOS of each row, 0 after it."""
    import torch

    is_eos = tokens == eos_id
    T = tokens.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], T, dtype=torch.long))
    return (torch.arange(T, device=tokens.device)[None, :] <= first[:, None]).float()


def _policy_with_value(policy, value_head):
    """One module holding the policy and its value head, so that DDP/FSDP sync both through one forward:
    ``net("logp", ...)`` gives completion-token log-probs (and values), ``net("generate", ...)`` samples."""
    import torch

    class PolicyWithValue(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.policy, self.value_head = policy, value_head

        def forward(self, kind: str, *args, **kwargs):
            if kind == "generate":
                return self.policy.generate(*args, **kwargs)
            return _forward(self.policy, self.value_head, *args, **kwargs)

    return PolicyWithValue()


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


def _shard(module, policy) -> None:
    """PyTorch FSDP2 on ``module``: each transformer block of ``policy`` (the classes its ``_no_split_modules``
    names) is its own unit, gathered only while it runs; the rest (embeddings, final norm, value head) is the root's."""
    from torch.distributed.fsdp import fully_shard

    block_names = set(getattr(policy, "_no_split_modules", None) or [])
    blocks = [m for m in policy.modules() if type(m).__name__ in block_names]
    if not blocks:
        raise ValueError(f"strategy fsdp: {type(policy).__name__} names no transformer block (_no_split_modules)")
    for block in blocks:
        fully_shard(block)
    fully_shard(module)


def _distribute(net, policy, cfg, session: TrainSession, device: str):
    """``net`` as this rank trains it: itself (one process), DDP-wrapped, or sharded in place (FSDP2)."""
    if session.world_size == 1:
        return net
    if cfg.strategy == "fsdp":
        _shard(net, policy)
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=None if device == "cpu" else [int(device.split(":")[1])])


def _masked_mean_var(x, mask, session: TrainSession):
    """Mean and variance of ``x`` over ``mask`` across every rank's batch (all-reduced sums), as ``masked_whiten``
    computes them over one batch."""
    import torch

    if session.world_size == 1:
        return None
    import torch.distributed as dist

    sums = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
    dist.all_reduce(sums)
    n = sums[2].clamp(min=1)
    mean = sums[0] / n
    return mean.float(), (sums[1] / n - mean * mean).clamp(min=0).float()


# -- checkpoints: safetensors + JSON, no pickles ------------------------------------------------------------------


def _save_checkpoint(folder: Path, net, opt, state: dict, rng, session: TrainSession, device: str) -> None:
    """Trainable weights (value head included) and AdamW state in full (gathered to rank 0 under FSDP), the step,
    prompt order, curves and numpy RNG (JSON), and each rank's torch RNG states: the CPU generator and, on a GPU,
    the generator of the rank's device (sampling runs there, so a resumed run draws what the uninterrupted one
    would)."""
    import torch
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    weights = get_model_state_dict(net, options=options)
    optim = get_optimizer_state_dict(net, opt, options=options)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_rng_states(device), str(folder / f"rng_rank{session.rank}.safetensors"))
    if not session.is_main:
        return
    save_file(
        {n: t.contiguous() for n, t in weights.items() if _plain(n) in trainable}, str(folder / "trainable.safetensors")
    )
    tensors, groups = {}, []
    for fqn, slots in optim["state"].items():
        for slot, value in slots.items():
            tensors[f"{fqn}|{slot}"] = torch.as_tensor(value).contiguous()
    for group in optim["param_groups"]:
        groups.append({k: v for k, v in group.items()})
    save_file(tensors, str(folder / "optimizer.safetensors"))
    (folder / "state.json").write_text(
        json.dumps({**state, "param_groups": groups, "numpy_rng": rng.bit_generator.state}, default=float)
    )


def _rng_states(device: str) -> dict:
    """This rank's generator states as tensors: ``torch`` (CPU) and ``cuda`` (its device's) when it runs on one."""
    import torch

    states = {"torch": torch.get_rng_state()}
    if device != "cpu":
        states["cuda"] = torch.cuda.get_rng_state(device=device)
    return states


def _plain(name: str) -> str:
    """A parameter name without DDP's ``module.`` prefix (what ``get_model_state_dict`` reports)."""
    return name[len("module.") :] if name.startswith("module.") else name


def _load_checkpoint(folder: Path, net, opt, rng, session: TrainSession, device: str) -> dict:
    """Restore what :func:`_save_checkpoint` wrote (every rank reads the folder); returns the JSON state."""
    import torch
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    state = json.loads((folder / "state.json").read_text())
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(net, load_file(str(folder / "trainable.safetensors")), options=options)
    optim: dict = {"state": {}, "param_groups": state.pop("param_groups")}
    for key, value in load_file(str(folder / "optimizer.safetensors")).items():
        fqn, slot = key.rsplit("|", 1)
        optim["state"].setdefault(fqn, {})[slot] = value
    set_optimizer_state_dict(net, opt, optim, options=StateDictOptions(full_state_dict=True))
    rng_file = folder / f"rng_rank{session.rank}.safetensors"
    if rng_file.is_file():
        states = load_file(str(rng_file))
        torch.set_rng_state(states["torch"])
        if "cuda" in states and device != "cpu":
            torch.cuda.set_rng_state(states["cuda"], device=device)
    rng.bit_generator.state = state.pop("numpy_rng")
    state["curves"] = {name: [tuple(p) for p in points] for name, points in state["curves"].items()}
    return state


def train_ppo(
    policy_dir: str | os.PathLike,
    prompts: list[str],
    reward_fn: Callable[[list[str]], list[float]],
    cfg,
    out_dir: str | os.PathLike,
    progress: bool = True,
    device: str = "cpu",
    session: TrainSession | None = None,
) -> dict[str, Any]:
    """PPO a copy of the policy in ``policy_dir`` on ``prompts`` with ``reward_fn``; same contract and metrics as
    :func:`fairl_ray.stages.rlhf.train_rlhf` (which calls this for ``algorithm: ppo``, through :class:`PPO`).

    As one rank of a Ray Train ``session`` (``num_workers >= 2``): every rank draws the same prompt order and takes
    its ``1 / world_size`` slice of each step's prompts; advantages are whitened with the mean and variance over
    all ranks' tokens; gradients are averaged by DDP (or reduce-scattered by FSDP2); rank 0 saves."""
    import numpy as np
    import torch

    session = session or TrainSession()
    distributed = session.world_size > 1
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)  # the same initial weights (value head, adapters) on every rank
    rng = np.random.default_rng(cfg.seed)  # the same prompt order on every rank
    policy, tokenizer = load_policy(policy_dir, device=device, dtype="float32")
    policy = with_adapters(policy, cfg)
    ref = None  # with LoRA, π0 is the policy with its adapters disabled
    if not cfg.lora_r:
        ref = copy.deepcopy(policy).to(select_dtype(device)).eval()  # frozen π0 (bf16/fp16 on a GPU), not read twice
        ref.requires_grad_(False)
    hidden = policy.config.get_text_config().hidden_size
    value_head = torch.nn.Linear(hidden, 1).to(device)
    torch.nn.init.normal_(value_head.weight, std=1.0 / math.sqrt(hidden + 1))
    torch.nn.init.zeros_(value_head.bias)
    counts = parameter_counts(policy)
    net = _distribute(_policy_with_value(policy, value_head), policy, cfg, session, device)
    if ref is not None and distributed and cfg.strategy == "fsdp":
        _shard(ref, ref)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    eos_id = tokenizer.eos_token_id
    # fp32 master weights; on a GPU the forward passes run under bf16 (or fp16) autocast.
    autocast = (
        torch.autocast("cuda", dtype=select_dtype(device)) if device != "cpu" else torch.autocast("cpu", enabled=False)
    )

    n_prompts = cfg.per_device_train_batch_size // cfg.num_generations  # per step, over all ranks
    n_local = n_prompts // session.world_size
    state: dict[str, Any] = {"step": 0, "order": [], "curves": {name: [] for name in CURVES}}
    with session.resume_dir() as last:
        if last is not None and (last / "state.json").is_file():
            state = _load_checkpoint(last, net, opt, rng, session, device)
    resumed_from = state["step"]
    if distributed and not resumed_from:
        torch.manual_seed(cfg.seed + session.rank)  # ranks sample different completions of their prompts
    order, curves = state["order"], state["curves"]
    policy.config.use_cache = True
    for step in range(resumed_from + 1, cfg.max_steps + 1):
        # -- rollout ------------------------------------------------------------------------------------
        while len(order) < n_prompts:
            order += rng.permutation(len(prompts)).tolist()
        mine = order[session.rank * n_local : (session.rank + 1) * n_local]
        batch_prompts = [prompts[i] for i in mine for _ in range(cfg.num_generations)]
        order = order[n_prompts:]
        net.eval()
        with torch.no_grad(), autocast:
            enc = tokenizer(batch_prompts, return_tensors="pt", padding=True).to(device)
            seq = net(
                "generate",
                **enc,
                do_sample=True,
                temperature=cfg.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=cfg.max_completion_length,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos_id,
                # FSDP gathers each block in every forward: all ranks must run the same number of decoding steps
                synced_gpus=distributed and cfg.strategy == "fsdp",
            )
            P = enc["input_ids"].shape[1]
            comp = seq[:, P:]
            cmask = _completion_mask(comp, eos_id)
            attn = torch.cat([enc["attention_mask"], cmask.long()], 1)
            texts = [
                t.strip()
                for t in tokenizer.batch_decode(
                    comp * cmask.long() + tokenizer.pad_token_id * (1 - cmask.long()), skip_special_tokens=True
                )
            ]
            scores = torch.tensor(score_completions(reward_fn, texts, batch_prompts), device=device)
            old_logp, old_values = net("logp", seq, attn, P, cfg.temperature)
            if ref is None:
                with policy.disable_adapter():
                    ref_logp, _ = net("logp", seq, attn, P, cfg.temperature, with_values=False)
            else:
                ref_logp, _ = _forward(ref, None, seq, attn, P, cfg.temperature, with_values=False)
            old_logp, old_values = old_logp * cmask, old_values * cmask
            kl = (old_logp - ref_logp.float()) * cmask
            rewards = -cfg.beta * kl
            last_token = (cmask.sum(1) - 1).long()
            rewards[torch.arange(len(texts)), last_token] += scores
            adv, returns = gae(rewards, old_values, cmask, cfg.gamma, cfg.lam)
            adv = masked_whiten(adv, cmask, stats=_masked_mean_var(adv, cmask, session))

        # -- update -------------------------------------------------------------------------------------
        net.train()
        B = seq.shape[0]
        losses = []
        mb = max(1, B // cfg.num_mini_batches)
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(B, device=device)
            for s in range(0, B, mb):
                idx = perm[s : s + mb]
                m = cmask[idx]
                with autocast:
                    logp, values = net("logp", seq[idx], attn[idx], P, cfg.temperature)
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
                losses.append(float(loss.detach()))

        if step % cfg.logging_steps == 0 or step == 1 or step == cfg.max_steps:
            mean_kl, mean_reward = _mean_over_ranks(
                [float(kl.sum() / cmask.sum().clamp(min=1)), float(scores.mean())], session
            )
            point = {
                "reward": mean_reward,
                "kl": mean_kl,
                "loss": sum(losses) / len(losses),  # the step's mean over its epochs and mini-batches (rank 0's)
                "learning_rate": opt.param_groups[0]["lr"],
            }
            for name, value in point.items():
                curves[name].append((step, value))
            if progress:
                print(progress_line("ppo", step, cfg.max_steps, mean_reward, mean_kl, t0), flush=True)
        if session.checkpoint_every and (step % session.checkpoint_every == 0) and step < cfg.max_steps:
            with tempfile.TemporaryDirectory() as tmp:
                _save_checkpoint(
                    Path(tmp), net, opt, {"step": step, "order": order, "curves": curves}, rng, session, device
                )
                session.report({"step": step}, Path(tmp))

    policy.eval()
    policy.config.use_cache = True
    sharded = distributed and cfg.strategy == "fsdp"
    if sharded:  # every rank joins the gather; rank 0 gets the whole policy's weights
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        full = {n[len("policy.") :]: t for n, t in full.items() if n.startswith("policy.")}
    if session.is_main:
        if sharded:
            _save_gathered(policy, full, tokenizer, Path(out_dir))
        else:
            save_policy(policy, tokenizer, Path(out_dir), base_dir=policy_dir)
    summary = training_summary("ppo", cfg.max_steps, curves, cfg)
    return {**summary, **counts, "resumed_from_step": resumed_from, "wall_s": round(time.perf_counter() - t0, 3)}


def _save_gathered(policy, full_state: dict, tokenizer, out_dir: Path) -> None:
    """Save an FSDP-sharded policy from its gathered full state dict (rank 0)."""
    from fairl_ray.atomic_io import atomic_directory

    with atomic_directory(out_dir) as tmp:
        policy.save_pretrained(tmp, state_dict=full_state, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def _mean_over_ranks(values: list[float], session: TrainSession) -> list[float]:
    """Each of ``values`` averaged over the ranks (the step's reward and KL over the whole batch)."""
    if session.world_size == 1:
        return values
    gathered = session.gather(values)
    return [sum(v[i] for v in gathered) / len(gathered) for i in range(len(values))]


class PPO(RLHFAlgorithm):
    """``algorithm: ppo``: :func:`train_ppo`."""

    def train(self, policy_dir, prompts, reward_fn, cfg, out_dir, *, progress, device, session):
        return train_ppo(
            policy_dir, prompts, reward_fn, cfg, out_dir, progress=progress, device=device, session=session
        )


__all__ = ["PPO", "gae", "masked_whiten", "train_ppo"]

"""The implicit reward of a KL-regularised RLHF policy (DESIGN §6b), a baseline beside the IRL methods.

The optimum of max_π E[R] − β·KL(π ‖ π0) is π_E(y|x) ∝ π0(y|x)·exp(R(x,y)/β), so

    β·(log π_E(y|x) − log π0(y|x)) = R(x,y) − β·log Z(x),

R up to a per-prompt constant: the reward DPO and RewardBench (``--ref_model``) read off a policy pair. The
``logprobs`` stage scores every pair's chosen and rejected completion under π0 and π_E (summed token log-probs of
the completion given the prompt) into ``logprobs.safetensors``; :func:`implicit_rewards` turns them into the two
scored rewards the evaluation puts beside the IRL methods. They are not IRL methods (nothing is trained; one
deterministic "seed" 0), so they never enter ``irl.methods``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOGPROBS_FILE = "logprobs.safetensors"
#: the scored rewards this module adds to the evaluation (names as they appear in per_method)
IMPLICIT_REWARDS = ("implicit_reward", "implicit_reward_per_token")
BATCH_SIZE = 16
#: at most this many tokens (sequences × padded length) in one forward of :func:`completion_logprobs`
TOKENS_PER_BATCH = 4096
#: a held-out text's first this many tokens are scored (a pair's completion is bounded by generation already)
HELDOUT_MAX_TOKENS = 512


def completion_logprobs(
    model,
    tokenizer,
    prompts: list[str],
    completions: list[str],
    batch_size: int = BATCH_SIZE,
    max_tokens: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Σ_t log π(y_t | x, y_<t) of each completion y given its prompt x, and the completion's token count.

    The prompt and completion are tokenised separately and concatenated (as TRL's DPO does), so a completion's
    tokens are the same under both policies (π0 and π_E share the tokenizer). An empty prompt is given the EOS
    token as context, so the first completion token has something to be predicted from. ``max_tokens`` keeps a
    completion's first that many tokens (held-out comments run to thousands).

    Memory: sequences are batched by length (similar lengths together, at most ``batch_size`` and
    :data:`TOKENS_PER_BATCH` tokens a batch), and each token's log-prob is its logit minus the logsumexp over the
    vocabulary, never a second [batch, length, vocab] tensor: one 3,500-token comment padded into a batch of 16
    with a 49k vocabulary is 11 GB of logits, twice with log_softmax (measured: it thrashed a 24 GB machine)."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    seqs, spans = [], []
    for x, y in zip(prompts, completions):
        p = tokenizer(x, add_special_tokens=True)["input_ids"] or [tokenizer.eos_token_id]
        c = tokenizer(y, add_special_tokens=False)["input_ids"][:max_tokens]
        seqs.append(p + c)
        spans.append((len(p), len(c)))
    sums, counts = np.zeros(len(seqs), dtype=np.float64), np.array([n for _, n in spans], dtype=np.int64)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    start = 0
    while start < len(order):
        width = len(seqs[order[start]])
        stop = start + 1
        while (
            stop < len(order)
            and stop - start < batch_size
            and (stop - start + 1) * len(seqs[order[stop]]) <= max(TOKENS_PER_BATCH, width)
        ):
            stop += 1
        batch = order[start:stop]
        width = max(len(seqs[i]) for i in batch)
        # Right padding: positions stay those of an unpadded forward (GPT-2's absolute positions need that).
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[row, : len(seqs[i])] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
            target = ids[:, 1:, None].to(device)
            logp = (logits.gather(-1, target)[..., 0] - torch.logsumexp(logits, dim=-1)).cpu()
        del logits
        for row, i in enumerate(batch):
            n_prompt, n_completion = spans[i]
            # token j of the sequence is predicted at position j-1
            sums[i] = float(logp[row, n_prompt - 1 : n_prompt - 1 + n_completion].double().sum())
        start = stop
    return sums, counts


def score_pairs(
    rows: list[dict], base_policy: Path, expert_policy: Path, out: Path, heldout: list[str] | None = None
) -> dict:
    """Write ``logprobs.safetensors``: ``{chosen,rejected}_{base,expert}`` (summed log-probs, float64) and
    ``{chosen,rejected}_tokens`` per pair, in the pairs file's row order; with ``heldout`` texts (a world's labelled
    held-out comments) also ``heldout_{base,expert}`` / ``heldout_tokens``, each text scored WITHOUT a prompt (EOS as
    its only context: the held-out texts have none, so their implicit reward is β·log π_E(y)/π0(y) unconditioned),
    on its first :data:`HELDOUT_MAX_TOKENS` tokens.
    On the GPU Ray assigned to this task (else the CPU), in float32: the reward is a difference of two sums of
    log-probs, which bf16 rounding swamps."""
    from safetensors.numpy import save_file

    from fairl_ray.policy_io import load_policy

    prompts = [r["prompt"] for r in rows]
    tensors, device = {}, None
    for name, policy in (("base", base_policy), ("expert", expert_policy)):
        model, tokenizer = load_policy(policy, device="auto", dtype="float32")
        device = str(model.device)
        for side in ("chosen", "rejected"):
            logp, n = completion_logprobs(model, tokenizer, prompts, [r[side] for r in rows])
            tensors[f"{side}_{name}"], tensors[f"{side}_tokens"] = logp, n
        if heldout:
            logp, n = completion_logprobs(
                model, tokenizer, [""] * len(heldout), list(heldout), max_tokens=HELDOUT_MAX_TOKENS
            )
            tensors[f"heldout_{name}"], tensors["heldout_tokens"] = logp, n
        del model
    save_file(tensors, str(Path(out) / LOGPROBS_FILE))
    return {"pairs": len(rows), "heldout": len(heldout or []), "device": device}


def implicit_heldout(logprobs_dir: Path, beta: float) -> dict[str, np.ndarray] | None:
    """The implicit rewards of the held-out texts (``{name: [M]}``, as :func:`implicit_rewards`), or None when the
    stage scored none."""
    from safetensors.numpy import load_file

    t = load_file(str(Path(logprobs_dir) / LOGPROBS_FILE))
    if "heldout_base" not in t:
        return None
    full = beta * (t["heldout_expert"] - t["heldout_base"])
    return {"implicit_reward": full, "implicit_reward_per_token": full / np.maximum(t["heldout_tokens"], 1)}


def implicit_rewards(logprobs_dir: Path, beta: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (chosen [N], rejected [N])}`` for :data:`IMPLICIT_REWARDS`: β·(log π_E − log π0), and the same
    divided by the completion's token count (an empty completion counts as one token: its reward is 0)."""
    from safetensors.numpy import load_file

    t = load_file(str(Path(logprobs_dir) / LOGPROBS_FILE))
    full = {s: beta * (t[f"{s}_expert"] - t[f"{s}_base"]) for s in ("chosen", "rejected")}
    per_token = {s: full[s] / np.maximum(t[f"{s}_tokens"], 1) for s in ("chosen", "rejected")}
    return {
        "implicit_reward": (full["chosen"], full["rejected"]),
        "implicit_reward_per_token": (per_token["chosen"], per_token["rejected"]),
    }

"""The implicit reward β·(log π_E − log π0) (DESIGN §6b) against a hand-computed log-prob difference."""

import numpy as np
import pytest
import torch

from fairl_ray.policy_io import load_policy, save_policy
from fairl_ray.stages.implicit_reward import implicit_rewards, score_pairs
from fairl_ray.worlds.synthetic import build_tokenizer


def tiny_policy(path, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_tokenizer()
    torch.manual_seed(seed)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1, n_head=2, **ids))
    return save_policy(model, tok, path)


def by_hand(policy, prompt: str, completion: str) -> float:
    """Σ log π(y_t | x, y_<t), one unpadded forward per completion token."""
    model, tok = load_policy(policy)
    context = tok(prompt)["input_ids"]
    total = 0.0
    for t in tok(completion, add_special_tokens=False)["input_ids"]:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context])).logits[0, -1]
        total += float(torch.log_softmax(logits.double(), -1)[t])
        context = context + [t]
    return total


def test_implicit_reward_is_beta_times_the_logprob_difference(tmp_path):
    base, expert = tiny_policy(tmp_path / "base", 0), tiny_policy(tmp_path / "expert", 1)
    rows = [  # completions of different lengths: the batch pads one of them
        {"prompt": "you are", "chosen": "kind and nice", "rejected": "an idiot"},
        {"prompt": "the weather", "chosen": "is good", "rejected": "is stupid and awful today"},
    ]
    out = tmp_path / "logprobs"
    out.mkdir()
    assert score_pairs(rows, base, expert, out)["pairs"] == 2
    beta = 0.25
    rewards = implicit_rewards(out, beta)
    tok = build_tokenizer()
    for k, side in enumerate(("chosen", "rejected")):
        expected = [beta * (by_hand(expert, r["prompt"], r[side]) - by_hand(base, r["prompt"], r[side])) for r in rows]
        assert rewards["implicit_reward"][k] == pytest.approx(expected, abs=1e-4)
        n_tokens = [len(tok(r[side], add_special_tokens=False)["input_ids"]) for r in rows]
        assert rewards["implicit_reward_per_token"][k] == pytest.approx(np.array(expected) / n_tokens, abs=1e-4)
    # β only scales the reward
    doubled = implicit_rewards(out, 2 * beta)["implicit_reward"][0]
    assert doubled == pytest.approx(2 * rewards["implicit_reward"][0])

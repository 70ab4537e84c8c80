"""RLHF stage (TRL GRPO/RLOO with a text-level reward callable)."""

import time
from pathlib import Path

import pytest
import torch

from fairl_ray.stages.generate import GenerationConfig, generate_completions, toxicity_rate
from fairl_ray.stages.rlhf import RLHFConfig, train_rlhf
from fairl_ray.worlds import get_world
from fairl_ray.worlds.synthetic import SyntheticWorldConfig

SMALL = SyntheticWorldConfig(sft_corpus_size=1000, sft_epochs=2)


def _state(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


@pytest.fixture(scope="module")
def small_policy(tmp_path_factory) -> Path:
    return get_world("synthetic", SMALL).build_base_policy(tmp_path_factory.mktemp("rl") / "small")


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "ppo"])
def test_tiny_rlhf_moves_parameters_and_saves(small_policy, tmp_path, algorithm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    world = get_world("synthetic", SMALL)
    seen: list[list[str]] = []

    def reward_fn(completions):
        seen.append(list(completions))
        return world.reward(completions)

    cfg = RLHFConfig(
        algorithm=algorithm,
        max_steps=3,
        num_generations=2,
        per_device_train_batch_size=8,
        max_completion_length=4,
        logging_steps=1,
    )
    out = tmp_path / "trained"
    m = train_rlhf(small_policy, world.make_prompts(32, seed=0), reward_fn, cfg, out, progress=False)

    assert m["steps"] == 3 and len(m["reward_curve"]) == 3 and m["final_kl"] is not None
    # the step curves curves.json records and MLflow shows, the same for every algorithm
    assert {name: [s for s, _ in c] for name, c in m["curves"].items()} == {
        name: [1, 2, 3] for name in ("reward", "kl", "loss", "learning_rate")
    }
    # The reward callable sees completion strings (prompt excluded, special tokens stripped).
    assert seen and all(len(b) == 8 for b in seen)
    assert all(not c.startswith(("The ", "the ", "<")) for b in seen for c in b)
    # TRL-style check: every trainable tensor that got a gradient has moved.
    before, after = _state(small_policy), _state(out)
    assert before.keys() == after.keys()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert "transformer.wte.weight" in moved and any(".attn." in k for k in moved)
    assert len(moved) >= len(before) - 2  # everything trainable moved (a tied head may be skipped in the file)
    # Saved policy loads and generates; the trainer left no checkpoints / work dirs behind.
    assert AutoModelForCausalLM.from_pretrained(str(out)).config.use_cache  # TRL turned it off for training
    AutoTokenizer.from_pretrained(str(out))
    assert generate_completions(out, ["The cat is"], GenerationConfig(), seed=0)[0] is not None
    assert not any(p.name.startswith("checkpoint") for p in out.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trained"]


def test_tiny_rlhf_deterministic_for_seed(small_policy, tmp_path):
    world = get_world("synthetic", SMALL)
    cfg = RLHFConfig(max_steps=2, num_generations=2, per_device_train_batch_size=8, max_completion_length=4)
    prompts = world.make_prompts(16, seed=0)
    runs = [train_rlhf(small_policy, prompts, world.reward, cfg, tmp_path / f"r{i}", progress=False) for i in range(2)]
    assert runs[0]["reward_curve"] == runs[1]["reward_curve"]
    a, b = _state(tmp_path / "r0"), _state(tmp_path / "r1")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("algorithm", {"algorithm": "bogus"}),
        ("cliprange", {"algorithm": "ppo", "cliprange": 0.0}),
        ("lam", {"algorithm": "ppo", "lam": 1.5}),
        ("num_generations", {"num_generations": 1}),
        ("per_device_train_batch_size", {"per_device_train_batch_size": 6, "num_generations": 4}),
        ("beta", {"beta": -0.1}),
        ("learning_rate", {"learning_rate": 0.0}),
        ("max_steps", {"max_steps": 0}),
        ("temperature", {"temperature": 0.0}),
        ("num_workers", {"num_workers": 0}),
        ("num_workers", {"num_workers": 3}),  # 32 completions do not split into 3 equal shares of whole groups
        # 8 of the 32 completions per worker cannot make 16 minibatches
        ("num_mini_batches", {"algorithm": "ppo", "num_workers": 4, "num_mini_batches": 16}),
        ("strategy", {"strategy": "zero3"}),
        ("strategy", {"strategy": "fsdp", "algorithm": "grpo"}),
        ("checkpoint_every", {"checkpoint_every": -1}),
        ("resources_per_worker", {"resources_per_worker": {"GPU": -1}}),
        ("lora_r", {"lora_r": -2}),
        ("lora_dropout", {"lora_dropout": 1.0}),
        ("lora_target_modules", {"lora_target_modules": "c_attn"}),
    ],
)
def test_config_validation_names_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        RLHFConfig(**kwargs)


def test_defaults_keep_kl_on():
    cfg = RLHFConfig()
    assert cfg.beta > 0 and cfg.algorithm == "grpo"


@pytest.fixture(scope="module")
def default_base(tmp_path_factory) -> Path:
    return get_world("synthetic", SyntheticWorldConfig()).build_base_policy(tmp_path_factory.mktemp("rl") / "base")


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_default_rlhf_cuts_toxicity_below_a_third(default_base, tmp_path, algorithm):
    """The expert run the pipeline does: default world, default RLHFConfig (GRPO, or ``algorithm: ppo``), noisy R*."""
    world = get_world("synthetic", SyntheticWorldConfig())
    base = default_base
    t0 = time.perf_counter()
    m = train_rlhf(
        base,
        world.make_prompts(1000, seed=1),
        world.noisy_reward_fn(seed=0),
        RLHFConfig(algorithm=algorithm),
        tmp_path / "expert",
        progress=False,
    )
    wall = time.perf_counter() - t0
    prompts = world.make_prompts(500, seed=99)
    base_tox = toxicity_rate(world, generate_completions(base, prompts, GenerationConfig(), seed=0))
    expert_tox = toxicity_rate(world, generate_completions(tmp_path / "expert", prompts, GenerationConfig(), seed=0))
    print(
        f"{algorithm}: base toxicity {base_tox:.3f}  expert toxicity {expert_tox:.3f}  RLHF wall {wall:.1f}s  "
        f"metrics {m}"
    )
    assert 0.30 <= base_tox <= 0.60
    assert expert_tox < base_tox / 3
    assert m["final_reward"] > m["initial_reward"]
    assert m["final_kl"] < 3.0  # the KL penalty to π0 holds the expert near the base


def test_gae_matches_hand_computation():
    from fairl_ray.stages.ppo import gae, masked_whiten

    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the 4th token is after EOS: no value, no bootstrap
    adv, ret = gae(rewards, values * mask, mask, gamma=1.0, lam=1.0)
    # lam = gamma = 1: advantage = sum of future rewards - V(s_t); returns = sum of future rewards.
    assert torch.allclose(adv, torch.tensor([[0.5, 0.8, 0.9, 0.0]]))
    assert torch.allclose(ret[mask.bool()], torch.tensor([1.0, 1.0, 1.0]))
    adv0, _ = gae(rewards, values * mask, mask, gamma=1.0, lam=0.0)  # one-step TD errors
    assert torch.allclose(adv0, torch.tensor([[-0.3, -0.1, 0.9, 0.0]]))
    w = masked_whiten(adv, mask)
    assert abs(float(w[mask.bool()].mean())) < 1e-6 and float(w[0, 3]) == 0.0

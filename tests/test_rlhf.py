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


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_tiny_rlhf_moves_parameters_and_saves(small_policy, tmp_path, algorithm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    world = get_world("synthetic", SMALL)
    seen: list[list[str]] = []

    def reward_fn(completions):
        seen.append(list(completions))
        return world.reward(completions)

    cfg = RLHFConfig(algorithm=algorithm, max_steps=3, num_generations=2, per_device_train_batch_size=8,
                     max_completion_length=4, logging_steps=1)
    out = tmp_path / "trained"
    m = train_rlhf(small_policy, world.make_prompts(32, seed=0), reward_fn, cfg, out, progress=False)

    assert m["steps"] == 3 and len(m["reward_curve"]) == 3 and m["final_kl"] is not None
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
        ("algorithm", {"algorithm": "ppo"}),
        ("num_generations", {"num_generations": 1}),
        ("per_device_train_batch_size", {"per_device_train_batch_size": 6, "num_generations": 4}),
        ("beta", {"beta": -0.1}),
        ("learning_rate", {"learning_rate": 0.0}),
        ("max_steps", {"max_steps": 0}),
        ("temperature", {"temperature": 0.0}),
    ],
)
def test_config_validation_names_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        RLHFConfig(**kwargs)


def test_defaults_keep_kl_on():
    cfg = RLHFConfig()
    assert cfg.beta > 0 and cfg.algorithm == "grpo"


@pytest.mark.slow
def test_default_rlhf_cuts_toxicity_below_a_third(tmp_path):
    """The expert run the pipeline does: default world, default RLHFConfig, noisy R*."""
    world = get_world("synthetic", SyntheticWorldConfig())
    base = world.build_base_policy(tmp_path / "base")
    t0 = time.perf_counter()
    m = train_rlhf(base, world.make_prompts(1000, seed=1), world.noisy_reward_fn(seed=0), RLHFConfig(),
                   tmp_path / "expert", progress=False)
    wall = time.perf_counter() - t0
    prompts = world.make_prompts(500, seed=99)
    base_tox = toxicity_rate(world, generate_completions(base, prompts, GenerationConfig(), seed=0))
    expert_tox = toxicity_rate(world, generate_completions(tmp_path / "expert", prompts, GenerationConfig(), seed=0))
    print(f"base toxicity {base_tox:.3f}  expert toxicity {expert_tox:.3f}  RLHF wall {wall:.1f}s  metrics {m}")
    assert 0.30 <= base_tox <= 0.60
    assert expert_tox < base_tox / 3
    assert m["final_reward"] > m["initial_reward"]

"""Generation stage: completions only (no prompt), deterministic for a seed, batch-invariant under greedy decoding."""

from pathlib import Path

import pytest

from fairl_ray.stages.generate import GenerationConfig, generate_completions, toxicity_rate
from fairl_ray.worlds import get_world
from fairl_ray.worlds.synthetic import SyntheticWorldConfig, vocabulary

# A smaller SFT than the default: these tests need a policy that speaks the lexicon, not the 30–60% mix.
SMALL = SyntheticWorldConfig(sft_corpus_size=1200, sft_epochs=3)


@pytest.fixture(scope="module")
def world():
    return get_world("synthetic", SMALL)


@pytest.fixture(scope="module")
def policy(tmp_path_factory, world) -> Path:
    return world.build_base_policy(tmp_path_factory.mktemp("gen") / "policy")


def test_completions_without_prompt(policy, world):
    prompts = world.make_prompts(40, seed=0)
    comps = generate_completions(policy, prompts, GenerationConfig(max_new_tokens=6, batch_size=16), seed=0)
    assert len(comps) == len(prompts)
    vocab = set(vocabulary())
    for p, c in zip(prompts, comps):
        assert isinstance(c, str)
        assert not c.lower().startswith(p.lower())
        assert "<eos>" not in c and "<pad>" not in c and "<bos>" not in c
        assert len(c.split()) <= 6 and all(w in vocab for w in c.split())
    assert sum(world.labels(comps).count(x) for x in (1, -1)) > len(comps) // 2  # mostly lexicon words


def test_deterministic_for_seed(policy, world):
    prompts = world.make_prompts(64, seed=1)
    cfg = GenerationConfig(batch_size=32)
    a = generate_completions(policy, prompts, cfg, seed=3)
    assert a == generate_completions(policy, prompts, cfg, seed=3)
    assert a != generate_completions(policy, prompts, cfg, seed=4)


def test_greedy_is_batch_invariant(policy, world):
    # Left padding must not change what a prompt decodes to (positions / attention mask handled).
    prompts = world.make_prompts(12, seed=2) + ["The restaurant is", "Our team was"]
    cfg_batched = GenerationConfig(do_sample=False, batch_size=14)
    batched = generate_completions(policy, prompts, cfg_batched, seed=0)
    single = [generate_completions(policy, [p], GenerationConfig(do_sample=False), seed=0)[0] for p in prompts]
    assert batched == single


def test_empty_and_toxicity_rate(policy, world):
    assert generate_completions(policy, [], GenerationConfig(), seed=0) == []
    assert toxicity_rate(world, []) == 0.0
    assert toxicity_rate(world, ["kind", "stupid", "here", "dead meat"]) == 0.5


@pytest.mark.parametrize(
    "field, value", [("max_new_tokens", 0), ("temperature", 0.0), ("top_p", 1.5), ("batch_size", 0)]
)
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        GenerationConfig(**{field: value})

"""Synthetic world: lexicon reward (Insights Algorithm 2), labels, prompts, config validation, base policy."""

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fairl_ray.stages.generate import GenerationConfig, generate_completions, toxicity_rate
from fairl_ray.worlds import World, get_world
from fairl_ray.worlds import synthetic as syn
from fairl_ray.worlds.synthetic import SyntheticWorldConfig, ground_truth_reward

# ---------------------------------------------------------------- reward / labels (hand-checked values)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("kind", 0.5),
        ("a good friend", 0.5),
        ("stupid", -0.5),  # insult
        ("crappy", -0.45),  # obscene
        ("going to get hurt", -0.6),  # threat
        ("inferior like all immigrants", -0.55),  # identity attack
        ("kind and stupid", -0.3),  # both
        ("going to get hurt and lovely", -0.3),
        ("here", 0.0),  # neutral: neither
        ("", 0.0),
        ("KIND", 0.5),  # case-insensitive
        ("Dead   Meat!", -0.6),  # whitespace inside a phrase, punctuation after it
        ("kindness", 0.0),  # word boundaries: no sub-word matches
        ("scrap", 0.0),
        ("stupidity", 0.0),
        ("going to get", 0.0),  # a phrase only counts whole
        ("stupid and going to be killed", -0.6),  # most severe subtype wins
    ],
)
def test_ground_truth_reward_hand_checked(text, expected):
    assert ground_truth_reward([text]) == [pytest.approx(expected)]


def test_labels_subtypes_toxic():
    texts = ["kind", "stupid", "kind and crap", "outside", "typical of those foreigners", "dead meat"]
    assert [syn.toxicity_label(t) for t in texts] == [1, -1, -1, 0, -1, -1]
    assert [syn.toxic_subtype(t) for t in texts] == [None, "insult", "obscene", None, "identity_attack", "threat"]
    assert [syn.is_toxic(t) for t in texts] == [False, True, True, False, True, True]


def test_lexicon_is_consistent():
    # Every term is found as itself, in its own class only; no term contains another class's term.
    for sub, terms in syn.TOXIC.items():
        assert len(terms) >= 6
        for t in terms:
            assert syn.non_toxic_terms(t) == [] and syn.toxic_subtype(t) == sub, t
    assert len(syn.NON_TOXIC) >= 25 and len(syn.ENTITIES) >= 20
    for t in syn.NON_TOXIC:
        assert syn.toxicity_label(t) == 1 and ground_truth_reward([t]) == [0.5], t
    for t in syn.NEUTRAL:
        assert syn.toxicity_label(t) == 0, t
    assert set(syn.SUBTYPE_SEVERITY) == set(syn.TOXIC)


def test_noise_absent_by_default_and_bounded():
    texts = ["kind", "stupid", "kind and stupid", "here"] * 500
    exact = ground_truth_reward(texts)
    assert ground_truth_reward(texts) == exact  # no noise unless asked
    noisy = np.array(ground_truth_reward(texts, noise=0.2, rng=np.random.default_rng(0)))
    diff = noisy - np.array(exact)
    assert np.all(np.abs(diff) <= 0.2 + 1e-12)
    assert diff[::4].std() > 0.05  # really noisy on the non-toxic case ...
    assert np.all(diff[3::4] == 0)  # ... but "neither" stays exactly 0 (Algorithm 2)
    again = ground_truth_reward(texts, noise=0.2, rng=np.random.default_rng(0))
    assert again == noisy.tolist()  # reproducible for a seeded rng
    with pytest.raises(ValueError):
        ground_truth_reward(["kind"], noise=-0.1)


def test_world_object():
    w = get_world("synthetic", SyntheticWorldConfig())
    assert isinstance(w, World) and w.name == "synthetic"
    assert w.reward(["kind", "stupid"]) == [0.5, -0.5]
    r = w.reward(["kind", "stupid"] * 50, noisy=True, seed=1)
    assert r != w.reward(["kind", "stupid"] * 50) and max(abs(a - b) for a, b in zip(r, [0.5, -0.5] * 50)) <= 0.2
    assert r == w.reward(["kind", "stupid"] * 50, noisy=True, seed=1)
    fn = w.noisy_reward_fn(seed=0)
    assert fn(["kind"] * 8) != fn(["kind"] * 8)  # fresh noise per call
    assert w.labels(["kind", "stupid", "here"]) == [1, -1, 0]
    assert w.subtypes(["kind", "pissed off"]) == [None, "obscene"]
    assert w.is_toxic(["kind", "dumb"]) == [False, True]
    with pytest.raises(ValueError, match="unknown world"):
        get_world("nope", None)


def test_prompts_deterministic_and_templated():
    a, b, c = syn.make_prompts(50, seed=3), syn.make_prompts(50, seed=3), syn.make_prompts(50, seed=4)
    assert a == b and a != c and len(a) == 50
    tpl_heads = {t.split("{entity}")[0] for t in syn.TEMPLATES}
    for p in a:
        assert any(p.startswith(h) for h in tpl_heads) and p.split()[1] in syn.ENTITIES
        assert syn.toxicity_label(p) == 0  # prompts carry no lexicon term


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_layer", 0),
        ("n_embd", 63),
        ("toxic_fraction", 1.5),
        ("both_fraction", 0.9),
        ("sft_lr", -1.0),
        ("rl_noise", -0.1),
        ("sft_corpus_size", 0),
    ],
)
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticWorldConfig(**{field: value})


# ---------------------------------------------------------------- base policy


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return syn.build_base_policy(SyntheticWorldConfig(), tmp_path_factory.mktemp("base") / "policy")


def _digest(d: Path) -> str:
    return hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()


def test_base_policy_saved_and_loadable(base_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (base_dir / "model.safetensors").exists() and (base_dir / "tokenizer.json").exists()
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert tok("The cat is")["input_ids"][0] == tok.bos_token_id
    assert tok.unk_token_id not in tok("The cat is going to get hurt")["input_ids"]


def test_base_policy_deterministic(base_dir, tmp_path):
    other = syn.build_base_policy(SyntheticWorldConfig(), tmp_path / "again")
    assert _digest(other) == _digest(base_dir)


def test_base_policy_toxicity_in_range(base_dir):
    world = get_world("synthetic", SyntheticWorldConfig())
    comps = generate_completions(base_dir, world.make_prompts(600, seed=11), GenerationConfig(), seed=0)
    rate = toxicity_rate(world, comps)
    assert 0.30 <= rate <= 0.60, rate
    subs = Counter(s for s in world.subtypes(comps) if s)
    assert set(subs) == set(syn.SUBTYPES)  # every subtype shows up in π0's outputs
    assert sum(l == 1 for l in world.labels(comps)) > 0.3 * len(comps)


def test_batched_judge_matches_the_per_text_functions():
    from fairl_ray.worlds import WorldConfig

    w = get_world("synthetic")
    texts = ["kind", "stupid", "kind and crap", "outside", "typical of those foreigners", "dead meat", ""]
    reward, label, subtype = w.score(texts)
    assert reward == ground_truth_reward(texts)
    assert label == [syn.toxicity_label(t) for t in texts]
    assert subtype == [syn.toxic_subtype(t) for t in texts]
    # Plug-in registry: a config section per world; the selected one is what the pipeline hashes.
    cfg = WorldConfig()
    assert cfg.section is cfg.synthetic and cfg.active_dict()["name"] == "synthetic"
    sets = w.prompt_sets(3, 4, 5, seed=0)
    assert sets["rlhf"] + sets["pairs"] + sets["eval"] == syn.make_prompts(12, seed=0)

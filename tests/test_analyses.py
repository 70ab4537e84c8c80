"""FA-IRL §6 failure analyses against hand-computed values, and end to end on a user's labelled pairs file."""

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from fairl_ray.analyses import ANALYSES, EVALUATION_ANALYSES, SUBTYPE_TRANSFER, EvalContext, MemberScores, render
from fairl_ray.analyses.dispersion import dispersion
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.metrics.classification import NO_CLASS
from fairl_ray.recovery.data import PairData, output_classes, output_subtypes
from fairl_ray.recovery.fit import fit
from fairl_ray.recovery.score import member_metrics, score
from fairl_ray.recovery.transfer import subtype_transfer


def pair_data(rows, chosen, rejected) -> PairData:
    """Rows (dicts with the pairs-file columns, ``split`` among them) and their features as the recovery's data."""
    return PairData.from_table(pa.Table.from_pylist(rows), chosen, rejected, "none")


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
    assert (out["treatment"], out["control"], out["kind"]) == ("fa_irl_me_margin", "max_entropy", "baseline")
    # both right: 0,1,4 → 3; only FA: 3,6,7 → 3; only baseline: 2,5 → 2; neither: none
    assert out["overall"] == {"both": 3, "only_treatment": 3, "only_control": 2, "neither": 0}
    assert out["per_subtype"]["insult"] == {"both": 1, "only_treatment": 0, "only_control": 1, "neither": 0}
    assert out["per_subtype"]["threat"] == {"both": 0, "only_treatment": 1, "only_control": 0, "neither": 0}
    assert out["per_subtype"]["non-toxic"] == {"both": 2, "only_treatment": 1, "only_control": 1, "neither": 0}


def test_disagreement_mcnemar_per_seed_and_pooled():
    fa1 = list(FA)
    fa1[2] = 0.5  # seed 1: output 2 right too
    ctx = context([member("max_entropy", s, BASE) for s in (0, 1)] + [member("fa_irl_me_margin", 0, FA),
                  member("fa_irl_me_margin", 1, fa1)])  # fmt: skip
    out = ANALYSES["disagreement"].compute(ctx)["fa_irl_me_margin vs max_entropy"]
    # seed 0: b = 3, c = 2 → 2·P(X ≤ 2 | Bin(5, ½)) = 2·16/32 ≥ 1 → 1; seed 1: b = 3 (3,6,7), c = 1 (5) →
    # 2·(1 + 4)/16 = 0.625; pooled b = 6, c = 3 → 2·(1 + 9 + 36 + 84)/512 = 0.5078125
    assert out["mcnemar_p_per_seed"] == pytest.approx([1.0, 0.625])
    assert out["mcnemar_pooled"] == {"only_treatment": 6, "only_control": 3, "p": pytest.approx(0.5078125)}
    title, header, rows = ANALYSES["disagreement"].tables({"x": out})[0]
    assert "McNemar" in title and rows[0][-2:] == ["1, 0.625", "0.508"]


def test_unlabelled_outputs_are_left_out_of_classification_counts():
    classes = CLASSES.copy()
    classes[[3, 6]] = NO_CLASS  # outputs 3 and 6 have no label of their own
    ctx = EvalContext(classes, np.array([1, 0, 1, 0]), SUBTYPES, [member("max_entropy", 0, BASE),
                      member("fa_irl_me_margin", 0, FA)])  # fmt: skip
    out = ANALYSES["disagreement"].compute(ctx)["fa_irl_me_margin vs max_entropy"]
    # without 3 and 6 (both "only FA"): both 0,1,4; only FA 7; only baseline 2,5
    assert out["overall"] == {"both": 3, "only_treatment": 1, "only_control": 2, "neither": 0}
    assert out["n_outputs"] == 6 and "threat" not in out["per_subtype"]  # output 6 was the only threat
    subtypes = ANALYSES["failure_subtypes"].compute(ctx)
    assert subtypes["outputs_per_subtype"] == {"non-toxic": 3, "insult": 2, "obscene": 1}
    assert subtypes["methods"]["max_entropy"] == {"non-toxic": 0.0, "insult": 0.0, "obscene": 1.0}  # only 7 wrong
    # the metrics: accuracy over the 6 labelled outputs, pair accuracy over all 4 pairs
    m = member_metrics(np.asarray(BASE), 0.0, classes, None)
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(5 / 6) and m["pair_accuracy"] == pytest.approx(0.75)


def test_output_classes_come_from_each_outputs_own_label():
    rows = [{"chosen_label": 1, "rejected_label": 0}, {"chosen_label": 0, "rejected_label": -1}, {}]
    chosen, rejected = np.split(output_classes(pa.Table.from_pylist(rows)), 2)
    # an unlabelled output is NO_CLASS on either side (it used to be 1 when chosen and 0 when rejected)
    assert chosen.tolist() == [1, NO_CLASS, NO_CLASS] and rejected.tolist() == [NO_CLASS, 0, NO_CLASS]
    noisy = pa.Table.from_pylist([{"chosen_label": -1, "rejected_label": 1}])
    assert np.split(output_classes(noisy), 2)[0].tolist() == [0]  # a noisy pair


# R* of the 8 test outputs (for the slice fidelity): outputs 3, 6, 7 → [1, 0, −1]; outputs 2, 6 → [0.5, 0]
GT = np.array([3.0, 2.0, 0.5, 1.0, -2.0, -3.0, 0.0, -1.0])


def test_failure_slices_of_the_control_with_fidelity():
    ctx = context([member("max_entropy", 0, BASE), member("fa_irl_me_margin", 0, FA)])
    ctx.test_gt = GT
    out = ANALYSES["failure_slices"].compute(ctx)["fa_irl_me_margin vs max_entropy"]
    mis, tie = out["slices"]["misclassified"], out["slices"]["near_tie"]
    # the baseline misclassifies outputs 3, 6, 7; FA-IRL gets all three right
    assert mis["n"]["mean"] == 3
    assert mis["metrics"]["accuracy"]["treatment_mean"] == 1.0 and mis["metrics"]["accuracy"]["control_mean"] == 0.0
    assert mis["metrics"]["accuracy"]["verdict"] == "too few seeds (n<5)"
    # STARC on outputs 3, 6, 7 (R* [1, 0, −1] → s = [½, 0, −½]):
    # FA [2, −.1, −4]: mean −.7, c = [2.7, .6, −3.3], ‖c‖₁ = 6.6 → s = [9, 2, −11]/22 → distance 4/22 = 2/11
    # baseline [−1, .2, .4]: c = [−.8667, .3333, .5333], ‖c‖₁ = 1.7333 → s = [−13, 5, 8]/26 → distance 2
    assert mis["metrics"]["starc"]["treatment_mean"] == pytest.approx(2 / 11)
    assert mis["metrics"]["starc"]["control_mean"] == pytest.approx(2.0)
    assert mis["metrics"]["spearman"]["treatment_mean"] == pytest.approx(1.0)
    assert mis["metrics"]["spearman"]["control_mean"] == pytest.approx(-1.0)
    # baseline Δ̂ = [2, 5, 0.3, −1.4]; the 20% nearest tie (1 of 4 pairs) is pair 2 (|0.3|): baseline right (Δ>0),
    # FA-IRL Δ̂ = −0.5 − (−0.1) = −0.4: wrong. Its outputs 2, 6 have R* [.5, 0]: the baseline [.5, .2] orders them
    # as R* does (STARC 0), FA-IRL [−.5, −.1] reverses them (STARC 2)
    assert tie["n"]["mean"] == 1
    assert tie["metrics"]["pair_accuracy"]["control_mean"] == 1.0
    assert tie["metrics"]["pair_accuracy"]["treatment_mean"] == 0.0
    assert tie["metrics"]["starc"]["control_mean"] == pytest.approx(0.0)
    assert tie["metrics"]["starc"]["treatment_mean"] == pytest.approx(2.0)
    # without R* the slices have no fidelity rows
    plain = ANALYSES["failure_slices"].compute(context([member("max_entropy", 0, BASE), member("fa_irl_me_gt", 0, FA)]))
    assert set(plain["fa_irl_me_gt vs max_entropy"]["slices"]["misclassified"]["metrics"]) == {"accuracy"}


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


def test_scoreboard_is_a_paired_test_over_seeds():
    # baseline right on 5/8 every seed; FA-IRL 6/8 (FA) or 7/8 (fa1): per-seed Δ = [.125, .25, .125, .25, .25]
    fa1 = list(FA)
    fa1[2] = 0.5  # output 2 now right
    fa_runs = [FA, fa1, FA, fa1, fa1]
    members = [member("max_entropy", s, BASE) for s in range(5)]
    members += [member("fa_irl_me_margin", s, fa_runs[s]) for s in range(5)]
    members += [member("fa_irl_me_placebo", s, fa_runs[s]) for s in range(5)]  # placebo = FA-IRL: a tie
    result = ANALYSES["scoreboard"].compute(context(members))
    assert set(result) == {"fa_irl_me_margin vs max_entropy", "fa_irl_me_margin vs fa_irl_me_placebo"}
    board = result["fa_irl_me_margin vs max_entropy"]
    assert board["kind"] == "baseline" and board["seeds"] == [0, 1, 2, 3, 4]
    acc = board["metrics"]["accuracy"]
    # treatment (.75·2 + .875·3)/5 = .825, control .625, mean Δ (.125·2 + .25·3)/5 = .2
    assert acc["treatment_mean"] == pytest.approx(0.825) and acc["control_mean"] == pytest.approx(0.625)
    assert acc["mean_diff"] == pytest.approx(0.2)
    # s = sqrt(((−.075)²·2 + .05²·3)/4) = .0684653, s/√5 = .0306186, t_{.975,4} = 2.776445 → ±.0850117
    assert acc["ci95_t"] == pytest.approx([0.2 - 0.0850117, 0.2 + 0.0850117], abs=1e-6)
    assert acc["verdict"] == "treatment better" and acc["probability_of_improvement"] == 1.0
    assert board["metrics"]["pair_accuracy"]["higher_is_better"]
    placebo = result["fa_irl_me_margin vs fa_irl_me_placebo"]
    assert placebo["kind"] == "placebo" and placebo["metrics"]["accuracy"]["verdict"] == "tie (CI includes 0)"
    # fewer than 5 paired seeds: intervals, no verdict
    two = ANALYSES["scoreboard"].compute(context(members[:2] + members[5:7]))["fa_irl_me_margin vs max_entropy"]
    assert two["metrics"]["accuracy"]["verdict"] == "too few seeds (n<5)"
    title, header, rows = ANALYSES["scoreboard"].tables(result)[0]
    assert "95% CI" in title and "Δ mean [95% t CI]" in header
    row = next(r for r in rows if r[0] == "fa_irl_me_margin vs max_entropy" and r[2] == "accuracy")
    assert row[6] == "+0.200 [+0.115, +0.285]" and row[-1] == "treatment better" and "±" not in " ".join(row)


def test_dispersion_bootstrap_over_seeds_is_calibrated_under_the_null():
    """Two methods whose seeds come from the same distribution: the paired seed-bootstrap interval of the difference
    excludes 0 rarely (the output bootstrap of the first version did in 34 of 60 such splits)."""
    from fairl_ray.analyses.dispersion import bootstrap_dispersions, distance_table, percentile_interval

    g = np.random.default_rng(1)
    base = g.normal(size=60)
    excluded = 0
    for _ in range(100):
        a, b = (base + g.normal(scale=0.7, size=(5, 60)) for _ in range(2))
        lo, hi = percentile_interval(
            bootstrap_dispersions(distance_table(a), 2000) - bootstrap_dispersions(distance_table(b), 2000)
        )
        excluded += not (lo <= 0 <= hi)
    assert excluded <= 15, excluded  # nominal 5%; a percentile bootstrap on 5 seeds runs somewhat liberal


def test_dispersion_is_the_mean_pairwise_starc_across_seeds():
    # r and 2r + 1 are the same reward up to scale and shift (STARC 0); −r is reversed (STARC 2 to each):
    # mean over the 3 seed pairs = (0 + 2 + 2)/3
    assert dispersion([[1, 2, 3], [2, 4, 6], [3, 2, 1]]) == pytest.approx(4 / 3)
    assert math.isnan(dispersion([[1, 2, 3]]))
    r = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    control = [r, 2 * r + 1, -r, r, -r]  # 3 "+" and 2 "−" seeds: 6 of 10 seed pairs at distance 2 → 1.2
    treatment = [r, 3 * r, r + 5, 2 * r, r]  # every seed the same reward up to scale and shift → 0
    members = [member("max_margin", s, control[s]) for s in range(5)]
    members += [member("fa_irl_mm_gt", s, treatment[s]) for s in range(5)]
    out = ANALYSES["dispersion"].compute(context(members))
    assert out["resampled"] == "seeds"
    assert out["methods"]["max_margin"]["dispersion"] == pytest.approx(1.2)
    assert out["methods"]["max_margin"]["seed_pairs"] == 10
    assert out["methods"]["fa_irl_mm_gt"]["dispersion"] == pytest.approx(0.0)
    cmp = out["comparisons"]["fa_irl_mm_gt vs max_margin"]
    assert cmp["kind"] == "baseline" and cmp["diff"] == pytest.approx(-1.2)
    # a resample of the seeds may hold only the 3 "+" seeds of the control (dispersion 0): no verdict from 5 seeds
    assert cmp["ci95_bootstrap"][1] == pytest.approx(0.0) and cmp["verdict"] == "tie (CI includes 0)"
    # every control seed its own reward: every resample disperses, the treatment's never does
    g = np.random.default_rng(0)
    spread = [member("max_margin", s, g.normal(size=8)) for s in range(5)]
    clear = ANALYSES["dispersion"].compute(context(spread + members[5:]))["comparisons"]["fa_irl_mm_gt vs max_margin"]
    assert clear["ci95_bootstrap"][1] < 0 and clear["verdict"] == "treatment less dispersed"
    three = ANALYSES["dispersion"].compute(context(members[:3] + members[5:8]))
    assert three["comparisons"]["fa_irl_mm_gt vs max_margin"]["verdict"] == "too few seeds (n<5)"
    assert len(ANALYSES["dispersion"].tables(out)) == 2


def test_tables_render_every_analysis():
    ctx = context([member("max_entropy", 0, BASE), member("fa_irl_me_margin", 0, FA, base=FA, fail=np.zeros(8))])
    results = {a.name: a.compute(ctx) for a in EVALUATION_ANALYSES}  # the others have their own entry points
    titles = [t for t, _, rows in render(results) if rows]
    assert len(titles) == 6 and any("Table 2" in t for t in titles) and any("Table 3" in t for t in titles)


def test_output_subtypes_from_pair_columns():
    # A table without per-output subtype columns: the pair-level subtype goes to the pair's toxic output.
    pair_level = [
        {"chosen_label": 1, "rejected_label": -1, "subtype": "insult"},
        {"chosen_label": -1, "rejected_label": 1, "subtype": "threat"},  # noisy pair: the chosen output is toxic
        {"chosen_label": -1, "rejected_label": -1, "subtype": "obscene"},  # o⁺'s own subtype is unknown here
    ]
    # A table with them: each output's own subtype.
    per_output = [
        {
            "chosen_label": 0,
            "rejected_label": -1,
            "subtype": "insult",
            "chosen_subtype": None,
            "rejected_subtype": "insult",
        },
    ]
    assert output_subtypes(pa.Table.from_pylist(pair_level)) == [
        "non-toxic",
        "threat",
        "toxic",
        "insult",
        "non-toxic",
        "obscene",
    ]
    assert output_subtypes(pa.Table.from_pylist(per_output)) == ["unlabelled", "insult"]


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
    out = subtype_transfer(
        pair_data(rows, np.array(ch, np.float32), np.array(rj, np.float32)),
        [IRLConfig(method="max_margin", head="linear", epochs=60, lr=0.05, seed=0)],
        "cpu",
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
    data = pair_data(rows, chosen, rejected)
    fitted = fit(data, members, "cpu")
    held = rng.normal(size=(300, 6)).astype(np.float32)
    labels = [1 if v > 0 else -1 for v in held @ w]
    summary = score(fitted, data, heldout=(held, labels), analyses=False).summary
    row = summary["per_member"][0]
    assert row["heldout_accuracy"] > 0.85 and row["heldout_roc_auc"] > 0.95
    assert "held-out ROC-AUC" in metrics_table(summary["per_method"], 1)
    without = score(fitted, data, analyses=False).summary
    assert "heldout_accuracy" not in without["per_member"][0]
    assert "held-out acc." not in metrics_table(without["per_method"], 1)


def test_unlabelled_pairs_keep_rank_metrics_and_skip_classification(tmp_path):
    """Outputs without a label of their own are out of the classification metrics and the threshold fit, in the rank
    and fidelity ones; a file with no label at all still evaluates (threshold 0, no classification metric)."""

    rng = np.random.default_rng(0)
    w = rng.normal(size=6)
    a, b = rng.normal(size=(80, 6)).astype(np.float32), rng.normal(size=(80, 6)).astype(np.float32)
    first = (a @ w > b @ w)[:, None]
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    rows = [
        {
            # every third chosen output unlabelled
            "chosen_label": 0 if i % 3 == 0 else int(np.sign(c @ w)),
            "rejected_label": int(np.sign(r @ w)),
            "chosen_reward": float(c @ w),
            "rejected_reward": float(r @ w),
            "split": "test" if i % 4 == 0 else "train",
        }
        for i, (c, r) in enumerate(zip(chosen, rejected))
    ]
    members = [IRLConfig(method=m, head="linear", epochs=20, lr=0.02, seed=s) for m in ("max_margin",) for s in (0, 1)]
    data = pair_data(rows, chosen, rejected)
    summary = score(fit(data, members, "cpu"), data).summary
    test_rows = [r for r in rows if r["split"] == "test"]
    labelled = sum((r["chosen_label"] != 0) + (r["rejected_label"] != 0) for r in test_rows)
    row = summary["per_member"][0]
    assert row["n"] == labelled < 2 * len(test_rows)  # classification: labelled outputs only
    assert row["pair_accuracy"] > 0.8 and row["rstar_pair_agreement"] > 0.8  # rank: every pair
    for r in rows:
        r["chosen_label"] = r["rejected_label"] = 0
    members.append(IRLConfig(method="fa_irl_mm_margin", head="linear", epochs=20, lr=0.02, curriculum_rounds=10))
    data = pair_data(rows, chosen, rejected)
    summary = score(fit(data, members, "cpu"), data).summary
    row = summary["per_member"][0]
    # no label at all: no classification metric (not NaNs), no disagreement table; ranks and fidelity stay
    assert "accuracy" not in row and "n" not in row and row["pair_accuracy"] > 0.8 and "starc" in row
    assert summary["analyses"]["disagreement"] == {}  # nothing labelled to agree on
    assert summary["analyses"]["dispersion"]["methods"]["max_margin"]["seed_pairs"] == 1

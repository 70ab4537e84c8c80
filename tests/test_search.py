"""`fairl tune`: a real Ray Tune + Optuna search on cached features, read back from a real sqlite MLflow store.

The data: pairs from a known linear reward over random 16-d features (as in test_irl_trainer.py), laid out as
a finished `fairl run` workdir (results.json → stages.pairs.dir / stages.features.dir), so `--workdir` is the
path under test; no encoder is involved.
"""

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml
from safetensors.torch import save_file

from fairl_ray.cli import main
from fairl_ray.config import IRLStageConfig, from_dict
from fairl_ray.orchestration.tracking import default_tracking_uri
from fairl_ray.pairs_io import write_pairs
from fairl_ray.search import data_from_workdir, evaluate_config, load_search_config

N_PAIRS, DIM, N_TEST = 160, 16, 40
FAST = [
    "--set",
    "num_samples=4",
    "--set",
    "seeds=[0, 1]",
    "--set",
    "fresh_seeds=[7, 8]",
    "--set",
    "fixed.epochs=6",
    "--set",
    "fixed.hidden_dim=16",
    "--set",
    "max_concurrent_trials=2",
    "--set",
    "pack_size=2",
    "--set",
    "space.curriculum_rounds.randint=[2, 6]",
]


def make_workdir(root, seed=0):
    """A workdir as `fairl run` leaves it, holding pairs from r*(h) = w·h (chosen = the higher-reward output)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(DIM, generator=torch.Generator().manual_seed(1234 + seed))
    a, b = torch.randn(N_PAIRS, DIM, generator=g), torch.randn(N_PAIRS, DIM, generator=g)
    first = (a @ w > b @ w)[:, None]
    chosen, rejected = torch.where(first, a, b), torch.where(first, b, a)
    r_c, r_r = (chosen @ w).tolist(), (rejected @ w).tolist()
    rows = [
        {
            "prompt": f"p{i}",
            "chosen": f"c{i}",
            "rejected": f"r{i}",
            "chosen_label": 1 if r_c[i] > 0 else -1,
            "rejected_label": 1 if r_r[i] > 0 else -1,
            "chosen_reward": r_c[i],
            "rejected_reward": r_r[i],
            "split": "test" if i >= N_PAIRS - N_TEST else "train",
        }
        for i in range(N_PAIRS)
    ]
    pairs_dir, features_dir = root / "stages" / "pairs-0", root / "stages" / "features-0"
    features_dir.mkdir(parents=True)
    write_pairs(rows, pairs_dir / "pairs.parquet")
    save_file(
        {"chosen": chosen.contiguous(), "rejected": rejected.contiguous()}, str(features_dir / "features.safetensors")
    )
    (features_dir / "stage.json").write_text(json.dumps({"summary": {"encoder": "all-MiniLM-L6-v2", "dim": DIM}}))
    (root / "results.json").write_text(
        json.dumps({"stages": {"pairs": {"dir": str(pairs_dir)}, "features": {"dir": str(features_dir)}}})
    )
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("workdir"))


@pytest.fixture(scope="module")
def searched(workdir, ray_session):
    """One real search (4 trials × 2 seeds, Optuna-proposed), shared by the assertions below."""
    out = workdir / "tune" / "fa-irl"
    assert main(["tune", "--workdir", str(workdir), *FAST]) == 0
    return out


def test_best_json_is_the_best_trial_and_optuna_stayed_in_range(searched):
    best = json.loads((searched / "best.json").read_text())
    trials = pd.read_csv(searched / "trials.csv")
    assert best["objective"] == "starc" and best["mode"] == "min"  # R* is known → STARC, minimised
    assert len(trials) == 4 and (trials["status"] == "ok").all()
    assert best["best_val_objective"] == pytest.approx(trials["val_starc"].min())
    assert best["best_trial"] == trials.loc[trials["val_starc"].idxmin(), "trial_id"]

    space = load_search_config(None, FAST[1::2]).space  # every value Optuna proposed lies in its range
    for key, spec in space.items():
        ((kind, args),) = spec.items()
        values = trials[key]
        if kind == "choice":
            assert set(values) <= set(args), key
        else:
            assert values.between(args[0], args[1]).all(), (key, values.tolist(), args)
            if kind == "randint":
                assert (values == values.round()).all(), key
        if kind != "choice":
            assert values.nunique() > 1, f"{key}: every trial got the same value; nothing was searched"
    assert best["best_config"]["epochs"] == 6 and best["best_config"]["hidden_dim"] == 16  # fixed applies

    fresh = best["fresh_seed_test_metrics"]  # fresh seeds [7, 8] on the test split
    assert fresh["starc"]["n"] == 2 and math.isfinite(fresh["starc"]["mean"]) and fresh["pair_accuracy"]["mean"] > 0.6
    assert fresh["n"]["mean"] == 2 * N_TEST  # scored on the test outputs (o+ and o−) ...
    assert best["pairs"]["test"] == N_TEST and trials["val_n"].iloc[0] == 2 * best["pairs"]["val"]  # ... trials on val

    irl = yaml.safe_load((searched / "best_irl.yaml").read_text())["irl"]  # usable as `fairl run`'s irl section
    stage = from_dict(IRLStageConfig, irl, "irl")
    assert stage.methods == [best["best_config"]["method"]] and stage.epochs == 6
    assert (searched / "search.png").stat().st_size > 5000


def test_validation_split_is_carved_from_train_and_disjoint_from_test(searched, workdir):
    splits = json.loads((searched / "splits.json").read_text())["main"]
    rows = pd.read_parquet(workdir / "stages" / "pairs-0" / "pairs.parquet")
    test = set(np.flatnonzero(rows["split"] == "test"))
    val = set(splits["val_index"])
    assert set(splits["test_index"]) == test
    assert val and not val & test and all(rows["split"].iloc[i] == "train" for i in val)


def test_val_objective_does_not_depend_on_the_test_pairs(workdir):
    """No test leakage: scrambling every test pair (features, labels, R*) leaves the val metrics unchanged."""
    cfg = load_search_config(None, FAST[1::2])
    data = data_from_workdir(workdir, cfg)
    irl = {"method": "fa_irl_mm_gt", "epochs": 4, "hidden_dim": 8, "curriculum_rounds": 4}
    before = evaluate_config(data, irl, [0], "val")
    rng = np.random.default_rng(1)
    for i in data.test_index:
        data.chosen[i], data.rejected[i] = rng.normal(size=DIM) * 50, rng.normal(size=DIM) * 50
    scrambled = {"chosen_label": -1, "rejected_label": 1, "chosen_reward": -9.0, "rejected_reward": 9.0}
    for column, value in scrambled.items():
        values = np.where(data.test, value, data.table.column(column).to_numpy(zero_copy_only=False))
        data.table = data.table.set_column(
            data.table.column_names.index(column), column, pa.array(values, type=data.table.schema.field(column).type)
        )
    after = evaluate_config(data, irl, [0], "val")
    assert {k: v["mean"] for k, v in after.items()} == {k: v["mean"] for k, v in before.items()}


def test_mlflow_has_parent_one_child_per_trial_and_the_fresh_seed_run(searched, workdir):
    from mlflow import MlflowClient

    best = json.loads((searched / "best.json").read_text())
    client = MlflowClient(tracking_uri=default_tracking_uri(workdir))
    runs = client.search_runs([client.get_experiment_by_name("fairl-ray").experiment_id])
    parent = next(r for r in runs if r.info.run_name == "tune:fa-irl")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["num_samples"] == "4" and parent.data.params["objective_resolved"] == "starc"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = [r for r in children if r.info.run_name.startswith("trial:")]
    assert len(trials) == 4 and len(children) == 5
    assert sorted(r.data.tags["fairl.trial"] for r in trials) == [f"main/{i}" for i in range(4)]
    assert min(r.data.metrics["val.starc"] for r in trials) == pytest.approx(best["best_val_objective"])
    assert all(r.data.params["method"].startswith("fa_irl_") for r in trials)
    fresh = next(r for r in children if r.info.run_name == "best_on_fresh_seeds")
    assert fresh.data.metrics["test.starc"] == pytest.approx(best["fresh_seed_test_metrics"]["starc"]["mean"])
    # one naming scheme with `fairl run`'s method runs: <split>.<metric>
    assert parent.data.metrics["main.test.starc"] == fresh.data.metrics["test.starc"]
    assert parent.data.metrics["main.val.starc"] == pytest.approx(best["best_val_objective"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best.json", "best_irl.yaml", "trials.csv", "search.png", "splits.json"} <= artifacts


@pytest.mark.parametrize(
    "override, key",
    [
        ("fixed.bogus=1", "fixed.bogus"),
        ("space.margin_fail.uniform=[2.0, 1.0]", "space.margin_fail.uniform"),
        ("space.method.choice=[fa_irl_mm_gt, nope]", "space.method.choice"),
    ],
)
def test_config_errors_exit_2_naming_the_key_before_anything_starts(tmp_path, capsys, override, key):
    wd = make_workdir(tmp_path / "wd")
    before = sorted(p.name for p in wd.iterdir())
    assert main(["tune", "--workdir", str(wd), "--set", override]) == 2
    err = capsys.readouterr().err
    assert f"{key}:" in err
    assert sorted(p.name for p in wd.iterdir()) == before  # no mlflow.db, no tune/ output


def test_bad_range_in_a_search_yaml_file(tmp_path, capsys):
    search = tmp_path / "search.yaml"
    search.write_text("space:\n  margin_fail:\n    uniform: [3.0, 1.0]\n")
    wd = make_workdir(tmp_path / "wd")
    assert main(["tune", str(search), "--workdir", str(wd)]) == 2
    assert "space.margin_fail.uniform: needs lo < hi" in capsys.readouterr().err
    assert not (wd / "mlflow.db").exists()


def test_pairs_file_path_featurises_once_and_maximises_roc_auc(tmp_path, ray_session):
    """`--pairs`: a JSONL file without R*, the packaged encoder, a maximised objective, the store under --out."""
    from test_irl_command import pairs_rows, write_jsonl

    rows = [{k: v for k, v in r.items() if not k.endswith("_reward")} for r in pairs_rows(40)]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    assert (
        main(
            [
                "tune",
                "--pairs",
                str(tmp_path / "pairs.jsonl"),
                "--out",
                str(out),
                "--set",
                "num_samples=2",
                "--set",
                "seeds=[0]",
                "--set",
                "fresh_seeds=[1]",
                "--set",
                "fixed.epochs=4",
                "--set",
                "space.curriculum_rounds.randint=[2, 4]",
                "--set",
                "objective=roc_auc",
            ]
        )
        == 0
    )
    best = json.loads((out / "best.json").read_text())
    trials = pd.read_csv(out / "trials.csv")
    assert best["mode"] == "max" and best["best_val_objective"] == pytest.approx(trials["val_roc_auc"].max())
    assert "starc" not in best["fresh_seed_test_metrics"]  # no R* → no STARC anywhere
    assert (out / "mlflow.db").is_file() and (out / "features" / "features.safetensors").is_file()


def test_starc_objective_without_rstar_exits_2(tmp_path, capsys):
    from test_irl_command import pairs_rows, write_jsonl

    rows = [{k: v for k, v in r.items() if not k.endswith("_reward")} for r in pairs_rows(12)]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    assert main(["tune", "--pairs", str(tmp_path / "pairs.jsonl"), "--out", str(out), "--set", "objective=starc"]) == 2
    assert "objective: starc needs R*" in capsys.readouterr().err
    assert not (out / "mlflow.db").exists()

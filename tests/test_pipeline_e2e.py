"""The whole pipeline end to end at a tiny size: real Ray, real TRL, real encoder, real MLflow (sqlite).

One pipeline run is shared by the tests of this module; reruns check that finished stages are reused, that
changing an IRL setting re-runs only IRL and what follows, and that an interrupted run resumes.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fairl_ray.config import load_config
from fairl_ray.orchestration.pipeline import Pipeline

TINY = [
    "seeds=[0, 1]",
    "prompts.n_rlhf=16",
    "prompts.n_pairs=160",
    "prompts.n_eval=24",
    "expert_rlhf.max_steps=2",
    "expert_rlhf.per_device_train_batch_size=8",
    "expert_rlhf.logging_steps=1",  # a point per step: the step curves have more than one
    "irl.methods=[max_margin, fa_irl_mm_margin]",
    "irl.epochs=15",
    "irl.curriculum_rounds=8",
    "irl.hidden_dim=16",
    "realign.methods=[fa_irl_mm_margin]",
    "realign.rlhf.max_steps=2",
    "realign.rlhf.per_device_train_batch_size=8",
    "realign.rlhf.logging_steps=1",
    "tracking.register_rewards=fairl-e2e",  # each method's first-seed reward: models:/fairl-e2e-<method>/<version>
]
UPSTREAM_OF_IRL = (
    "base_policy",
    "prompts",
    "expert_rlhf",
    "generate",
    "reference_toxicity",
    "pairs",
    "features",
    "logprobs",
)
IMPLICIT = ("implicit_reward", "implicit_reward_per_token")


def run(workdir, extra=()):
    lines = []
    results = Pipeline(load_config(None, TINY + list(extra)), workdir, log=lines.append).run()
    return results, "\n".join(lines)


@pytest.fixture(scope="module")
def first_run(ray_session, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    results, log = run(workdir)
    return workdir, results, log


def test_results_json_has_metrics_per_method_and_seed_and_toxicity(first_run):
    workdir, results, log = first_run
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["mlflow"]["parent_run_id"] == results["mlflow"]["parent_run_id"]
    members = on_disk["metrics"]["per_member"]
    assert {(m["method"], m["seed"]) for m in members} == {
        (m, s) for m in ("max_margin", "fa_irl_mm_margin") for s in (0, 1)
    } | {(m, 0) for m in IMPLICIT}  # the implicit rewards β·log π_E/π0: scored, not trained, one seed
    for m in members:
        for key in (
            "accuracy",
            "f1",
            "roc_auc",
            "pair_accuracy",
            "starc",
            "kendall",
            # beside accuracy (issue 12): both F1 conventions, the toxic class, the majority floor, R* ties
            "balanced_accuracy",
            "f1_nontoxic_positive",
            "f1_toxic_positive",
            "precision_toxic",
            "recall_toxic",
            "majority_baseline_accuracy",
            "rstar_pair_agreement",
            "rstar_pair_ties",
        ):
            assert key in m, key
        assert 0.0 <= m["starc"] <= 2.0 and 0.0 <= m["accuracy"] <= 1.0
    per_method = on_disk["metrics"]["per_method"]
    assert per_method["max_margin"]["accuracy"]["n"] == 2
    for name in IMPLICIT:
        assert per_method[name]["pair_accuracy"]["n"] == 1 and 0.0 <= per_method[name]["starc"]["mean"] <= 2.0
    # π_E was trained here by GRPO at KL coefficient β: its implicit reward β·log π_E/π0 ranks the held-out pairs
    # (o+ = π_E's sample, o− = π0's: in expectation KL(π_E‖π0) + KL(π0‖π_E) > 0 apart), better than chance
    assert per_method["implicit_reward"]["pair_accuracy"]["mean"] > 0.6
    assert set(on_disk["toxicity"]) == {"base", "expert", "realigned:fa_irl_mm_margin"}
    for row in on_disk["toxicity"].values():
        assert 0.0 <= row["toxicity_rate"] <= 1.0 and row["n"] == 24
    # The printed report has both tables, and the failure analyses.
    assert "STARC" in log and "toxicity rate" in log and "realigned:fa_irl_mm_margin" in log
    analyses = on_disk["analyses"]
    assert set(analyses) >= {
        "scoreboard",
        "failure_path",
        "failure_slices",
        "disagreement",
        "failure_subtypes",
        "subtype_transfer",
    }
    assert set(analyses["failure_path"]) == {"fa_irl_mm_margin"}
    assert analyses["failure_path"]["fa_irl_mm_margin"]["share"]["n"] == 2
    assert set(analyses["disagreement"]) == {"fa_irl_mm_margin vs max_margin"}
    assert "Failure path: share of the reward" in log and "Scoreboard" in log
    # the paired statistics: per comparison and metric a CI and a verdict (2 seeds: too few for one)
    accuracy = analyses["scoreboard"]["fa_irl_mm_margin vs max_margin"]["metrics"]["accuracy"]
    assert accuracy["n"] == 2 and len(accuracy["ci95_t"]) == 2 and len(accuracy["ci95_bootstrap"]) == 2
    assert accuracy["verdict"] == "too few seeds (n<5)"
    assert 0.0 <= analyses["disagreement"]["fa_irl_mm_margin vs max_margin"]["mcnemar_pooled"]["p"] <= 1.0
    dispersion = analyses["dispersion"]
    assert set(dispersion["methods"]) == {"max_margin", "fa_irl_mm_margin"}
    assert "fa_irl_mm_margin vs max_margin" in dispersion["comparisons"]
    slices = analyses["failure_slices"]["fa_irl_mm_margin vs max_margin"]["slices"]
    assert set(slices["misclassified"]["metrics"]) == {"accuracy", "starc", "spearman"}  # R* known: fidelity too
    report = (workdir / "report.md").read_text()
    for text in ("balanced acc.", "F1 (toxic +)", "majority-class acc.", "R* agreement", "95% t CI", "McNemar",
                 "dispersion", "implicit_reward", "β only scales the reward"):  # fmt: skip
        assert text in report, text


def test_every_stage_ran_as_ray_work_and_wrote_its_output(first_run):
    workdir, results, log = first_run
    stages = results["stages"]
    assert set(stages) == set(UPSTREAM_OF_IRL) | {"irl", "subtype_transfer", "evaluate", "realign_fa_irl_mm_margin"}
    logprobs_dir = workdir / "stages" / f"logprobs-{stages['logprobs']['key']}"
    assert (logprobs_dir / "logprobs.safetensors").is_file()
    assert not any(s["reused"] for s in stages.values())
    pairs_dir = workdir / "stages" / f"pairs-{stages['pairs']['key']}"
    assert (pairs_dir / "pairs.parquet").is_file()
    reward_dir = workdir / "stages" / f"irl-{stages['irl']['key']}" / "rewards" / "max_margin" / "seed1"
    assert (reward_dir / "reward.safetensors").is_file() and (reward_dir / "reward_card.json").is_file()
    assert not list(workdir.rglob("*.pkl")) and not list(workdir.rglob("*.pt"))


def test_mlflow_has_parent_child_per_stage_and_artifacts(first_run):
    workdir, results, _ = first_run
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    parent_id = results["mlflow"]["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["irl.epochs"] == "15"
    assert {a.path for a in client.list_artifacts(parent_id)} >= {"results.json", "report.md", "config.yaml"}
    children = client.search_runs([results["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent_id}'")
    by_name = {c.info.run_name: c for c in children}
    assert set(by_name) == set(results["stages"])
    artifacts = lambda name: {a.path for a in client.list_artifacts(by_name[name].info.run_id)}  # noqa: E731
    assert "pairs.parquet" in artifacts("pairs")
    assert "rewards" in artifacts("irl")
    assert {
        "metrics.json",
        "reward_distributions.png",
        "analyses.json",
        "failure_path.csv",
        "failure_path.png",
        "disagreement.csv",
    } <= artifacts("evaluate")
    assert "subtype_transfer.json" in artifacts("subtype_transfer")
    # every table and figure the analyses wrote is logged (named from their results: none guessed, none missed);
    # the evaluation always writes some, the transfer grid only where the pairs have subtypes
    for stage in ("evaluate", "subtype_transfer"):
        stage_dir = Path(results["workdir"]) / results["stages"][stage]["dir"]
        wrote = {f.name for f in stage_dir.iterdir() if f.suffix in (".csv", ".png")}
        assert wrote <= artifacts(stage), (stage, wrote - artifacts(stage))
        assert wrote or stage == "subtype_transfer"
    assert "fa_irl_mm_margin.f1_toxic_positive" in parent.data.metrics  # the parent's flat summary, kept
    # each method's first-seed reward is an MLflow pyfunc of the IRL run, predicting what the reward folder does
    from fairl_ray.irl.mlflow_model import load_reward_model
    from fairl_ray.irl.reward import RewardModel

    irl_run = by_name["irl"].info.run_id
    logged = client.search_logged_models([results["mlflow"]["experiment_id"]], f"source_run_id = '{irl_run}'")
    assert {m.name for m in logged} == {"reward_max_margin_seed0", "reward_fa_irl_mm_margin_seed0"}
    pyfunc = load_reward_model(f"runs:/{irl_run}/reward_fa_irl_mm_margin_seed0", results["mlflow"]["tracking_uri"])
    reward = RewardModel.from_dir(workdir / results["stages"]["irl"]["dir"] / "rewards" / "fa_irl_mm_margin" / "seed0")
    texts = ["you are kind", "you are an idiot"]
    assert pyfunc.predict(texts) == pytest.approx(reward(texts), abs=1e-5)


def test_mlflow_has_one_run_per_method_under_evaluate(first_run):
    """Methods are runs (not metric-name prefixes), so MLflow's compare view puts them side by side."""
    _, results, _ = first_run
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    evaluate_run = results["stages"]["evaluate"]["run_id"]
    runs = client.search_runs([results["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{evaluate_run}'")
    by_method = {r.data.params["method"]: r for r in runs}
    assert set(by_method) == {"max_margin", "fa_irl_mm_margin", *IMPLICIT}
    per_method = results["metrics"]["per_method"]
    implicit = by_method["implicit_reward"]
    assert implicit.data.params["kind"] == "implicit_reward" and implicit.data.params["beta"] == "0.1"
    assert implicit.data.metrics["test.pair_accuracy"] == pytest.approx(
        per_method["implicit_reward"]["pair_accuracy"]["mean"]
    )
    for method, run in ((m, by_method[m]) for m in ("max_margin", "fa_irl_mm_margin")):
        assert run.info.status == "FINISHED"
        for name in ("roc_auc", "accuracy", "balanced_accuracy", "starc"):
            assert run.data.metrics[f"test.{name}"] == pytest.approx(per_method[method][name]["mean"])
        assert "test.roc_auc_std" in run.data.metrics
        assert run.data.params["base_loss"] == "mm" and run.data.params["epochs"] == "15"
    fa = by_method["fa_irl_mm_margin"]
    assert fa.data.params["routing"] == "joint" and fa.data.params["failure_source"] == "margin"
    assert fa.data.params["curriculum_rounds"] == "8" and "test.failure_path_share" in fa.data.metrics
    plain = by_method["max_margin"].data.params
    assert plain["routing"] == "none" and plain["failure_source"] == "none" and "lambda_0" not in plain
    evaluate_metrics = client.get_run(evaluate_run).data.metrics
    assert not any(k.startswith("max_margin.") for k in evaluate_metrics)  # no more 69 single-bar charts


def test_mlflow_rlhf_runs_have_step_curves(first_run):
    """Reward, KL, loss and learning rate per step under the expert and re-alignment runs (from curves.json)."""
    _, results, _ = first_run
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    for stage in ("expert_rlhf", "realign_fa_irl_mm_margin"):
        run_id = results["stages"][stage]["run_id"]
        for name in ("reward", "kl", "loss", "learning_rate"):
            history = client.get_metric_history(run_id, name)
            assert [m.step for m in history] == [1, 2], (stage, name)
    assert "curves.json" in {a.path for a in client.list_artifacts(results["stages"]["expert_rlhf"]["run_id"])}


def test_mlflow_irl_run_has_the_pairs_as_dataset_input(first_run):
    workdir, results, _ = first_run
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    inputs = client.get_run(results["stages"]["irl"]["run_id"]).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["pairs"]
    dataset = inputs[0].dataset
    assert dataset.digest == results["stages"]["pairs"]["key"]
    pairs_file = (workdir / results["stages"]["pairs"]["dir"] / "pairs.parquet").resolve()
    assert json.loads(dataset.source) == {"uri": str(pairs_file)}
    assert json.loads(dataset.profile)["num_rows"] == results["pairs"]["pairs"]
    assert {(t.key, t.value) for t in inputs[0].tags} == {("mlflow.data.context", "train")}


def test_mlflow_stage_runs_last_as_long_as_their_stage(first_run):
    _, results, log = first_run
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    logged = dict(re.findall(r"\[fairl\] (\S+) +done +in +([0-9.]+)s", log))
    assert set(logged) == set(results["stages"])  # nothing reused in the first run: every stage logged its time
    for name, seconds in logged.items():
        info = client.get_run(results["stages"][name]["run_id"]).info
        assert (info.end_time - info.start_time) / 1000 == pytest.approx(float(seconds), abs=2.0), name
    parent = client.get_run(results["mlflow"]["parent_run_id"]).info
    assert (parent.end_time - parent.start_time) / 1000 == pytest.approx(results["seconds"], abs=10.0)


def test_every_file_of_the_workdir_is_readable_by_others(first_run):
    """Mode 0644/0755 (under the usual umask 022), never mkstemp's 0600: a workdir on shared storage is read by
    other users and services. MLflow's sqlite store is no exception (MLflow creates it 0644)."""
    import os

    workdir, _, _ = first_run
    umask = os.umask(0)  # reading the umask sets it: put it back at once
    os.umask(umask)
    if umask & 0o044:
        pytest.skip("this umask itself hides files from others")
    private = [p for p in workdir.rglob("*") if p.stat().st_mode & 0o044 != 0o044]
    assert not private, [f"{oct(p.stat().st_mode & 0o777)} {p.relative_to(workdir)}" for p in private[:20]]


def test_run_writes_a_self_contained_report_html_and_logs_it(first_run):
    from test_html_report import assert_self_contained

    workdir, results, _ = first_run  # before any rerun below rewrites the report
    page = (workdir / "report.html").read_text()
    assert assert_self_contained(page) >= 4 and results["mlflow"]["parent_run_id"] in page
    assert "95% CI (bootstrap over completions)" in page  # this world has a policy: toxicity with CIs
    artifacts = {
        a.path
        for a in MlflowClient(results["mlflow"]["tracking_uri"]).list_artifacts(results["mlflow"]["parent_run_id"])
    }
    assert {"report.html", "report.md", "results.json"} <= artifacts


def test_rerun_reuses_every_stage(first_run):
    workdir, results, _ = first_run
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    experiment = [results["mlflow"]["experiment_id"]]
    before = len(client.search_runs(experiment, max_results=5000))
    again, log = run(workdir)
    assert all(s["reused"] for s in again["stages"].values())
    assert log.count(" reused ") == len(again["stages"])
    assert again["metrics"] == results["metrics"]
    # No second parent tree: the earlier run is the record of these outputs, tagged as reused once more.
    assert len(client.search_runs(experiment, max_results=5000)) == before
    assert again["mlflow"]["parent_run_id"] == results["mlflow"]["parent_run_id"]
    assert again["stages"]["irl"]["run_id"] == results["stages"]["irl"]["run_id"]
    parent = client.get_run(again["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["fairl.reused_reruns"] == "1"


def test_a_registered_reward_realigns_from_the_mlflow_store(first_run):
    """The first run registered each method's reward; a rerun re-aligns a fresh π0 with one of them by its
    ``models:/`` URI (as a re-RLHF on another machine would), reusing every other stage."""
    workdir, results, _ = first_run
    client = MlflowClient(results["mlflow"]["tracking_uri"])
    version = client.get_model_version("fairl-e2e-max_margin", "1")
    assert version.run_id == results["stages"]["irl"]["run_id"]
    uri = "models:/fairl-e2e-max_margin/1"
    again, log = run(workdir, [f"realign.models=[{uri}]"])
    ran = {n for n, s in again["stages"].items() if not s["reused"]}
    assert ran == {"realign_models-fairl-e2e-max_margin-1"}
    row = again["toxicity"][f"realigned:{uri}"]
    assert 0.0 <= row["toxicity_rate"] <= 1.0 and row["n"] == results["toxicity"]["base"]["n"]
    stage = workdir / again["stages"]["realign_models-fairl-e2e-max_margin-1"]["dir"]
    assert json.loads((stage / "stage.json").read_text())["summary"]["reward"] == uri


def test_changing_an_irl_setting_reruns_only_irl_and_after(first_run):
    workdir, results, _ = first_run
    changed, _ = run(workdir, ["irl.margin=1.2"])
    for name in UPSTREAM_OF_IRL:
        assert changed["stages"][name]["reused"], name
        assert changed["stages"][name]["key"] == results["stages"][name]["key"]
    for name in ("irl", "subtype_transfer", "evaluate", "realign_fa_irl_mm_margin"):
        assert not changed["stages"][name]["reused"], name


def test_interrupted_run_resumes_from_finished_stages(first_run):
    workdir, results, _ = first_run
    # As if killed during IRL: IRL and everything after it never finished, a half-written temp dir remains.
    for name in ("irl", "evaluate", "realign_fa_irl_mm_margin"):
        shutil.rmtree(workdir / results["stages"][name]["dir"])
    (workdir / "stages" / ".tmp-irl-deadbeef-1234").mkdir()
    resumed, log = run(workdir)
    assert "removed 1 unfinished" in log
    assert {n for n, s in resumed["stages"].items() if not s["reused"]} == {
        "irl",
        "evaluate",
        "realign_fa_irl_mm_margin",
    }

"""A multi-node Ray cluster on one machine (`ray.cluster_utils.Cluster`): a head that does no work (0 CPUs) and two
worker nodes, each with its own custom resource, sharing one workdir. The pipeline (tiny config), a packed search
and `fairl tune --realign-top 2` run on it, and the test checks the work ran on the worker nodes.

The cluster lives in its own process (it must not meet the test session's Ray) and is shut down there; the
process group is killed afterwards whatever happens. Also here: `fairl run --dry-run` before and after the run.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster

    from fairl_ray.cli import main
    from fairl_ray.config import load_config
    from fairl_ray.orchestration.pipeline import Pipeline
    from test_pipeline_e2e import TINY

    workdir, report = Path(sys.argv[1]), Path(sys.argv[2])
    mb = 100 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": mb,
                                                             "include_dashboard": False})
    try:
        a = cluster.add_node(num_cpus=1, resources={"worker_a": 1}, object_store_memory=mb)
        b = cluster.add_node(num_cpus=1, resources={"worker_b": 1}, object_store_memory=mb)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        out = {"head": cluster.head_node.node_id, "workers": [a.node_id, b.node_id],
               "resources": ray.cluster_resources()}

        @ray.remote(num_cpus=1)
        def where():
            return ray.get_runtime_context().get_node_id()

        out["probe"] = {r: ray.get(where.options(resources={r: 1}).remote()) for r in ("worker_a", "worker_b")}
        results = Pipeline(load_config(None, TINY), workdir, address=cluster.address).run()
        out["pipeline_stages"] = sorted(results["stages"])
        out["tasks"] = sorted({e["cat"] for e in ray.timeline() if str(e.get("cat", "")).startswith("task::fairl:")})
        t0 = time.time()
        rc = main(["tune", "--workdir", str(workdir), "--address", cluster.address, "--realign-top", "2",
                   "--set", "num_samples=4", "--set", "pack_size=2", "--set", "max_concurrent_trials=2",
                   "--set", "seeds=[0]", "--set", "fresh_seeds=[7]", "--set", "fixed.epochs=6",
                   "--set", "fixed.hidden_dim=16", "--set", "space.curriculum_rounds.randint=[2, 6]"])
        out["tune_rc"], out["tune_seconds"] = rc, time.time() - t0
        # A study whose two variants' experts (different RLHF seeds) are pinned to different worker nodes
        from fairl_ray.config.study import load_study
        from fairl_ray.orchestration.study import Study

        study_file = workdir.parent / "pinned.yaml"
        study_file.write_text(
            "name: pinned\\nbase: default.yaml\\nvariants:\\n"
            "  - {name: a, set: {expert_rlhf.seed: 1, resources.custom: {worker_a: 1}}}\\n"
            "  - {name: b, set: {expert_rlhf.seed: 2, resources.custom: {worker_b: 1}}}\\n"
        )
        study = load_study(study_file, TINY + ["realign.methods=[]"])
        out["study"] = Study(study, workdir.parent / "study", address=cluster.address).run()
    finally:
        report.write_text(json.dumps(out if "out" in dir() else {}, default=str))
        ray.shutdown()
        cluster.shutdown()
""")


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("shared-workdir")
    report = workdir.parent / f"{workdir.name}-report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    env.pop("RAY_ADDRESS", None)
    # the session's local Ray runs in Ray's single-machine mode (loopback only): this cluster is Ray's cluster mode
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(workdir), str(report)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=1500)
    finally:
        try:  # the cluster's processes are this process group's: none may outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0 and report.is_file(), log[-6000:]
    return workdir, json.loads(report.read_text()), log


def test_each_worker_node_has_its_own_resources_and_the_head_does_no_work(cluster_run):
    _, out, _ = cluster_run
    res = out["resources"]
    assert res["CPU"] == 2 and res["worker_a"] == 1 and res["worker_b"] == 1
    assert out["probe"] == {"worker_a": out["workers"][0], "worker_b": out["workers"][1]}
    assert out["head"] not in out["workers"]


def test_the_pipeline_ran_its_stages_as_ray_tasks_on_the_workers(cluster_run):
    """The head has 0 CPUs, so every stage task (1 CPU each) could only be placed on a worker node."""
    workdir, out, _ = cluster_run
    results = json.loads((workdir / "results.json").read_text())
    assert {"irl", "evaluate", "expert_rlhf", "features"} <= set(results["stages"])
    assert not any(s["reused"] for s in results["stages"].values())
    ran = {t.split("fairl:", 1)[1] for t in out["tasks"]}
    assert {"expert_rlhf", "features", "irl", "evaluate"} <= ran, out["tasks"]


def test_a_studys_experts_pinned_to_two_nodes_trained_at_the_same_time(cluster_run):
    """Two variants of a study ask for different nodes' custom resources (resources.custom): their experts, in
    the same wave, ran side by side — one on each worker node (each has 1 CPU: they could not share one)."""
    workdir, out, log = cluster_run
    study = out["study"]
    assert [v["name"] for v in study["variants"]] == ["a", "b"]
    assert all("expert_rlhf" in v["computed"] for v in study["variants"])  # two experts, not one shared
    client = MlflowClient(study["mlflow"]["tracking_uri"])
    experiment = client.get_experiment_by_name("fairl-ray").experiment_id
    runs = client.search_runs([experiment], "tags.`fairl.stage` = 'expert_rlhf'")
    # when each body ran (the task's own clock, not its launch) and on which node (the stage run's tags)
    ran = sorted(
        (float(r.data.tags["fairl.task_began"]), float(r.data.tags["fairl.task_ended"]), r.data.tags["fairl.node_id"])
        for r in runs
    )
    assert len(ran) == 2
    (began_1, ended_1, node_1), (began_2, _, node_2) = ran
    assert began_2 < ended_1, f"the second expert began after the first ended: {ran}"
    assert {node_1, node_2} == set(out["workers"])


def test_the_search_ran_its_trials_on_both_worker_nodes(cluster_run):
    workdir, out, log = cluster_run
    assert out["tune_rc"] == 0, log[-4000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fairl-ray").experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags.get("fairl.kind") == "tune_trial"]
    assert len(trials) == 4
    nodes = {r.data.tags["fairl.node_id"] for r in trials}
    assert nodes and nodes <= set(out["workers"]), (nodes, out["workers"])
    assert len(nodes) == 2, "two packs at once, one CPU per worker node: both nodes ran a pack"


def test_realign_top_2_records_the_toxicity_table_in_mlflow(cluster_run):
    """Acceptance: `fairl tune --realign-top 2` re-aligns a fresh π0 with each of the 2 best rewards; the
    toxicity table (base, expert, both re-aligned models) is in best.json, realign.md and MLflow."""
    workdir, _, log = cluster_run
    best = json.loads((workdir / "tune" / "fa-irl" / "best.json").read_text())
    table = best["realign"]["toxicity"]
    assert set(table) == {"base", "expert", "realigned:top1", "realigned:top2"}
    for row in table.values():
        assert 0.0 <= row["toxicity_rate"] <= 1.0 and row["n"] > 0
    assert table["realigned:top1"]["trial"] != table["realigned:top2"]["trial"]
    assert "realigned:top2" in (workdir / "tune" / "fa-irl" / "realign" / "realign.md").read_text()
    assert "Toxicity after re-RLHF" in log
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fairl-ray").experiment_id], max_results=1000)
    parent = next(r for r in runs if r.info.run_name == "tune:fa-irl")
    realigned = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        and r.data.tags.get("fairl.kind") == "tune_realign"
    }
    assert set(realigned) == {"realign:top1", "realign:top2"}
    for name, r in realigned.items():
        assert r.data.metrics["toxicity_rate"] == pytest.approx(
            table[f"realigned:{name.split(':')[1]}"]["toxicity_rate"]
        )
    assert "realign.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_dry_run_lists_reuse_after_the_run_and_run_for_a_changed_irl_setting(cluster_run, capsys):
    from test_pipeline_e2e import TINY

    from fairl_ray.cli import main

    workdir, _, _ = cluster_run
    before = sorted(p.name for p in workdir.rglob("*"))
    assert main(["run", "--dry-run", "--workdir", str(workdir), *[x for o in TINY for x in ("--set", o)]]) == 0
    text = capsys.readouterr().out
    assert "would run" in text and " 0 would run" in text and "RUN" not in text
    assert (
        main(
            [
                "run",
                "--dry-run",
                "--workdir",
                str(workdir),
                *[x for o in TINY for x in ("--set", o)],
                "--set",
                "irl.margin=1.0",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    rows = {
        line.split("|")[2].strip(): line.split("|")[3].strip()
        for line in text.splitlines()
        if line.startswith("|") and "---" not in line and "| wave" not in line
    }
    assert rows["expert_rlhf"] == rows["features"] == "reuse" and rows["irl"] == rows["evaluate"] == "RUN"
    assert sorted(p.name for p in workdir.rglob("*")) == before  # nothing written


def test_dry_run_on_an_empty_workdir_writes_nothing(tmp_path, capsys):
    from fairl_ray.cli import main

    assert main(["run", "--dry-run", "--workdir", str(tmp_path / "new")]) == 0
    text = capsys.readouterr().out
    assert "0 stage(s) would be reused" in text and "| irl " in text
    assert not (tmp_path / "new").exists()

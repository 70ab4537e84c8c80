"""Two `fairl run` on one fresh workdir, then a copy of it: the whole pipeline at a tiny size (issue 9).

Acceptance: two runs started together on one fresh workdir end without a traceback and compute no stage twice;
a copied workdir reads and writes only itself (a hash of the original tree is the same before and after).
"""

import json
import shutil
import threading

import pytest
from mlflow import MlflowClient
from test_pipeline_e2e import TINY
from test_reliability import tree_hash

from fairl_ray.config import load_config
from fairl_ray.orchestration.pipeline import Pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def twin_runs(ray_session, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("twins") / "run"
    outcomes = [{}, {}]

    def run(i):
        lines = []
        try:
            outcomes[i]["results"] = Pipeline(load_config(None, TINY), workdir, log=lines.append).run()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            outcomes[i]["error"] = repr(err)
        outcomes[i]["log"] = "\n".join(lines)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return workdir, outcomes


def test_two_runs_at_once_compute_every_stage_once(twin_runs):
    workdir, outcomes = twin_runs
    assert [o.get("error") for o in outcomes] == [None, None], [o["log"][-2000:] for o in outcomes]
    logs = [o["log"] for o in outcomes]
    waited = [i for i, log in enumerate(logs) if "another fairl run" in log and "waiting" in log]
    assert len(waited) == 1
    second = outcomes[waited[0]]["results"]
    first = outcomes[1 - waited[0]]["results"]
    assert not any(s["reused"] for s in first["stages"].values())
    assert all(s["reused"] for s in second["stages"].values())  # nothing computed twice
    for stage in first["stages"]:
        assert sum(f"{stage} " in line and "running" in line for log in logs for line in log.splitlines()) == 1
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["metrics"] == first["metrics"] == second["metrics"]


def test_copied_workdir_reads_and_writes_only_itself(twin_runs, tmp_path):
    workdir, _ = twin_runs
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    before = tree_hash(workdir)
    results = json.loads((copy / "results.json").read_text())
    assert all(not s["dir"].startswith("/") for s in results["stages"].values())  # relative to the workdir

    again = Pipeline(load_config(None, TINY), copy, log=lambda _: None).run()

    assert tree_hash(workdir) == before
    assert all(s["reused"] for s in again["stages"].values())
    client = MlflowClient(again["mlflow"]["tracking_uri"])
    parent = client.get_run(again["mlflow"]["parent_run_id"])
    assert parent.info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
    assert {"results.json", "report.md"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}

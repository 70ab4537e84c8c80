"""Nothing hangs, nothing leaks, nothing is lost (issue 9): the MLflow store, the workdir lock, killed runs,
relocated workdirs and `fairl ui`. Real MLflow (sqlite), real processes, no mocks."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from fairl_ray.orchestration.ray_runtime import SESSION_FILE, reap_killed_session
from fairl_ray.orchestration.stage_store import workdir_lock
from fairl_ray.orchestration.tracking import EXPERIMENT, Tracker, default_tracking_uri


def _default_sigint() -> None:
    """Children that must react to Ctrl-C get SIGINT's default back: a process inherits an *ignored* SIGINT (by
    POSIX rule, and some earlier test in the session leaves pytest's ignored), and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


HERE = Path(__file__).resolve().parent.parent


def tree_hash(root: Path) -> str:
    """Hash of every file's path, size and bytes under ``root`` (what "unchanged" means for a workdir)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.endswith(".lock"):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def py(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=HERE, **kwargs)


# ------------------------------------------------------------------------------------------- MLflow store


def test_fresh_store_created_by_three_processes_at_once(tmp_path):
    uri = default_tracking_uri(tmp_path)
    code = (
        "import sys; from fairl_ray.orchestration.tracking import Tracker; "
        f"t = Tracker({uri!r}, artifact_root={str(tmp_path / 'mlartifacts')!r}); "
        "t.end_run(t.start_run('r'))"
    )
    procs = [py(code, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(errors)[-3000:]
    assert not any("Traceback" in e for e in errors)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_experiment_opens_in_the_training_view(tmp_path):
    uri = default_tracking_uri(tmp_path)
    experiment_id = Tracker(uri).experiment_id
    assert MlflowClient(uri).get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"


def test_killed_runs_are_closed_as_killed_by_the_next_tracker(tmp_path):
    uri = default_tracking_uri(tmp_path)
    code = (
        "import os; from fairl_ray.orchestration.tracking import Tracker; "
        f"t = Tracker({uri!r}); p = t.start_run('pipeline'); c = t.start_run('irl', parent_run_id=p); "
        "print(p, c, flush=True); os.kill(os.getpid(), 9)"
    )
    proc = py(code, stdout=subprocess.PIPE, text=True)
    parent, child = proc.communicate(timeout=120)[0].split()
    assert proc.returncode == -9
    client = MlflowClient(uri)
    assert client.get_run(parent).info.status == "RUNNING"  # what MLflow shows after a kill -9

    mine = Tracker(uri)
    alive = mine.start_run("alive")  # a run whose process (this one) is alive is never touched
    again = Tracker(uri)
    assert sorted(mine.closed_stale) == sorted([parent, child]) and again.closed_stale == []
    assert client.get_run(parent).info.status == "KILLED" and client.get_run(child).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"


def test_copied_store_writes_artifacts_only_into_the_copy(tmp_path):
    original, copy = tmp_path / "run", tmp_path / "copy"
    tracker = Tracker(default_tracking_uri(original), artifact_root=original / "mlartifacts")
    old_run = tracker.start_run("pipeline")
    (tmp_path / "a.txt").write_text("first")
    tracker.log_artifact(old_run, tmp_path / "a.txt")
    tracker.end_run(old_run)
    shutil.copytree(original, copy)
    before = tree_hash(original)

    moved = Tracker(default_tracking_uri(copy), artifact_root=copy / "mlartifacts")
    (tmp_path / "b.txt").write_text("second")
    moved.log_artifact(old_run, tmp_path / "b.txt")  # an old run of the copy...
    new_run = moved.start_run("tune")
    moved.log_artifact(new_run, tmp_path / "b.txt")  # ...and a new one
    client = MlflowClient(default_tracking_uri(copy))
    for run_id in (old_run, new_run):
        assert client.get_run(run_id).info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
        assert "b.txt" in {a.path for a in client.list_artifacts(run_id)}
    assert client.get_experiment(moved.experiment_id).artifact_location == (copy / "mlartifacts").as_uri()
    assert tree_hash(original) == before
    assert len(list((copy / "mlartifacts").rglob("b.txt"))) == 2


# ----------------------------------------------------------------------------------------------- workdir lock


def test_second_run_on_a_workdir_waits_for_the_first(tmp_path):
    events, logs = [], []

    def first():
        with workdir_lock(tmp_path, logs.append):
            events.append("first in")
            time.sleep(1.5)
            events.append("first out")

    t = threading.Thread(target=first)
    t.start()
    while "first in" not in events:
        time.sleep(0.01)
    with workdir_lock(tmp_path, logs.append):
        events.append("second in")
    t.join()
    assert events == ["first in", "first out", "second in"]
    assert "another fairl run (pid" in logs[0] and "waiting for it to finish" in logs[0]


def test_lock_of_a_killed_run_is_released(tmp_path):
    code = (
        "import os, time; from fairl_ray.orchestration.stage_store import workdir_lock\n"
        f"with workdir_lock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)"
    )
    proc = py(code, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()
    proc.wait(timeout=10)
    logs = []
    t0 = time.monotonic()
    with workdir_lock(tmp_path, logs.append):
        pass
    assert time.monotonic() - t0 < 5 and logs == []


# -------------------------------------------------------------------------------------------------- fairl ui


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_fairl_ui_stops_its_server_with_itself(tmp_path, sig):
    Tracker(default_tracking_uri(tmp_path))
    port = _free_port()
    printed = tmp_path / "ui.out"
    ui = subprocess.Popen(
        [sys.executable, "-m", "fairl_ray.cli", "ui", "--workdir", str(tmp_path), "--port", str(port)],
        cwd=HERE,
        preexec_fn=_default_sigint,
        stdout=printed.open("w"),
        stderr=subprocess.DEVNULL,
    )
    server = []
    try:
        deadline = time.monotonic() + 120
        while not _serving(port):
            assert ui.poll() is None and time.monotonic() < deadline, "the MLflow UI never came up"
            time.sleep(0.5)
        server = psutil.Process(ui.pid).children(recursive=True)
        assert server, "fairl ui runs the MLflow server as a child process"
        # the training-runs view: MLflow 3.17 opens its GenAI view without this parameter (DESIGN §6)
        assert f"http://127.0.0.1:{port}/?workflowType=machine_learning" in printed.read_text()
        ui.send_signal(sig)
        assert ui.wait(timeout=60) != 0  # stop_process_group allows the server up to 25 s to go
        gone, alive = psutil.wait_procs(server, timeout=10)
        assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
        assert not _serving(port)
    finally:  # only what this test started: the session's Ray processes are children of pytest too
        for p in [*server, ui]:
            try:
                p.kill()
            except (psutil.Error, ProcessLookupError):
                pass


# ------------------------------------------------------------------------------------------- fairl tune


def test_interrupted_tune_exits_non_zero_and_is_marked_killed(ray_session, tmp_path):
    from test_bad_inputs import rows, write_jsonl

    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows(40))
    out = tmp_path / "out"
    gcs = ray_session.get_runtime_context().gcs_address
    tune = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fairl_ray.cli",
            "tune",
            "--pairs",
            str(pairs),
            "--out",
            str(out),
            "--address",
            gcs,
            "--set",
            "num_samples=2000",  # minutes of work even on a quiet machine: the interrupt always lands mid-search
            "--set",
            "fixed.epochs=400",
            "--set",
            "fixed.patience=0",
            "--set",
            "seeds=[0]",
        ],
        cwd=HERE,
        preexec_fn=_default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in tune.stdout:  # wait until the search is under way
            lines.append(line)
            if line.startswith("[tune]") and "configs" in line:
                break
        assert tune.poll() is None, "".join(lines)[-3000:]
        time.sleep(3)
        tune.send_signal(signal.SIGINT)
        rest, _ = tune.communicate(timeout=60)
    finally:
        if tune.poll() is None:
            tune.kill()
    assert tune.returncode == 130, ("".join(lines) + rest)[-3000:]
    assert not (out / "best.json").exists()
    client = MlflowClient(default_tracking_uri(out))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    parents = client.search_runs([experiment.experiment_id], "tags.`fairl.kind` = 'tune'")
    assert [r.info.status for r in parents] == ["KILLED"]


# ------------------------------------------------------------------------------------------------ kill -9


KILLED_DRIVER = """
import sys, time
import ray
from fairl_ray.orchestration.ray_runtime import init_ray
from fairl_ray.orchestration.tracking import Tracker

init_ray(None, temp_dir=sys.argv[2], num_cpus=1, session_file=sys.argv[3])
tracker = Tracker(sys.argv[1])
parent = tracker.start_run("pipeline")
tracker.start_run("expert_rlhf", parent_run_id=parent)

@ray.remote
def stage():
    time.sleep(120)

ref = stage.remote()
print("running", parent, flush=True)
ray.get(ref)
"""


def test_kill_9_then_rerun_leaves_no_running_run_and_no_ray_process(tmp_path):
    """Acceptance: kill -9 of a run, then a rerun: no RUNNING parent left in MLflow, no Ray process of the killed
    run alive 10 s after the rerun ends."""
    uri = default_tracking_uri(tmp_path / "w")
    session_file = tmp_path / "w" / SESSION_FILE
    session_file.parent.mkdir()
    raytmp = Path("/tmp") / f"fairl-k9-{os.getpid()}"  # Ray's socket paths must stay short
    driver = subprocess.Popen(
        [sys.executable, "-c", KILLED_DRIVER, uri, str(raytmp), str(session_file)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = driver.stdout.readline()
        assert line.startswith("running"), line
        parent = line.split()[1]
        time.sleep(2)  # the task's worker is up
        session = psutil.Process(driver.pid).children(recursive=True)
        assert len(session) >= 3, session  # gcs_server, raylet, workers, ...
        driver.kill()  # kill -9
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert session_file.is_file()
    # What the next `fairl run` on the workdir does first: stop the killed run's Ray, close its MLflow runs.
    assert reap_killed_session(session_file) > 0
    rerun = Tracker(uri)
    assert parent in rerun.closed_stale
    client = MlflowClient(uri)
    assert not client.search_runs([rerun.experiment_id], "attributes.status = 'RUNNING'")
    _, alive = psutil.wait_procs(session, timeout=10)
    assert not alive, [(p.pid, p.name()) for p in alive]
    shutil.rmtree(raytmp, ignore_errors=True)


# ------------------------------------------------------------------------------------- relocatable workdir


def test_tune_on_a_copied_workdir_reads_and_writes_only_the_copy(ray_session, tmp_path):
    """The issue's repro: ``cp -r run copy; fairl tune --workdir copy`` read the original's pairs and wrote MLflow
    artifacts into the original's mlartifacts/."""
    from test_search import FAST, make_workdir

    from fairl_ray.cli import main

    original = make_workdir(tmp_path / "run")
    results = json.loads((original / "results.json").read_text())
    for stage in results["stages"].values():  # as `fairl run` writes it now: relative to the workdir
        stage["dir"] = str(Path(stage["dir"]).relative_to(original))
    (original / "results.json").write_text(json.dumps(results))
    tracker = Tracker(default_tracking_uri(original), artifact_root=original / "mlartifacts")
    run = tracker.start_run("pipeline")
    tracker.log_artifact(run, original / "results.json")
    tracker.end_run(run)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = tree_hash(original)

    assert main(["tune", "--workdir", str(copy), *FAST]) == 0

    assert tree_hash(original) == before
    assert (copy / "tune").is_dir() and not (original / "tune").exists()
    client = MlflowClient(default_tracking_uri(copy))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) > 2
    assert all(r.info.artifact_uri.startswith((copy / "mlartifacts").as_uri()) for r in runs)


# -------------------------------------------------------------------------------------- fairl run, SIGTERM


def test_terminated_run_exits_non_zero_and_its_mlflow_run_is_killed(ray_session, tmp_path):
    workdir = tmp_path / "w"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fairl_ray.cli",
            "run",
            "--workdir",
            str(workdir),
            "--address",
            ray_session.get_runtime_context().gcs_address,
        ],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in run.stdout:  # wait until a stage is under way
            lines.append(line)
            if "running  ..." in line:
                break
        run.send_signal(signal.SIGTERM)
        rest, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, ("".join(lines) + rest)[-3000:]
    assert "Traceback" not in rest
    client = MlflowClient(default_tracking_uri(workdir))
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags] == ["KILLED"]
    assert not (workdir / "results.json").exists()

"""Issue 13: state a workdir or an output folder carries is checked before it is trusted, and stages heal.

* a finished stage records its files (size, mtime, sha256); a truncated, zeroed or marker-less output is
  recomputed and the fresh output replaces it; ``--dry-run --verify`` says so without running anything;
* a rerun of ``fairl tune`` never unpickles what its output folder holds (a planted ``tuner.pkl``);
* two ``fairl tune`` on one ``--out`` run one after the other (the workdir lock);
* the local Ray listens on loopback only;
* failures are one ``fairl: error:`` line, recorded FAILED in MLflow.

Real Ray, real MLflow (sqlite); the pipeline at the tiny size of test_pipeline_e2e.py.
"""

import json
import os
import shutil

import pytest

from fairl_ray.cli import main
from fairl_ray.config import load_config
from fairl_ray.orchestration.pipeline import Pipeline
from fairl_ray.orchestration.stage_store import MARKER, StageWriter, stage_output

# ------------------------------------------------------------------------------------ stage integrity


def _finished(tmp_path, name="features", files=None):
    out = stage_output(tmp_path, name, "k")
    writer = StageWriter(out)
    with writer as tmp:
        for rel, data in (files or {"features.safetensors": b"\x01" * 4096}).items():
            (tmp / rel).write_bytes(data)
        writer.summary = {"n": 1}
    return out


def test_truncated_file_or_marker_is_not_reused_and_names_the_file(tmp_path):
    out = _finished(tmp_path)
    assert out.problem() is None and out.done
    with open(out.path / "features.safetensors", "r+b") as fh:
        fh.truncate(96)
    assert out.problem() == "features.safetensors: size 96, recorded 4096"
    assert not out.done

    other = _finished(tmp_path, "pairs", {"pairs.parquet": b"p" * 100})
    text = (other.path / MARKER).read_text()
    (other.path / MARKER).write_text(text[: len(text) // 2])
    assert other.problem() == f"{MARKER}: unreadable or truncated"


def test_zeroed_in_place_is_caught_by_its_mtime_or_by_verify(tmp_path):
    out = _finished(tmp_path)
    f = out.path / "features.safetensors"
    st = f.stat()
    f.write_bytes(b"\x00" * 4096)  # same size, still parses
    assert out.problem() == "features.safetensors: content differs from the recorded sha256"
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its old mtime back ...
    assert out.problem() is None
    assert out.problem(verify=True) == "features.safetensors: content differs from the recorded sha256"  # ... verify


def test_markers_without_a_file_list_are_still_reused(tmp_path):
    out = _finished(tmp_path)
    marker = json.loads((out.path / MARKER).read_text())
    del marker["files"]
    (out.path / MARKER).write_text(json.dumps(marker))
    assert out.problem(verify=True) is None and out.summary() == {"n": 1}


def test_fresh_output_replaces_a_folder_without_marker_or_a_corrupt_one(tmp_path):
    out = stage_output(tmp_path, "pairs", "k")
    out.path.mkdir(parents=True)
    (out.path / "pairs.parquet").write_text("stale")
    assert out.problem() == f"no {MARKER}"
    _finished(tmp_path, "pairs", {"pairs.parquet": b"fresh"})
    assert out.done and (out.path / "pairs.parquet").read_bytes() == b"fresh"

    (out.path / "pairs.parquet").write_bytes(b"fre")  # corrupt: recomputed, and the recomputation wins again
    _finished(tmp_path, "pairs", {"pairs.parquet": b"again"})
    assert out.done and (out.path / "pairs.parquet").read_bytes() == b"again"
    assert [p.name for p in (tmp_path / "stages").iterdir()] == ["pairs-k"]


def _plant_all_stages(workdir, overrides):
    """Every stage of the plan as a finished output (placeholder files), at the keys `fairl run` would use."""
    from fairl_ray.orchestration.stage_store import stage_key

    pipeline = Pipeline(load_config(None, overrides), workdir)
    for wave in pipeline.waves():
        for stage in wave:
            key = stage_key(stage.name, stage.config, {u: pipeline.outputs[u].key for u in stage.upstream})
            output = stage_output(workdir, stage.name, key)
            pipeline.outputs[stage.name] = output
            writer = StageWriter(output)
            with writer as tmp:
                if stage.name == "prompts":
                    writer.summary = stage.fn(tmp, **stage.kwargs)
                else:
                    (tmp / f"{stage.name}.bin").write_bytes(b"\x07" * 1000)
    return {name: out.path for name, out in pipeline.outputs.items()}


def test_dry_run_verify_names_a_damaged_stage(tmp_path, capsys):
    dirs = _plant_all_stages(tmp_path, [])
    assert main(["run", "--workdir", str(tmp_path), "--dry-run"]) == 0
    assert "0 would run" in capsys.readouterr().out

    f = dirs["features"] / "features.bin"
    st = f.stat()
    f.write_bytes(b"\x00" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert main(["run", "--workdir", str(tmp_path), "--dry-run"]) == 0
    assert "0 would run" in capsys.readouterr().out  # sizes and mtimes match: the cheap check passes
    assert main(["run", "--workdir", str(tmp_path), "--dry-run", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "features: stage output damaged (features.bin: content differs" in out and "1 would run" in out

    with open(dirs["pairs"] / "pairs.bin", "r+b") as fh:
        fh.truncate(10)
    assert main(["run", "--workdir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "pairs: stage output damaged (pairs.bin: size 10, recorded 1000)" in out and "1 would run" in out


# --------------------------------------------------------------------- the pipeline heals its stages


@pytest.fixture(scope="module")
def tiny_run(ray_session, tmp_path_factory):
    from test_pipeline_e2e import TINY

    workdir = tmp_path_factory.mktemp("healing")
    results = Pipeline(load_config(None, TINY), workdir, log=lambda line: None).run()
    return workdir, results, TINY


def _rerun(workdir, overrides, verify=False):
    lines = []
    results = Pipeline(load_config(None, overrides), workdir, log=lines.append, verify=verify).run()
    return results, "\n".join(lines)


def test_damaged_stages_are_recomputed_and_replaced(tiny_run):
    """Zeroed features (same size, they parse fine), a truncated stage.json of pairs, an irl folder whose marker is
    gone: each is named, recomputed, and the fresh output is the one kept."""
    workdir, results, tiny = tiny_run
    stages = results["stages"]
    features = workdir / stages["features"]["dir"] / "features.safetensors"
    features.write_bytes(b"\x00" * features.stat().st_size)
    marker = workdir / stages["pairs"]["dir"] / MARKER
    marker.write_text(marker.read_text()[:40])
    irl = workdir / stages["irl"]["dir"]
    (irl / MARKER).unlink()
    (irl / "stale.txt").write_text("left by an older run")

    again, log = _rerun(workdir, tiny)
    assert "[fairl] features: stage output corrupt (features.safetensors: content differs" in log, log
    assert f"[fairl] pairs: stage output corrupt ({MARKER}: unreadable or truncated), recomputing" in log, log
    assert f"[fairl] irl: stage output incomplete (no {MARKER}), recomputing" in log, log
    ran = {n for n, s in again["stages"].items() if not s["reused"]}
    assert {"features", "pairs", "irl"} <= ran
    assert not (irl / "stale.txt").exists() and (irl / MARKER).is_file()  # the fresh output won
    assert stage_output(workdir, "features", again["stages"]["features"]["key"]).problem(verify=True) is None


def test_a_rerun_with_verify_reuses_intact_stages(tiny_run):
    workdir, results, tiny = tiny_run
    again, log = _rerun(workdir, tiny, verify=True)
    assert all(s["reused"] for s in again["stages"].values()), log


# ------------------------------------------------------------------------- fairl tune: state and lock


class _Planted:
    """A pickle whose loading writes ``marker``: what an attacker with write access to ``out`` would plant."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('unpickled')",)


def _tune_children(workdir):
    from test_search_scale import children

    parent, runs = children(workdir, "fa-irl")
    return parent, [r for r in runs if r.data.tags.get("fairl.kind") == "tune_trial"]


def test_a_rerun_of_tune_unpickles_nothing_its_out_holds(ray_session, tmp_path):
    import pickle

    from test_search import FAST, make_workdir

    wd = make_workdir(tmp_path / "wd")
    assert main(["tune", "--workdir", str(wd), *FAST]) == 0
    experiment = wd / "tune" / "fa-irl" / "ray_results" / "fa-irl"
    marker = tmp_path / "planted-code-ran"
    planted = [experiment / "tuner.pkl", *(d / "params.pkl" for d in experiment.iterdir() if d.is_dir())]
    assert len(planted) >= 3  # tuner.pkl and one per trial folder (2 packs)
    for f in planted:
        f.write_bytes(pickle.dumps(_Planted(marker)))
    (experiment / "extra.pkl").write_bytes(pickle.dumps(_Planted(marker)))

    assert main(["tune", "--workdir", str(wd), *FAST]) == 0
    assert not marker.exists()
    parent, trials = _tune_children(wd)
    assert parent.info.status == "FINISHED" and len(trials) == 4  # resumed: nothing evaluated or logged twice
    assert (experiment.with_name("fa-irl.previous") / "tuner.pkl").is_file()  # set aside, never read
    assert len(json.loads((wd / "tune" / "fa-irl" / "best.json").read_text())["models"]) == 1


def test_two_tunes_on_one_out_run_one_after_the_other(ray_session, tmp_path):
    import subprocess
    import sys

    from test_search import FAST, make_workdir

    wd = make_workdir(tmp_path / "wd")
    gcs = ray_session.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "fairl_ray.cli", "tune", "--workdir", str(wd), "--address", gcs, *FAST]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "ab"]
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-4000:]
    assert sum("waiting for it to finish" in log for log in logs) == 1, "\n".join(logs)[-4000:]
    parent, trials = _tune_children(wd)
    from mlflow import MlflowClient

    from fairl_ray.orchestration.tracking import default_tracking_uri

    client = MlflowClient(default_tracking_uri(wd))
    parents = client.search_runs([parent.info.experiment_id], "tags.`fairl.kind` = 'tune'")
    assert len(parents) == 1 and parent.info.status == "FINISHED"
    assert len(trials) == 4 and len({r.data.tags["fairl.trial"] for r in trials}) == 4


# ---------------------------------------------------------------------------- failures: one plain line


def _sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


def _last_parent_status(tracking_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("fairl-ray").experiment_id],
        "tags.`fairl.workdir` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.status


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err and "\x1b[" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("fairl: error:")]


def test_too_few_pairs_is_one_plain_line_naming_the_keys_and_the_run_failed(tiny_run, capsys):
    """Generation on 5 prompts yields fewer than 4 pairs of the default mix (toxic base vs non-toxic expert): one
    `fairl: error:` line naming the keys to change, exit 2, the MLflow run FAILED."""
    from fairl_ray.orchestration.tracking import default_tracking_uri

    workdir, _, tiny = tiny_run
    capsys.readouterr()
    assert main(["run", "--workdir", str(workdir), *_sets([*tiny, "prompts.n_pairs=5"])]) == 2
    err = capsys.readouterr().err
    [line] = _error_lines(err)
    assert line.startswith("fairl: error: pairs: only ") and "usable preference pairs" in line, line
    assert "raise prompts.n_pairs or relax pairs.toxic_to_nontoxic_fraction" in line
    trace = workdir / "logs" / "pairs.error.txt"
    assert f"full traceback in {trace}" in line and "RuntimeError" in trace.read_text()
    assert "\x1b[" not in trace.read_text()
    assert _last_parent_status(default_tracking_uri(workdir)) == "FAILED"


def test_disk_full_mid_run_is_one_line_with_the_path_and_the_run_failed(tiny_run, tmp_path, capsys):
    """A real ENOSPC: the finished workdir copied onto a tmpfs with little room left, then a changed IRL setting
    (IRL, evaluation and re-RLHF rerun and write). Needs root for the mount; the MLflow store stays off the tmpfs."""
    import subprocess

    workdir, _, tiny = tiny_run
    used = sum(p.stat().st_size for p in workdir.rglob("*") if p.is_file())
    mnt = tmp_path / "full"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={2 * used + 10_000_000}", "tmpfs", str(mnt)])
    if mounted.returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        wd = mnt / "wd"
        shutil.copytree(workdir, wd, ignore=shutil.ignore_patterns("mlflow.db*", "mlartifacts", ".fairl*"))
        room = shutil.disk_usage(mnt).used + 600_000  # then shrink it: 0.6 MB left, less than re-RLHF writes
        subprocess.run(["mount", "-o", f"remount,size={room}", str(mnt)], check=True)
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        capsys.readouterr()
        rc = main(["run", "--workdir", str(wd), "--tracking-uri", uri, *_sets([*tiny, "irl.margin=1.3"])])
        err = capsys.readouterr().err
        assert rc == 2, err[-3000:]
        [line] = _error_lines(err)
        assert "no space left on the device writing " + str(wd) in line and "MB free there" in line, line
        assert _last_parent_status(uri) == "FAILED"
        print(line)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


LISTENERS = """
import json, sys, psutil, ray
from fairl_ray.orchestration.ray_runtime import init_ray, local_session_dir, shutdown_ray
init_ray(None, temp_dir=sys.argv[1], num_cpus=1)
session = local_session_dir()
ray.get(ray.remote(lambda: 1).remote())
me = psutil.Process()
found = []
for p in [me, *me.children(recursive=True)]:
    try:
        found += [(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections("inet") if c.status == "LISTEN"]
    except psutil.Error:
        pass
shutdown_ray(remove_session=True)
print(json.dumps({"listeners": found, "session_left": session.exists()}))
"""


def _local_ray_listeners(tmp_path, env):
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="r2ray-", dir="/tmp") as ray_tmp:  # Ray's socket paths are short
        proc = subprocess.run(
            [sys.executable, "-c", LISTENERS, ray_tmp], env=env, capture_output=True, text=True, timeout=180
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not got["session_left"]  # a finished local run leaves no Ray session folder behind
    return got["listeners"], proc.stderr


def test_ray_address_in_the_environment_is_ignored_by_a_local_run_and_said(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9"}
    listeners, err = _local_ray_listeners(tmp_path, env)
    assert listeners  # a local Ray did start
    assert "fairl: warning: RAY_ADDRESS=127.0.0.1:9 is set but --address is not: starting a local Ray" in err


def test_local_ray_listens_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    listeners, _ = _local_ray_listeners(tmp_path, env)
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, names  # the servers were found, so "none exposed" means something
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")  # the last: IPv4 loopback on a dual-stack socket
    exposed = [(name, ip, port) for name, ip, port in listeners if ip not in loopback]
    assert not exposed, exposed


def test_a_copied_stage_without_its_times_is_hashed_once_then_trusted(tmp_path):
    """``cp -r`` without ``-p`` changes every mtime: the first reuse hashes the files and records the new times, so
    the next reuse needs no hashing (a workdir of GB-sized policies would otherwise be re-read on every run)."""
    out = _finished(tmp_path)
    path = out.path / "features.safetensors"
    os.utime(path, ns=(1, 1))
    assert out.problem() is None
    assert json.loads((out.path / MARKER).read_text())["files"]["features.safetensors"]["mtime_ns"] == 1
    path.write_bytes(b"\x02" * 4096)  # same size, other content
    os.utime(path, ns=(1, 1))  # and the recorded time: only --verify can tell now
    assert out.problem() is None
    assert "sha256" in out.problem(verify=True)

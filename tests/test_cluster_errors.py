"""Every failure to reach or fit a Ray cluster ends within a minute with ``fairl: error:`` naming the address or
the resource key (issue 9: "Hangs with no error")."""

import os
import socket
import subprocess
import sys
import time

import pytest

from fairl_ray.cli import main
from fairl_ray.orchestration.ray_runtime import ClusterError, check_fits, resolve_address


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens on it once the socket is closed


def _fairl(args, tmp_path, timeout=60):
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "raytmp"), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    (tmp_path / "raytmp").mkdir(exist_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fairl_ray.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}", "auto"])
def test_unreachable_address_fails_fast_naming_it(tmp_path, address):
    address = address.format(port=_closed_port())
    proc, seconds = _fairl(["run", "--address", address, "--workdir", str(tmp_path / "w")], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fairl: error:") and address in last, last
    assert seconds < 60
    assert not (tmp_path / "w" / "mlflow.db").exists()


def test_cpus_nobody_has_fail_at_once_naming_the_key(ray_session, tmp_path, capsys):
    t0 = time.monotonic()
    rc = main(["run", "--set", "resources.cpus_per_task=100", "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "fairl: error: resources.cpus_per_task:" in err and "100 CPU" in err
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "w" / "mlflow.db").exists()  # refused before any MLflow run was opened


def test_gpu_on_a_cpu_only_cluster_names_the_gpu_key(ray_session, tmp_path, capsys):
    rc = main(["run", "--set", "resources.gpus_per_worker=1", "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "fairl: error: resources.gpus_per_worker:" in err and "1 GPU" in err


def test_check_fits_waits_for_the_autoscaler_then_gives_up(ray_session):
    check_fits({"resources.cpus_per_task": {"CPU": 1.0}}, wait_s=5.0)  # fits: returns at once
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"resources\.cpus_per_task: .*waited 1\.5 s"):
        check_fits({"resources.cpus_per_task": {"CPU": 64.0}}, wait_s=1.5, where="the cluster")
    assert 1.5 <= time.monotonic() - t0 < 10


def test_auto_means_ray_address_or_the_recorded_cluster(ray_session, monkeypatch, tmp_path):
    gcs = ray_session.get_runtime_context().gcs_address
    monkeypatch.setenv("RAY_ADDRESS", gcs)
    assert resolve_address("auto") == gcs
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no cluster recorded there; live GCS processes are not joined
    with pytest.raises(ClusterError, match="--address auto: no running Ray cluster found"):
        resolve_address("auto")

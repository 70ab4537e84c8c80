"""``fairl ui``: the MLflow UI on a workdir's runs, bound to 127.0.0.1."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from fairl_ray.commands.common import DEFAULT_WORKDIR, fail


def add_parser(sub) -> None:
    """``fairl ui``: its arguments and help."""
    parser = sub.add_parser("ui", help="open the MLflow UI on a workdir's runs (bound to 127.0.0.1)")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"workdir of a run (default: {DEFAULT_WORKDIR})")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: the workdir's sqlite store)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.set_defaults(func=run)


def run(args) -> int:
    import shutil
    import subprocess
    import tempfile

    from fairl_ray.atomic_io import unwritable
    from fairl_ray.orchestration.tracking import (
        default_tracking_uri,
        read_only_copy,
        relocate_artifacts,
        sqlite_path,
        store_lock,
    )

    uri = args.tracking_uri or default_tracking_uri(args.workdir)
    if sqlite_path(uri) is not None and not sqlite_path(uri).is_file():
        return fail(f"no MLflow store at {uri}; run `fairl run --workdir {args.workdir}` first")
    copy_dir = None
    if not args.tracking_uri and unwritable(args.workdir) is not None:  # an archived workdir: browse a copy
        copy_dir = tempfile.mkdtemp(prefix="fairl-ui-")
        uri = read_only_copy(uri, Path(args.workdir) / "mlartifacts", copy_dir)
        print(
            f"[fairl] {args.workdir} is read-only: showing a copy of its MLflow store ({copy_dir}); changes made "
            "in the UI are not kept",
            flush=True,
        )
    elif not args.tracking_uri:  # a copied workdir shows its own artifacts, not the original's
        with store_lock(uri):
            relocate_artifacts(uri, Path(args.workdir) / "mlartifacts")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    # MLflow 3.17 opens the GenAI view even with the experiment-kind tag; this parameter opens training runs (DESIGN §6)
    url = f"http://{args.host}:{args.port}/?workflowType=machine_learning"
    print(f"[fairl] MLflow UI on {url}  (Ctrl-C to stop)", flush=True)
    # Its own process group: the server and its workers are stopped together when fairl stops (Ctrl-C, SIGTERM).
    server = subprocess.Popen(command, start_new_session=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop_process_group(server)
        if copy_dir:
            shutil.rmtree(copy_dir, ignore_errors=True)


def stop_process_group(proc, grace_s: float = 10.0) -> None:
    """SIGTERM every process of ``proc``'s group (``proc`` leads it), then SIGKILL what is left after ``grace_s``."""
    import subprocess

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # the whole group is gone
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone; its workers may linger a moment
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(proc.pid):
                time.sleep(0.1)
            if not _group_alive(proc.pid):
                return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True

"""Starting Ray (locally or on a cluster), and making sure the work asked of it can run there.

Nothing here may wait forever: Ray itself retries an unreachable GCS for minutes and leaves a task whose
resources no node has pending for ever ("No available node types can fulfill resource request"). So
:func:`init_ray` checks that the address answers before handing it to Ray (and bounds Ray's own connect), and
:func:`check_fits` checks each resource request against the nodes before a task is submitted; both raise
:class:`ClusterError` with a message naming the address or the config key.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

# Ray >= 2.5x writes an auth token and warns unless told otherwise; a local session needs none (DESIGN §6).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

CONNECT_TIMEOUT_S = 45.0
"""Longest wait for a cluster's address to answer (TCP) plus Ray's own handshake with its GCS."""
RAY_CLIENT_PORT = 10001
SESSION_FILE = ".fairl-ray-session.json"
"""Where a workdir records the local Ray its run started (see :func:`reap_killed_session`)."""

# Library deprecation notices a user cannot act on, which every Ray worker would print again (one per RLHF task):
# TRL asks transformers' deprecated ``is_gradient_checkpointing`` (PYTHONWARNINGS syntax: action:message:category).
QUIET_WARNINGS = ("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning",)

# Environment the Ray workers get from the driver (they start in Ray's environment, not ours).
_FORWARDED_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "RAY_AUTH_MODE",
    "TQDM_DISABLE",
    "TQDM_MININTERVAL",
    "NO_COLOR",
    "PYTHONWARNINGS",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS",
)


class ClusterError(RuntimeError):
    """The Ray cluster cannot be reached, or cannot run what is asked of it. The message says which and why."""


def plain_logs() -> bool:
    """True when our output goes to a file or a pipe: no ANSI colour, no ``\\r`` progress bars then."""
    return not (sys.stdout.isatty() and sys.stderr.isatty())


def configure_log_environment() -> None:
    """Make every process of the run (this one, Ray's, its workers) write plain lines when not on a terminal.

    Ray prefixes forwarded worker lines with ANSI colours unless ``RAY_COLOR_PREFIX=0``, and colours its
    "[repeated Nx across cluster]" notes whatever that says, so its log de-duplication is off too (our workers
    print a few progress lines each, not floods); tqdm redraws its bars with ``\\r`` several times a second unless
    disabled (``TQDM_DISABLE``, read by tqdm >= 4.66).
    """
    if plain_logs():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        os.environ.setdefault("NO_COLOR", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    else:
        # Ray forwards worker output line by line: a bar redrawn 10×/s floods the driver. Redraw every 5 s.
        os.environ.setdefault("TQDM_MININTERVAL", "5")


#: Ray's switch to its single-machine mode (node IP 127.0.0.1, its Windows/macOS default) when set to 0.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_cluster_mode_before: tuple[str | None, bool] | None = None  # what _single_machine_ray changed, for the restore


def _single_machine_ray() -> None:
    """Bind a LOCAL Ray to loopback only.

    Ray 2.60 binds its GCS, raylet, worker and agent servers to the node IP, and a local session takes the host's
    address as node IP (an ``_node_ip_address="127.0.0.1"`` is rewritten to it by ``resolve_ip_for_localhost``) —
    unless Ray runs in its single-machine mode, where the node IP is 127.0.0.1. Measured with psutil: by default the
    GCS, raylet and workers listened on ``::`` and the runtime-env agent on the host's address; in single-machine
    mode every one of them listens on 127.0.0.1 (``tests/test_reliability_state.py`` checks it). The mode is read
    from the environment when ``ray`` is imported and looked up when a node starts, so both are set here. Child
    processes inherit the variable, so a process that joins this Ray (``--address 127.0.0.1:PORT``) from this one's
    environment uses the same mode; a driver joining a cluster from a fresh shell is in Ray's cluster mode."""
    from ray._private import ray_constants

    global _cluster_mode_before
    if _cluster_mode_before is None:
        _cluster_mode_before = (os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER)
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _restore_cluster_mode() -> None:
    """Undo :func:`_single_machine_ray` once its local Ray is shut down (a later ``--address`` join in this process,
    or a child started now, is in the mode it had before)."""
    from ray._private import ray_constants

    global _cluster_mode_before
    if _cluster_mode_before is None:
        return
    env, enabled = _cluster_mode_before
    if env is None:
        os.environ.pop(SINGLE_MACHINE_ENV, None)
    else:
        os.environ[SINGLE_MACHINE_ENV] = env
    ray_constants.ENABLE_RAY_CLUSTER = enabled
    _cluster_mode_before = None


def init_ray(
    address: str | None = None,
    temp_dir: str | None = None,
    num_cpus: int | None = None,
    session_file: str | Path | None = None,
) -> dict:
    """Connect to ``address`` (a running cluster: ``auto``, ``host:port`` or ``ray://host:10001``) or start a local Ray.

    The local session is kept small (no dashboard, a 200 MB object store): stages pass file paths, not data.
    Returns the cluster's resources. Safe to call twice. Raises :class:`ClusterError` within
    :data:`CONNECT_TIMEOUT_S` when the cluster cannot be reached.

    ``session_file`` (a workdir's): before starting a local Ray, stop what is left of the local Ray of a run that
    was killed (``kill -9`` leaves Ray's agents running for a minute or more); after, record this one's processes.

    Without ``address`` a local Ray is started even when ``RAY_ADDRESS`` is set (Ray would try to join it and
    refuse the local session's arguments): a warning says so; ``--address auto`` joins that cluster.
    """
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    if session_file is not None and not address:
        reap_killed_session(session_file)
    configure_log_environment()
    # Workers inherit the driver's environment; keep tiny-model work on one thread per task (DESIGN §6).
    env_vars = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    env_vars["PYTHONWARNINGS"] = ",".join(filter(None, [env_vars.get("PYTHONWARNINGS", ""), *QUIET_WARNINGS]))
    env_vars.setdefault("OMP_NUM_THREADS", "1")
    env_vars.setdefault("TOKENIZERS_PARALLELISM", "false")
    kwargs: dict = {"runtime_env": {"env_vars": env_vars}, "log_to_driver": True, "logging_level": "WARNING"}
    if not address:
        _single_machine_ray()
    if address:
        target = resolve_address(address)
        with _deadline(
            CONNECT_TIMEOUT_S,
            f"--address {address}: no Ray cluster answered at {target} within "
            f"{CONNECT_TIMEOUT_S:.0f} s (is it a Ray head node's GCS port, usually 6379?)",
        ):
            try:
                ray.init(address=address if address.startswith("ray://") else target, **kwargs)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
                raise ClusterError(f"--address {address}: cannot join the Ray cluster: {_first_line(err)}") from None
    else:
        if os.environ.get("RAY_ADDRESS"):
            sys.stderr.write(
                f"fairl: warning: RAY_ADDRESS={os.environ['RAY_ADDRESS']} is set but --address is not: starting a "
                "local Ray (pass --address auto to join that cluster)\n"
            )
            del os.environ["RAY_ADDRESS"]
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            object_store_memory=200 * 1024 * 1024,
            _temp_dir=temp_dir,
            **kwargs,
        )
        if session_file is not None:
            record_session(session_file)
    _interrupt_on_sigterm()
    return ray.cluster_resources()


def local_session_dir() -> Path | None:
    """The session folder (logs, sockets) of the Ray this process started, or None when it joined a cluster."""
    import ray

    node = ray._private.worker._global_node  # Ray has no public accessor for it
    return Path(node.get_session_dir_path()) if node is not None and node.head else None


def shutdown_ray(remove_session: bool) -> None:
    """``ray.shutdown()``; with ``remove_session`` also delete the local session folder (~0.5 MB of logs a run, which
    pile up in Ray's temp folder). A failed run keeps it: its raylet and worker logs may say why."""
    import shutil

    import ray

    session = local_session_dir() if remove_session else None
    ray.shutdown()
    _restore_cluster_mode()
    if session is not None:
        shutil.rmtree(session, ignore_errors=True)


def _interrupt_on_sigterm() -> None:
    """``ray.init`` makes SIGTERM exit the driver at once (``sys.exit(15)``, after a C++ stack dump): make it unwind
    like Ctrl-C instead, so stages are cancelled and MLflow runs are closed as KILLED."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def record_session(path: str | Path) -> None:
    """Write this driver's identity and the processes of the local Ray it started (gcs_server, raylet, agents)."""
    import psutil

    me = psutil.Process()
    procs = [{"pid": p.pid, "started": p.create_time()} for p in me.children(recursive=True)]
    data = {"driver": {"pid": me.pid, "started": me.create_time()}, "processes": procs}
    Path(path).write_text(json.dumps(data))


def reap_killed_session(path: str | Path, grace_s: float = 5.0) -> int:
    """Stop the recorded local Ray processes of a driver that no longer exists; return how many were running.

    A process counts only if its pid *and* start time match the record (pids are reused). A live driver's
    session is never touched.
    """
    import psutil

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    if _same_process(data.get("driver", {})) is not None:
        return 0
    victims = [p for p in (_same_process(rec) for rec in data.get("processes", [])) if p is not None]
    for p in list(victims):
        try:
            victims.extend(p.children(recursive=True))
        except psutil.Error:
            pass
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(victims, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    path.unlink(missing_ok=True)
    return len(victims)


def _same_process(record: dict):
    import psutil

    try:
        p = psutil.Process(int(record["pid"]))
        if abs(p.create_time() - float(record["started"])) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
            return p
    except (KeyError, TypeError, ValueError, psutil.Error):
        pass
    return None


def resolve_address(address: str) -> str:
    """The ``host:port`` that ``address`` points at, checked to answer; :class:`ClusterError` otherwise."""
    if address.startswith("ray://"):
        if not _ray_client_installed():
            raise ClusterError(
                f'--address {address}: Ray Client addresses (ray://) need `pip install "ray[client]"`;'
                " or run fairl on the head node with --address auto"
            )
        host_port = address[len("ray://") :].split("/", 1)[0]
        default_port = RAY_CLIENT_PORT
    elif address == "auto":
        # RAY_ADDRESS, else the cluster `ray start` / `ray up` recorded on this machine. Not Ray's legacy fallback
        # of joining any GCS process it finds in `ps` (someone else's test cluster, say).
        from ray._common.utils import get_ray_address_file

        host_port = os.environ.get("RAY_ADDRESS") or None
        if host_port and host_port.startswith("ray://"):
            return resolve_address(host_port)
        recorded = Path(get_ray_address_file(None))
        if host_port in (None, "auto") and recorded.is_file():
            host_port = recorded.read_text().strip() or None
        if host_port in (None, "auto"):
            raise ClusterError(
                "--address auto: no running Ray cluster found on this machine (start one with "
                "`ray start --head` or `ray up`, or leave out --address to start a local Ray)"
            )
        default_port = 6379
    else:
        host_port, default_port = address, 6379
    host, _, port = host_port.rpartition(":") if ":" in host_port else (host_port, "", str(default_port))
    try:
        port_no = int(port)
    except ValueError:
        raise ClusterError(f"--address {address}: {port!r} is not a port number") from None
    try:
        with socket.create_connection((host.strip("[]"), port_no), timeout=5.0):
            pass
    except OSError as err:
        raise ClusterError(
            f"--address {address}: cannot reach {host}:{port_no} ({err.strerror or err}); "
            "is the Ray head node running and the port open?"
        ) from None
    return f"{host}:{port_no}"


def check_fits(requests: dict[str, dict[str, float]], wait_s: float = 0.0, where: str = "the local Ray") -> None:
    """Raise :class:`ClusterError` unless every request fits on one alive node.

    ``requests`` maps a config key to the resources asked under it, e.g.
    ``{"resources.cpus_per_task": {"CPU": 1.0, "GPU": 0.0}}``. On an autoscaling cluster a fitting node may still
    be on its way: then wait up to ``wait_s`` seconds for one to join before giving up.
    """
    import ray

    deadline = time.monotonic() + wait_s
    while True:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        missing = {key: req for key, req in requests.items() if not any(_fits(req, node) for node in nodes)}
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    if not missing:
        return
    key, req = next(iter(missing.items()))
    asked = ", ".join(f"{v:g} {r}" for r, v in req.items() if v)
    largest = {r: max((node.get(r, 0.0) for node in nodes), default=0.0) for r in req}
    have = ", ".join(f"{v:g} {r}" for r, v in largest.items())
    waited = f" (waited {wait_s:g} s for the autoscaler; raise resources.node_wait_s to wait longer)" if wait_s else ""
    raise ClusterError(
        f"{key}: a task asks for {asked} but no node of {where} has that much (the largest node offers {have}){waited}"
    )


def _fits(request: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(r, 0.0) >= v for r, v in request.items() if v)


def _ray_client_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("grpc") is not None and importlib.util.find_spec("ray.util.client") is not None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextmanager
def _deadline(seconds: float, message: str):
    """Ray's connect retries block the main thread for minutes; past ``seconds`` say why and exit 2."""
    done = threading.Event()

    def expire():
        if not done.wait(seconds):
            sys.stderr.write(f"fairl: error: {message}\n")
            sys.stderr.flush()
            os._exit(2)

    watchdog = threading.Thread(target=expire, name="fairl-connect-deadline", daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        done.set()

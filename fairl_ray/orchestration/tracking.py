"""MLflow tracking: one parent run per pipeline, one child run per stage (DESIGN §6).

Everything goes through an explicit :class:`mlflow.MlflowClient`, never the global fluent state, so Ray
workers, Tune trials and the driver cannot step on each other's "active run". The default store is a
sqlite database in the workdir with artifacts beside it, so a workdir is a self-contained record that
``fairl ui`` (or ``mlflow ui --backend-store-uri sqlite:///<workdir>/mlflow.db``) can open.

Three guarantees on top of MLflow:

* **Safe creation under concurrency.** Two processes opening a fresh sqlite store at once both run MLflow's
  schema migration and one crashes; opening a store here holds an exclusive lock (``<db>.lock``) meanwhile.
* **Relocatable.** MLflow stores absolute artifact locations; when a workdir that owns its store (``mlflow.db``
  beside ``mlartifacts/``) has been copied or moved, opening it re-points those locations at the copy, so the
  copy never reads or writes the original's artifacts.
* **The truth about killed runs.** Every run is tagged with the host and pid that created it; opening the
  store closes runs still RUNNING whose process is gone (and their children) as KILLED.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

EXPERIMENT = "fairl-ray"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value
# MLflow 3 opens an experiment without this tag in its GenAI view (DESIGN §6); ours are training runs.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
HOST_TAG, PID_TAG = "fairl.host", "fairl.pid"


def default_tracking_uri(workdir: str | Path) -> str:
    return sqlite_uri(Path(workdir).resolve() / "mlflow.db")


def sqlite_uri(db: str | Path) -> str:
    """``sqlite:///<db>`` with ``%`` and ``?`` percent-quoted: SQLAlchemy (MLflow's sqlite store) reads a ``?`` as
    the start of a query and unquotes ``%xx``, so ``…/wq?x/mlflow.db`` would open ``…/wq``.

    Nothing else is quoted, because MLflow 3.17 also makes the parent directory of the URI's path *as written*
    (``mlflow.store.db.utils._make_parent_dirs_if_sqlite``): a quoted character leaves an empty directory named
    with the quoted form beside the workdir; this keeps that to paths holding ``%`` or ``?``."""
    return "sqlite:///" + str(db).replace("%", "%25").replace("?", "%3F")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, read as SQLAlchemy reads it (None for any other store)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(unquote(tracking_uri[len("sqlite:///") :].split("?", 1)[0]))


class StoreBusyError(RuntimeError):
    """A sqlite store that stayed locked by another process; the message names the file and the holders."""


def wait_for_store(tracking_uri: str, wait_s: float | None = None) -> None:
    """Return once a sqlite store can be written, waiting at most ``wait_s`` (default ``$FAIRL_STORE_WAIT_S`` or
    60 s) for another process's lock; then raise :class:`StoreBusyError` naming the file and who holds it open.

    MLflow itself waits 20 s per statement and then fails with a traceback deep inside SQLAlchemy."""
    db = sqlite_path(tracking_uri)
    if db is None or not db.is_file():
        return
    wait_s = float(os.environ.get("FAIRL_STORE_WAIT_S", "60")) if wait_s is None else wait_s
    try:  # sqlite's busy handler retries the lock until the timeout: the bounded retry
        with contextlib.closing(sqlite3.connect(db, timeout=wait_s, isolation_level=None)) as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
    except sqlite3.OperationalError as err:
        if "locked" not in str(err) and "busy" not in str(err):
            raise
        holders = ", ".join(_holders(db)) or "a process this user cannot see"
        raise StoreBusyError(
            f"MLflow store {db} is locked by another process ({holders}); waited {wait_s:g} s "
            "(FAIRL_STORE_WAIT_S sets how long); stop it or use another --workdir / --tracking-uri"
        ) from None


def _holders(path: Path) -> list[str]:
    """``pid N (command)`` of the other processes that have ``path`` open (Linux /proc; [] elsewhere)."""
    target, found = str(path.resolve()), []
    for proc in Path("/proc").glob("[0-9]*"):
        if proc.name == str(os.getpid()):
            continue
        try:
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                found.append(f"pid {proc.name} ({command[:80]})")
        except OSError:  # gone, or not ours to look at
            continue
    return found


@contextlib.contextmanager
def store_lock(tracking_uri: str):
    """Exclusive lock on a sqlite store's ``<db>.lock`` (no-op for other stores)."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def relocate_artifacts(tracking_uri: str, artifact_root: str | Path) -> int:
    """Re-point artifact locations at ``artifact_root`` when the store and ``artifact_root`` live in one directory
    (a workdir) but the locations recorded inside still name another one (the workdir was copied or moved).

    Returns how many locations were rewritten. Stores that do not sit beside ``artifact_root`` are left alone.
    """
    db = sqlite_path(tracking_uri)
    root = Path(artifact_root).resolve()
    if db is None or not db.is_file() or db.resolve().parent != root.parent:
        return 0
    return _point_artifacts_at(db, root)


def read_only_copy(tracking_uri: str, artifact_root: str | Path, into: str | Path) -> str:
    """Copy a sqlite store that cannot be written (an archived, read-only workdir) into ``into``, its artifact
    locations pointed at ``artifact_root``; return the copy's URI. MLflow's server needs a store it can write
    (its lock file, schema checks), and the artifacts are only read, so they are served from where they are."""
    db = sqlite_path(tracking_uri)
    copy = Path(into) / "mlflow.db"
    # immutable=1: read without taking locks, which would need a writable directory (journal, -shm files).
    source = sqlite3.connect(db.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    with contextlib.closing(source), contextlib.closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    _point_artifacts_at(copy, Path(artifact_root).resolve())
    return sqlite_uri(copy)


def _point_artifacts_at(db: Path, root: Path) -> int:
    """Rewrite the artifact locations in ``db`` that name another ``…/<root.name>`` folder to ``root``."""
    new = root.as_uri()
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con, con:
        tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return 0
        changed = 0
        for (old,) in con.execute("SELECT DISTINCT artifact_location FROM experiments").fetchall():
            if not old or old == new or not old.startswith("file:") or not old.rstrip("/").endswith(f"/{root.name}"):
                continue
            for table, column in (
                ("experiments", "artifact_location"),
                ("runs", "artifact_uri"),
                ("logged_models", "artifact_location"),
            ):
                if table in tables:
                    changed += con.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE {column} = ? OR {column} LIKE ? ESCAPE '\\'",
                        (new, len(old) + 1, old, _like_prefix(old + "/")),
                    ).rowcount
        return changed


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Tracker:
    """A thin wrapper around :class:`mlflow.MlflowClient` for the pipeline's parent/child run layout."""

    def __init__(self, tracking_uri: str, artifact_root: str | Path | None = None, experiment: str = EXPERIMENT):
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        with store_lock(tracking_uri):  # the client's first access creates (migrates) the sqlite schema
            wait_for_store(tracking_uri)
            self.client = MlflowClient(tracking_uri=tracking_uri)
            if artifact_root is not None and relocate_artifacts(tracking_uri, artifact_root):
                from mlflow.tracking._tracking_service import utils as tracking_utils

                # MLflow caches each run's artifact repository by run id, process-wide: forget the old places.
                getattr(tracking_utils, "_artifact_repos_cache", {}).clear()
            found = self.client.get_experiment_by_name(experiment)
            if found is not None:
                self.experiment_id = found.experiment_id
                if found.tags.get(EXPERIMENT_KIND_TAG[0]) != EXPERIMENT_KIND_TAG[1]:
                    self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND_TAG)
            else:
                location = Path(artifact_root).resolve().as_uri() if artifact_root else None
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=location, tags=dict([EXPERIMENT_KIND_TAG])
                )
            self.closed_stale = self.close_stale_runs()

    def close_stale_runs(self) -> list[str]:
        """Mark KILLED every RUNNING run of this experiment whose creating process (this host) is gone, and the
        RUNNING children of those. Returns the ids closed."""
        from mlflow.entities import ViewType

        running = self.client.search_runs(
            [self.experiment_id], "attributes.status = 'RUNNING'", run_view_type=ViewType.ACTIVE_ONLY, max_results=5000
        )
        host = socket.gethostname()
        dead = {
            r.info.run_id for r in running if r.data.tags.get(HOST_TAG) == host and not _alive(r.data.tags.get(PID_TAG))
        }
        grew = True
        while grew:  # children (and their children) of killed runs were killed with them
            more = {r.info.run_id for r in running if r.data.tags.get("mlflow.parentRunId") in dead} - dead
            dead |= more
            grew = bool(more)
        for run_id in sorted(dead):
            self.client.set_terminated(run_id, status="KILLED")
        return sorted(dead)

    def reopen_run(self, run_id: str) -> None:
        """Mark a finished or killed run RUNNING again, owned by this process (a resumed search)."""
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, HOST_TAG, socket.gethostname())
        self.client.set_tag(run_id, PID_TAG, str(os.getpid()))

    def start_run(
        self,
        name: str,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        start_time: float | None = None,
    ) -> str:
        """A RUNNING run; ``start_time`` (``time.time()`` seconds, default now) when the work it records began."""
        tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), **(tags or {})}
        tags["mlflow.runName"] = name
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, start_time=_ms(start_time), run_name=name, tags=tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in sorted(metrics.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def log_curve(self, run_id: str, name: str, values: list[float], steps: list[int] | None = None) -> None:
        """A per-step series (e.g. a training curve) as one metric at ``steps`` (default 0..n-1)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        steps = range(len(values)) if steps is None else steps
        items = [
            Metric(name, float(v), now, int(step))
            for step, v in zip(steps, values)
            if v is not None and math.isfinite(v)
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_dataset(self, run_id: str, parquet: str | Path, name: str, digest: str, context: str = "train") -> None:
        """A parquet file as an MLflow dataset input of ``run_id`` (the run's Datasets column): its schema and row
        count, ``digest`` (e.g. the stage key that made it), the file as its source."""
        import warnings

        import mlflow.data
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        source = str(Path(parquet).resolve())
        # MLflow 3.17 warns on every local path (two registered sources match it, the same class) and about integer
        # columns in the inferred schema (advice for model inputs): neither is ours to act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(pd.read_parquet(parquet), source=source, name=name, digest=digest)
        entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        self.client.log_inputs(run_id, datasets=[entity])

    def log_table(self, run_id: str, header: list[str], rows: list[list], artifact_file: str) -> None:
        """A table as an MLflow table artifact of ``run_id`` (``artifact_file`` ends in ``.json``; the run's
        Artifacts and the Evaluation/Traces views read it; ``mlflow.load_table`` gets it back)."""
        columns = {name: [str(r[i]) for r in rows] for i, name in enumerate(header)}
        self.client.log_table(run_id, data=columns, artifact_file=artifact_file)

    def log_reward_model(self, run_id: str, reward_dir: str | Path, name: str, registered_model_name=None):
        """An extracted reward as an MLflow pyfunc model of ``run_id`` (see :mod:`fairl_ray.irl.mlflow_model`)."""
        from fairl_ray.irl.mlflow_model import log_reward_model

        return log_reward_model(self.tracking_uri, run_id, reward_dir, name, registered_model_name)

    def end_run(self, run_id: str, status: str = "FINISHED", end_time: float | None = None) -> None:
        """End a run; ``end_time`` (``time.time()`` seconds, default now) when its work ended, so a run whose
        artifacts are uploaded afterwards still lasts as long as the work did."""
        self.client.set_terminated(run_id, status=status, end_time=_ms(end_time))


def split_metrics(split: str, stats: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{metric: {mean, std, n}}`` (over seeds) as the metric names every fairl command logs: ``<split>.<metric>``
    (the mean) and ``<split>.<metric>_std``, e.g. ``test.roc_auc``, ``val.roc_auc``, ``heldout.roc_auc``. One
    scheme for ``fairl run``'s method runs and ``fairl tune``'s trial runs, so MLflow's compare view and charts put
    them side by side."""
    out = {}
    for metric, s in stats.items():
        if s.get("n", 1):
            out[f"{split}.{metric}"] = s["mean"]
            if s.get("std") is not None:
                out[f"{split}.{metric}_std"] = s["std"]
    return out


def method_params(method: str, irl: dict) -> dict:
    """A method run's params: what the method is (``irl/methods.py``) and the IRL hyperparameters it reads."""
    from fairl_ray.irl.methods import get_method, hyperparameters_read

    m = get_method(method)
    what = {"method": method, "routing": m.routing, "base_loss": m.base_loss, "failure_source": m.failure_source}
    return {k: "none" if v is None else v for k, v in what.items()} | {k: irl[k] for k in hyperparameters_read(method)}


def method_metrics(stats: dict, failure_path: dict | None = None) -> dict[str, float]:
    """A method run's metrics: ``test.<metric>`` (test split; with the failure-path share and ablations of an FA-IRL
    method) and ``heldout.<metric>`` (the held-out labelled texts, where the world has them)."""
    from fairl_ray.recovery.score import HELDOUT_PREFIX

    test = {k: v for k, v in stats.items() if not k.startswith(HELDOUT_PREFIX)}
    heldout = {k[len(HELDOUT_PREFIX) :]: v for k, v in stats.items() if k.startswith(HELDOUT_PREFIX)}
    if failure_path:
        test["failure_path_share"] = failure_path["share"]
        test.update({f"ablated_{k}": v for k, v in failure_path["ablated"].items()})
    return split_metrics("test", test) | split_metrics("heldout", heldout)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def _alive(pid: str | None) -> bool:
    """Whether process ``pid`` (on this host) still exists; a missing or unreadable pid counts as gone."""
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True

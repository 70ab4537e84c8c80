"""Content-addressed, atomic stage outputs (DESIGN §2).

A stage's output directory is ``<workdir>/stages/<stage>-<key>`` where ``key`` hashes the stage name, its
config section and the keys of the stages it reads. A stage writes into a private temporary directory and
renames it into place only when it has finished, with a ``stage.json`` marker inside; so a crash or a kill
never leaves a half-written output that a rerun would trust, and a rerun of the same config finds every
finished stage and recomputes nothing. Changing one section changes that stage's key and every key
downstream of it, and nothing upstream.

**Integrity.** The marker lists every file of the output with its size, modification time and sha256. Reuse
checks it (:meth:`StageOutput.problem`): always the sizes (a truncated file), and the hash of every file whose
modification time changed (a file rewritten in place, e.g. features zeroed); with ``verify`` (``fairl run
--verify``) the hash of every file. A stage whose output fails the check, whose ``stage.json`` does not parse, or
whose folder has no marker at all is recomputed, and the fresh output replaces the old folder. Markers written
before the file list existed are checked for what they record: nothing, so they are reused as before.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairl_ray.atomic_io import atomic_write_bytes, readable_as_umask_allows

MARKER = "stage.json"
LOCK_FILE = ".fairl.lock"
# Bump when a stage's output format or semantics change, so old cached outputs are not reused.
STAGE_FORMAT_VERSION = 3  # 2: pairs split drawn by pairs_io.test_mask; 3: RLHF prompts drawn on their own


def stage_key(stage: str, config: Any, upstream: dict[str, str]) -> str:
    """Hash of a stage's identity: its name, its (plain-data) config and the keys of its inputs."""
    payload = json.dumps(
        {"stage": stage, "config": config, "upstream": upstream, "format": STAGE_FORMAT_VERSION},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StageOutput:
    """Where one stage's output lives, and whether it is complete."""

    stage: str
    key: str
    path: Path

    @property
    def done(self) -> bool:
        """Finished and intact (see :meth:`problem`)."""
        return self.problem() is None

    def problem(self, verify: bool = False) -> str | None:
        """None when the output is finished and its files match its marker; else why not, e.g. ``"no stage.json"``,
        ``"features.safetensors: size 96, recorded 4096"``. ``verify``: hash every file, not only changed ones."""
        return output_problem(self.path, verify)

    def summary(self) -> dict:
        """The dict the stage returned when it finished (stored in the marker)."""
        return read_summary(self.path)


def read_summary(stage_dir: str | Path) -> dict:
    """The summary a finished stage directory recorded in its marker (``{}`` if it has none)."""
    marker = Path(stage_dir) / MARKER
    return json.loads(marker.read_text())["summary"] if marker.is_file() else {}


def output_problem(stage_dir: str | Path, verify: bool = False) -> str | None:
    """Why ``stage_dir`` is not a finished, intact stage output (None when it is); see :meth:`StageOutput.problem`."""
    stage_dir = Path(stage_dir)
    marker = stage_dir / MARKER
    if not marker.is_file():
        return f"no {MARKER}" if stage_dir.is_dir() else "not computed"
    try:
        recorded = json.loads(marker.read_text())
        files = recorded.get("files", {})  # absent in markers written before the file list existed
        recorded["summary"]
    except (OSError, ValueError, KeyError, AttributeError):
        return f"{MARKER}: unreadable or truncated"
    touched = False
    for rel, want in files.items():
        path = stage_dir / rel
        try:
            st = path.stat()
        except OSError:
            return f"{rel}: missing"
        if st.st_size != want["size"]:
            return f"{rel}: size {st.st_size}, recorded {want['size']}"
        # An unchanged modification time means an unchanged file (cheap); a changed one is hashed to be sure.
        if verify or st.st_mtime_ns != want["mtime_ns"]:
            if file_sha256(path) != want["sha256"]:
                return f"{rel}: content differs from the recorded sha256"
            touched |= st.st_mtime_ns != want["mtime_ns"]
            want["mtime_ns"] = st.st_mtime_ns
    if touched:  # e.g. a workdir copied without its times: record the new ones so the next reuse hashes nothing
        try:
            atomic_write_bytes(marker, json.dumps(recorded, indent=1).encode())
        except OSError:  # a read-only workdir is reused all the same (and hashed again next time)
            pass
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_records(root: Path) -> dict[str, dict]:
    """Size, modification time and sha256 of every file below ``root`` (the marker's file list)."""
    records = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        records[str(path.relative_to(root))] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": file_sha256(path),
        }
    return records


def stage_output(workdir: str | Path, stage: str, key: str) -> StageOutput:
    return StageOutput(stage, key, Path(workdir) / "stages" / f"{stage}-{key}")


RESUME_PREFIX = ".resume-"  # ``<stages>/.resume-<stage>-<key>``: what a stage keeps to resume from when killed
TMP_PREFIX = ".tmp-"


def resume_dir(tmp_dir: str | Path) -> Path:
    """Where the stage writing into ``tmp_dir`` (a :class:`StageWriter`'s temporary directory) keeps what a rerun
    resumes from — Ray Train's checkpoints of a multi-worker RLHF stage: ``<stages>/.resume-<stage>-<key>``. Unlike
    the temporary directory it survives a failed or killed run (:func:`clean_stale_temporaries` leaves it) and the
    next attempt at the same output finds it; it is removed once the output is published."""
    tmp_dir = Path(tmp_dir)
    name = tmp_dir.name
    if not name.startswith(TMP_PREFIX):
        raise ValueError(f"resume_dir: {tmp_dir} is not a stage's temporary directory")
    return tmp_dir.parent / f"{RESUME_PREFIX}{name[len(TMP_PREFIX) :].rsplit('-', 1)[0]}"


class StageWriter:
    """Context manager: yields a temporary directory; on success publishes it as the stage output (and removes
    the stage's :func:`resume_dir`).

    ``summary`` (a JSON-able dict) is written into the marker file and is what a rerun gets back. An intact
    output published meanwhile by a concurrent writer is kept; anything else at the destination (no marker, a
    corrupt output) is replaced by the fresh one.
    """

    def __init__(self, output: StageOutput):
        self.output = output
        self.tmp = output.path.parent / f"{TMP_PREFIX}{output.path.name}-{uuid.uuid4().hex[:8]}"
        self.summary: dict = {}
        self._started = 0.0

    def __enter__(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=False)
        self._started = time.time()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            written = sum(p.stat().st_size for p in self.tmp.rglob("*") if p.is_file())
            if is_disk_full(exc) and written:  # how much the stage needed, at least (its own temp files aside)
                exc.add_note(f"the {self.output.stage} stage had written {written / 1e6:.1f} MB when the disk filled")
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        marker = {
            "stage": self.output.stage,
            "key": self.output.key,
            "seconds": round(time.time() - self._started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "summary": self.summary,
            "files": _file_records(self.tmp),
        }
        (self.tmp / MARKER).write_text(json.dumps(marker, indent=2, default=str))
        readable_as_umask_allows(self.tmp)  # the stage's libraries may have written files 0600
        dest = self.output.path
        if self.output.done:  # a concurrent writer finished first: keep theirs (nothing left to resume either)
            shutil.rmtree(self.tmp, ignore_errors=True)
            shutil.rmtree(resume_dir(self.tmp), ignore_errors=True)
            return False
        if dest.exists():  # a folder without a marker, or a corrupt output: the fresh output wins
            old = dest.parent / f".tmp-old-{dest.name}-{uuid.uuid4().hex[:8]}"  # .tmp-: cleaned if we die here
            os.replace(dest, old)
            os.replace(self.tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, dest)
        shutil.rmtree(resume_dir(self.tmp), ignore_errors=True)  # published: nothing left to resume
        return False


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC, as an OSError or as the text of a library's own error (safetensors: "No space left on device")."""
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err)


def clean_stale_temporaries(workdir: str | Path) -> int:
    """Remove temp dirs left by killed runs (they never hold a finished stage). Returns how many."""
    root = Path(workdir) / "stages"
    if not root.is_dir():
        return 0
    stale = [p for p in root.iterdir() if p.name.startswith(TMP_PREFIX)]  # resume dirs stay: a rerun resumes
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


@contextlib.contextmanager
def workdir_lock(
    workdir: str | Path,
    log: Callable[[str], None] = print,
    *,
    command: str = "fairl run",
    after_wait: str = "its finished stages will be reused",
) -> Iterator[None]:
    """One run at a time per workdir: an exclusive ``flock`` on ``<workdir>/.fairl.lock``.

    A second run on the same workdir says who holds the lock and waits for it; it then finds the first run's
    stages finished and reuses them instead of computing them twice or overwriting its ``results.json``. The
    kernel drops the lock when its holder dies, so a killed run never leaves the workdir locked. Other commands
    that own an output folder (``fairl irl --out``) lock it the same way, naming themselves in ``command`` and
    what happens once the wait is over in ``after_wait``.
    """
    import fcntl

    path = Path(workdir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            log(f"[fairl] another {command} ({holder}) is using {workdir}; waiting for it to finish ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
            log(f"[fairl] the other run finished; going on ({after_wait})")
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

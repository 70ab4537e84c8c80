"""Content-addressed, atomic stage outputs (DESIGN §2).

A stage's output directory is ``<workdir>/stages/<stage>-<key>`` where ``key`` hashes the stage name, its
config section and the keys of the stages it reads. A stage writes into a private temporary directory and
renames it into place only when it has finished, with a ``stage.json`` marker inside; so a crash or a kill
never leaves a half-written output that a rerun would trust, and a rerun of the same config finds every
finished stage and recomputes nothing. Changing one section changes that stage's key and every key
downstream of it, and nothing upstream.
"""

from __future__ import annotations

import contextlib
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
        return (self.path / MARKER).is_file()

    def summary(self) -> dict:
        """The dict the stage returned when it finished (stored in the marker)."""
        return read_summary(self.path)


def read_summary(stage_dir: str | Path) -> dict:
    """The summary a finished stage directory recorded in its marker (``{}`` if it has none)."""
    marker = Path(stage_dir) / MARKER
    return json.loads(marker.read_text())["summary"] if marker.is_file() else {}


def stage_output(workdir: str | Path, stage: str, key: str) -> StageOutput:
    return StageOutput(stage, key, Path(workdir) / "stages" / f"{stage}-{key}")


class StageWriter:
    """Context manager: yields a temporary directory; on success publishes it as the stage output.

    ``summary`` (a JSON-able dict) is written into the marker file and is what a rerun gets back.
    """

    def __init__(self, output: StageOutput):
        self.output = output
        self.tmp = output.path.parent / f".tmp-{output.path.name}-{uuid.uuid4().hex[:8]}"
        self.summary: dict = {}
        self._started = 0.0

    def __enter__(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=False)
        self._started = time.time()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        marker = {
            "stage": self.output.stage,
            "key": self.output.key,
            "seconds": round(time.time() - self._started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "summary": self.summary,
        }
        (self.tmp / MARKER).write_text(json.dumps(marker, indent=2, default=str))
        if self.output.path.exists():  # a concurrent writer finished first: keep theirs
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            os.replace(self.tmp, self.output.path)
        return False


def clean_stale_temporaries(workdir: str | Path) -> int:
    """Remove temp dirs left by killed runs (they never hold a finished stage). Returns how many."""
    root = Path(workdir) / "stages"
    if not root.is_dir():
        return 0
    stale = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
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

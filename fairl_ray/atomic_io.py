"""Crash-safe writes: everything is written beside its destination, then renamed into place.

A reader (or a rerun after a kill) sees either the old content or the complete new one, never a torn file.
Used for policies, reward artifacts, pairs files, the feature cache and results.json; stage outputs use the
same idea with a completion marker (``orchestration.stage_store.StageWriter``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask), or a workdir on shared
    # storage is unreadable to everyone else.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``out_dir``; when the block succeeds it replaces ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; give it the mode mkdir would
    try:
        yield tmp
        readable_as_umask_allows(tmp)
        if out_dir.exists():  # move the old one aside first, so out_dir is never missing a complete version
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "d")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def readable_as_umask_allows(root: str | os.PathLike) -> None:
    """Give every file and folder under ``root`` the read (and, for folders, search) bits the umask allows.

    Libraries create some files 0600 (safetensors 0.8's ``save_file``: policies, rewards, log-probs); on shared
    storage other users and services could not read them. Called on a finished output before it is published."""
    mask = _umask()
    for path in [Path(root), *Path(root).rglob("*")]:
        if path.is_symlink():
            continue
        wanted = (0o555 if path.is_dir() else 0o444) & ~mask
        mode = path.stat().st_mode & 0o7777
        if mode & wanted != wanted:
            os.chmod(path, mode | wanted)


def unwritable(directory: str | os.PathLike) -> OSError | None:
    """Why nothing can be created in ``directory`` (made first if missing), or None. Found by creating a file:
    permission bits say nothing for root, an immutable (``chattr +i``) tree or a read-only mount."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        return err
    return None


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; put it back at once
    os.umask(mask)
    return mask


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

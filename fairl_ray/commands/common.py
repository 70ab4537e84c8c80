"""What every ``fairl`` command shares: the ``--set`` option, one-line errors and warnings, output-path checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_WORKDIR = "fairl_runs/default"


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), e.g. --set irl.margin=1.0 --set seeds='[0,1]'",
    )


def fail(message: str) -> int:
    print(f"fairl: error: {message}", file=sys.stderr)
    return 2


def warn(message: str) -> None:
    print(f"fairl: warning: {message}", file=sys.stderr)


def os_error(err: OSError) -> str:
    return f"{err.filename}: {err.strerror}" if err.filename else str(err)


def out_dir_problem(out: Path, flag: str = "--out") -> str | None:
    """Why ``out`` cannot be an output directory (a file is there, or its parent is missing), or None."""
    if out.exists() and not out.is_dir():
        return f"{flag} {out}: is a file, not a directory"
    if not out.exists() and not out.parent.is_dir():
        return f"{flag} {out}: its parent directory {out.parent} does not exist"
    return None


def out_file_problem(out: Path, flag: str = "--out") -> str | None:
    """Why ``out`` cannot be written as a file (a directory is there, or its parent is missing), or None."""
    if out.is_dir():
        return f"{flag} {out}: is a directory, not a file"
    if not out.parent.is_dir():
        return f"{flag} {out}: its directory {out.parent} does not exist"
    return None

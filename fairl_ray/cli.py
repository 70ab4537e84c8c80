"""The ``fairl`` command: run the pipeline, run IRL on your own pairs, score texts, open the MLflow UI.

Every sub-command validates its whole configuration before it starts Ray, MLflow or any training, and
exits with status 2 and a message naming the bad key, row or column otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

#: The ``fairl`` commands, in ``--help`` order: each module's ``add_parser`` and ``run`` (``fairl_ray/commands``).
COMMANDS = ("run", "study", "audit", "irl", "tune", "score", "report", "configs", "ui")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    quiet_environment()
    from fairl_ray.commands.common import fail
    from fairl_ray.orchestration.pipeline import StageError
    from fairl_ray.orchestration.ray_runtime import ClusterError, configure_log_environment
    from fairl_ray.orchestration.tracking import StoreBusyError

    configure_log_environment()  # before anything imports ray: it reads RAY_DEDUP_LOGS at import time

    previous = terminate_as_interrupt()
    try:
        return args.func(args)
    except (ClusterError, StageError, StoreBusyError) as err:
        return fail(str(err))
    except KeyboardInterrupt:
        print("\n[fairl] interrupted; finished stages are kept and a rerun resumes from them", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def terminate_as_interrupt():
    """SIGTERM (``kill``, a job scheduler) unwinds like Ctrl-C, so MLflow runs are closed as KILLED."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (fairl called from a library); leave signals alone
        return None


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="fairl",
        description="Recover the hidden reward of an RLHF-aligned LLM with (failure-aware) inverse RL, "
        "measure how faithful it is, and re-align fresh models with it. Ray runs the work, MLflow tracks it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fairl-ray {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fairl_ray.commands.{name}").add_parser(sub)
    return parser


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fairl-ray")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def quiet_environment() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # Tiny models: many single-threaded Ray tasks beat a few multi-threaded ones (DESIGN §6).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


if __name__ == "__main__":
    sys.exit(main())

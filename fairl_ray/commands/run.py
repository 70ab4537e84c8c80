"""``fairl run``: the whole pipeline on Ray, tracked in MLflow (or ``--dry-run``: what would run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairl_ray.commands.common import DEFAULT_WORKDIR, add_set, fail, os_error

EPILOG_RUN = """\
examples:
  fairl run                                   # the embedded synthetic world, end to end (~1-3 min on 2 CPUs)
  fairl run --set irl.methods='[max_margin, fa_irl_mm_margin]' --set seeds='[0,1,2,3,4]'
  fairl run my_experiment.yaml --workdir runs/exp1
  fairl run --address auto                    # on a running `ray up` cluster (workdir on shared storage)
  fairl run --print-config                    # show the resolved config and exit

Rerunning with the same config and workdir reuses every finished stage; changing only an IRL setting
re-runs IRL and the stages after it, never RLHF or generation. Results: <workdir>/results.json,
<workdir>/report.md, and MLflow (sqlite:///<workdir>/mlflow.db; open it with `fairl ui`).
"""


def add_run_options(parser, workdir: str = DEFAULT_WORKDIR) -> None:
    """The options of a pipeline run (``fairl run`` and ``fairl audit``): ``--set``, where outputs and tracking go,
    the Ray cluster, and the plan/print/verify switches."""
    add_set(parser)
    parser.add_argument("--workdir", default=workdir, help=f"where every output goes (default: {workdir})")
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a local Ray"
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<workdir>/mlflow.db)"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list which stages would be reused and which would run, then exit (starts nothing)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="before reusing a finished stage, check every file's sha256 against its stage.json (default: sizes, "
        "and hashes of files changed since); a damaged stage is recomputed",
    )


def add_parser(sub) -> None:
    """``fairl run``: its arguments and help."""
    parser = sub.add_parser(
        "run",
        help="run the whole pipeline (default: the embedded synthetic world)",
        description="Run prompts → expert RLHF → generation → pairs → features → IRL → "
        "evaluation → re-RLHF, each stage as Ray work, each logged to MLflow.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="experiment YAML (default: tune_configs/default.yaml)")
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from fairl_ray.config import ConfigError

    try:
        from fairl_ray.config import config_to_yaml, load_config

        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        return fail(f"invalid config: {err}")
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0
    return run_pipeline(cfg, args)


def run_pipeline(cfg, args) -> int:
    """Run (or, ``--dry-run``, plan) the pipeline of ``cfg`` with ``args``' workdir, address, tracking URI and
    ``--verify``: ``fairl run``'s and ``fairl audit``'s last step."""
    from fairl_ray.orchestration.pipeline import Pipeline

    if args.dry_run:
        return print_plan(Pipeline(cfg, args.workdir, verify=args.verify).plan(), args.workdir)
    from fairl_ray.atomic_io import unwritable

    err = unwritable(args.workdir)
    if err is not None:
        return fail(f"--workdir {args.workdir}: cannot write there ({os_error(err)}); `fairl ui` can still show it")
    from fairl_ray.orchestration.tracking import StoreBusyError, default_tracking_uri, wait_for_store

    try:  # before Ray starts
        wait_for_store(args.tracking_uri or default_tracking_uri(args.workdir))
    except StoreBusyError as err:
        return fail(str(err))
    print(f"[fairl] workdir: {Path(args.workdir).resolve()}")
    try:
        Pipeline(cfg, args.workdir, tracking_uri=args.tracking_uri, address=args.address, verify=args.verify).run()
    except PermissionError as err:  # part of the workdir is read-only (the check above saw only its top)
        return fail(f"cannot write {os_error(err)}")
    return 0


def print_plan(rows: list[dict], workdir) -> int:
    """The ``fairl run --dry-run`` table: stage, what would happen, its output directory."""
    from fairl_ray.report import markdown_table

    table = [
        [
            str(r["wave"]),
            r["stage"],
            "reuse" if r["action"] == "reuse" else "RUN",
            str(Path(r["dir"]).relative_to(Path(workdir).resolve())),
        ]
        for r in rows
    ]
    print(markdown_table(["wave", "stage", "would", "output"], table))
    for r in rows:
        if r.get("problem"):
            print(f"[fairl] {r['stage']}: stage output damaged ({r['problem']}), would be recomputed")
    n_run = sum(r["action"] == "run" for r in rows)
    print(
        f"\n[fairl] dry run in {Path(workdir).resolve()}: {len(rows) - n_run} stage(s) would be reused, {n_run} "
        f"would run; nothing was started or written"
    )
    return 0

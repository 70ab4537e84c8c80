"""``fairl study``: a base experiment and its variations as one Ray job (shared stages computed once)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairl_ray.commands.common import add_set, fail

EPILOG_STUDY = """\
examples:
  fairl study tune_configs/studies/pair_mix.yaml          # 5 pair mixes x 3 IRL seeds; RLHF and generation once
  fairl study pair_mix --dry-run                          # a shipped study by name: what would run, and shared
  fairl study my_study.yaml --set prompts.n_pairs=400 --workdir runs/my_study
  fairl study pair_mix --address auto                     # on a `ray up` cluster (workdir on shared storage)

A study YAML names a base experiment, overrides for every variant (set:), a grid of values (grid:, every
combination is a variant) and/or variants listed by hand (variants:). Shipped: `fairl configs` lists
tune_configs/studies/. Every variant runs on the pipeline's stage graph in ONE content-addressed store: a stage
several variants share is computed once; the others run side by side, each asking Ray for its resources
(resources.custom pins a variant's model stages to nodes with that resource). Killed, it resumes: finished
stages are reused. Results: <workdir>/study.json and study.md, each variant's results.json / report.md under
<workdir>/variants/<name>/, and MLflow: one study run, a child per variant, the stage runs below.
"""


def add_parser(sub) -> None:
    """``fairl study``: its arguments and help."""
    parser = sub.add_parser(
        "study",
        help="run a study: a base experiment over a grid of config values, as one Ray job",
        description="Run every variant of a study on one shared stage store: shared stages once, the rest side by "
        "side on Ray, each variant tracked under one MLflow study run.",
        epilog=EPILOG_STUDY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("study", help="study YAML, or the name of a shipped one (pair_mix, model_size, ...)")
    add_set(parser)
    parser.add_argument("--workdir", default=None, help="where everything goes (default: fairl_runs/studies/<name>)")
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a local Ray"
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<workdir>/mlflow.db)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the variants and which stages would run, then exit"
    )
    parser.add_argument("--verify", action="store_true", help="hash every file of a finished stage before reusing it")
    parser.set_defaults(func=run)


def study_path(spec: str) -> Path:
    """A study file: a path, or a shipped study's name (``pair_mix`` → tune_configs/studies/pair_mix.yaml)."""
    from fairl_ray.config import tune_configs_dir

    path = Path(spec)
    if path.is_file():
        return path
    shipped = tune_configs_dir() / "studies" / (spec if spec.endswith(".yaml") else f"{spec}.yaml")
    return shipped if shipped.is_file() else path


def run(args) -> int:
    from fairl_ray.config import ConfigError
    from fairl_ray.config.study import load_study

    try:
        study = load_study(study_path(args.study), args.overrides)
    except ConfigError as err:
        return fail(f"invalid study: {err}")
    workdir = Path(args.workdir or f"fairl_runs/studies/{study.name}")
    if args.dry_run:
        from fairl_ray.orchestration.study import plan_study
        from fairl_ray.report import markdown_table

        rows = plan_study(study, workdir)
        print(
            markdown_table(
                ["stage", "variants", "would"],
                [[r["stage"], str(r["variants"]), "reuse" if r["action"] == "reuse" else "RUN"] for r in rows],
            )
        )
        n_run = sum(r["action"] == "run" for r in rows)
        print(f"\n[study] dry run: {len(study.variants)} variant(s), {len(rows)} distinct stage(s), {n_run} would run")
        return 0
    from fairl_ray.orchestration.study import Study

    Study(study, workdir, tracking_uri=args.tracking_uri, address=args.address, verify=args.verify).run()
    return 0

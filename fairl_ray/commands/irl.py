"""``fairl irl``: IRL on your own pairs file (features → batched IRL → evaluation, outside the pipeline)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairl_ray.commands.common import add_set, fail, out_dir_problem, warn

EPILOG_IRL = """\
PAIRS is Parquet or JSON lines in TRL's preference convention: columns prompt, chosen, rejected; optional
chosen_label / rejected_label (1 good, -1 bad, 0 unknown) for FA-IRL's ground-truth failures, chosen_reward
/ rejected_reward (ground-truth R*) for STARC and correlations, and split (train/test).

examples:
  fairl irl pairs.jsonl --out rewards/                       # default methods, 3 seeds
  fairl irl pairs.parquet --method max_margin --method fa_irl_mm_margin --set irl.epochs=200 --out out/
  fairl score out/rewards/max_margin/seed0 texts.txt > scores.txt

Outputs (<out>): rewards/, metrics.json, report.md, the analyses and plots; an MLflow run `irl` with a child run
per method in sqlite:///<out>/mlflow.db (open it with `fairl ui --workdir <out>`).
"""


def add_parser(sub) -> None:
    """``fairl irl``: its arguments and help."""
    parser = sub.add_parser(
        "irl",
        help="recover rewards from your own preference pairs",
        description="Train IRL reward models (every method × seed as one batched ensemble) on "
        "a pairs file; write reward artifacts and held-out metrics.",
        epilog=EPILOG_IRL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pairs", help="pairs file (.parquet, .jsonl or .json)")
    parser.add_argument(
        "--method",
        action="append",
        default=None,
        metavar="NAME",
        help="IRL method (repeatable); default: the irl.methods of the default config",
    )
    add_set(parser)
    parser.add_argument("--out", required=True, help="output directory (reward artifacts, metrics.json, plots)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from fairl_ray.config import ConfigError
    from fairl_ray.irl_on_pairs import PairsInputError, irl_command_config, load_pairs

    try:
        cfg = irl_command_config(args.overrides, args.method)
    except ConfigError as err:
        return fail(f"invalid config: {err}")
    out = Path(args.out)
    problem = out_dir_problem(out)
    if problem:
        return fail(problem)
    try:
        train, test, notes = load_pairs(args.pairs, cfg)
    except PairsInputError as err:
        return fail(str(err))
    for note in notes:
        warn(note)
    from fairl_ray.features import EncoderLoadError
    from fairl_ray.irl_on_pairs import run_irl_on_pairs
    from fairl_ray.report import analyses_report, metrics_table

    try:
        summary = run_irl_on_pairs(train, test, cfg, out)
    except EncoderLoadError as err:
        return fail(str(err))
    if summary["removed"]:
        warn(
            f"{out}: removed reward folders (and files) an earlier `fairl irl` made there that this run does not "
            f"make: {', '.join(summary['removed'])} (only once the new outputs were complete)"
        )
    print(metrics_table(summary["per_method"], len(cfg.seeds)))
    if summary.get("analyses"):
        print("\n" + analyses_report(summary["analyses"]))
    print(
        f"\n[fairl] {summary['test_pairs']} test pairs held out; rewards in {out.resolve() / 'rewards'}, "
        f"metrics in {out.resolve() / 'metrics.json'}"
    )
    print(f"[fairl] MLflow run {summary['mlflow']['run_id']} in {summary['mlflow']['tracking_uri']}")
    return 0

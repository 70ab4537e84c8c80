"""``fairl tune``: search IRL hyperparameters (Ray Tune + Optuna on cached features, tracked in MLflow)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fairl_ray.commands.common import add_set, fail, out_dir_problem

EPILOG_TUNE = """\
Searches IRL hyperparameters (default: FA-IRL's failure margin/temperature, λ schedule and curriculum, see
tune_configs/search_fa_irl.yaml) with Ray Tune + Optuna on the cached features of a finished `fairl run`
(--workdir) or of your own pairs file (--pairs, featurised once). Each trial trains its config × `seeds` as one
batched ensemble and is scored on a VALIDATION split carved from the train pairs; the test pairs are used only
once, to re-evaluate the best config on `fresh_seeds`.

examples:
  fairl tune --workdir fairl_runs/default                     # the default FA-IRL search on a pipeline's pairs
  fairl tune --workdir runs/exp1 --set num_samples=40 --set fixed.epochs=300
  fairl tune --pairs pairs.jsonl --set objective=roc_auc --out tune_out/
  fairl tune my_search.yaml --workdir runs/exp1 --set space.lambda_0.loguniform='[1, 20]'

Outputs (<out>, default <workdir>/tune/<name>, or tune_runs/<name> with --pairs): best.json, best_irl.yaml (an
irl: section for `fairl run`), trials.csv, search.png (objective vs each hyperparameter), ray_results/; MLflow
parent run tune:<name> with one child per configuration (logged as it finishes) and best_on_fresh_seeds (open it
with `fairl ui`).

Each Tune trial trains `pack_size` configurations x `seeds` as one batched ensemble. Running the same command
on an interrupted search resumes it (only unfinished configurations run); --restart starts over. With `models:`
in the search YAML several runs / pairs files are searched and compared side by side (models.md).
  fairl tune --workdir runs/exp1 --set num_samples=512 --set pack_size=64
  fairl tune --workdir runs/exp1 --realign-top 2              # re-RLHF a fresh π0 with the 2 best rewards
"""


def add_parser(sub) -> None:
    """``fairl tune``: its arguments and help."""
    parser = sub.add_parser(
        "tune",
        help="search IRL hyperparameters (Ray Tune + Optuna, tracked in MLflow)",
        description="Search IRL hyperparameters on cached features: Optuna proposes, Ray Tune "
        "runs the trials, the best config is re-evaluated on fresh seeds on the test split.",
        epilog=EPILOG_TUNE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("search", nargs="?", help="search YAML (default: tune_configs/search_fa_irl.yaml)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--workdir",
        help="a finished `fairl run` workdir (its pairs and cached features); with "
        "`models:` in the search YAML, only where outputs and the MLflow store go",
    )
    source.add_argument("--pairs", help="your own pairs file (.parquet, .jsonl or .json), featurised into <out>")
    add_set(parser)
    parser.add_argument(
        "--out",
        default=None,
        help="output directory (default: <workdir>/tune/<name>, or tune_runs/<name> with --pairs)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: the workdir's sqlite store, or <out>/mlflow.db with --pairs)",
    )
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: start a local Ray)")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start the search in <out> over (default: an interrupted search there is resumed)",
    )
    parser.add_argument(
        "--realign-top",
        type=int,
        default=0,
        metavar="N",
        help="after the search, re-RLHF a fresh π0 of the --workdir run with each of the N best rewards "
        "and record the toxicity table (MLflow children of the search run)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from fairl_ray.config import ConfigError
    from fairl_ray.pairs_io import PairsFileError

    try:
        from fairl_ray.search import load_search_config

        cfg = load_search_config(args.search, args.overrides)
    except ConfigError as err:
        return fail(f"invalid search config: {err}")
    from fairl_ray.orchestration.tracking import default_tracking_uri
    from fairl_ray.search import SearchStateError, check_resumable, load_models, run_search, summary_table

    if not (args.workdir or args.pairs or cfg.models):
        return fail("say what to search: --workdir RUN, --pairs FILE, or models: in the search YAML")
    if args.realign_top < 0:
        return fail("--realign-top: must be >= 0")
    realign_workdir = args.workdir or next((m["workdir"] for m in cfg.models if m.get("workdir")), None)
    if args.realign_top and (not realign_workdir or (cfg.models and "workdir" not in cfg.models[0])):
        return fail("--realign-top needs a finished `fairl run` workdir as the (first) model, not a pairs file")
    if args.workdir or not args.pairs and realign_workdir:
        base = Path(args.workdir or realign_workdir)
        out = Path(args.out or base / "tune" / cfg.name)
        store = base
    else:
        out = Path(args.out or Path("tune_runs") / cfg.name)
        store = out
    problem = out_dir_problem(out) if args.out else None
    if problem:
        return fail(problem)
    # Ctrl-C / SIGTERM must stop the search as an interruption (exit 130, parent run KILLED, no best.json);
    # Tune's own SIGINT handler would end fit() quietly and the search would be reported as complete.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        if not args.restart:
            check_resumable(cfg, out)
        models = load_models(cfg, args.workdir, args.pairs, out)
    except SearchStateError as err:
        return fail(str(err))
    except ConfigError as err:
        return fail(f"invalid search config: {err}")
    except (PairsFileError, ValueError, OSError) as err:
        return fail(str(err))
    try:  # a resume over changed data is refused by run_search before Ray or MLflow start
        summary = run_search(
            cfg,
            models,
            out,
            args.tracking_uri or default_tracking_uri(store),
            artifact_root=store / "mlartifacts",
            address=args.address,
            restart=args.restart,
            realign_top=args.realign_top,
            realign_workdir=realign_workdir,
        )
    except SearchStateError as err:
        return fail(str(err))
    print()
    print(summary_table(summary))
    print(
        f"\n[fairl] {summary['trials']['total']} configs ({summary['trials']['ok']} finished, "
        f"{summary['trials']['pruned']} pruned) in {summary['seconds']} s; outputs in {summary['out']} (best.json, "
        f"best_irl.yaml, trials.csv, search.png); MLflow run {summary['mlflow']['parent_run_id']} in "
        f"{summary['mlflow']['tracking_uri']}"
    )
    return 0

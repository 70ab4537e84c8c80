"""The ``fairl`` command: run the pipeline, run IRL on your own pairs, score texts, open the MLflow UI.

Every sub-command validates its whole configuration before it starts Ray, MLflow or any training, and
exits with status 2 and a message naming the bad key, row or column otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

DEFAULT_WORKDIR = "fairl_runs/default"

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _quiet_environment()
    from fairl_ray.orchestration.pipeline import StageError
    from fairl_ray.orchestration.ray_runtime import ClusterError, configure_log_environment
    from fairl_ray.orchestration.tracking import StoreBusyError

    configure_log_environment()  # before anything imports ray: it reads RAY_DEDUP_LOGS at import time

    previous = _terminate_as_interrupt()
    try:
        return args.func(args)
    except (ClusterError, StageError, StoreBusyError) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print("\n[fairl] interrupted; finished stages are kept and a rerun resumes from them", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_as_interrupt():
    """SIGTERM (``kill``, a job scheduler) unwinds like Ctrl-C, so MLflow runs are closed as KILLED."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (fairl called from a library); leave signals alone
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairl",
        description="Recover the hidden reward of an RLHF-aligned LLM with (failure-aware) inverse RL, "
        "measure how faithful it is, and re-align fresh models with it. Ray runs the work, MLflow tracks it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fairl-ray {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the whole pipeline (default: the embedded synthetic world)",
        description="Run prompts → expert RLHF → generation → pairs → features → IRL → "
        "evaluation → re-RLHF, each stage as Ray work, each logged to MLflow.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", nargs="?", help="experiment YAML (default: tune_configs/default.yaml)")
    _add_set(run)
    run.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"where every output goes (default: {DEFAULT_WORKDIR})")
    run.add_argument(
        "--address", default=None, help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a local Ray"
    )
    run.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<workdir>/mlflow.db)"
    )
    run.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="list which stages would be reused and which would run, then exit (starts nothing)",
    )
    run.add_argument(
        "--verify",
        action="store_true",
        help="before reusing a finished stage, check every file's sha256 against its stage.json (default: sizes, "
        "and hashes of files changed since); a damaged stage is recomputed",
    )
    run.set_defaults(func=cmd_run)

    irl = sub.add_parser(
        "irl",
        help="recover rewards from your own preference pairs",
        description="Train IRL reward models (every method × seed as one batched ensemble) on "
        "a pairs file; write reward artifacts and held-out metrics.",
        epilog=EPILOG_IRL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    irl.add_argument("pairs", help="pairs file (.parquet, .jsonl or .json)")
    irl.add_argument(
        "--method",
        action="append",
        default=None,
        metavar="NAME",
        help="IRL method (repeatable); default: the irl.methods of the default config",
    )
    _add_set(irl)
    irl.add_argument("--out", required=True, help="output directory (reward artifacts, metrics.json, plots)")
    irl.set_defaults(func=cmd_irl)

    tune = sub.add_parser(
        "tune",
        help="search IRL hyperparameters (Ray Tune + Optuna, tracked in MLflow)",
        description="Search IRL hyperparameters on cached features: Optuna proposes, Ray Tune "
        "runs the trials, the best config is re-evaluated on fresh seeds on the test split.",
        epilog=EPILOG_TUNE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("search", nargs="?", help="search YAML (default: tune_configs/search_fa_irl.yaml)")
    source = tune.add_mutually_exclusive_group()
    source.add_argument(
        "--workdir",
        help="a finished `fairl run` workdir (its pairs and cached features); with "
        "`models:` in the search YAML, only where outputs and the MLflow store go",
    )
    source.add_argument("--pairs", help="your own pairs file (.parquet, .jsonl or .json), featurised into <out>")
    _add_set(tune)
    tune.add_argument(
        "--out",
        default=None,
        help="output directory (default: <workdir>/tune/<name>, or tune_runs/<name> with --pairs)",
    )
    tune.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: the workdir's sqlite store, or <out>/mlflow.db with --pairs)",
    )
    tune.add_argument("--address", default=None, help="Ray cluster to join (default: start a local Ray)")
    tune.add_argument(
        "--restart",
        action="store_true",
        help="start the search in <out> over (default: an interrupted search there is resumed)",
    )
    tune.add_argument(
        "--realign-top",
        type=int,
        default=0,
        metavar="N",
        help="after the search, re-RLHF a fresh π0 of the --workdir run with each of the N best rewards "
        "and record the toxicity table (MLflow children of the search run)",
    )
    tune.set_defaults(func=cmd_tune)

    score = sub.add_parser(
        "score",
        help="score texts with an extracted reward",
        description="Write one reward per input text, one per line (normalised scale of the artifact's card).",
    )
    score.add_argument(
        "reward_dir",
        help="a reward artifact directory (reward.safetensors + reward_card.json), or the MLflow model of one: "
        "models:/NAME/VERSION, models:/m-ID or runs:/RUN_ID/NAME (read from --tracking-uri)",
    )
    score.add_argument("texts_file", help="texts, one per line (.txt) or JSON lines with a 'text' field (.jsonl)")
    score.add_argument("--out", default=None, help="write scores here instead of standard output")
    score.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI of a models:/ or runs:/ reward (default: $MLFLOW_TRACKING_URI)",
    )
    score.set_defaults(func=cmd_score)

    configs = sub.add_parser(
        "configs",
        help="list the shipped experiment and search YAMLs, or print one to copy",
        description="Without NAME: each shipped YAML with its first comment line. With NAME (e.g. "
        "fa_irl_table1 or fa_irl_table1.yaml): print that file, e.g. `fairl configs default > my.yaml`.",
    )
    configs.add_argument("name", nargs="?", help="a shipped config to print")
    configs.set_defaults(func=cmd_configs)

    ui = sub.add_parser("ui", help="open the MLflow UI on a workdir's runs (bound to 127.0.0.1)")
    ui.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"workdir of a run (default: {DEFAULT_WORKDIR})")
    ui.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the workdir's sqlite store)")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fairl-ray")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), e.g. --set irl.margin=1.0 --set seeds='[0,1]'",
    )


def _fail(message: str) -> int:
    print(f"fairl: error: {message}", file=sys.stderr)
    return 2


def _quiet_environment() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # Tiny models: many single-threaded Ray tasks beat a few multi-threaded ones (DESIGN §6).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# -------------------------------------------------------------------------------------------------- run


def cmd_run(args) -> int:
    from fairl_ray.config import ConfigError

    try:
        from fairl_ray.config import config_to_yaml, load_config

        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        return _fail(f"invalid config: {err}")
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0
    from fairl_ray.orchestration.pipeline import Pipeline

    if args.dry_run:
        return print_plan(Pipeline(cfg, args.workdir, verify=args.verify).plan(), args.workdir)
    from fairl_ray.atomic_io import unwritable

    err = unwritable(args.workdir)
    if err is not None:
        return _fail(f"--workdir {args.workdir}: cannot write there ({_os_error(err)}); `fairl ui` can still show it")
    from fairl_ray.orchestration.tracking import StoreBusyError, default_tracking_uri, wait_for_store

    try:  # before Ray starts
        wait_for_store(args.tracking_uri or default_tracking_uri(args.workdir))
    except StoreBusyError as err:
        return _fail(str(err))
    print(f"[fairl] workdir: {Path(args.workdir).resolve()}")
    try:
        Pipeline(cfg, args.workdir, tracking_uri=args.tracking_uri, address=args.address, verify=args.verify).run()
    except PermissionError as err:  # part of the workdir is read-only (the check above saw only its top)
        return _fail(f"cannot write {_os_error(err)}")
    return 0


def _os_error(err: OSError) -> str:
    return f"{err.filename}: {err.strerror}" if err.filename else str(err)


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


# -------------------------------------------------------------------------------------------------- configs


def cmd_configs(args) -> int:
    from fairl_ray.config import tune_configs_dir

    shipped = sorted(tune_configs_dir().glob("*.yaml"))
    if args.name is None:
        width = max(len(p.name) for p in shipped)
        for path in shipped:
            print(f"{path.name:<{width}}  {_first_comment(path)}")
        print(f"\n[fairl] in {tune_configs_dir()}; `fairl configs NAME > my.yaml` copies one")
        return 0
    name = args.name if args.name.endswith(".yaml") else f"{args.name}.yaml"
    path = tune_configs_dir() / name
    if path not in shipped:
        return _fail(f"no shipped config {args.name!r}; choose one of: {', '.join(p.stem for p in shipped)}")
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


# -------------------------------------------------------------------------------------------------- irl


def cmd_irl(args) -> int:
    from fairl_ray.config import ConfigError
    from fairl_ray.pairs_io import PairsFileError, drop_degenerate, read_pairs, split_warnings
    from fairl_ray.recovery.data import TooFewPairs, hold_out

    try:
        cfg = load_irl_command_config(args.overrides, args.method)
    except ConfigError as err:
        return _fail(f"invalid config: {err}")
    if cfg.features.encoder == "hidden:base":
        return _fail(
            "invalid config: features.encoder: hidden:base means the pipeline's base policy; with "
            "`fairl irl` name it: hidden:<local causal LM directory>"
        )
    out = Path(args.out)
    problem = out_dir_problem(out)
    if problem:
        return _fail(problem)
    try:
        table, notes = drop_degenerate(read_pairs(args.pairs), args.pairs)
        train, test = hold_out(table, cfg.pairs.test_fraction, cfg.pairs.seed)  # the one split of `fairl irl`
    except (PairsFileError, OSError) as err:
        return _fail(str(err))
    except TooFewPairs as err:
        return _fail(f"{args.pairs}: {err}")
    notes += split_warnings(train, test, cfg.irl.methods, args.pairs)
    for note in notes:
        _warn(note)
    from fairl_ray.features import EncoderLoadError
    from fairl_ray.irl_on_pairs import run_irl_on_pairs
    from fairl_ray.report import analyses_report, metrics_table

    try:
        summary = run_irl_on_pairs(train, test, cfg, out)
    except EncoderLoadError as err:
        return _fail(str(err))
    if summary["removed"]:
        _warn(
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


def _warn(message: str) -> None:
    print(f"fairl: warning: {message}", file=sys.stderr)


def load_irl_command_config(overrides: list[str], methods: list[str] | None):
    """Config of ``fairl irl``: the pipeline's ``irl``, ``features``, ``seeds`` and ``pairs`` sections."""
    from fairl_ray.config import load_config

    extra = [f"irl.methods={json.dumps(methods)}"] if methods else []
    return load_config(None, extra + list(overrides))


# ------------------------------------------------------------------------------------------------- tune


def cmd_tune(args) -> int:
    from fairl_ray.config import ConfigError
    from fairl_ray.pairs_io import PairsFileError

    try:
        from fairl_ray.search import load_search_config

        cfg = load_search_config(args.search, args.overrides)
    except ConfigError as err:
        return _fail(f"invalid search config: {err}")
    from fairl_ray.orchestration.tracking import default_tracking_uri
    from fairl_ray.search import SearchStateError, check_resumable, load_models, run_search, summary_table

    if not (args.workdir or args.pairs or cfg.models):
        return _fail("say what to search: --workdir RUN, --pairs FILE, or models: in the search YAML")
    if args.realign_top < 0:
        return _fail("--realign-top: must be >= 0")
    realign_workdir = args.workdir or next((m["workdir"] for m in cfg.models if m.get("workdir")), None)
    if args.realign_top and (not realign_workdir or (cfg.models and "workdir" not in cfg.models[0])):
        return _fail("--realign-top needs a finished `fairl run` workdir as the (first) model, not a pairs file")
    if args.workdir or not args.pairs and realign_workdir:
        base = Path(args.workdir or realign_workdir)
        out = Path(args.out or base / "tune" / cfg.name)
        store = base
    else:
        out = Path(args.out or Path("tune_runs") / cfg.name)
        store = out
    problem = out_dir_problem(out) if args.out else None
    if problem:
        return _fail(problem)
    # Ctrl-C / SIGTERM must stop the search as an interruption (exit 130, parent run KILLED, no best.json);
    # Tune's own SIGINT handler would end fit() quietly and the search would be reported as complete.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        if not args.restart:
            check_resumable(cfg, out)
        models = load_models(cfg, args.workdir, args.pairs, out)
    except SearchStateError as err:
        return _fail(str(err))
    except ConfigError as err:
        return _fail(f"invalid search config: {err}")
    except (PairsFileError, ValueError, OSError) as err:
        return _fail(str(err))
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
        return _fail(str(err))
    print()
    print(summary_table(summary))
    print(
        f"\n[fairl] {summary['trials']['total']} configs ({summary['trials']['ok']} finished, "
        f"{summary['trials']['pruned']} pruned) in {summary['seconds']} s; outputs in {summary['out']} (best.json, "
        f"best_irl.yaml, trials.csv, search.png); MLflow run {summary['mlflow']['parent_run_id']} in "
        f"{summary['mlflow']['tracking_uri']}"
    )
    return 0


# ------------------------------------------------------------------------------------------------ score


def cmd_score(args) -> int:
    reward_dir, texts_file = Path(args.reward_dir), Path(args.texts_file)
    from_mlflow = args.reward_dir.startswith(("models:/", "runs:/"))
    if not from_mlflow and not (reward_dir / "reward_card.json").is_file():
        return _fail(f"{reward_dir} is not a reward artifact (no reward_card.json)")
    if not texts_file.is_file():
        return _fail(f"texts file not found: {texts_file}")
    problem = out_file_problem(Path(args.out)) if args.out else None
    if problem:
        return _fail(problem)
    try:
        texts = read_texts(texts_file)
    except UnicodeDecodeError as err:
        return _fail(f"{texts_file}: not a UTF-8 text file ({err})")
    except ValueError as err:
        return _fail(str(err))
    from fairl_ray.irl.reward import RewardModel

    try:
        if from_mlflow:  # the pyfunc of fairl_ray.irl.mlflow_model: the same RewardModel inside
            from fairl_ray.irl.mlflow_model import load_reward_model

            model = load_reward_model(args.reward_dir, args.tracking_uri).predict
        else:
            model = RewardModel.from_dir(reward_dir)
        if not texts:
            _warn(f"{texts_file} holds no texts; wrote no scores")
        scores = model(texts)
    except ValueError as err:
        return _fail(str(err))
    lines = "".join(f"{s:.6f}\n" for s in scores)
    if args.out:
        Path(args.out).write_text(lines)
    else:
        sys.stdout.write(lines)
    return 0


def read_texts(path: Path) -> list[str]:
    """Texts of ``fairl score``: one per line (split on "\\n" only, as ``wc -l`` counts), or JSON lines."""
    from fairl_ray.text_lines import iter_lines, lone_surrogate

    if path.suffix != ".jsonl":
        return list(iter_lines(path))
    texts = []
    for line_no, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {line_no}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise ValueError(f"{path}: line {line_no}, column 'text': missing or not a string")
        problem = lone_surrogate(obj["text"])
        if problem:
            raise ValueError(f"{path}: line {line_no}, column 'text': {problem}")
        texts.append(obj["text"])
    return texts


# --------------------------------------------------------------------------------------------------- ui


def cmd_ui(args) -> int:
    import shutil
    import subprocess
    import tempfile

    from fairl_ray.atomic_io import unwritable
    from fairl_ray.orchestration.tracking import (
        default_tracking_uri,
        read_only_copy,
        relocate_artifacts,
        sqlite_path,
        store_lock,
    )

    uri = args.tracking_uri or default_tracking_uri(args.workdir)
    if sqlite_path(uri) is not None and not sqlite_path(uri).is_file():
        return _fail(f"no MLflow store at {uri}; run `fairl run --workdir {args.workdir}` first")
    copy_dir = None
    if not args.tracking_uri and unwritable(args.workdir) is not None:  # an archived workdir: browse a copy
        copy_dir = tempfile.mkdtemp(prefix="fairl-ui-")
        uri = read_only_copy(uri, Path(args.workdir) / "mlartifacts", copy_dir)
        print(
            f"[fairl] {args.workdir} is read-only: showing a copy of its MLflow store ({copy_dir}); changes made "
            "in the UI are not kept",
            flush=True,
        )
    elif not args.tracking_uri:  # a copied workdir shows its own artifacts, not the original's
        with store_lock(uri):
            relocate_artifacts(uri, Path(args.workdir) / "mlartifacts")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    # MLflow 3.17 opens the GenAI view even with the experiment-kind tag; this parameter opens training runs (DESIGN §6)
    url = f"http://{args.host}:{args.port}/?workflowType=machine_learning"
    print(f"[fairl] MLflow UI on {url}  (Ctrl-C to stop)", flush=True)
    # Its own process group: the server and its workers are stopped together when fairl stops (Ctrl-C, SIGTERM).
    server = subprocess.Popen(command, start_new_session=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop_process_group(server)
        if copy_dir:
            shutil.rmtree(copy_dir, ignore_errors=True)


def stop_process_group(proc, grace_s: float = 10.0) -> None:
    """SIGTERM every process of ``proc``'s group (``proc`` leads it), then SIGKILL what is left after ``grace_s``."""
    import subprocess

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # the whole group is gone
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone; its workers may linger a moment
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(proc.pid):
                time.sleep(0.1)
            if not _group_alive(proc.pid):
                return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())

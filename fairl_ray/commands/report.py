"""``fairl report``: rebuild a run's (or a study's) report.html and report.md from its stored results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fairl_ray.commands.common import fail, out_dir_problem

EPILOG_REPORT = """\
examples:
  fairl report fairl_runs/default                 # writes fairl_runs/default/report.html and report.md
  fairl report /archive/table1 --out /tmp/table1  # a run you may not write into: the report goes elsewhere
  fairl report studies/margin                     # a study: studies/margin/study.json names its variants

what it reads:
  a run workdir     results.json (written at the end of `fairl run`) and the stage files it names: the toxicity
                    flags of every completion (for the rate's CI), each analysis's figure, the evaluate stage's
                    reward distributions and training curves. Nothing is retrained or rescored.
  a study directory study.json: {"name": ..., "axes": {"<dotted config key>": [values...]},
                    "variants": [{"name": ..., "overrides": {"<dotted key>": value}, "workdir": "<dir>"}]}
                    with each variant's workdir (relative to the study directory, or absolute) holding its
                    results.json. Per axis: each method's metrics against the axis value, mean ± std over seeds.

what it writes:
  report.html       one file, nothing fetched from the network: figures are inlined PNGs, the style inline. Open
                    it in any browser, mail it, archive it.
  report.md         the tables of `fairl run`'s report.md plus the statistics across seeds (mean and IQM with
                    95% bootstrap CIs) and, with toxicity, the rates' 95% CIs.

Across seeds the report shows what the RL community reports (Agarwal et al. 2021, `rliable`): the interquartile
mean (the mean of the middle 50% of seeds) and percentile-bootstrap 95% CIs over seeds; with few seeds (< 5) read
the intervals as rough. A run's report is also logged to its MLflow parent run (results.json names the store and
the run), unless --no-mlflow or --out is given or the store is gone.
"""


def add_parser(sub) -> None:
    """``fairl report``: its arguments and help."""
    parser = sub.add_parser(
        "report",
        help="rebuild a run's or a study's self-contained report.html (and report.md) from stored results",
        description="Write report.html (one self-contained file: tables, inlined figures, no network) and report.md "
        "from a finished run's results.json, or from a study directory's study.json and its variants' runs.",
        epilog=EPILOG_REPORT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="a run workdir (holds results.json) or a study directory "
                        "(holds study.json)")  # fmt: skip
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="write report.html and report.md into DIR (default: PATH itself)"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report to the run's MLflow parent run")
    parser.set_defaults(func=run)


def run(args) -> int:
    from fairl_ray.html_report import build_report

    path = Path(args.path)
    if not path.is_dir():
        return fail(f"{path}: no such directory (give a run workdir or a study directory)")
    if args.out:
        problem = out_dir_problem(Path(args.out))
        if problem:
            return fail(problem)
    try:
        html_path, md_path = build_report(path, args.out)
    except ValueError as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"{err.filename}: {err.strerror}" if err.filename else str(err))
    print(html_path)
    print(md_path)
    if args.no_mlflow or args.out or not (path / "results.json").is_file():
        return 0  # a report written elsewhere, or a study's, is no artifact of the run
    note = log_to_mlflow(path, [html_path, md_path])
    if note:
        print(f"[fairl] {note}")
    return 0


def log_to_mlflow(workdir: Path, files: list[Path]) -> str:
    """Log ``files`` to the run's MLflow parent run (results.json's ``mlflow``); returns a note saying what was done
    or why nothing was (no store, another store, the run is not in it)."""
    from fairl_ray.atomic_io import unwritable
    from fairl_ray.orchestration.tracking import default_tracking_uri, relocate_artifacts, sqlite_path, store_lock

    recorded = json.loads((workdir / "results.json").read_text()).get("mlflow") or {}
    uri, run_id = recorded.get("tracking_uri"), recorded.get("parent_run_id")
    if not uri or not run_id:
        return "results.json names no MLflow run: report not logged to MLflow"
    own = default_tracking_uri(workdir)
    if sqlite_path(own).is_file():
        # the workdir's own store, even when results.json names another: a copied or moved workdir carries its
        # store along, and its report must not land in the original's
        uri = own
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        return f"no MLflow store at {uri}: report not logged to MLflow"
    if unwritable(workdir) is not None:
        return f"{workdir} is read-only: report not logged to MLflow"
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        with store_lock(uri):
            # a copied store's artifact locations still name the original workdir: point them at this one
            relocate_artifacts(uri, workdir / "mlartifacts")
            client = MlflowClient(uri)
            for f in files:
                client.log_artifact(run_id, str(f))
    except MlflowException as err:
        return f"report not logged to MLflow run {run_id} in {uri}: {err.message}"
    return f"logged {', '.join(f.name for f in files)} to MLflow run {run_id} ({uri})"

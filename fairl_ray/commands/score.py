"""``fairl score``: rewards of texts from reward folders, a whole run's rewards, or MLflow models of them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fairl_ray.commands.common import fail, out_file_problem, warn
from fairl_ray.text_lines import read_texts

EPILOG_SCORE = """\
examples:
  fairl score fairl_runs/default/stages/irl-*/rewards/max_margin/seed0 texts.txt     # one column, one line per text
  fairl score fairl_runs/default/stages/irl-*/rewards texts.txt      # every reward of the run: a TSV with a header
  fairl score models:/fairl-max_margin/1 texts.txt --tracking-uri sqlite:///fairl_runs/default/mlflow.db

Several rewards (or a folder of them) encode the texts once per encoder, then apply each reward head.
"""


def add_parser(sub) -> None:
    """``fairl score``: its arguments and help."""
    parser = sub.add_parser(
        "score",
        help="score texts with extracted rewards",
        description="Write each text's reward (normalised scale of the artifact's card): one per line for one "
        "reward; a tab-separated table with a header (one column per reward) for several.",
        epilog=EPILOG_SCORE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "rewards",
        nargs="+",
        metavar="REWARD",
        help="a reward artifact directory (reward.safetensors + reward_card.json), a folder holding several (an IRL "
        "stage's rewards/), or the MLflow model of one: models:/NAME/VERSION, models:/m-ID or runs:/RUN_ID/NAME "
        "(read from --tracking-uri)",
    )
    parser.add_argument("texts_file", help="texts, one per line (.txt) or JSON lines with a 'text' field (.jsonl)")
    parser.add_argument("--out", default=None, help="write scores here instead of standard output")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI of a models:/ or runs:/ reward (default: $MLFLOW_TRACKING_URI)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from fairl_ray.irl.reward import RewardModel, find_rewards, score_texts

    texts_file = Path(args.texts_file)
    local: dict[str, Path] = {}
    remote: list[str] = []
    for spec in args.rewards:
        if spec.startswith(("models:/", "runs:/")):
            remote.append(spec)
            continue
        try:
            found = find_rewards(spec)
        except ValueError as err:
            return fail(str(err))
        clash = set(found) & set(local)
        if clash:  # two folders with a reward of the same name: name each by its full path instead
            found = {str(p): p for p in found.values()}
        local.update(found)
    if not texts_file.is_file():
        return fail(f"texts file not found: {texts_file}")
    problem = out_file_problem(Path(args.out)) if args.out else None
    if problem:
        return fail(problem)
    try:
        texts = read_texts(texts_file)
    except UnicodeDecodeError as err:
        return fail(f"{texts_file}: not a UTF-8 text file ({err})")
    except ValueError as err:
        return fail(str(err))
    if not texts:
        warn(f"{texts_file} holds no texts; wrote no scores")
    try:
        scores = score_texts({name: RewardModel.from_dir(path) for name, path in local.items()}, texts)
        for uri in remote:  # the pyfunc of fairl_ray.irl.mlflow_model: the same RewardModel inside, its own encoding
            from fairl_ray.irl.mlflow_model import load_reward_model

            scores[uri] = load_reward_model(uri, args.tracking_uri).predict(texts) if texts else []
    except ValueError as err:
        return fail(str(err))
    columns = list(scores.values())
    if len(columns) == 1:
        lines = "".join(f"{s:.6f}\n" for s in columns[0])
    else:
        lines = (
            "\t".join(scores)
            + "\n"
            + "".join("\t".join(f"{c[i]:.6f}" for c in columns) + "\n" for i in range(len(texts)))
        )
    if args.out:
        Path(args.out).write_text(lines)
    else:
        sys.stdout.write(lines)
    return 0

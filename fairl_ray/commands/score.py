"""``fairl score``: one reward per text from a reward folder or its MLflow model."""

from __future__ import annotations

import sys
from pathlib import Path

from fairl_ray.commands.common import fail, out_file_problem, warn
from fairl_ray.text_lines import read_texts


def add_parser(sub) -> None:
    """``fairl score``: its arguments and help."""
    parser = sub.add_parser(
        "score",
        help="score texts with an extracted reward",
        description="Write one reward per input text, one per line (normalised scale of the artifact's card).",
    )
    parser.add_argument(
        "reward_dir",
        help="a reward artifact directory (reward.safetensors + reward_card.json), or the MLflow model of one: "
        "models:/NAME/VERSION, models:/m-ID or runs:/RUN_ID/NAME (read from --tracking-uri)",
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
    reward_dir, texts_file = Path(args.reward_dir), Path(args.texts_file)
    from_mlflow = args.reward_dir.startswith(("models:/", "runs:/"))
    if not from_mlflow and not (reward_dir / "reward_card.json").is_file():
        return fail(f"{reward_dir} is not a reward artifact (no reward_card.json)")
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
    from fairl_ray.irl.reward import RewardModel

    try:
        if from_mlflow:  # the pyfunc of fairl_ray.irl.mlflow_model: the same RewardModel inside
            from fairl_ray.irl.mlflow_model import load_reward_model

            model = load_reward_model(args.reward_dir, args.tracking_uri).predict
        else:
            model = RewardModel.from_dir(reward_dir)
        if not texts:
            warn(f"{texts_file} holds no texts; wrote no scores")
        scores = model(texts)
    except ValueError as err:
        return fail(str(err))
    lines = "".join(f"{s:.6f}\n" for s in scores)
    if args.out:
        Path(args.out).write_text(lines)
    else:
        sys.stdout.write(lines)
    return 0

"""``fairl audit``: recover the reward of a model someone else aligned, given it and its base (no RLHF here)."""

from __future__ import annotations

import argparse

from fairl_ray.commands.run import add_run_options, run_pipeline

EPILOG_AUDIT = """\
examples:
  fairl audit --base ./base-model --aligned ./aligned-model --prompts prompts.jsonl --workdir runs/audit
  fairl audit --base EleutherAI/pythia-70m --aligned my-org/pythia-70m-rlhf \\
      --prompts hf:allenai/real-toxicity-prompts \\
      --prompt-field prompt.text --judge classifier:s-nlp/roberta_toxicity_classifier
  fairl audit                           # the shipped audit: the offline-real expert as a given model
  fairl audit --judge none --dry-run    # what would run, without a judge

What it does: π0 (--base) and π_E (--aligned) answer the same prompts on the generation pool; o+ = π_E's
completion, o− = π0's; the IRL methods are fit on frozen sentence features, and every completion is scored
under both models for the implicit reward β·(log π_E − log π0) (β = --beta: it only scales that reward).
Without a judge (the default when --base/--aligned are given) R* is unknown: the report shows only what needs
no ground truth — pair accuracy on held-out pairs, agreement between the rewards, dispersion over seeds, the
texts each reward scores highest and lowest and where they disagree — and says so. With --judge, the recovery
metrics (STARC, correlations with R*, classification) and the two models' toxicity are added. --heldout FILE
(.jsonl/.csv with text and label fields) scores each reward as a classifier of labelled texts, judge or not.
Models: local directories, hub ids (with hub access), .gguf files; trust_remote_code stays off.
Everything else is `fairl run`'s: resumable stages in --workdir, MLflow in <workdir>/mlflow.db (`fairl ui`),
each reward logged as an MLflow model (`fairl score models:/NAME/VERSION texts.txt`).
"""


def add_parser(sub) -> None:
    """``fairl audit``: its arguments and help."""
    parser = sub.add_parser(
        "audit",
        help="recover the reward of a given aligned model (π_E) from its base (π0)",
        description="Audit a model aligned elsewhere: given π0 and π_E, generate from both, recover π_E's reward "
        "with IRL beside the implicit reward β·log π_E/π0, and evaluate it (tune_configs/audit.yaml, with the "
        "flags below overriding its world).",
        epilog=EPILOG_AUDIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="audit YAML (default: tune_configs/audit.yaml)")
    models = parser.add_argument_group("the models (a local directory, a hub id or a .gguf file)")
    models.add_argument("--base", help="π0, the model before alignment (world.hf.policy)")
    models.add_argument("--aligned", help="π_E, the aligned model (world.hf.expert; run:<workdir> = a run's π_E)")
    models.add_argument("--beta", type=float, help="β of the implicit reward (world.hf.expert_beta; default 0.05)")
    data = parser.add_argument_group("prompts and ground truth")
    data.add_argument("--prompts", help="prompts: .jsonl / .csv file, pkg:<package>/<file> or hf:<dataset>")
    data.add_argument("--prompt-field", help="the prompts' text field, dotted for nested records (default: prompt)")
    data.add_argument(
        "--judge",
        help="R*: none, profanity_check, or classifier:<model> (default: none when --base or --aligned is given, "
        "else the YAML's)",
    )
    data.add_argument("--heldout", help="labelled texts (.jsonl/.csv with 'text' and 'label' fields) to classify")
    add_run_options(parser, workdir="fairl_runs/audit")
    parser.set_defaults(func=run)


def overrides(args) -> list[str]:
    """The flags as ``--set`` overrides of the audit YAML's world (before the user's own ``--set``, which win)."""
    sets = []
    given = args.base is not None or args.aligned is not None
    for key, value in (("policy", args.base), ("expert", args.aligned), ("expert_beta", args.beta)):
        if value is not None:
            sets.append(f"world.hf.{key}={value}")
    if args.prompts is not None:  # a file of the user's: no toxicity filter, whole texts as prompts
        sets += [
            f"world.hf.prompts.source={args.prompts}",
            f"world.hf.prompts.text_field={args.prompt_field or 'prompt'}",
            "world.hf.prompts.toxicity_field=null",
            "world.hf.prompts.unescape=false",
            "world.hf.prompts.min_words=1",
            "world.hf.prompts.split_half=false",
            "world.hf.prompts.max_prompt_words=null",
        ]
    elif args.prompt_field is not None:
        sets.append(f"world.hf.prompts.text_field={args.prompt_field}")
    judge = args.judge if args.judge is not None else ("none" if given else None)
    if judge is not None:
        kind, _, model = judge.partition(":")
        sets.append(f"world.hf.judge.kind={kind}")
        if model:
            sets.append(f"world.hf.judge.model={model}")
    heldout = args.heldout if args.heldout is not None else ("null" if given else None)
    if heldout is not None:
        sets.append(f"world.hf.heldout.source={heldout}")
        if heldout != "null":
            sets += [
                "world.hf.heldout.text_field=text",
                "world.hf.heldout.label_field=label",
                "world.hf.heldout.unescape=false",
            ]
    return sets


def run(args) -> int:
    from fairl_ray.commands.common import fail
    from fairl_ray.config import ConfigError, config_to_yaml, load_config, tune_config_path

    try:
        cfg = load_config(args.config or tune_config_path("audit.yaml"), overrides(args) + args.overrides)
    except ConfigError as err:
        return fail(f"invalid audit: {err}")
    if not cfg.world.given_expert:
        return fail("invalid audit: no aligned model: pass --aligned MODEL (or set world.hf.expert)")
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0
    return run_pipeline(cfg, args)

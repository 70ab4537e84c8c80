"""``fairl tune --realign-top N``: the N best rewards of a search re-align a fresh π0 (FA-IRL §5, downstream use).

For each of the N best finished configs of the search's primary model (a finished ``fairl run`` workdir): the
config is trained on the whole train split with the first fresh seed (``recovery.fit``, one reward
artifact), then a fresh copy of the run's π0 is RLHF'd with it and its toxicity measured on the run's held-out
prompts — by the pipeline's own re-RLHF stage (``pipeline.stage_realign`` → ``stages.realign``), as Ray tasks
side by side, with the run's ``realign.rlhf`` and ``evaluation`` settings. Outputs are content-addressed under
``<out>/realign/`` (a rerun reuses them). The toxicity table (base and expert from the run, then each re-aligned
model) goes to ``best.json``, ``realign.md`` and MLflow: one child run ``realign:top<k>`` per model under the
search's parent run.
"""

from __future__ import annotations

import json
from pathlib import Path

from fairl_ray.recovery.data import PairData
from fairl_ray.search.space import SearchConfig


def realign_top_rewards(
    cfg: SearchConfig,
    data: PairData,
    ranked: list[tuple[str, dict]],
    top: int,
    workdir: str | Path | None,
    out: Path,
    tracker,
    parent: str,
    log,
) -> dict:
    from fairl_ray.config import load_config, to_dict
    from fairl_ray.irl.hyperparameters import IRLConfig
    from fairl_ray.orchestration.pipeline import stage_realign
    from fairl_ray.orchestration.runner import StageFailed, StageRunner
    from fairl_ray.orchestration.stage_store import stage_key, stage_output
    from fairl_ray.recovery.fit import fit
    from fairl_ray.report import markdown_table

    if workdir is None:
        raise ValueError("--realign-top needs a finished `fairl run` workdir (its π0, prompts and world)")
    workdir = Path(workdir)
    results = json.loads((workdir / "results.json").read_text())
    run_cfg = load_config(workdir / "config.yaml")
    stages = results["stages"]
    ranked = ranked[:top]
    if len(ranked) < top:
        log(f"[tune] only {len(ranked)} finished configs to re-align (asked for {top})")
    seed = cfg.fresh_seeds[0]
    out.mkdir(parents=True, exist_ok=True)
    gpus = run_cfg.resources.gpus_per_worker  # a request from config (the autoscaler scales on requests)
    runner, table = StageRunner(), {}
    for name in ("base", "expert"):
        row = results.get("toxicity", {}).get(name)
        if row:
            table[name] = {**_tox(row), "trial": "(reference)"}
    for rank, (trial_id, irl) in enumerate(ranked, 1):
        member = IRLConfig(**{**irl, "seed": seed})
        reward_root = out / "rewards" / f"top{rank}-{trial_id.replace('/', '-')}"
        reward_dir = reward_root / "rewards" / member.method / f"seed{seed}"
        if not (reward_dir / "reward_card.json").is_file():
            reward_root.mkdir(parents=True, exist_ok=True)
            fit(data.without_validation(), [member], cfg.device).save(reward_root)
        key = stage_key(
            f"realign_top{rank}",
            {
                "rlhf": to_dict(run_cfg.realign.rlhf),
                "evaluation": to_dict(run_cfg.evaluation),
                "irl": to_dict(member),
                "trial": trial_id,
            },
            {"base_policy": stages["base_policy"]["key"], "prompts": stages["prompts"]["key"]},
        )
        output = stage_output(out, f"realign_top{rank}", key)
        kwargs = {
            "world_cfg": run_cfg.world,
            "base_dir": workdir / stages["base_policy"]["dir"],
            "reward": reward_dir,
            "prompts_dir": workdir / stages["prompts"]["dir"],
            "rlhf_cfg": run_cfg.realign.rlhf,
            "eval_cfg": run_cfg.evaluation,
        }
        label = f"realigned:top{rank}"
        if output.done:
            log(f"[tune] {label:<24} reused   {output.path}")
            table[label] = {
                **_tox(output.summary()),
                "trial": trial_id,
                "config": irl,
                "dir": str(output.path),
                "seconds": 0.0,
            }
            continue
        log(f"[tune] {label:<24} re-RLHF of a fresh π0 with the reward of {trial_id} ...")
        runner.launch(
            f"realign_top{rank}",
            output,
            stage_realign,
            kwargs,
            # a multi-worker re-RLHF is a Ray Train job whose workers hold the resources
            num_cpus=0 if run_cfg.realign.rlhf.on_ray_train else run_cfg.resources.cpus_per_task,
            num_gpus=0 if run_cfg.realign.rlhf.on_ray_train else gpus,
            context=(label, trial_id, irl),
        )
    # as the pipeline's waves: a failed re-RLHF cancels the others (finished ones are kept) and its error is raised
    try:
        for done in runner.finished():
            label, trial_id, irl = done.context
            table[label] = {
                **_tox(done.summary),
                "trial": trial_id,
                "config": irl,
                "dir": str(done.output.path),
                "seconds": round(done.ended - done.started, 1),
            }
            log(f"[tune] {label:<24} done     toxicity {table[label]['toxicity_rate']:.3f}")
    except StageFailed as failed:
        raise failed.cause from None

    existing = {
        r.info.run_name
        for r in tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=50000
        )
    }
    for label, row in table.items():
        if not label.startswith("realigned:"):
            continue
        name = f"realign:{label.split(':', 1)[1]}"
        if name in existing:
            continue
        child = tracker.start_run(
            name, parent_run_id=parent, tags={"fairl.kind": "tune_realign", "fairl.trial": row["trial"]}
        )
        tracker.log_params(child, {**row["config"], "seed": seed, "source_trial": row["trial"]})
        tracker.log_metrics(child, _tox(row))
        tracker.log_artifact(child, Path(row["dir"]) / "eval_completions.jsonl")
        tracker.end_run(child)
    tracker.log_metrics(parent, {f"toxicity.{k.replace(':', '.')}": v["toxicity_rate"] for k, v in table.items()})
    md = markdown_table(
        ["model", "config", "toxicity rate", "mean R*", "n"],
        [[k, v["trial"], f"{v['toxicity_rate']:.3f}", f"{v['mean_rstar']:.3f}", str(v["n"])] for k, v in table.items()],
    )
    (out / "realign.md").write_text(md + "\n")
    (out / "realign.json").write_text(json.dumps(table, indent=2, default=float))
    tracker.log_artifact(parent, out / "realign.md")
    tracker.log_artifact(parent, out / "realign.json")
    return {"top": top, "seed": seed, "toxicity": table}


def _tox(summary: dict) -> dict:
    return {k: summary[k] for k in ("toxicity_rate", "mean_rstar", "n")}

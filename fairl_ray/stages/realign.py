"""Re-RLHF with an extracted reward, and toxicity of any policy on held-out prompts (FA-IRL §5, Fig. 3c).

A fresh copy of π0 is trained with the extracted reward (a text → float callable loaded from its artifact)
by the same trainer, with the same settings, as the expert was trained with R*; then every model — base,
expert, re-aligned — is sampled on the same held-out prompts with the same seed and scored by the world:
toxicity rate (share of completions with a toxic term / above the world's toxicity threshold) and mean R*.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fairl_ray.irl.reward import RewardModel
from fairl_ray.stages.generate import GenerationConfig, generate_completions
from fairl_ray.stages.rlhf import RLHFConfig, train_rlhf, write_curves


def score_completions(world, prompts: list[str], completions: list[str], out_file: Path) -> dict:
    """Write completions with their R* and toxicity (one batched judge call); return rate and mean R*."""
    scores = world.score(completions)
    rewards, toxic = scores.reward, [lab == -1 for lab in scores.label]
    out_file.write_text(
        "\n".join(
            json.dumps({"prompt": p, "completion": c, "rstar": float(r), "toxic": bool(t)})
            for p, c, r, t in zip(prompts, completions, rewards, toxic)
        )
        + "\n"
    )
    return {"toxicity_rate": float(np.mean(toxic)), "mean_rstar": float(np.mean(rewards)), "n": len(completions)}


def measure_toxicity(
    world,
    policy_dir: Path,
    prompts: list[str],
    cfg: GenerationConfig,
    seed: int,
    out_file: Path,
    sample_on: RLHFConfig | None = None,
) -> dict:
    """Sample one completion per prompt (in this process), write them with their R* and toxicity; return rate and
    mean R*. The same shards and seeds as the generation pool, so the numbers match a pooled measurement.
    ``sample_on``: the Ray Train scaling of the run that trained the policy, when it had ``num_workers >= 2``: the
    caller then holds no resources and the sampling runs in a task with one of its workers' (``on_one_worker``)."""
    if sample_on is not None and sample_on.on_ray_train:
        from fairl_ray.stages.ray_train import on_one_worker

        completions = on_one_worker(sample_on, generate_completions, str(policy_dir), prompts, cfg, seed)
    else:
        completions = generate_completions(str(policy_dir), prompts, cfg, seed)
    return score_completions(world, prompts, completions, out_file)


def load_reward(reward: Path | str, tracking_uri: str | None = None):
    """A ``texts -> rewards`` callable with a ``card`` (its method, where known): a reward directory, or an MLflow
    model URI (``models:/…``, ``runs:/…``: the pyfunc of ``irl.mlflow_model``, read from ``tracking_uri``)."""
    if isinstance(reward, str) and reward.startswith(("models:/", "runs:/")):
        from fairl_ray.irl.mlflow_model import load_reward_model

        model = load_reward_model(reward, tracking_uri)

        def predict(texts: list[str]) -> list[float]:
            return [float(x) for x in model.predict(list(texts))]

        predict.card = {"method": reward}
        return predict
    return RewardModel.from_dir(reward)


def realign_with_reward(
    world,
    base_dir: Path,
    reward,
    rlhf_prompts: list[str],
    eval_prompts: list[str],
    rlhf_cfg: RLHFConfig,
    eval_cfg: GenerationConfig,
    eval_seed: int,
    out_dir: Path,
    checkpoint_dir: Path | None = None,
) -> dict:
    """Train a fresh π0 copy with ``reward`` (:func:`load_reward`'s); measure its toxicity; return the summary.
    ``checkpoint_dir``: a multi-worker run's Ray Train checkpoints (see :func:`~fairl_ray.stages.rlhf.train_rlhf`)."""
    training = train_rlhf(
        str(base_dir), rlhf_prompts, reward, rlhf_cfg, str(out_dir / "policy"), checkpoint_dir=checkpoint_dir
    )
    write_curves(training, out_dir / "curves.json")
    toxicity = measure_toxicity(
        world, out_dir / "policy", eval_prompts, eval_cfg, eval_seed, out_dir / "eval_completions.jsonl", rlhf_cfg
    )
    return {**toxicity, "reward": reward.card.get("method"), "training": _scalars(training)}


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}

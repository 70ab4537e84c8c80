"""The pipeline's plan: stages keyed only by what they use, and a pairs stage that says why it kept fewer pairs
than it had prompts (issue 9). Planning only: the cheap prompts stage runs for real, nothing else does."""

from fairl_ray.config import PairsConfig, load_config
from fairl_ray.orchestration.pipeline import Pipeline, pairs_note
from fairl_ray.orchestration.stage_store import StageWriter, stage_key, stage_output


def planned_keys(workdir, overrides) -> dict[str, str]:
    """Stage keys of the first three waves (base policy, prompts, expert RLHF, generate, reference toxicity)."""
    pipeline = Pipeline(load_config(None, overrides), workdir)
    plan = pipeline._plan()
    keys = {}
    for _ in range(3):
        for stage in next(plan):
            key = stage_key(stage.name, stage.config, {u: pipeline.outputs[u].key for u in stage.upstream})
            output = stage_output(workdir, stage.name, key)
            pipeline.outputs[stage.name] = output
            keys[stage.name] = key
            if stage.name == "prompts" and not output.done:
                writer = StageWriter(output)
                with writer as tmp:
                    writer.summary = stage.fn(tmp, **stage.kwargs)
    return keys


def test_changing_n_pairs_never_reruns_expert_rlhf_or_reference_toxicity(tmp_path):
    base = planned_keys(tmp_path, ["prompts.n_pairs=200"])
    more_pairs = planned_keys(tmp_path, ["prompts.n_pairs=260"])
    assert more_pairs["prompts"] != base["prompts"] and more_pairs["generate"] != base["generate"]
    assert more_pairs["expert_rlhf"] == base["expert_rlhf"]
    other_rlhf_prompts = planned_keys(tmp_path, ["prompts.n_pairs=200", "prompts.n_rlhf=300"])
    assert other_rlhf_prompts["expert_rlhf"] != base["expert_rlhf"]
    other_trainer = planned_keys(tmp_path, ["prompts.n_pairs=200", "expert_rlhf.seed=5"])
    assert other_trainer["expert_rlhf"] != base["expert_rlhf"]


def test_pairs_stage_says_why_it_kept_fewer_pairs_than_prompts():
    note = pairs_note({"prompts": 200, "pairs": 66, "identical": 40}, PairsConfig(toxic_to_nontoxic_fraction=1.0))
    assert note.startswith("[fairl] pairs: 66 of 200 prompts made a pair")
    assert "40 had identical" in note and "94 were left out by the pair mix pairs.toxic_to_nontoxic_fraction=1" in note
    capped = pairs_note(
        {"prompts": 100, "pairs": 50, "identical": 0}, PairsConfig(toxic_to_nontoxic_fraction=None, max_pairs=50)
    )
    assert "50 were left out by the cap pairs.max_pairs=50" in capped
    assert pairs_note({"prompts": 10, "pairs": 10, "identical": 0}, PairsConfig()) is None

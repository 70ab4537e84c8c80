"""The pipeline's plan: stages keyed only by what they use, and a pairs stage that says why it kept fewer pairs
than it had prompts (issue 9). Planning only: the cheap prompts stage runs for real, nothing else does."""

from fairl_ray.config import PairsConfig, load_config
from fairl_ray.orchestration.pipeline import Pipeline, pairs_note
from fairl_ray.orchestration.stage_store import StageWriter, stage_key, stage_output


def planned_keys(workdir, overrides) -> dict[str, str]:
    """Stage keys of the first three waves (base policy, prompts, expert RLHF, generate, reference toxicity)."""
    pipeline = Pipeline(load_config(None, overrides), workdir)
    plan = pipeline.waves()
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


def test_a_stage_reading_an_output_it_does_not_key_on_is_refused_at_plan_time(tmp_path):
    """check_inputs: an argument that reads another stage's output must name that stage upstream (or declare that
    the content it reads is hashed into its config); the real plan passes it, a miswired stage does not."""
    import pytest

    from fairl_ray.orchestration.pipeline import Stage, StageError, check_inputs

    pipeline = Pipeline(load_config(None), tmp_path)
    rows = pipeline.plan()  # the whole default plan, every stage checked
    assert len(rows) == 15 and rows[-1]["stage"].startswith("realign_")
    planned = pipeline.outputs
    reads_irl = {"reward_dir": planned["irl"].path / "rewards" / "max_margin" / "seed0"}
    check_inputs(Stage("x", print, {}, ["irl"], reads_irl), planned)
    with pytest.raises(StageError, match="argument reward_dir reads the irl stage's output, but irl is not in its"):
        check_inputs(Stage("x", print, {}, ["prompts"], reads_irl), planned)
    check_inputs(Stage("x", print, {}, [], reads_irl, keyed_by_content=("irl",)), planned)
    with pytest.raises(StageError, match=r"declared upstream \['nowhere'\] is not planned before it"):
        check_inputs(Stage("x", print, {}, ["nowhere"]), planned)


def test_stage_specifics_are_declared_on_the_stage_not_keyed_on_its_name(tmp_path):
    """What the runner does per stage comes from the stage's own fields: the pairs note, the IRL and RLHF tracking,
    the evaluate stage's per-method runs and its analyses' files, the prompts drafted by --dry-run."""
    from fairl_ray.orchestration import pipeline as pl

    pipeline = Pipeline(load_config(None), tmp_path)
    stages = {}
    for wave in pipeline.waves():
        for stage in wave:
            key = stage_key(stage.name, stage.config, {u: pipeline.outputs[u].key for u in stage.upstream})
            pipeline.outputs[stage.name] = output = stage_output(tmp_path, stage.name, key)
            stages[stage.name] = stage
            if stage.draft_in_plan:  # later waves read what it drew
                writer = StageWriter(output)
                with writer as tmp:
                    writer.summary = stage.fn(tmp, **stage.kwargs)
    assert stages["pairs"].note is pl.pairs_stage_note and stages["irl"].track is pl.track_irl
    assert stages["expert_rlhf"].track is pl.track_rlhf_curves is stages["realign_max_margin"].track
    assert stages["evaluate"].track is pl.track_method_runs and stages["evaluate"].metric_view({"x": 1}) == {}
    assert stages["prompts"].draft_in_plan and not stages["features"].draft_in_plan
    assert stages["generate"].metric_view({"completions": 3, "ok": True, "name": "x"}) == {"completions": 3}
    assert stages["evaluate"].written({"analyses": {}}) == []  # what it logs is named by its analyses' results


def test_multi_worker_rlhf_stages_hold_no_resources_of_their_own(tmp_path):
    """With ``num_workers: 2`` the expert and re-RLHF stage tasks only drive a Ray Train job (its workers ask for the
    CPUs/GPUs): planned as orchestrating stages, 0 CPU; with one worker they are model tasks as before."""

    def rlhf_stages(overrides):
        pipeline = Pipeline(load_config(None, overrides), tmp_path)
        stages = {}
        for wave in pipeline.waves():
            for stage in wave:
                key = stage_key(stage.name, stage.config, {u: pipeline.outputs[u].key for u in stage.upstream})
                pipeline.outputs[stage.name] = output = stage_output(tmp_path, stage.name, key)
                stages[stage.name] = stage
                if stage.draft_in_plan and not output.done:
                    writer = StageWriter(output)
                    with writer as tmp:
                        writer.summary = stage.fn(tmp, **stage.kwargs)
        return stages["expert_rlhf"], stages["realign_max_margin"]

    assert not any(s.orchestrates for s in rlhf_stages([]))
    expert, realign = rlhf_stages(["expert_rlhf.num_workers=2", "realign.rlhf.num_workers=2"])
    assert expert.orchestrates and realign.orchestrates

"""The generation pool: Ray actors that load each policy once and sample fixed-size, (seed, shard)-seeded shards."""

from pathlib import Path

import pytest

from fairl_ray.orchestration.actors import PoolSpec, generate_with_pool
from fairl_ray.stages.generate import GenerationConfig, generate_completions
from fairl_ray.worlds import get_world
from fairl_ray.worlds.synthetic import SyntheticWorldConfig

SMALL = SyntheticWorldConfig(sft_corpus_size=400, sft_epochs=1)


@pytest.fixture(scope="module")
def two_policies(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pool")
    a = get_world("synthetic", SMALL).build_base_policy(root / "a")
    b = get_world("synthetic", SyntheticWorldConfig(sft_corpus_size=400, sft_epochs=1, seed=1)).build_base_policy(
        root / "b"
    )
    return a, b


def test_completions_do_not_depend_on_worker_count(ray_session, two_policies):
    base, expert = two_policies
    prompts = get_world("synthetic", SMALL).make_prompts(70, seed=0)
    cfg = GenerationConfig(batch_size=16)  # 5 shards per policy, the last one short
    jobs = {"base": (str(base), prompts), "expert": (str(expert), prompts)}
    stats1, stats2 = {}, {}
    one = generate_with_pool(jobs, cfg, seed=7, spec=PoolSpec(workers=1), stats=stats1)
    two = generate_with_pool(jobs, cfg, seed=7, spec=PoolSpec(workers=2), stats=stats2)
    assert one == two
    assert len(one["base"]) == 70 and one["base"] != one["expert"]
    # ... and identical to sampling in this process, shard by shard.
    assert one["base"] == generate_completions(base, prompts, cfg, seed=7)
    assert one["expert"] == generate_completions(expert, prompts, cfg, seed=7)
    assert generate_with_pool(jobs, cfg, seed=8, spec=PoolSpec(workers=2))["base"] != one["base"]
    # Each worker loads each policy at most once; two workers shared the ten shards; all ran on the CPU.
    assert [w["loads"] for w in stats1["workers"]] == [2]
    assert sum(w["shards"] for w in stats2["workers"]) == 10 and len(stats2["workers"]) == 2
    assert all(w["loads"] <= 2 and set(w["devices"].values()) == {"cpu"} for w in stats2["workers"])


def test_empty_jobs(ray_session, two_policies):
    assert generate_with_pool({"base": (str(two_policies[0]), [])}, GenerationConfig(), seed=0) == {"base": []}

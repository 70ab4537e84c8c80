"""Every extension point's registry: each entry keeps its base contract, and a throwaway entry registered at run time
shows up where the application lists or validates names (so a new entry needs no second list anywhere)."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch

from fairl_ray.analyses import ANALYSES, EVALUATION_ANALYSES, render, write_outputs
from fairl_ray.analyses.base import Analysis
from fairl_ray.irl.failures import FAILURE_SOURCES, FailureSource
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.losses import BASE_LOSSES, FAILURE_LOSSES, PairLoss
from fairl_ray.irl.methods import METHOD_TABLE, Method
from fairl_ray.irl.objective import MemberHyperparameters
from fairl_ray.registry import Registry, UnknownNameError
from fairl_ray.stages.rlhf import RLHFConfig
from fairl_ray.stages.rlhf_algorithm import RLHF_ALGORITHMS, RLHFAlgorithm
from fairl_ray.worlds import WORLDS, World, WorldConfig, get_world
from fairl_ray.worlds.base import WorldPlugin
from fairl_ray.worlds.hf import JUDGES, HFJudgeConfig, Judge, judge_scores, make_judge


@contextlib.contextmanager
def registered(registry: Registry, name: str, entry):
    registry.register(name, entry)
    try:
        yield entry
    finally:
        registry.unregister(name)


def test_registry_basics():
    r: Registry[int] = Registry("widget")
    r.register("a", 1)
    r.register("b")(2)
    assert r.names() == ("a", "b") and list(r) == ["a", "b"] and r["b"] == 2 and "a" in r and len(r) == 2
    assert [] not in r  # an unhashable config value is simply unknown
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c'; choose one of a, b"):
        r.get("c")
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", 3)


# ---- IRL losses, failure sources, methods -----------------------------------------------------------------


def _hp(names, k=3):
    class HP:
        pass

    hp = HP()
    for n in names:
        setattr(hp, n, torch.full((k,), float(getattr(IRLConfig(), n))))
    return hp


@pytest.mark.parametrize("registry", [BASE_LOSSES, FAILURE_LOSSES], ids=["base", "failure"])
def test_every_loss_is_finite_and_differentiable_on_random_margins(registry):
    for name, loss in registry.items():
        assert isinstance(loss, PairLoss)
        assert all(h in IRLConfig.__dataclass_fields__ for h in loss.hyperparameters), name
        delta = (3 * torch.randn(3, 50, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
        mask = torch.rand(3, 50, generator=torch.Generator().manual_seed(1)) < 0.5
        value = loss(delta, _hp(loss.hyperparameters), mask if registry is FAILURE_LOSSES else None)
        assert value.shape == (3,) and torch.isfinite(value).all(), name
        (grad,) = torch.autograd.grad(value.sum(), delta)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_every_failure_source_gives_a_mask():
    r = torch.randn(2, 40, generator=torch.Generator().manual_seed(0))
    state = dict(gamma=torch.tensor([0.0, 0.2]), fraction=torch.tensor([0.2, 0.1]), y_chosen=None, y_rejected=None)
    for name, source in FAILURE_SOURCES.items():
        assert isinstance(source, FailureSource)
        assert all(h in IRLConfig.__dataclass_fields__ for h in source.hyperparameters), name
        mask = source(r, r.flip(-1), **state)
        assert mask.dtype == torch.bool and mask.shape == r.shape, name


def test_every_method_names_registered_parts_and_real_fields():
    for name, m in METHOD_TABLE.items():
        assert m.base_loss in BASE_LOSSES and (m.failure_source is None or m.failure_source in FAILURE_SOURCES)
        assert all(h in IRLConfig.__dataclass_fields__ for h in m.hyperparameters), name
        IRLConfig(method=name)  # valid with the defaults


def test_a_new_loss_and_method_are_one_registration_each():
    """A throwaway loss reading an existing field, and a method using it: the config, the objective and the search
    space's check know them with no other list edited."""
    from fairl_ray.search.space import _unread_fields

    squared = PairLoss(lambda delta, *, margin, mask=None: ((margin - delta).clamp_min(0) ** 2).mean(-1), ("margin",))
    with (
        registered(BASE_LOSSES, "sq", squared),
        registered(METHOD_TABLE, "squared_margin", Method("squared_margin", "sq", None, "throwaway")),
    ):
        cfg = IRLConfig(method="squared_margin", margin=0.5)
        assert METHOD_TABLE["squared_margin"].hyperparameters == ("margin",)
        hp = MemberHyperparameters([cfg, IRLConfig(method="max_margin")], "cpu")
        delta = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
        torch.testing.assert_close(hp.base(delta), torch.tensor([0.125, 0.4]))  # (0.5²+0)/2 and (0.8+0)/2
        assert _unread_fields({"margin": {"uniform": [0.1, 1]}}, {"method": "squared_margin"}) == []
    with pytest.raises(ValueError, match="unknown method 'squared_margin'"):
        IRLConfig(method="squared_margin")


# ---- worlds and judges --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORLDS.names())
def test_every_world_config_loads_with_defaults_and_builds_a_world(name):
    plugin = WORLDS.get(name)
    assert isinstance(plugin, WorldPlugin) and dataclasses.is_dataclass(plugin.config_class)
    assert isinstance(getattr(WorldConfig(), name), plugin.config_class)  # a section of its own, defaulted
    problem = plugin.check_selected(plugin.config_class())
    if problem:  # a world that needs settings beyond its defaults (hf: a policy) says which, at config load
        assert isinstance(problem, str) and problem.split(" ")[0].replace(".", "").isidentifier(), problem
        with pytest.raises(ValueError, match=f"world.{name}."):
            get_world(name)
        return
    world = get_world(name)
    assert isinstance(world, World)
    for method in ("make_prompts", "build_base_policy", "score", "prompt_sets"):
        assert callable(getattr(world, method))
    scores = world.score(["you are wonderful", "you are stupid"]) if name == "synthetic" else None
    if scores is not None:
        assert len(scores.reward) == len(scores.label) == len(scores.subtype) == 2


class _ToyWorld(World):
    name = "toy"

    def make_prompts(self, n, seed):
        return [f"p{seed}-{i}" for i in range(n)]

    def build_base_policy(self, out_dir):
        raise NotImplementedError

    def score(self, texts):
        from fairl_ray.worlds.base import Scores

        return Scores([0.0] * len(texts), [0] * len(texts), [None] * len(texts))


@dataclasses.dataclass
class _ToyConfig:
    size: int = 1


class _ToyPlugin(WorldPlugin):
    config_class = _ToyConfig

    def make_world(self, cfg):
        return _ToyWorld(cfg)


def test_a_registered_world_is_found_and_listed():
    with registered(WORLDS, "toy", _ToyPlugin()):
        assert get_world("toy").make_prompts(2, 0) == ["p0-0", "p0-1"]
        with pytest.raises(ValueError, match=r"unknown world 'nope'; choose one of synthetic, hf, texts, toy"):
            WorldConfig(name="nope")
    with pytest.raises(ValueError, match="unknown world 'toy'"):
        get_world("toy")


def test_every_judge_is_a_judge_and_a_new_one_is_selectable():
    for name, judge in JUDGES.items():
        assert issubclass(judge, Judge) and judge.default_reward in ("prob", "logit"), name

    class Constant(Judge):
        default_reward = "prob"

        def __init__(self, cfg):
            self.cfg = cfg

        def __call__(self, texts):
            return np.full(len(texts), 0.75), None

    with pytest.raises(ValueError, match="kind: must be one of profanity_check, classifier"):
        HFJudgeConfig(kind="constant")
    with registered(JUDGES, "constant", Constant):
        cfg = HFJudgeConfig(kind="constant")
        scores = judge_scores(make_judge(cfg), cfg, ["a", "b"])
        assert scores.reward == [-0.5, -0.5] and scores.label == [-1, -1]  # R* = 1 − 2·0.75; 0.75 > 0.5: toxic


# ---- RLHF algorithms ---------------------------------------------------------------------------------------


def test_rlhf_algorithms_and_a_new_one():
    assert RLHF_ALGORITHMS.names() == ("grpo", "rloo", "ppo")
    assert all(isinstance(a, RLHFAlgorithm) for a in RLHF_ALGORITHMS.values())

    class Noop(RLHFAlgorithm):
        def train(self, policy_dir, prompts, reward_fn, cfg, out_dir, *, progress, device, session):
            return {"algorithm": cfg.algorithm, "device": device, "rewards": reward_fn(prompts)}

    from fairl_ray.stages.rlhf import train_rlhf

    with pytest.raises(ValueError, match="algorithm: must be one of"):
        RLHFConfig(algorithm="noop")
    with registered(RLHF_ALGORITHMS, "noop", Noop()):
        out = train_rlhf("unused", ["a", "b"], lambda c: [1.0] * len(c), RLHFConfig(algorithm="noop"), device="cpu")
        assert out == {"algorithm": "noop", "device": "cpu", "rewards": [1.0, 1.0]}


def test_generation_engines_and_a_new_one(tmp_path):
    """hf is the default and needs nothing more; vllm names its package where it is not installed; a registered
    engine is what generate_completions runs, shard by shard with the shard seeds."""
    import importlib.util

    from fairl_ray.stages.generate import GenerationConfig, generate_completions, shard_seed
    from fairl_ray.stages.generation_engine import GENERATION_ENGINES, GenerationEngine, LoadedPolicy

    assert GENERATION_ENGINES.names()[:2] == ("hf", "vllm") and GenerationConfig().engine == "hf"
    assert all(isinstance(e, GenerationEngine) for e in GENERATION_ENGINES.values())
    assert GENERATION_ENGINES.get("hf").problem() is None
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ValueError, match="engine: vllm needs the vllm package"):
            GenerationConfig(engine="vllm")
    with pytest.raises(ValueError, match="engine: must be one of"):
        GenerationConfig(engine="echo")

    class Echo(LoadedPolicy):
        device = "cpu"

        def generate(self, prompts, cfg, seed):
            return [f"{p}|{seed}" for p in prompts]

        def logprobs(self, prompts, completions):
            return np.zeros(len(prompts)), np.zeros(len(prompts), dtype=np.int64)

    class EchoEngine(GenerationEngine):
        def load(self, policy_dir, device="auto", dtype="auto"):
            return Echo()

    with registered(GENERATION_ENGINES, "echo", EchoEngine()):
        out = generate_completions("unused", ["a", "b", "c"], GenerationConfig(engine="echo", batch_size=2), seed=7)
    assert out == [f"a|{shard_seed(7, 0)}", f"b|{shard_seed(7, 0)}", f"c|{shard_seed(7, 1)}"]


def test_vllm_request_seeds_are_per_position_and_reproducible():
    from fairl_ray.stages.generation_engine import request_seeds

    seeds = request_seeds(123, 5)
    assert seeds == request_seeds(123, 5) and len(set(seeds)) == 5
    assert request_seeds(123, 3) == seeds[:3]  # a request's seed depends on its position, not the shard's length
    assert request_seeds(124, 5) != seeds and all(0 <= s < 2**31 - 1 for s in seeds)


# ---- analyses ----------------------------------------------------------------------------------------------


def test_every_analysis_has_a_name_tables_and_the_evaluation_ones_compute():
    assert ANALYSES.names()[-1] == "subtype_transfer"
    for name, analysis in ANALYSES.items():
        assert isinstance(analysis, Analysis) and analysis.name == name and analysis.title, name
    for analysis in EVALUATION_ANALYSES:
        assert type(analysis).compute is not Analysis.compute, analysis.name


def test_a_registered_analysis_is_rendered_and_written(tmp_path):
    class Count(Analysis):
        name, title = "count", "Members"

        def compute(self, ctx):
            return {"n": len(ctx.members)}

        def tables(self, result):
            return [(self.title, ["n"], [[result["n"]]])]

    with registered(ANALYSES, "count", Count()) as count:
        assert render({"count": {"n": 3}}) == [("Members", ["n"], [[3]])]
        assert write_outputs(count, {"n": 3}, tmp_path) == ["count.csv"]
        assert (tmp_path / "count.csv").read_text().splitlines() == ["n", "3"]
    assert render({"count": {"n": 3}}) == []

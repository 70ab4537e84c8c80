"""Contract tests of the extension points (CONTRIBUTING.md): every registered method, loss, failure source, world,
judge, RLHF algorithm and analysis meets what the code that picks it up expects, so a new entry is checked here by
being registered, with no test of its own needed for the wiring."""

import dataclasses

import pytest
import torch

from fairl_ray.analyses import ANALYSES, EVALUATION_ANALYSES, SUBTYPE_TRANSFER, Analysis
from fairl_ray.irl.failures import FAILURE_SOURCES
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.losses import BASE_LOSSES, FAILURE_LOSSES
from fairl_ray.irl.methods import METHOD_TABLE, METHODS
from fairl_ray.irl.objective import MemberHyperparameters
from fairl_ray.stages.rlhf import ALGORITHMS, TRL_ALGORITHMS, RLHFConfig
from fairl_ray.worlds import REGISTRY, WORLD_NAMES, world_module
from fairl_ray.worlds.base import World

CONFIG_FIELDS = {f.name for f in dataclasses.fields(IRLConfig)}


@pytest.mark.parametrize("name", METHODS)
def test_every_method_names_registered_parts_and_its_losses_train(name):
    """A method's row names a registered base loss (and, for FA-IRL, a failure loss and source), reads only
    IRLConfig fields, and its losses are finite and differentiable on random reward gaps Δ [K, n]."""
    method = METHOD_TABLE[name]
    assert method.base_loss in BASE_LOSSES
    assert set(method.hyperparameters) <= CONFIG_FIELDS, set(method.hyperparameters) - CONFIG_FIELDS
    assert method.paper, "the report's method legend says where it comes from"
    hp = MemberHyperparameters([IRLConfig(method=name)], "cpu")
    delta = torch.randn(1, 16, requires_grad=True)
    loss = BASE_LOSSES[method.base_loss](delta, hp)
    assert loss.shape == (1,) and torch.isfinite(loss).all()
    (grad,) = torch.autograd.grad(loss.sum(), delta)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    if method.is_failure_aware:  # (its placebo has the dual-path head and no failure term)
        assert method.failure_source in FAILURE_SOURCES and method.base_loss in FAILURE_LOSSES
        mask = torch.rand(1, 16) < 0.5
        fail = FAILURE_LOSSES[method.base_loss](delta, hp, mask)
        assert fail.shape == (1,) and torch.isfinite(fail).all()


def test_an_unknown_method_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="max_margin"):
        IRLConfig(method="no_such_method")


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_every_world_has_a_config_with_defaults_and_a_world_factory(name):
    """A world module: ``CONFIG`` (a dataclass whose defaults validate) and ``make_world(cfg) -> World``; the
    pipeline config grows the section ``world.<name>`` from it."""
    from fairl_ray.config import load_config

    module = world_module(name)
    cfg = module.CONFIG()
    assert dataclasses.is_dataclass(cfg) and callable(module.make_world)
    assert isinstance(getattr(load_config(None).world, name), module.CONFIG)
    if name != "hf":  # the hf world's default names no policy to load; its factory is exercised in test_hf_world
        world = module.make_world(cfg)
        assert isinstance(world, World)
        for method in ("prompt_sets", "score", "heldout"):
            assert callable(getattr(world, method))
    assert REGISTRY[name] == module.__name__


def test_an_unknown_world_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="known worlds: synthetic"):
        world_module("nowhere")


def test_every_judge_is_a_class_the_hf_world_builds_from_its_config():
    from fairl_ray.worlds.hf import JUDGE_CLASSES, JUDGES, HFJudgeConfig, make_judge

    assert set(JUDGES) == set(JUDGE_CLASSES) and "profanity_check" in JUDGES
    for kind in JUDGES:
        assert HFJudgeConfig(kind=kind).kind == kind  # each kind validates
    with pytest.raises(ValueError, match="kind: must be one of profanity_check, classifier"):
        HFJudgeConfig(kind="oracle")
    probs, _ = make_judge(HFJudgeConfig(kind="profanity_check"))(["have a nice day", "you stupid idiot"])
    assert probs.shape == (2,) and 0 <= probs[0] < probs[1] <= 1


def test_every_rlhf_algorithm_is_trainable_by_name():
    """TRL's algorithms name a config and a trainer class TRL has; PPO is ours; RLHFConfig accepts exactly these."""
    import trl

    for config_class, trainer_class in TRL_ALGORITHMS.values():
        assert hasattr(trl, config_class) and hasattr(trl, trainer_class)
    assert set(ALGORITHMS) == {*TRL_ALGORITHMS, "ppo"}
    for algorithm in ALGORITHMS:
        assert RLHFConfig(algorithm=algorithm).algorithm == algorithm
    with pytest.raises(ValueError, match="algorithm"):
        RLHFConfig(algorithm="dpo")


def test_every_analysis_is_registered_once_under_its_name():
    """An analysis is an Analysis with a name (its key, its CSV and figure names) and a title, and computes
    something of its own; the evaluation runs EVALUATION_ANALYSES, the pipeline SUBTYPE_TRANSFER as a stage."""
    assert list(ANALYSES) == [a.name for a in (*EVALUATION_ANALYSES, SUBTYPE_TRANSFER)]
    for name, analysis in ANALYSES.items():
        assert isinstance(analysis, Analysis) and analysis.name == name and analysis.title
        if analysis is not SUBTYPE_TRANSFER:  # it trains (its own stage): no compute on evaluation scores
            assert type(analysis).compute is not Analysis.compute, name

"""The full-batch solver of the convex members (``fairl_ray/irl/exact.py``): optimality on hand-checkable problems,
batched == alone, validation loss against the Adam trainer, the dispatch and the load-time check."""

import math

import pytest
import torch
import torch.nn.functional as F

from fairl_ray.irl.exact import FINAL_WIDTH, NEWTON_ITERATIONS, fit_exact, solves_exactly
from fairl_ray.irl.heads import init_member_params
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.trainer import PairFeatures, split_validation, train_ensemble, train_single


def noisy_pairs(n: int, d: int = 8, seed: int = 0) -> PairFeatures:
    """Bradley–Terry pairs from a linear reward over random features: P(a chosen over b) = σ(r*(a) − r*(b)), so the
    pairs are not separable and the log-loss has a finite minimiser."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=torch.Generator().manual_seed(99))
    a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    first = (torch.rand(n, generator=g) < torch.sigmoid(a @ w - b @ w))[:, None]
    return PairFeatures(torch.where(first, a, b), torch.where(first, b, a))


def one_dim_pairs(*z: float) -> PairFeatures:
    """Pairs on 1-d features whose differences h(o⁺) − h(o⁻) are ``z``."""
    diffs = torch.tensor(z)[:, None]
    return PairFeatures(diffs.clamp_min(0), (-diffs).clamp_min(0))


def test_max_entropy_solution_has_zero_gradient():
    """Non-separable pairs: the solver's answer is the log-loss minimiser (its gradient vanishes), for each τ. With
    validation = training pairs and min_delta 0 the best iterate is the last one, i.e. the optimum."""
    train = noisy_pairs(300)
    cfgs = [
        IRLConfig(method="max_entropy", head="linear", temperature=t, epochs=5, patience=0, min_delta=0.0, seed=s)
        for t, s in ((1.0, 0), (0.5, 1))
    ]
    for cfg, member in zip(cfgs, train_ensemble(train, cfgs, val=train)):
        theta = member.params["base.w"].double().requires_grad_(True)
        delta = (train.chosen - train.rejected).double() @ theta
        (grad,) = torch.autograd.grad(F.softplus(-delta / cfg.temperature).mean(), theta)
        assert grad.norm() < 1e-6, grad.norm()
        assert member.epochs_run > 5  # the flow's 5 steps did not get there; Newton did
        assert member.best_epoch == member.epochs_run


@pytest.mark.parametrize(
    ("method", "extra", "optimum"),
    [
        # ½[max(0, 1 − θ) + max(0, 1 + θ/2)]: slope −¼ on [−2, 1], then +¼: θ* = 1, f* = ¾
        ("max_margin", dict(margin=1.0), 0.75),
        # ½[ℓ(θ) + ℓ(−θ/5)], ℓ(Δ) = max(0, 1 − Δ) + 2·max(0, −Δ): slope −0.2 on [0, 1], then +0.3: θ* = 1, f* = 0.8
        ("asymmetric_margin", dict(min_margin=1.0, penalty_factor=3.0), 0.8),
    ],
)
def test_hinge_solution_is_the_hand_computed_optimum(method, extra, optimum):
    z = (1.0, -0.5) if method == "max_margin" else (1.0, -0.2)
    train = one_dim_pairs(*z)
    cfg = IRLConfig(method=method, head="linear", epochs=3, patience=0, min_delta=0.0, **extra)
    (member,) = train_ensemble(train, [cfg], val=train)
    theta = float(member.params["base.w"][0])
    # the hinges are solved through a smoothing of width FINAL_WIDTH·margin, within width·ln 2 per kink of the truth
    assert theta == pytest.approx(1.0, abs=1e-2)
    assert member.curve["val_loss"][member.best_epoch - 1] == pytest.approx(optimum, abs=3 * FINAL_WIDTH)
    assert member.curve["val_loss"][member.best_epoch - 1] >= optimum - 1e-9  # nothing beats the optimum


def test_members_in_one_call_equal_members_alone():
    """Different losses, hyperparameters, seeds, budgets and stopping (one stopped by patience in the flow, one
    solved to the optimum by Newton): one batched call gives each what it gets alone."""
    train, val = split_validation(noisy_pairs(400, seed=1), 0.2)
    cfgs = [
        IRLConfig(method="max_entropy", head="linear", seed=0),
        IRLConfig(
            method="max_entropy", head="linear", temperature=0.3, temperature_fail=0.3, epochs=4, patience=0, seed=1
        ),
        IRLConfig(method="max_margin", head="linear", margin=0.5, patience=3, seed=2),
        IRLConfig(method="asymmetric_margin", head="linear", epochs=6, patience=0, seed=3),
        IRLConfig(method="max_margin", head="linear", epochs=2, patience=0, min_delta=0.0, seed=4),
    ]
    z, zv = train.chosen - train.rejected, val.chosen - val.rejected
    together = fit_exact(z, zv, cfgs)
    assert together[1].epochs_run > 4 and together[2].epochs_run < 800  # a Newton leg, and an early stop
    for cfg, batched in zip(cfgs, together):
        (alone,) = fit_exact(z, zv, [cfg])
        assert (batched.best_epoch, batched.epochs_run) == (alone.best_epoch, alone.epochs_run), cfg
        for name in alone.params:
            torch.testing.assert_close(batched.params[name], alone.params[name], rtol=1e-6, atol=1e-7)
        assert batched.curve["val_loss"] == pytest.approx(alone.curve["val_loss"], rel=1e-9, abs=1e-12)


def test_outputs_have_the_adam_trainers_format():
    train, val = split_validation(noisy_pairs(200), 0.1)
    cfg = IRLConfig(method="max_margin", head="linear", seed=5)
    (exact,) = train_ensemble(train, [cfg], val=val)
    (adam,) = train_ensemble(train, [IRLConfig(**{**cfg.to_dict(), "solver": "adam"})], val=val)
    assert {n: t.shape for n, t in exact.params.items()} == {n: t.shape for n, t in adam.params.items()}
    assert all(t.dtype == torch.float32 for t in exact.params.values())
    init = init_member_params("linear", 8, cfg.hidden_dim, False, torch.Generator().manual_seed(5))
    assert torch.equal(exact.params["base.b"], init["base.b"])  # the offset: no pair loss moves it
    assert set(exact.curve) == {"train_loss", "val_loss"}
    assert len(exact.curve["val_loss"]) == len(exact.curve["train_loss"]) == exact.epochs_run
    assert 1 <= exact.best_epoch <= exact.epochs_run
    assert exact.config is not adam.config and exact.config.solver == "auto"


def test_validation_loss_is_at_most_the_adam_trainers():
    """On the same pairs and validation split, every member's best validation loss is no worse than Adam's."""
    train, val = split_validation(noisy_pairs(600, d=16, seed=2), 0.2)
    cfgs = [
        IRLConfig(method=m, head="linear", epochs=150, seed=s)
        for m in ("max_entropy", "max_margin", "asymmetric_margin")
        for s in (0, 1)
    ]
    exact = train_ensemble(train, cfgs, val=val)
    adam = train_ensemble(train, [IRLConfig(**{**c.to_dict(), "solver": "adam"}) for c in cfgs], val=val)
    for e, a in zip(exact, adam):
        best = lambda m: m.curve["val_loss"][m.best_epoch - 1]  # noqa: E731
        assert best(e) <= best(a), (e.config.method, e.config.seed, best(e), best(a))


def test_separable_log_loss_stops():
    """Separable pairs: the log-loss has no minimiser; the solver stops (min_delta, patience or its Newton budget)
    with finite parameters."""
    train = one_dim_pairs(1.0, 2.0, 0.5)
    cfg = IRLConfig(method="max_entropy", head="linear", epochs=10, patience=0)
    (member,) = train_ensemble(train, [cfg], val=train)
    assert member.epochs_run <= 10 + NEWTON_ITERATIONS
    assert torch.isfinite(member.params["base.w"]).all() and member.params["base.w"][0] > 0


def test_dispatch_leaves_mlp_and_fa_members_on_adam():
    train = noisy_pairs(300, seed=3)
    mlp = IRLConfig(method="max_margin", head="mlp", hidden_dim=8, epochs=4, seed=0)
    released = IRLConfig(method="asymmetric_released", head="linear", epochs=4, seed=1)
    linear = IRLConfig(method="max_margin", head="linear", epochs=4, seed=2)
    fa = IRLConfig(method="fa_irl_mm_gt", head="linear", epochs=4, curriculum_rounds=2, seed=3)
    assert [solves_exactly(c, [mlp, released, linear]) for c in (mlp, released, linear)] == [False, False, True]
    # beside a dual-path member a method stays on Adam: it is compared with its FA-IRL variants under one optimiser
    assert not solves_exactly(linear, [linear, fa])
    assert solves_exactly(IRLConfig(**{**linear.to_dict(), "solver": "exact"}), [linear, fa])

    mixed = train_ensemble(train, [mlp, released, linear])
    alone = train_ensemble(train, [mlp, released])
    for m, a in zip(mixed[:2], alone):  # the Adam members: exactly what they were without the exact one
        assert (m.best_epoch, m.epochs_run) == (a.best_epoch, a.epochs_run)
        for n in a.params:
            assert torch.equal(m.params[n], a.params[n]), n
    tr, va = split_validation(train, 0.1)
    (solved,) = fit_exact(tr.chosen - tr.rejected, va.chosen - va.rejected, [linear])
    torch.testing.assert_close(mixed[2].params["base.w"], solved.params["base.w"])

    with_fa = train_ensemble(train, [linear, fa])
    for cfg, member in zip((linear, fa), with_fa):  # all Adam: the one-model reference loop gives the same
        single = train_single(train, cfg)
        assert (member.best_epoch, member.epochs_run) == (single.best_epoch, single.epochs_run)
        for n in single.params:
            torch.testing.assert_close(member.params[n], single.params[n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (dict(method="max_margin", head="mlp"), "mlp head makes the objective non-convex"),
        (dict(method="fa_irl_mm_gt", head="linear"), "dual-path"),
        (dict(method="fa_irl_me_placebo", head="linear"), "dual-path"),
        (dict(method="asymmetric_released", head="linear"), "unbounded below"),
        (dict(method="asymmetric_margin", head="linear", min_margin=0.0), "θ = 0"),
    ],
)
def test_exact_for_a_non_convex_member_is_a_load_time_error(fields, reason):
    with pytest.raises(ValueError, match=rf"irl\.solver: exact needs a convex member.*{reason}"):
        IRLConfig(solver="exact", **fields)
    IRLConfig(solver="auto", **fields)  # auto takes Adam for them


def test_solver_field_is_checked_in_the_stage_config():
    from fairl_ray.config import load_config

    with pytest.raises(ValueError, match=r"solver.*unknown solver 'newton'"):
        load_config(None, ["irl.solver=newton"])
    with pytest.raises(ValueError, match=r"solver: exact needs a convex member"):
        load_config(None, ["irl.solver=exact", "irl.head=linear", "irl.methods=[max_margin, fa_irl_mm_gt]"])
    cfg = load_config(None, ["irl.solver=exact", "irl.head=linear", "irl.methods=[max_margin, max_entropy]"])
    assert {m.solver for m in cfg.irl.member_configs([0, 1])} == {"exact"}
    assert math.isfinite(FINAL_WIDTH)

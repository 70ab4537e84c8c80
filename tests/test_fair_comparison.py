"""A fair FA-IRL comparison by construction: one budget for every method, placebos that differ only in the
failures, eq. 3 as printed (joint) against hand-computed gradients, dataset-level bottom-k."""

import math

import pytest
import torch
from test_fa_irl import noisy_pairs  # pairs from a nonlinear reward with 15% of preferences reversed

from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.methods import comparisons, placebo_of
from fairl_ray.irl.objective import MemberHyperparameters, pair_objective
from fairl_ray.irl.trainer import train_ensemble, train_single


@pytest.mark.parametrize("loss, base", [("mm", "max_margin"), ("me", "max_entropy")])
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_without_failures_an_fa_method_trains_to_its_base_methods_parameters(loss, base, head):
    """λ_0 = 0 under the split routing (and the split placebo) is the base method, parameter for parameter, under the
    same budget. On the first landing's trainer this failed twice over: the FA member could not stop before its
    curriculum while the base could, and L_fail trained R_F whatever λ_t was."""
    train = noisy_pairs(600)
    common = dict(head=head, hidden_dim=16, epochs=40, curriculum_rounds=8, patience=3, seed=5)
    cfgs = [
        IRLConfig(method=base, **common),
        IRLConfig(method=f"fa_irl_{loss}_placebo_split", **common),
        IRLConfig(method=f"fa_irl_{loss}_gt_split", lambda_0=0.0, **common),
        IRLConfig(method=f"fa_irl_{loss}_margin_split", lambda_0=0.0, **common),
    ]
    ref, *others = train_ensemble(train, cfgs)
    assert ref.best_epoch >= 8
    for m in others:
        assert (m.best_epoch, m.epochs_run) == (ref.best_epoch, ref.epochs_run), m.config.method
        for name, value in ref.params.items():
            torch.testing.assert_close(m.params[name], value, rtol=1e-5, atol=1e-6, msg=f"{m.config.method} {name}")
        readout = [n for n in m.params if n.startswith("fail.") and n not in ("fail.w1", "fail.b1")]
        assert all(float(m.params[n].abs().max()) == 0.0 for n in readout)  # R_F ≡ 0: nothing trained it
    # the one-model reference agrees with the batched trainer
    single = train_single(train, cfgs[1])
    for name, value in ref.params.items():
        torch.testing.assert_close(single.params[name], value, rtol=1e-4, atol=1e-5)


def test_joint_placebo_is_an_architecture_control_and_fa_methods_differ_from_it():
    """The joint placebo trains R_F by L_base under the penalty (eq. 3 without L_fail, over all parameters): not the
    base method, and not the FA method either — the FA method differs from it only in the failure term."""
    train = noisy_pairs(600)
    common = dict(head="mlp", hidden_dim=16, epochs=30, curriculum_rounds=8, patience=3, seed=1)
    base, placebo, fa = train_ensemble(
        train, [IRLConfig(method=m, **common) for m in ("max_margin", "fa_irl_mm_placebo", "fa_irl_mm_gt")]
    )
    assert float(placebo.params["fail.w2"].abs().max()) > 0  # L_base reached R_F
    n = min(len(placebo.curve["lambda"]), len(fa.curve["lambda"]))  # (they may stop at different epochs)
    assert placebo.curve["lambda"][:n] == fa.curve["lambda"][:n]  # the same λ_t schedule, so the same penalty
    assert max(placebo.curve["failure_fraction"]) == 0.0
    assert max(fa.curve["failure_fraction"]) > 0
    assert not torch.allclose(fa.params["fail.w2"], placebo.params["fail.w2"])
    assert placebo_of("fa_irl_mm_gt") == "fa_irl_mm_placebo"
    assert placebo_of("fa_irl_mm_margin_split") == "fa_irl_mm_placebo_split"
    assert ("fa_irl_mm_gt", "fa_irl_mm_placebo", "placebo") in comparisons(
        ["max_margin", "fa_irl_mm_gt", "fa_irl_mm_placebo"]
    )


def _three_pairs(method: str, lam: float):
    """A linear dual-path head on 3 hand-made pairs: h(o⁻) = 0, so Δ_i = (θ_D + θ_F)·h(o⁺_i)."""
    theta_D = torch.tensor([[0.5, -0.2]], requires_grad=True)
    theta_F = torch.tensor([[0.1, 0.3]], requires_grad=True)
    chosen = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])  # Δ = 0.6, 0.1, 1.3
    rejected = torch.zeros(3, 2)
    cfg = IRLConfig(method=method, head="linear", margin=0.8, margin_fail=1.6, weight_fail=2.0)
    terms = pair_objective(
        MemberHyperparameters([cfg], "cpu"),
        (chosen @ theta_D.T).T,
        (rejected @ theta_D.T).T,
        (chosen @ theta_F.T).T,
        (rejected @ theta_F.T).T,
        fail_weights=[theta_F],
        lam=torch.tensor([lam]),
        gamma=torch.tensor([0.5]),  # F_t = {Δ ≤ 0.5} = {pair 2}; no labels, so no supervised failures
    )
    g_D, g_F = torch.autograd.grad(terms.grad_loss.sum(), [theta_D, theta_F])
    return terms, g_D[0], g_F[0]


def test_joint_routing_is_eq3_as_printed_against_hand_computed_gradients():
    """L = mean max(0, 0.8 − Δ) + λ·2·max(0, 1.6 − Δ_2) + (λ/2)‖θ_F‖², λ = 3, one backward over all parameters.

    By hand: ∂L_base/∂θ = −(d_1 + d_2)/3 = −[1/3, 1/3] (pair 3 is past the margin); ∂L_fail/∂θ = −2·d_2 = [0, −2];
    ∂penalty/∂θ_F = λ·θ_F = [0.3, 0.9]. L_fail reaches θ_D, λ scales it and the penalty."""
    terms, g_D, g_F = _three_pairs("fa_irl_mm_gt", lam=3.0)
    assert terms.n_failures.item() == 1
    base = (0.2 + 0.7 + 0.0) / 3
    assert terms.base.item() == pytest.approx(base)
    assert terms.fail.item() == pytest.approx(2 * 1.5)
    assert terms.total.item() == pytest.approx(base + 3.0 * 3.0 + 1.5 * (0.1**2 + 0.3**2))
    expected_D = torch.tensor([-1 / 3, -1 / 3 - 3.0 * 2.0])
    torch.testing.assert_close(g_D, expected_D)
    torch.testing.assert_close(g_F, expected_D + torch.tensor([0.3, 0.9]))
    # doubling λ doubles exactly the failure and penalty parts of the gradient
    _, g_D2, g_F2 = _three_pairs("fa_irl_mm_gt", lam=6.0)
    torch.testing.assert_close(g_D2 - g_D, torch.tensor([0.0, -6.0]))
    torch.testing.assert_close(g_F2 - g_F, torch.tensor([0.0, -6.0]) + torch.tensor([0.3, 0.9]))


def test_split_routing_on_the_same_three_pairs():
    """Split: L_base reaches θ_D only, L_fail θ_F only and without λ, the penalty is not in the gradient."""
    terms, g_D, g_F = _three_pairs("fa_irl_mm_gt_split", lam=3.0)
    torch.testing.assert_close(g_D, torch.tensor([-1 / 3, -1 / 3]))
    torch.testing.assert_close(g_F, torch.tensor([0.0, -2.0]))
    assert terms.total.item() == pytest.approx((0.9 / 3) + 9.0 + 1.5 * 0.1)  # the logged value is eq. 3 all the same


def test_dataset_level_bottom_k_flags_a_fraction_of_all_pairs_per_round():
    """``failure_ranking: dataset``: each round flags exactly ⌊f_t·N⌋ of the N training pairs (each pair is in one
    minibatch per epoch), where per-minibatch ranking flags ⌊f_t·b⌋ of each minibatch."""
    train = noisy_pairs(330, seed=2)  # 297 train pairs after the 10% validation slice
    common = dict(head="linear", epochs=6, curriculum_rounds=5, patience=0, failure_fraction_start=0.5)
    by_set, by_batch = train_ensemble(
        train,
        [
            IRLConfig(method="fa_irl_me_margin", failure_ranking="dataset", **common),
            IRLConfig(method="fa_irl_me_margin", failure_ranking="minibatch", **common),
        ],
    )
    for t in range(6):
        f = max(0.5 * (1 - t / 5), 0.0)
        assert by_set.curve["failure_fraction"][t] == pytest.approx(math.floor(f * 297 + 1e-9) / 297), t
        per_batch = (9 * math.floor(f * 32 + 1e-9) + math.floor(f * 9 + 1e-9)) / 297
        assert by_batch.curve["failure_fraction"][t] == pytest.approx(per_batch), t
    single = train_single(train, IRLConfig(method="fa_irl_me_margin", failure_ranking="dataset", **common))
    assert single.curve["failure_fraction"] == pytest.approx(by_set.curve["failure_fraction"])


@pytest.mark.parametrize("routing", ["", "_split"])
def test_the_placebo_is_its_fa_method_when_that_finds_no_failure(routing):
    """Only the failures differ: an FA-IRL member whose curriculum flags nothing (bottom-k fraction 0) trains to its
    placebo's parameters exactly, penalty and all, in both routings."""
    train = noisy_pairs(500, seed=3)
    common = dict(head="mlp", hidden_dim=16, epochs=25, curriculum_rounds=6, patience=3, seed=2)
    no_failures = dict(failure_fraction_start=0.0, failure_fraction_end=0.0)
    fa, placebo = train_ensemble(
        train,
        [
            IRLConfig(method=f"fa_irl_mm_margin{routing}", **no_failures, **common),
            IRLConfig(method=f"fa_irl_mm_placebo{routing}", **common),
        ],
    )
    assert max(fa.curve["failure_fraction"]) == 0.0
    for name, value in placebo.params.items():
        torch.testing.assert_close(fa.params[name], value, msg=name)

"""IRL losses, failure masks and schedules pinned to hand-computed values; FA-IRL Theorem 1 dominance."""

import math

import pytest
import torch

from fairl_ray.irl.failures import (
    bottom_k_failure_mask,
    margin_failure_mask,
    sample_failures,
    supervised_failure_mask,
)
from fairl_ray.irl.hyperparameters import METHODS, IRLConfig
from fairl_ray.irl.losses import (
    asymmetric_margin_loss,
    asymmetric_released_loss,
    fa_irl_loss,
    failure_max_entropy_loss,
    failure_max_margin_loss,
    masked_mean,
    max_entropy_loss,
    max_margin_loss,
)
from fairl_ray.irl.schedules import failure_fraction_schedule, gamma_schedule, lambda_schedule

T = torch.tensor


# ---------------------------------------------------------------------------------------------------- losses
def test_max_margin_hand_values():
    # Δ = [1.0, 0.5, -0.2], M = 0.8 → max(0, M − Δ) = [0, 0.3, 1.0]; mean = 1.3 / 3
    d = T([1.0, 0.5, -0.2])
    assert max_margin_loss(d, 0.8).item() == pytest.approx(1.3 / 3, abs=1e-6)
    assert torch.allclose(max_margin_loss(d, 0.8, reduction="none"), T([0.0, 0.3, 1.0]), atol=1e-6)
    # masked mean over the last two pairs: (0.3 + 1.0) / 2; an empty mask gives 0, not NaN
    assert max_margin_loss(d, 0.8, mask=T([False, True, True])).item() == pytest.approx(0.65, abs=1e-6)
    assert max_margin_loss(d, 0.8, mask=T([False, False, False])).item() == 0.0


def test_max_margin_per_member_hyperparameters():
    # member 0: Δ=[1, .5], M=.8 → [0, .3] → .15 ; member 1: Δ=[0, 0], M=1 → [1, 1] → 1
    d = T([[1.0, 0.5], [0.0, 0.0]])
    out = max_margin_loss(d, T([0.8, 1.0]))
    assert out.shape == (2,)
    assert torch.allclose(out, T([0.15, 1.0]), atol=1e-6)


def test_max_entropy_hand_values():
    # −log σ(x) = log(1 + e^{−x}); Δ=[0, 2], τ=1 → [ln 2, ln(1+e^{-2})] = [0.693147, 0.126928]; mean 0.410038
    d = T([0.0, 2.0])
    assert max_entropy_loss(d, 1.0).item() == pytest.approx(0.410038, abs=1e-5)
    # τ = 0.5 sharpens: Δ=1 → log(1 + e^{-2}) = 0.126928
    assert max_entropy_loss(T([1.0]), 0.5).item() == pytest.approx(0.126928, abs=1e-5)
    # stable for large |Δ|: Δ = −100 → 100, Δ = 100 → ~0
    assert torch.allclose(max_entropy_loss(T([-100.0, 100.0]), 1.0, reduction="none"), T([100.0, 0.0]), atol=1e-4)


def test_asymmetric_released_hand_values():
    # −x if x > 0, −2x if x < 0: Δ=[2, −1, 0] → [−2, 2, 0]; mean 0 ; unbounded below
    d = T([2.0, -1.0, 0.0])
    assert torch.allclose(asymmetric_released_loss(d, reduction="none"), T([-2.0, 2.0, 0.0]))
    assert asymmetric_released_loss(d).item() == pytest.approx(0.0, abs=1e-7)
    assert asymmetric_released_loss(T([1e6])).item() == pytest.approx(-1e6)


def test_asymmetric_margin_hand_values():
    # max(0, m − Δ) + (c − 1)·max(0, −Δ), m = c = 5: Δ=6 → 0; Δ=2 → 3; Δ=−1 → 6 + 4 = 10 ; mean 13/3
    d = T([6.0, 2.0, -1.0])
    assert torch.allclose(asymmetric_margin_loss(d, 5.0, 5.0, reduction="none"), T([0.0, 3.0, 10.0]))
    assert asymmetric_margin_loss(d, 5.0, 5.0).item() == pytest.approx(13 / 3, abs=1e-6)
    # continuous at Δ = 0 (value m from both sides) and slopes 1 / c on either side
    eps = 1e-3
    left = asymmetric_margin_loss(T([-eps]), 5.0, 5.0).item()
    right = asymmetric_margin_loss(T([eps]), 5.0, 5.0).item()
    assert left == pytest.approx(5 + 5 * eps, abs=1e-5) and right == pytest.approx(5 - eps, abs=1e-5)
    # c = 2: same gradient as the released loss wherever Δ < m
    d = T([-3.0, -0.5, 0.5, 3.0], requires_grad=True)
    g1 = torch.autograd.grad(asymmetric_margin_loss(d, 100.0, 2.0), d)[0]
    g2 = torch.autograd.grad(asymmetric_released_loss(d), d)[0]
    assert torch.allclose(g1, g2)


def test_failure_loss_is_stricter():
    # MM: M_fail = 1.6 on pairs {1, 2}: Δ=[.5, −.2] → [1.1, 1.8] → 1.45; times weight 2 → 2.9
    d = T([1.0, 0.5, -0.2])
    mask = T([False, True, True])
    assert failure_max_margin_loss(d, 0.8, 1.6, 1.0, mask=mask).item() == pytest.approx(1.45, abs=1e-6)
    assert failure_max_margin_loss(d, 0.8, 1.6, 2.0, mask=mask).item() == pytest.approx(2.9, abs=1e-6)
    # ME, τ_fail = 0.5 < τ = 1, mis-ordered pair Δ = −1: log(1+e^2) = 2.126928 > base log(1+e) = 1.313262
    assert failure_max_entropy_loss(T([-1.0]), 1.0, 0.5, 1.0, mask=T([True])).item() == pytest.approx(
        2.126928, abs=1e-5
    )
    # correctly ordered failure Δ = +1: τ_fail alone would give log(1+e^-2) = 0.126928 < base log(1+e^-1) = 0.313262;
    # the max keeps the base temperature there and w_fail = 2 makes it stricter: 0.626523
    assert failure_max_entropy_loss(T([1.0]), 1.0, 0.5, 1.0, mask=T([True])).item() == pytest.approx(0.313262, abs=1e-5)
    assert failure_max_entropy_loss(T([1.0]), 1.0, 0.5, 2.0, mask=T([True])).item() == pytest.approx(0.626523, abs=1e-5)
    assert failure_max_entropy_loss(T([-1.0]), mask=T([False])).item() == 0.0


@pytest.mark.parametrize("family", ["mm", "me"])
def test_default_failure_loss_stricter_than_base_on_both_signs(family):
    """With the default hyperparameters L_fail(Δ) > L_base(Δ) for every Δ < M_fail (MM) / every Δ (ME)."""
    c = IRLConfig()
    d = torch.linspace(-3.0, 1.5, 91)  # both signs of Δ, below M_fail = 1.6
    if family == "mm":
        fail = failure_max_margin_loss(d, c.margin, c.margin_fail, c.weight_fail, reduction="none")
        base = max_margin_loss(d, c.margin, reduction="none")
    else:
        d = torch.linspace(-3.0, 8.0, 111)
        fail = failure_max_entropy_loss(d, c.temperature, c.temperature_fail, c.weight_fail, reduction="none")
        base = max_entropy_loss(d, c.temperature, reduction="none")
    assert (fail > base).all(), d[fail <= base]
    assert (d > 0).any() and (d < 0).any()


def test_masked_mean_and_fa_loss():
    assert masked_mean(T([[1.0, 2.0, 3.0]]), T([[True, False, True]])).item() == pytest.approx(2.0)
    # eq. 3: base 1 + λ 10 · fail 0.5 + λ/2 · ‖θ_F‖² 0.2 = 1 + 5 + 1 = 7
    assert fa_irl_loss(T(1.0), T(0.5), 10.0, T(0.2)).item() == pytest.approx(7.0)


# ---------------------------------------------------------------------------------------------- failures
def test_margin_failure_mask():
    d = T([-1.0, 0.0, 0.3, 1.0])
    assert margin_failure_mask(d, 0.3).tolist() == [True, True, True, False]
    assert margin_failure_mask(d, 0.0).tolist() == [True, True, False, False]
    per_member = margin_failure_mask(torch.stack([d, d]), T([-1.0, 0.5]))
    assert per_member.tolist() == [[True, False, False, False], [True, True, True, False]]


def test_supervised_failure_mask_with_unknown_labels():
    # pair 0: both labelled, both right → ok; pair 1: chosen y=+1 but R=−1 → fail;
    # pair 2: chosen unknown, rejected y=−1 but R=+0.2 → fail; pair 3: chosen right, rejected unknown → ok;
    # pair 4: chosen y=+1, R = 0 exactly → fail (y·R ≤ 0);
    # pair 5: a noisy preference (toxic chosen scored +2, non-toxic rejected scored −2): both outputs are on the
    # wrong side of zero, but raising Δ (all L_fail can do) would not correct them → not a failure
    r_c = T([1.0, -1.0, 0.5, 0.5, 0.0, 2.0])
    r_r = T([-1.0, -1.0, 0.2, 0.3, -1.0, -2.0])
    y_c = T([1.0, 1.0, 0.0, 1.0, 1.0, -1.0])
    y_r = T([-1.0, -1.0, -1.0, 0.0, -1.0, 1.0])
    assert supervised_failure_mask(r_c, r_r, y_c, y_r).tolist() == [False, True, True, False, True, False]
    assert supervised_failure_mask(r_c, r_r, None, None).tolist() == [False] * 6
    assert supervised_failure_mask(r_c, r_r, torch.zeros(6), torch.zeros(6)).tolist() == [False] * 6
    # against a zero of 0.4 (e.g. the label midpoint): pair 2's rejected 0.2 is now below it → ok;
    # pair 3's chosen 0.5 > 0.4 still fine; pair 0's chosen 1.0 fine → only pairs 1 and 4 fail
    assert supervised_failure_mask(r_c, r_r, y_c, y_r, 0.4).tolist() == [False, True, False, False, True, False]
    # the mask does not depend on the level of R when the zero moves with it
    assert supervised_failure_mask(r_c + 7, r_r + 7, y_c, y_r, 7.4).tolist() == [False, True, False, False, True, False]
    # NaN zero (not known yet) flags nothing
    assert not supervised_failure_mask(r_c, r_r, y_c, y_r, float("nan")).any()


def test_label_midpoint_hand_values():
    from fairl_ray.irl.failures import label_midpoint

    nan = torch.full((2,), float("nan"))
    r = T([[1.0, 3.0, -1.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    y = T([[1.0, 1.0, -1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])  # member 1 sees no bad output
    good, bad, zero = label_midpoint(r, y, nan, nan)
    assert good.tolist() == [2.0, 2.0] and bad[0].item() == -1.0 and math.isnan(bad[1].item())
    assert zero[0].item() == pytest.approx(0.5) and math.isnan(zero[1].item())
    # next minibatch: EMA with momentum 0.9 → good 0.9·2 + 0.1·4 = 2.2; bad unchanged (no bad output here)
    good, bad, zero = label_midpoint(T([[4.0, 0.0]]), T([[1.0, 0.0]]), good[:1], bad[:1])
    assert good.item() == pytest.approx(2.2) and bad.item() == -1.0 and zero.item() == pytest.approx(0.6)


def test_bottom_k_failure_mask():
    d = T([0.5, -1.0, 2.0, 0.0, 0.1])
    # k = ⌊0.4·5⌋ = 2: the two lowest Δ are −1 (idx 1) and 0 (idx 3)
    assert bottom_k_failure_mask(d, 0.4).tolist() == [False, True, False, True, False]
    assert bottom_k_failure_mask(d, 0.0).sum() == 0
    assert bottom_k_failure_mask(d, 1.0).all()
    # k = ⌊0.2·32⌋ = 6 for a paper minibatch
    assert bottom_k_failure_mask(torch.randn(32), 0.2).sum() == 6
    # per-member fractions: member 0 k=1, member 1 k=3
    m = bottom_k_failure_mask(torch.stack([d, d]), T([0.2, 0.6]))
    assert m.tolist() == [[False, True, False, False, False], [False, True, False, True, True]]


def test_sample_failures_rates():
    mask = T([True, False, True, True])
    g = torch.Generator().manual_seed(0)
    assert sample_failures(mask, 1.0, g).tolist() == mask.tolist()
    assert sample_failures(mask, 0.0, g).sum() == 0
    # given uniforms: keep flagged pairs with u < p
    u = T([0.1, 0.1, 0.9, 0.4])
    assert sample_failures(mask, 0.5, uniform=u).tolist() == [True, False, False, True]
    # the empirical rate on many failures is close to p and never selects unflagged pairs
    big = torch.rand(20000, generator=g) < 0.5
    s = sample_failures(big, 0.3, g)
    assert not (s & ~big).any()
    assert s.sum().item() / big.sum().item() == pytest.approx(0.3, abs=0.02)


# --------------------------------------------------------------------------------------------- schedules
def test_schedules_start_mid_end():
    assert lambda_schedule(0, 10.0, 0.05) == pytest.approx(10.0)
    assert lambda_schedule(20, 10.0, 0.05) == pytest.approx(10.0 * math.exp(-1.0))
    assert lambda_schedule(100, 10.0, 0.05) == pytest.approx(10.0 * math.exp(-5.0))
    assert failure_fraction_schedule(0, 0.2, 0.0, 100) == pytest.approx(0.2)
    assert failure_fraction_schedule(50, 0.2, 0.0, 100) == pytest.approx(0.1)
    assert failure_fraction_schedule(100, 0.2, 0.0, 100) == pytest.approx(0.0)
    assert failure_fraction_schedule(500, 0.2, 0.0, 100) == pytest.approx(0.0)
    assert gamma_schedule(0, 0.0, 0.4, 100) == pytest.approx(0.0)
    assert gamma_schedule(50, 0.0, 0.4, 100) == pytest.approx(0.2)
    assert gamma_schedule(100, 0.0, 0.4, 100) == pytest.approx(0.4)


# ------------------------------------------------------------------------------------------------ config
def test_config_defaults_and_validation():
    c = IRLConfig()
    assert (c.lr, c.batch_size, c.epochs, c.margin, c.temperature, c.lambda_0) == (1e-3, 32, 800, 0.8, 1.0, 10.0)
    assert (c.penalty_factor, c.min_margin) == (5.0, 5.0)
    assert c.margin_fail > c.margin and c.temperature_fail < c.temperature
    # 2 plain + 4 FA variants x 2 routings + 2 placebos x 2 routings + 2 Insights losses
    assert len(METHODS) == 16 and all(IRLConfig(method=m).method == m for m in METHODS)
    with pytest.raises(ValueError, match=r"irl\.curriculum_rounds: must be <= epochs \(50\)"):
        IRLConfig(method="fa_irl_me_margin", epochs=50)
    # one budget for every method: the gate is min_epochs, by default the curriculum's length, plain methods included
    assert IRLConfig(method="max_margin", epochs=150).checkpoint_from == 100
    assert IRLConfig(method="fa_irl_mm_gt", epochs=150).checkpoint_from == 100
    assert IRLConfig(method="max_margin", epochs=50, curriculum_rounds=10).checkpoint_from == 10
    assert IRLConfig(method="max_margin", epochs=50, min_epochs=5, curriculum_rounds=80).checkpoint_from == 5
    with pytest.raises(ValueError, match=r"irl\.curriculum_rounds: must be <= min_epochs \(5\)"):
        IRLConfig(method="fa_irl_mm_gt", epochs=50, min_epochs=5, curriculum_rounds=10)
    assert IRLConfig(method="max_margin", epochs=6).checkpoint_from == 6  # capped at epochs
    with pytest.raises(ValueError, match=r"irl\.min_epochs: must be <= epochs"):
        IRLConfig(method="max_margin", epochs=50, min_epochs=60)
    with pytest.raises(ValueError, match=r"irl\.failure_ranking"):
        IRLConfig(failure_ranking="global")
    with pytest.raises(ValueError, match=r"irl\.method: unknown method 'foo'"):
        IRLConfig(method="foo")
    with pytest.raises(ValueError, match=r"irl\.head"):
        IRLConfig(head="cnn")
    with pytest.raises(ValueError, match=r"irl\.margin_fail"):
        IRLConfig(margin=0.8, margin_fail=0.5)
    with pytest.raises(ValueError, match=r"irl\.temperature_fail"):
        IRLConfig(temperature_fail=2.0)
    with pytest.raises(ValueError, match=r"irl\.sample_rate"):
        IRLConfig(sample_rate=1.5)
    with pytest.raises(ValueError, match=r"irl\.batch_size"):
        IRLConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"irl\.lr"):
        IRLConfig(lr=-1.0)
    assert IRLConfig.from_dict(IRLConfig(method="max_entropy").to_dict()).method == "max_entropy"


# ----------------------------------------------------------------------------- Theorem 1: L_FA ≥ L_base
@pytest.mark.parametrize(
    "method", ["fa_irl_mm_gt", "fa_irl_mm_margin", "fa_irl_me_gt", "fa_irl_me_margin", "fa_irl_me_gt_split"]
)
def test_fa_objective_dominates_base(method):
    """With λ_t > 0 the failure term and the penalty are ≥ 0, so L_FA(θ) ≥ L_base(θ) pointwise (random θ, data)."""
    from fairl_ray.irl.heads import init_member_params, path_forward
    from fairl_ray.irl.objective import MemberHyperparameters, SupervisedZero, pair_objective

    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        cfg = IRLConfig(method=method, head="mlp" if trial % 2 else "linear", hidden_dim=8, seed=trial)
        p = init_member_params(cfg.head, 6, 8, True, g)
        # trained-looking parameters: the failure readout starts at zero, so move every weight off its init
        p = {
            n: t * (1 + 3 * torch.rand((), generator=g)) + 0.1 * torch.randn(t.shape, generator=g) for n, t in p.items()
        }
        xc, xr = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
        y_c = torch.randint(-1, 2, (32,), generator=g).float()[None]
        y_r = torch.randint(-1, 2, (32,), generator=g).float()[None]
        rD_c, rD_r = path_forward(p, "base", xc)[None], path_forward(p, "base", xr)[None]
        rF_c, rF_r = path_forward(p, "fail", xc)[None], path_forward(p, "fail", xr)[None]
        readout = [t[None] for n, t in p.items() if n in ("fail.w", "fail.w2")]
        sq = sum(t.pow(2).sum() for t in readout)[None]
        lam = torch.rand(1, generator=g) * 10 + 1e-3
        terms = pair_objective(
            MemberHyperparameters([cfg], "cpu"),
            rD_c,
            rD_r,
            rF_c,
            rF_r,
            fail_weights=readout,
            lam=lam,
            gamma=torch.tensor([0.3]),
            fraction=torch.tensor([0.2]),
            y_c=y_c,
            y_r=y_r,
            zero=SupervisedZero.empty(1, "cpu"),
        )
        # base is exactly the base loss of the full reward R = R_D + R_F
        full = (rD_c + rF_c) - (rD_r + rF_r)
        ref = max_margin_loss(full, 0.8) if "_mm_" in method else max_entropy_loss(full, 1.0)
        assert torch.allclose(terms.base, ref, atol=1e-6)
        assert torch.allclose(terms.total, fa_irl_loss(terms.base, terms.fail, lam, sq))
        # Theorem 1 set-up: with θ_F ≠ 0 and λ_t > 0 the FA objective is strictly above the base loss
        assert (terms.total > terms.base).all()
        torch.testing.assert_close(terms.penalty, 0.5 * lam * sq)
        if method.endswith("margin"):  # bottom-k: exactly ⌊0.2·32⌋ = 6 pairs
            assert terms.n_failures.item() == 6
        else:  # {Δ ≤ γ} ∪ {labelled output on the wrong side of the label midpoint of this minibatch}
            r_c, r_r = rD_c + rF_c, rD_r + rF_r
            r, y = torch.cat([r_c, r_r], 1), torch.cat([y_c, y_r], 1)
            zero = 0.5 * (r[y > 0].mean() + r[y < 0].mean())
            expected = margin_failure_mask(r_c - r_r, 0.3) | supervised_failure_mask(r_c, r_r, y_c, y_r, zero)
            assert terms.n_failures.item() == expected.sum().item()

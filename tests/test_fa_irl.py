"""FA-IRL does what the paper says inside the trainer: a live failure path, eq. 3's terms moving the parameters
they should, supervised failures against a defined zero, curricula that run to their end before early stopping."""

import math

import pytest
import torch

from fairl_ray.irl.heads import init_member_params, path_forward
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.objective import (
    MemberHyperparameters,
    SupervisedZero,
    apply_failure_penalty_,
    pair_objective,
    penalised_names,
)
from fairl_ray.irl.trainer import PairFeatures, split_validation, train_ensemble, train_single

FA_METHODS = ("fa_irl_mm_gt", "fa_irl_mm_margin", "fa_irl_me_gt", "fa_irl_me_margin")


def noisy_pairs(n: int, d: int = 24, seed: int = 0, flip: float = 0.15):
    """Pairs from a known nonlinear reward with a fraction ``flip`` of preferences reversed (noisy pairs, the
    ones FA-IRL's failure sets catch). Labels: y = sign(r*) of each output, always the truth."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=torch.Generator().manual_seed(99))
    a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    r = lambda x: x @ w + 0.5 * (x[:, 0] * x[:, 1])  # noqa: E731
    first = (r(a) > r(b)) ^ (torch.rand(n, generator=g) < flip)
    ch, rj = torch.where(first[:, None], a, b), torch.where(first[:, None], b, a)
    return PairFeatures(ch, rj, torch.sign(r(ch)), torch.sign(r(rj)))


@pytest.fixture(scope="module")
def trained():
    train = noisy_pairs(1200)
    cfgs = [
        IRLConfig(method=m, head="mlp", hidden_dim=32, epochs=40, curriculum_rounds=25, patience=5, seed=s)
        for m in FA_METHODS
        for s in (0, 1)
    ]
    return train, cfgs, train_ensemble(train, cfgs)


def test_failure_path_stays_alive_and_matters(trained):
    """The collapse of the first landing: the penalty over every failure-path parameter drove R_F to ~1e-8. Now
    R_F carries a real share of the reward at the returned epoch, and removing it changes the reward's ranking."""
    train, cfgs, members = trained
    x = torch.cat([train.chosen, train.rejected])
    for m in members:
        r_base, r_fail = path_forward(m.params, "base", x), path_forward(m.params, "fail", x)
        share = float(r_fail.std() / (r_base + r_fail).std())
        assert share >= 0.05, (m.config.method, m.config.seed, share)
        assert m.curve["fail_share"][m.best_epoch - 1] == pytest.approx(float(_val_share(train, m.params)), rel=1e-4), (
            "the curve records the share of the returned params"
        )
        full = (r_base + r_fail)[: len(train)] > (r_base + r_fail)[len(train) :]
        ablated = r_base[: len(train)] > r_base[len(train) :]
        assert (full != ablated).any(), m.config.method  # the ablation row differs from the full row
        assert float(m.params["fail.w1"].norm()) > 0.1 * float(m.params["base.w1"].norm())


def _val_share(train, params):
    _, val = split_validation(train, 0.1)
    x = torch.cat([val.chosen, val.rejected])
    rf = path_forward(params, "fail", x, bias=False)
    return rf.std() / (path_forward(params, "base", x, bias=False) + rf).std()


def test_no_method_stops_or_checkpoints_before_the_shared_budget(trained):
    _, cfgs, members = trained
    for c, m in zip(cfgs, members):
        assert m.best_epoch >= c.curriculum_rounds and m.epochs_run >= c.curriculum_rounds
        if c.failure_source == "margin":  # the bottom-k curriculum ran to its end: 20% → exactly 0 failures
            assert m.curve["bottom_k_fraction"][0] == pytest.approx(0.2)
            assert m.curve["bottom_k_fraction"][c.curriculum_rounds] == 0.0
            assert m.curve["failure_fraction"][c.curriculum_rounds :] == [0.0] * (m.epochs_run - c.curriculum_rounds)
    # min_delta 10 makes every epoch after the first checkpoint "no improvement": patience 1 stops a member one epoch
    # after its first checkpoint, which for EVERY method is the end of the curriculum (12 rounds): one budget
    train = noisy_pairs(300, seed=5)
    common = dict(head="linear", patience=1, min_delta=10.0, epochs=30, curriculum_rounds=12)
    methods = ("max_margin", "fa_irl_mm_gt", "fa_irl_mm_placebo", "fa_irl_mm_gt_split")
    for m in train_ensemble(train, [IRLConfig(method=m, **common) for m in methods]):
        assert (m.best_epoch, m.epochs_run) == (12, 13), m.config.method
    # an explicit min_epochs moves the gate for all of them alike
    common.update(min_epochs=15)
    for m in train_ensemble(train, [IRLConfig(method=m, **common) for m in methods]):
        assert (m.best_epoch, m.epochs_run) == (15, 16), m.config.method


def test_bottom_k_fraction_inside_the_trainer_is_the_schedule():
    """Each epoch flags exactly ⌊f_t·b⌋ pairs of every minibatch: the recorded failure fraction is the schedule."""
    train = noisy_pairs(330, seed=2)  # 297 train pairs after the 10% validation slice: minibatches 32×9 + 9
    cfg = IRLConfig(
        method="fa_irl_me_margin",
        head="linear",
        epochs=6,
        curriculum_rounds=5,
        patience=0,
        failure_fraction_start=0.5,
        failure_fraction_end=0.0,
    )
    (m,) = train_ensemble(train, [cfg])
    for t in range(6):
        f = max(0.5 * (1 - t / 5), 0.0)
        expected = (9 * math.floor(f * 32 + 1e-9) + math.floor(f * 9 + 1e-9)) / 297
        assert m.curve["bottom_k_fraction"][t] == pytest.approx(f)
        assert m.curve["failure_fraction"][t] == pytest.approx(expected), t


def test_gamma_curriculum_inside_the_trainer():
    """F^margin = {Δ ≤ γ_t}: with γ annealed from 0 to a large value, more and more pairs are failures."""
    train = noisy_pairs(400, seed=3)
    nolabels = PairFeatures(train.chosen, train.rejected)
    cfg = IRLConfig(
        method="fa_irl_mm_gt",
        head="linear",
        epochs=8,
        curriculum_rounds=8,
        patience=0,
        gamma_start=-50.0,
        gamma_end=50.0,
    )
    (m,) = train_ensemble(nolabels, [cfg])
    assert m.curve["gamma"] == pytest.approx([-50.0 + 100.0 * t / 8 for t in range(8)])
    ff = m.curve["failure_fraction"]
    assert ff[0] == 0.0 and ff[-1] == 1.0  # γ = −50: no pair; γ = +37.5 ≥ every Δ: all pairs


def test_supervised_failures_inside_the_trainer():
    """With γ below every Δ only supervised failures remain: they exist with labels and vanish without."""
    train = noisy_pairs(400, seed=4)
    cfg = IRLConfig(
        method="fa_irl_mm_gt",
        head="linear",
        epochs=4,
        curriculum_rounds=4,
        patience=0,
        gamma_start=-1e6,
        gamma_end=-1e6,
    )
    (with_labels,) = train_ensemble(train, [cfg])
    (without,) = train_ensemble(PairFeatures(train.chosen, train.rejected), [cfg])
    assert with_labels.curve["failure_fraction"][0] > 0.05
    assert without.curve["failure_fraction"] == [0.0] * 4
    # the batched trainer and the one-model reference flag the same supervised failures
    single = train_single(train, cfg)
    assert single.curve["failure_fraction"] == pytest.approx(with_labels.curve["failure_fraction"], abs=1e-6)


def _objective_terms(method: str, head: str = "mlp"):
    cfg = IRLConfig(method=method, head=head, hidden_dim=8)
    g = torch.Generator().manual_seed(0)
    # trained-looking parameters: the failure readout starts at zero (then L_fail could not reach fail.w1 yet)
    init = init_member_params(head, 6, 8, True, g)
    params = {n: (t + 0.3 * torch.randn(t.shape, generator=g)).requires_grad_(True) for n, t in init.items()}
    xc, xr = torch.randn(32, 6, generator=g), torch.randn(32, 6, generator=g)
    y = torch.sign(torch.randn(1, 32, generator=g))
    r = {p: (path_forward(params, p, xc)[None], path_forward(params, p, xr)[None]) for p in ("base", "fail")}
    terms = pair_objective(
        MemberHyperparameters([cfg], "cpu"),
        *r["base"],
        *r["fail"],
        fail_weights=[params[n][None] for n in penalised_names(list(params))],
        lam=torch.tensor([10.0]),
        gamma=torch.tensor([0.5]),
        fraction=torch.tensor([0.5]),
        y_c=y,
        y_r=-y,
        zero=SupervisedZero.empty(1, "cpu"),
    )
    return params, terms


@pytest.mark.parametrize("method", [f"{m}_split" for m in FA_METHODS])
def test_split_routing_each_term_moves_only_its_path(method):
    params, terms = _objective_terms(method)
    names = list(params)
    g_base = dict(
        zip(
            names,
            torch.autograd.grad(terms.base.sum(), [params[n] for n in names], allow_unused=True, retain_graph=True),
        )
    )
    g_fail = dict(
        zip(
            names,
            torch.autograd.grad(terms.fail.sum(), [params[n] for n in names], allow_unused=True, retain_graph=True),
        )
    )
    for n in names:
        moved_by_base = g_base[n] is not None and g_base[n].abs().max() > 0
        moved_by_fail = g_fail[n] is not None and g_fail[n].abs().max() > 0
        is_offset = n.endswith(".b2")  # the output offsets cancel in Δ: no pair loss moves them
        assert moved_by_base == (n.startswith("base.") and not is_offset), n
        assert moved_by_fail == (n.startswith("fail.") and not is_offset), n
    assert terms.n_failures.item() > 0
    # what is differentiated is L_base + L_fail (the penalty is decoupled): each path gets exactly its own term's
    # gradient
    g_total = torch.autograd.grad(terms.grad_loss.sum(), [params["base.w1"], params["fail.w1"]])
    torch.testing.assert_close(g_total[0], g_base["base.w1"])
    torch.testing.assert_close(g_total[1], g_fail["fail.w1"])


def test_penalty_shrinks_only_the_failure_readout():
    names = list(init_member_params("mlp", 6, 8, True, torch.Generator().manual_seed(0)))
    assert penalised_names(names) == ["fail.w2"]
    assert penalised_names(["base.w", "base.b", "fail.w", "fail.b"]) == ["fail.w"]
    w = torch.ones(3, 3)
    hp = MemberHyperparameters(
        [
            IRLConfig(method="fa_irl_mm_gt_split", lr=1e-3),
            IRLConfig(method="fa_irl_me_gt_split", lr=1e-2),
            IRLConfig(method="fa_irl_mm_gt", lr=1e-2),  # joint: its penalty is in the objective, not decoupled
        ],
        "cpu",
    )
    apply_failure_penalty_([w], hp, lam=torch.tensor([10.0, 0.5, 0.5]))
    # split members: w ← w·(1 − lr·λ): member 0 by 1%, member 1 by 0.5%; the joint member untouched
    torch.testing.assert_close(w, torch.tensor([[0.99] * 3, [0.995] * 3, [1.0] * 3]))

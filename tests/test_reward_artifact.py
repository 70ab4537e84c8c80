"""Reward artifact: save → load → same scores; card fields; safetensors + JSON only; callable on texts."""

import json

import numpy as np
import pytest
import torch

from fairl_ray.irl.heads import init_member_params, reward_from_params
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.reward import CARD_FILE, WEIGHTS_FILE, RewardModel, save_reward
from fairl_ray.irl.trainer import TrainedMember


def _member(method="fa_irl_me_margin", head="mlp", d=6):
    cfg = IRLConfig(method=method, head=head, hidden_dim=4, seed=2)
    g = torch.Generator().manual_seed(2)
    params = init_member_params(head, d, 4, cfg.dual_path, g)
    params = {n: t + 0.1 * torch.randn(t.shape, generator=g) for n, t in params.items()}  # a trained, live R_F
    return TrainedMember(cfg, params, {"val_loss": [0.5]}, best_epoch=1, epochs_run=1)


class HashEncoder:
    """Deterministic toy encoder: 6 features from character statistics."""

    calls = 0

    def encode(self, texts):
        HashEncoder.calls += 1
        return np.array(
            [[len(t), t.count("a"), t.count("e"), t.count(" "), sum(map(ord, t)) % 7, 1.0] for t in texts],
            dtype=np.float32,
        )


@pytest.mark.parametrize("method,head", [("fa_irl_me_margin", "mlp"), ("max_margin", "linear")])
def test_save_load_same_scores(tmp_path, method, head):
    m = _member(method, head)
    out = save_reward(
        tmp_path / "reward",
        m,
        encoder="minilm",
        normalisation={"mean": 0.25, "std": 2.0},
        threshold=0.1,
        extra={"run_id": "abc"},
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS_FILE, CARD_FILE])
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pt"))
    assert [p.name for p in tmp_path.iterdir()] == ["reward"]  # no temp dirs left behind
    card = json.loads((out / CARD_FILE).read_text())
    for key in ("method", "hyperparameters", "encoder", "feature_dim", "normalisation", "threshold", "extra"):
        assert key in card
    assert card["method"] == method and card["encoder"] == "minilm" and card["feature_dim"] == 6
    assert card["hyperparameters"]["seed"] == 2 and card["extra"] == {"run_id": "abc"}
    rm = RewardModel.from_dir(out)
    assert rm.threshold == pytest.approx(0.1)
    x = np.random.default_rng(0).normal(size=(9, 6)).astype(np.float32)
    expected = (reward_from_params(m.params, torch.from_numpy(x)).numpy() - 0.25) / 2.0
    np.testing.assert_allclose(rm.score_features(x), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rm.score_features(torch.from_numpy(x)), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        rm.score_features(np.zeros((2, 5), dtype=np.float32))


def test_fa_reward_sums_both_paths(tmp_path):
    m = _member()
    x = torch.randn(5, 6)
    only_base = {n: t for n, t in m.params.items() if n.startswith("base.")}
    assert not torch.allclose(reward_from_params(m.params, x), reward_from_params(only_base, x))
    rm = RewardModel.from_dir(
        save_reward(tmp_path / "r", m, encoder="e", normalisation={"mean": 0, "std": 1}, threshold=None)
    )
    np.testing.assert_allclose(rm.score_features(x), reward_from_params(m.params, x).numpy(), atol=1e-6)
    assert rm.threshold is None


def test_callable_on_texts_with_encoder_override(tmp_path):
    m = _member()
    path = save_reward(tmp_path / "r", m, encoder="not-loaded", normalisation={"mean": 1.0, "std": 3.0}, threshold=0.0)
    enc = HashEncoder()
    rm = RewardModel.from_dir(path, encoder=enc)
    texts = ["a nice day", "the weather is awful", ""]
    scores = rm(texts)
    assert isinstance(scores, list) and len(scores) == 3 and all(isinstance(s, float) for s in scores)
    np.testing.assert_allclose(scores, rm.score_features(enc.encode(texts)), rtol=1e-6)
    assert rm([]) == []
    with pytest.raises(TypeError):
        rm("a single string")


def test_overwrite_is_atomic_and_bad_inputs(tmp_path):
    a, b = _member(), _member("max_entropy", "linear")
    save_reward(tmp_path / "r", a, encoder="e", normalisation={"mean": 0, "std": 1}, threshold=None)
    save_reward(tmp_path / "r", b, encoder="e", normalisation={"mean": 0, "std": 1}, threshold=None)
    assert RewardModel.from_dir(tmp_path / "r").card["method"] == "max_entropy"
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
    with pytest.raises(ValueError):
        save_reward(tmp_path / "bad", a, encoder="e", normalisation={"mean": 0, "std": 0}, threshold=None)
    assert not (tmp_path / "bad").exists()

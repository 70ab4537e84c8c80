"""IRL progress off a terminal: plain periodic lines, not a tqdm bar (DESIGN §6: Ray forwards every bar redraw)."""

import io

import torch

from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.trainer import PairFeatures, train_ensemble
from fairl_ray.progress import EpochProgress


def test_lines_every_period_and_one_at_the_end():
    out = io.StringIO()
    progress = EpochProgress(5, "IRL group 1/1 (K=2)", every_s=0.0, stream=out)
    for active in (2, 2, 1):
        progress.update(active=active)
    progress.close(active=1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in out.getvalue()
    assert lines[0].startswith("[fairl] IRL group 1/1 (K=2): epoch 1/5, 2 member(s) still training")
    assert "epoch 3/5, 1 member(s)" in lines[2] and "done after 3 epoch(s), 1 still training" in lines[3]


def test_quiet_between_periods():
    out = io.StringIO()
    progress = EpochProgress(1000, "IRL", every_s=3600.0, stream=out)
    for _ in range(1000):
        progress.update(active=1)
    progress.close(active=0)
    assert out.getvalue().count("\n") == 1 and "every member stopped early" in out.getvalue()


def test_trainer_progress_off_a_terminal_prints_a_line_per_group(capsys):
    g = torch.Generator().manual_seed(0)
    train = PairFeatures(torch.randn(64, 4, generator=g) + 1, torch.randn(64, 4, generator=g))
    members = [IRLConfig(method="max_margin", epochs=3, hidden_dim=4, seed=s) for s in (0, 1)]
    train_ensemble(train, members, progress=True)
    err = capsys.readouterr().err
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("[fairl] IRL group 1/1 (K=2)")]
    assert "done after" in err and "it/s" not in err and "epoch/s" not in err

"""Perturbation probes (Insights Table 6) against a reward whose shifts can be computed by hand."""

import numpy as np
import pytest
import torch

from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.recovery.fit import FittedMember, FittedRewards
from fairl_ray.recovery.probes import FILLERS, PROBE_WORDS, perturb, probe_shifts


def _encode(texts):
    """Two features: how many probe words a text holds, and how many words it has."""
    return np.array([[sum(w in PROBE_WORDS for w in t.split()), len(t.split())] for t in texts], dtype=np.float32)


def test_perturbations_edit_as_named_and_are_seeded():
    texts = ["you are kind", "that is stupid and dumb", "a calm day."]
    edits = perturb(texts, seed=3)
    idx, added = edits["add_toxic"]
    assert idx == [0, 1, 2] and all(a.split()[-1] in PROBE_WORDS for a in added)
    assert added[2].startswith("a calm day ")  # the end punctuation makes way for the word
    assert edits["remove_toxic"] == ([1], ["that is and"])
    _, para = edits["paraphrase"]
    assert all(
        len(p.split()) == len(t.split()) + 1 and set(p.split()) - set(t.split()) <= set(FILLERS)
        for p, t in zip(para, texts)
    )
    assert perturb(texts, seed=3) == edits and perturb(texts, seed=4) != edits


def test_probe_shifts_of_a_reward_that_counts_probe_words():
    # R(h) = −2·(probe words) + 0.5·(words), normalised with std 2: a probe word added moves it (−2 + 0.5)/2 = −0.75,
    # two removed move it (+4 − 1)/2 = +1.5, a filler +0.25
    params = {"base.w": torch.tensor([-2.0, 0.5]), "base.b": torch.tensor(0.0)}
    fitted = FittedRewards(
        [
            FittedMember("lin", IRLConfig(method="max_margin", head="linear", seed=s), params, 0.0, 2.0, 0.0)
            for s in (0, 1)
        ],
        encoder="bag",
        train_pairs=0,
    )
    result = probe_shifts(fitted, ["you are kind", "that is stupid and dumb"], _encode)
    rows = result["methods"]["lin"]
    assert result["probes"] == {"add_toxic": 2, "remove_toxic": 1, "paraphrase": 2}
    assert rows["add_toxic"]["shift"]["mean"] == pytest.approx(-0.75) and rows["add_toxic"]["agree"]["mean"] == 1.0
    assert rows["remove_toxic"]["shift"]["mean"] == pytest.approx(1.5) and rows["remove_toxic"]["agree"]["mean"] == 1.0
    assert rows["paraphrase"]["shift"]["mean"] == pytest.approx(0.25) and rows["paraphrase"]["shift"]["n"] == 2

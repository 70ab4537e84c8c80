"""Pairs from expert/base completions: identical texts dropped, the pair mix, the split."""

import numpy as np
import pytest

from fairl_ray.config import PairsConfig
from fairl_ray.stages.pairs import build_pairs, mix_pairs
from fairl_ray.worlds import Scores, World


class LexiconWorld(World):
    """A two-word world: 'bad' is toxic (−0.5), 'good' non-toxic (+0.5), anything else neither."""

    calls = 0

    def score(self, texts):
        LexiconWorld.calls += 1
        return Scores(
            [0.5 if "good" in t else -0.5 if "bad" in t else 0.0 for t in texts],
            [1 if "good" in t else -1 if "bad" in t else 0 for t in texts],
            ["insult" if "bad" in t else None for t in texts],
        )


def test_build_pairs_columns_and_identical_dropped():
    prompts = [f"p{i}" for i in range(8)]
    expert = ["good"] * 8
    base = ["bad", "good", "bad", "meh", "bad", "bad", "good", "bad"]
    rows = build_pairs(
        prompts, expert, base, LexiconWorld(None), PairsConfig(toxic_to_nontoxic_fraction=None, test_fraction=0.25)
    )
    assert len(rows) == 6  # two identical "good"/"good" pairs dropped
    r = next(r for r in rows if r["rejected"] == "meh")
    assert r["chosen_reward"] == 0.5 and r["rejected_reward"] == 0.0
    assert r["chosen_label"] == 1 and r["rejected_label"] == 0 and r["subtype"] is None
    assert sum(r["split"] == "test" for r in rows) == 2  # round(0.25 * 6)
    assert {k for k in rows[0]} >= {"prompt", "chosen", "rejected", "split", "subtype"}
    assert next(r for r in rows if r["rejected"] == "bad")["subtype"] == "insult"


def test_judge_called_once_per_batch():
    LexiconWorld.calls = 0
    build_pairs(
        [f"p{i}" for i in range(40)],
        ["good"] * 40,
        ["bad", "meh"] * 20,
        LexiconWorld(None),
        PairsConfig(toxic_to_nontoxic_fraction=None),
    )
    assert LexiconWorld.calls == 1


def test_pair_mix_fraction():
    rows = [{"chosen_label": 1, "rejected_label": -1, "i": i} for i in range(30)]
    rows += [{"chosen_label": 1, "rejected_label": 1, "i": 100 + i} for i in range(10)]
    rng = np.random.default_rng(0)
    assert len(mix_pairs(rows, 1.0, rng)) == 30
    assert len(mix_pairs(rows, 0.0, rng)) == 10
    half = mix_pairs(rows, 0.5, rng)  # limited by the 10 other pairs: 10 + 10
    assert len(half) == 20 and sum(r["rejected_label"] == -1 for r in half) == 10
    assert len(mix_pairs(rows, None, rng)) == 40


def test_too_few_pairs_is_a_clear_error():
    with pytest.raises(RuntimeError, match="usable preference pairs"):
        build_pairs(["p"] * 3, ["good"] * 3, ["good"] * 3, LexiconWorld(None), PairsConfig())

"""The reward recovery in memory (``fairl_ray.recovery``): the pair data's masks and carving, and fit → score without
files giving exactly what fit → save → load → score gives."""

import json

import numpy as np
import pyarrow as pa
import pytest

from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.reward import RewardModel
from fairl_ray.metrics.classification import NO_CLASS
from fairl_ray.recovery.data import PairData, TooFewPairs, hold_out
from fairl_ray.recovery.fit import FittedRewards, fit
from fairl_ray.recovery.score import score


def linear_pairs(n=120, d=6, seed=0):
    """Pairs from a known linear reward: labels from its sign, R* its value, every 4th pair a test pair."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    a, b = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    first = (a @ w > b @ w)[:, None]
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    rows = [
        {
            "chosen": f"c{i}",
            "rejected": f"r{i}",
            "chosen_label": int(np.sign(c @ w)) if i % 5 else 0,  # some outputs unlabelled
            "rejected_label": int(np.sign(r @ w)),
            "chosen_reward": float(c @ w),
            "rejected_reward": float(r @ w),
            "subtype": ("insult", "threat")[i % 2],
            "split": "test" if i % 4 == 0 else "train",
        }
        for i, (c, r) in enumerate(zip(chosen, rejected))
    ]
    return PairData.from_table(pa.Table.from_pylist(rows), chosen, rejected, "none")


def old_carve_validation(rows: list[dict], fraction: float, seed: int) -> list[int]:
    """The search's carving before PairData (``search/data.carve_validation``), verbatim: the reference."""
    train = [i for i, r in enumerate(rows) if r["split"] == "train"]
    n_val = min(max(1, int(round(fraction * len(train)))), len(train) - 2)
    if n_val < 1:
        raise ValueError(f"need at least 3 train pairs to carve a validation split, got {len(train)}")
    pick = np.random.default_rng(seed).permutation(len(train))[:n_val]
    return sorted(train[i] for i in pick)


def test_masks_come_from_the_split_column_and_cover_every_pair_once():
    data = linear_pairs()
    assert data.test_index == list(range(0, 120, 4))
    assert data.train_index == [i for i in range(120) if i % 4] and data.val_index == []
    no_split = PairData.from_table(data.table.drop(["split"]), data.chosen, data.rejected, "none")
    assert no_split.train.all() and not no_split.test.any()
    with pytest.raises(ValueError, match="exactly once"):
        PairData(data.table, data.chosen, data.rejected, "none", data.train, data.train, data.test)
    with pytest.raises(ValueError, match="feature rows"):
        PairData.from_table(data.table, data.chosen[:-1], data.rejected[:-1], "none")


def test_subset_keeps_rows_features_and_masks_aligned():
    data = linear_pairs()
    index = [5, 0, 9]
    sub = data.subset(index)
    assert sub.table.column("chosen").to_pylist() == ["c5", "c0", "c9"]
    np.testing.assert_array_equal(sub.chosen, data.chosen[index])
    np.testing.assert_array_equal(sub.rejected, data.rejected[index])
    assert sub.test.tolist() == [False, True, False] and sub.train.tolist() == [True, False, True]
    by_mask = data.subset(data.test)
    assert len(by_mask) == 30 and by_mask.test.all()
    np.testing.assert_array_equal(by_mask.outputs("test"), data.outputs("test"))


@pytest.mark.parametrize("fraction, seed", [(0.2, 0), (0.15, 7), (0.5, 123)])
def test_carve_validation_is_the_searchs_old_carving(fraction, seed):
    data = linear_pairs()
    carved = data.carve_validation(fraction, seed)
    assert carved.val_index == old_carve_validation(data.table.to_pylist(), fraction, seed)
    assert not (carved.val & carved.test).any() and not (carved.val & carved.train).any()
    assert (carved.train | carved.val).tolist() == data.train.tolist()  # carved from train only
    assert carved.without_validation().train.tolist() == data.train.tolist()
    assert carved.with_validation(carved.val_index).val_index == carved.val_index
    with pytest.raises(ValueError, match="at least 3 train pairs"):
        data.subset([1, 2, 0]).carve_validation(0.2, 0)


def test_digest_changes_with_content_and_only_with_it():
    data = linear_pairs()
    assert data.digest() == linear_pairs().digest()
    labels = data.table.column("chosen_label").to_pylist()
    labels[3] = -labels[3] or 1
    relabelled = data.table.set_column(data.table.column_names.index("chosen_label"), "chosen_label", pa.array(labels))
    moved = data.chosen.copy()
    moved[0, 0] += 1.0
    changed = [
        PairData.from_table(relabelled, data.chosen, data.rejected, "none"),
        PairData.from_table(data.table, moved, data.rejected, "none"),
        PairData.from_table(data.table, data.chosen, data.rejected, "another-encoder"),
        data.carve_validation(0.2, 0),
    ]
    digests = {data.digest(), *(c.digest() for c in changed)}
    assert len(digests) == 1 + len(changed)


def test_output_classes_subtypes_and_rstar_per_split():
    data = linear_pairs()
    test_rows = data.split_table("test").to_pylist()
    classes = data.output_classes("test")
    n = len(test_rows)
    want = [r["chosen_label"] for r in test_rows] + [r["rejected_label"] for r in test_rows]
    assert classes.tolist() == [1 if y > 0 else 0 if y < 0 else NO_CLASS for y in want]
    # every 5th pair's o⁺ is unlabelled and test pairs are i % 4 == 0: o⁺ of test pairs i % 20 == 0 has no class
    assert [c == NO_CLASS for c in classes[:n]] == [i % 20 == 0 for i in range(0, 120, 4)]
    assert (classes[n:] != NO_CLASS).all()
    np.testing.assert_array_equal(
        data.rstar("test"), [r["chosen_reward"] for r in test_rows] + [r["rejected_reward"] for r in test_rows]
    )
    assert data.has_rstar and data.has_subtypes
    assert len(data.output_subtypes("test")) == 2 * n
    unknown = data.table.set_column(
        data.table.column_names.index("chosen_reward"), "chosen_reward", pa.array([None] * len(data), pa.float64())
    )
    assert PairData.from_table(unknown, data.chosen, data.rejected, "none").rstar("test") is None


def test_hold_out_checks_the_split_before_any_encoding():
    table = linear_pairs().table.drop(["split"])
    train, test = hold_out(table, 0.25, 0)
    assert train.num_rows == 90 and test.num_rows == 30 and set(test.column("split").to_pylist()) == {"test"}
    with pytest.raises(TooFewPairs, match="IRL needs at least 2 train pairs and 1 test pair"):
        hold_out(table.slice(0, 2), 0.5, 0)


def test_fit_then_score_in_memory_equals_the_saved_rewards_scored_from_disk(tmp_path):
    data = linear_pairs()
    members = [
        IRLConfig(method=m, head=h, epochs=25, lr=0.02, seed=s, curriculum_rounds=10)
        for m, h in (("max_margin", "linear"), ("fa_irl_mm_gt", "mlp"), ("max_entropy", "linear"))
        for s in (0, 1)
    ]
    rng = np.random.default_rng(1)
    implicit = {"implicit_reward": (rng.normal(size=len(data)), rng.normal(size=len(data)))}
    heldout = (rng.normal(size=(40, data.dim)).astype(np.float32), [1, -1] * 20)
    fitted = fit(data, members, "cpu", progress=False)
    in_memory = score(fitted, data, heldout=heldout, scored_rewards=implicit)

    summary = fitted.save(tmp_path)
    from_disk = score(FittedRewards.load(tmp_path, summary), data, heldout=heldout, scored_rewards=implicit)
    assert json.dumps(in_memory.summary, sort_keys=True) == json.dumps(from_disk.summary, sort_keys=True)
    assert set(in_memory.summary["analyses"]) >= {"scoreboard", "failure_path", "dispersion"}
    # ... and each member's scores are the reward artifact's own, loaded as `fairl score` loads it
    for m, entry in zip(in_memory.members, summary["members"]):
        reward = RewardModel.from_dir(tmp_path / entry["reward_dir"])
        np.testing.assert_array_equal(m.test, reward.score_features(data.outputs("test")).astype(np.float64))
        assert m.threshold == reward.threshold
    assert json.loads((tmp_path / "curves.json").read_text()) == json.loads(json.dumps(fitted.curves, default=float))


def test_scoring_val_trains_without_it_and_never_reads_the_test_pairs():
    data = linear_pairs().carve_validation(0.25, 0)
    members = [IRLConfig(method="max_margin", head="linear", epochs=10, lr=0.02, seed=0)]
    fitted = fit(data, members, "cpu", progress=False)
    assert fitted.train_pairs == int(data.train.sum()) == 90 - len(data.val_index)
    val = score(fitted, data, split="val", analyses=False).summary
    assert val["test_pairs"] == len(data.val_index) and "analyses" not in val
    scrambled = data.chosen.copy()
    scrambled[data.test] = 100.0
    again = PairData.from_table(data.table, scrambled, data.rejected, "none").with_validation(data.val_index)
    assert score(fit(again, members, "cpu", progress=False), again, split="val", analyses=False).summary == val
    with pytest.raises(ValueError, match="share a reward folder"):
        FittedRewards(fitted.members * 2, "none", 1).save(".")

"""Bad input ends in ``fairl: error:`` with exit status 2 and writes nothing; every check that can be made before
work starts is made then; degenerate input is warned about, naming what was found and what was done (issue 9)."""

import json
import shutil

import pytest

from fairl_ray.cli import main

GOOD = ["kind", "helpful", "gentle", "friendly", "generous", "honest", "brave", "cheerful", "patient", "wise"]
BAD = ["stupid", "idiotic", "worthless", "pathetic", "disgusting", "moronic", "useless", "awful", "vile", "hateful"]
FAST = [
    "--set",
    "irl.epochs=20",
    "--set",
    "irl.curriculum_rounds=10",
    "--set",
    "seeds=[0]",
    "--set",
    "irl.hidden_dim=16",
]


def rows(n, labels=True):
    out = []
    for i in range(n):
        row = {
            "prompt": f"The neighbour number {i} is",
            "chosen": f"very {GOOD[i % 10]}",
            "rejected": f"so {BAD[(3 * i) % 10]} {i}",
        }
        if labels:
            row.update(chosen_label=1, rejected_label=-1)
        out.append(row)
    return out


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def fail(capsys, argv) -> str:
    """Run ``fairl argv``; assert it exits 2 with one ``fairl: error:`` line and no traceback; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("fairl: error: "), err
    return line


# -------------------------------------------------------------------------------------- fairl run (config)


def test_binary_config_file(tmp_path, capsys):
    config = tmp_path / "model.bin"
    config.write_bytes(bytes(range(256)) * 4)
    line = fail(capsys, ["run", str(config), "--workdir", str(tmp_path / "w")])
    assert str(config) in line and "not a text file" in line
    assert not (tmp_path / "w").exists()


def test_unknown_encoder_refused_before_any_work(tmp_path, capsys):
    line = fail(capsys, ["run", "--set", "features.encoder=bert-base-uncased", "--workdir", str(tmp_path / "w")])
    assert "features.encoder" in line and "bert-base-uncased" in line
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "overrides,key",
    [(["prompts.n_pairs=2"], "prompts.n_pairs"), (["pairs.max_pairs=4", "pairs.test_fraction=0.1"], "pairs.max_pairs")],
)
def test_too_few_pairs_for_a_test_pair_refused_before_any_work(tmp_path, capsys, overrides, key):
    line = fail(capsys, ["run", *[a for o in overrides for a in ("--set", o)], "--workdir", str(tmp_path / "w")])
    assert f"{key}:" in line and "1 test pair" in line
    assert not (tmp_path / "w").exists()


# ------------------------------------------------------------------------------------------------ fairl irl


@pytest.mark.parametrize("n", [1, 2])
def test_irl_too_few_train_or_test_pairs(tmp_path, capsys, n):
    pairs = write_jsonl(tmp_path / "p.jsonl", rows(n))
    line = fail(capsys, ["irl", str(pairs), "--out", str(tmp_path / "out")])
    assert "at least 2 train pairs and 1 test pair" in line
    assert not (tmp_path / "out").exists()


def test_irl_out_is_a_file_or_in_a_missing_directory(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "p.jsonl", rows(12))
    (tmp_path / "file").write_text("keep me")
    assert "is a file" in fail(capsys, ["irl", str(pairs), "--out", str(tmp_path / "file")])
    assert (tmp_path / "file").read_text() == "keep me"
    assert "does not exist" in fail(capsys, ["irl", str(pairs), "--out", str(tmp_path / "missing" / "out")])
    assert not (tmp_path / "missing").exists()


def test_irl_every_pair_identical(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "p.jsonl", [{**r, "rejected": r["chosen"]} for r in rows(12)])
    assert "chosen == rejected in every one of the 12 pairs" in fail(
        capsys, ["irl", str(pairs), "--out", str(tmp_path / "out")]
    )
    assert not (tmp_path / "out").exists()


def test_irl_hidden_base_has_no_base_policy(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "p.jsonl", rows(12))
    assert "features.encoder" in fail(
        capsys, ["irl", str(pairs), "--set", "features.encoder=hidden:base", "--out", str(tmp_path / "out")]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real ``fairl irl`` run with two methods (its reward artifacts are corrupted by the tests below)."""
    root = tmp_path_factory.mktemp("trained")
    pairs = write_jsonl(root / "pairs.jsonl", rows(40))
    assert (
        main(
            ["irl", str(pairs), "--method", "max_margin", "--method", "max_entropy", "--out", str(root / "out"), *FAST]
        )
        == 0
    )
    return root / "out"


def test_fairl_irl_writes_report_md(trained):
    """README: `fairl irl` leaves the printed tables in --out/report.md, as `fairl run` does in its workdir."""
    report = (trained / "report.md").read_text()
    assert "max_margin" in report and "max_entropy" in report and "ROC-AUC" in report
    assert "STARC l1/l1" not in report  # these pairs carry no R*: a column of n/a is left out
    assert "report.md" in json.loads((trained / "manifest.json").read_text())["made"]


def test_degenerate_pairs_are_warned_about(trained, tmp_path, capsys):
    """Identical pairs, duplicated rows, fa_irl_*_gt without labels, a single test pair, stale method folders."""
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    records = rows(9, labels=False)
    records += [{**records[0], "rejected": records[0]["chosen"]}, dict(records[1]), dict(records[2])]
    pairs = write_jsonl(tmp_path / "p.jsonl", records)
    capsys.readouterr()
    assert (
        main(
            [
                "irl",
                str(pairs),
                "--method",
                "max_margin",
                "--method",
                "fa_irl_mm_gt",
                "--out",
                str(out),
                "--set",
                "pairs.test_fraction=0.1",
                *FAST,
            ]
        )
        == 0
    )
    warnings = [w for w in capsys.readouterr().err.splitlines() if w.startswith("fairl: warning: ")]
    text = "\n".join(warnings)
    assert "1 of 12 pairs have chosen == rejected (no preference); dropped them" in text
    assert "2 rows repeat an earlier row exactly; dropped the repeats" in text
    assert "only 1 test pair" in text
    assert "fa_irl_mm_gt use ground-truth failures but no train pair has a chosen_label" in text
    assert "removed reward folders" in text and "max_entropy" in text
    assert sorted(p.name for p in (out / "rewards").iterdir()) == ["fa_irl_mm_gt", "max_margin"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_pairs"] == 1


# ---------------------------------------------------------------------------------------------- fairl score


@pytest.mark.parametrize("damage", ["truncate_weights", "corrupt_card", "card_missing_keys"])
def test_score_with_a_damaged_reward(trained, tmp_path, capsys, damage):
    reward = tmp_path / "reward"
    shutil.copytree(trained / "rewards" / "max_margin" / "seed0", reward)
    weights, card = reward / "reward.safetensors", reward / "reward_card.json"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "corrupt_card":
        card.write_text(card.read_text()[:40])
    else:
        card.write_text(json.dumps({"format": json.loads(card.read_text())["format"]}))
    texts = tmp_path / "texts.txt"
    texts.write_text("very kind\n")
    line = fail(capsys, ["score", str(reward), str(texts), "--out", str(tmp_path / "scores.txt")])
    assert str(reward) in line
    assert not (tmp_path / "scores.txt").exists()


def test_score_out_is_a_directory_or_in_a_missing_one(trained, tmp_path, capsys):
    reward = trained / "rewards" / "max_margin" / "seed0"
    texts = tmp_path / "texts.txt"
    texts.write_text("very kind\n")
    assert "is a directory" in fail(capsys, ["score", str(reward), str(texts), "--out", str(tmp_path)])
    assert "does not exist" in fail(
        capsys, ["score", str(reward), str(texts), "--out", str(tmp_path / "missing" / "s.txt")]
    )


def test_score_an_empty_texts_file_warns(trained, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("")
    assert main(["score", str(trained / "rewards" / "max_margin" / "seed0"), str(texts)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"fairl: warning: {texts} holds no texts; wrote no scores" in captured.err


def test_tune_out_is_a_file_or_in_a_missing_directory(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "p.jsonl", rows(12))
    (tmp_path / "file").write_text("keep me")
    assert "is a file" in fail(capsys, ["tune", "--pairs", str(pairs), "--out", str(tmp_path / "file")])
    assert "does not exist" in fail(capsys, ["tune", "--pairs", str(pairs), "--out", str(tmp_path / "no" / "out")])
    assert (tmp_path / "file").read_text() == "keep me" and not (tmp_path / "no").exists()

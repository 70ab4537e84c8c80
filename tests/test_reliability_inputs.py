"""Nothing silently wrong, nothing deleted before it is replaced (issue 13): line splitting, YAML aliases, long
values in messages, lone surrogates, file modes, `fairl irl` output replacement and locking, MLflow URIs of odd
paths, read-only workdirs, a busy MLflow store and pickled encoder weights."""

import json
import os
import subprocess
import sys

import pytest

from fairl_ray.cli import main

GOOD = ["kind", "helpful", "gentle", "friendly", "generous", "honest", "brave", "cheerful", "patient", "wise"]
BAD = ["stupid", "idiotic", "worthless", "pathetic", "disgusting", "moronic", "useless", "awful", "vile", "hateful"]
FAST = [
    a for kv in ("irl.epochs=20", "irl.curriculum_rounds=10", "seeds=[0]", "irl.hidden_dim=16") for a in ("--set", kv)
]
# Every character Python's str.splitlines() breaks on besides "\n" and "\r\n".
ODD_BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def rows(n):
    return [
        {
            "prompt": f"The neighbour number {i} is",
            "chosen": f"very {GOOD[i % 10]}",
            "rejected": f"so {BAD[(3 * i) % 10]} {i}",
            "chosen_label": 1,
            "rejected_label": -1,
        }
        for i in range(n)
    ]


def write_jsonl(path, records, ensure_ascii=True):
    path.write_text("".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in records), encoding="utf-8")
    return path


def fail(capsys, argv) -> str:
    """Run ``fairl argv``; assert it exits 2 with one ``fairl: error:`` line and no traceback; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().split("\n")[-1]
    assert line.startswith("fairl: error: "), err
    return line


# ------------------------------------------------------------------------------------------- text lines


def test_text_lines_split_on_newline_only(tmp_path):
    from fairl_ray.text_lines import read_lines

    path = tmp_path / "t.txt"
    path.write_bytes("a\fb\r\nc\x1cd\u2028e\n\nf\x85g\u2029\rh\n".encode())
    assert read_lines(path) == ["a\fb", "c\x1cd\u2028e", "", "f\x85g\u2029\rh"]
    path.write_bytes(b"no final newline")
    assert read_lines(path) == ["no final newline"]


def test_score_writes_one_score_per_input_line(trained, tmp_path):
    texts = tmp_path / "texts.txt"
    lines = [f"very kind{ch}and honest" for ch in ODD_BREAKS[:5]]
    texts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "scores.txt"
    assert main(["score", str(trained / "rewards" / "max_margin" / "seed0"), str(texts), "--out", str(out)]) == 0
    n_lines = subprocess.run(["wc", "-l", str(texts)], capture_output=True, text=True).stdout.split()[0]
    assert len(out.read_text().split("\n")[:-1]) == int(n_lines) == 5


def test_jsonl_texts_keep_unicode_line_separators(trained, tmp_path):
    texts = write_jsonl(tmp_path / "t.jsonl", [{"text": f"a{ch}b"} for ch in ODD_BREAKS], ensure_ascii=False)
    out = tmp_path / "scores.txt"
    assert main(["score", str(trained / "rewards" / "max_margin" / "seed0"), str(texts), "--out", str(out)]) == 0
    assert len(out.read_text().split("\n")[:-1]) == len(ODD_BREAKS)


def test_pairs_jsonl_keeps_unicode_line_separators(tmp_path):
    from fairl_ray.pairs_io import read_pairs

    records = [{**r, "chosen": r["chosen"] + "\u2028" + ODD_BREAKS} for r in rows(4)]
    table = read_pairs(write_jsonl(tmp_path / "p.jsonl", records, ensure_ascii=False))
    assert table.column("chosen").to_pylist() == [r["chosen"] for r in records]


# ------------------------------------------------------------------------------------------- YAML aliases

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)


@pytest.mark.parametrize("argv", [["run"], ["run", "--print-config"], ["tune"]])
def test_yaml_alias_bomb_config_is_refused(tmp_path, capsys, argv):
    config = tmp_path / "bomb.yaml"
    config.write_text(BOMB)
    assert len(BOMB) < 400
    line = fail(capsys, [argv[0], str(config), *argv[1:], "--workdir", str(tmp_path / "w")])
    assert str(config) in line and "alias" in line and "line 2" in line
    assert not (tmp_path / "w").exists()


def test_yaml_alias_in_a_set_value_is_refused_briefly(tmp_path, capsys):
    value = "[" + ",".join(["&a [1,2,3,4,5,6,7,8,9]"] + ["*a"] * 9) + "]"
    line = fail(capsys, ["run", "--set", f"irl.margin={value}", "--print-config"])
    assert "irl.margin" in line and "alias" in line and len(line) < 600


def test_long_values_are_cut_in_error_messages(capsys):
    line = fail(capsys, ["run", "--set", "irl.margin=" + "x" * 100_000, "--print-config"])
    assert "irl.margin" in line and "xxx..." in line and len(line) < 600
    line = fail(capsys, ["run", "--set", "irl.margin=[" + ",".join(["1"] * 5_000) + "]", "--print-config"])
    assert "irl.margin" in line and len(line) < 600


# ------------------------------------------------------------------------------------------- surrogates


def test_lone_surrogate_in_pairs_names_file_row_and_column(tmp_path, capsys):
    records = rows(12)
    records[5]["rejected"] = "so \ud83d bad"
    pairs = write_jsonl(tmp_path / "p.jsonl", records)
    for argv in (["irl", str(pairs), "--out", str(tmp_path / "out")], ["tune", "--pairs", str(pairs)]):
        line = fail(capsys, argv)
        assert str(pairs) in line and "row 5 (line 6)" in line and "'rejected'" in line and "surrogate" in line
    assert not (tmp_path / "out").exists()


def test_lone_surrogate_in_score_texts_names_file_line_and_column(trained, tmp_path, capsys):
    texts = tmp_path / "t.jsonl"
    texts.write_text('{"text": "fine"}\n{"text": "bad \\udc00 text"}\n')
    line = fail(capsys, ["score", str(trained / "rewards" / "max_margin" / "seed0"), str(texts)])
    assert str(texts) in line and "line 2" in line and "'text'" in line and "surrogate" in line


# ------------------------------------------------------------------------------------------- file modes


def test_atomic_files_respect_the_umask(tmp_path):
    from fairl_ray.atomic_io import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o027)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real ``fairl irl`` run with two methods."""
    root = tmp_path_factory.mktemp("trained")
    pairs = write_jsonl(root / "pairs.jsonl", rows(40))
    argv = ["irl", str(pairs), "--method", "max_margin", "--method", "max_entropy", "--out", str(root / "out")]
    assert main(argv + FAST) == 0
    return root / "out"


def py(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, **kwargs)

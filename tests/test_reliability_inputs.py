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


# --------------------------------------------------------------------------------- fairl irl outputs


def _irl_argv(pairs, out, *methods):
    return ["irl", str(pairs), *[a for m in methods for a in ("--method", m)], "--out", str(out), *FAST]


def test_irl_rerun_replaces_rewards_only_when_complete_and_only_its_own(trained, tmp_path):
    import shutil
    import signal
    import time

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    (out / "rewards" / "mine").mkdir()
    (out / "rewards" / "mine" / "notes.txt").write_text("the user's own")
    before = (out / "metrics.json").read_text()
    pairs = write_jsonl(tmp_path / "p.jsonl", rows(30))
    # Killed while it trains: the earlier rewards and metrics are all still there.
    proc = py(f"from fairl_ray.cli import main; main({_irl_argv(pairs, out, 'fa_irl_mm_margin')!r})")
    deadline = time.monotonic() + 120
    while not any(out.glob(".fairl-irl-new-*/features.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert sorted(p.name for p in (out / "rewards").iterdir()) == ["max_entropy", "max_margin", "mine"]
    assert (out / "metrics.json").read_text() == before
    assert (out / "rewards" / "max_margin" / "seed0" / "reward_card.json").is_file()
    # Run to the end: its rewards replace those an earlier fairl irl made; the user's folder stays.
    assert main(_irl_argv(pairs, out, "fa_irl_mm_margin")) == 0
    assert sorted(p.name for p in (out / "rewards").iterdir()) == ["fa_irl_mm_margin", "mine"]
    assert (out / "rewards" / "mine" / "notes.txt").read_text() == "the user's own"
    assert {m["method"] for m in json.loads((out / "metrics.json").read_text())["per_member"]} == {"fa_irl_mm_margin"}
    assert "rewards/fa_irl_mm_margin" in json.loads((out / "manifest.json").read_text())["made"]
    assert not list(out.glob(".fairl-irl-*"))


def test_second_irl_on_one_out_waits_for_the_first(tmp_path, capsys):
    import time

    out = tmp_path / "out"
    holder = py(
        "import time; from fairl_ray.orchestration.stage_store import workdir_lock\n"
        f"with workdir_lock({str(out)!r}, command='fairl irl'):\n    print('locked', flush=True); time.sleep(4)",
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    pairs = write_jsonl(tmp_path / "p.jsonl", rows(20))
    t0 = time.monotonic()
    assert main(_irl_argv(pairs, out, "max_margin")) == 0
    holder.wait(timeout=30)
    printed = capsys.readouterr().out
    assert f"another fairl irl (pid {holder.pid}," in printed and "waiting for it to finish" in printed
    assert time.monotonic() - t0 > 2


# ------------------------------------------------------------------------------------------ MLflow URIs


@pytest.mark.parametrize("name", ["wq?x", "w%41", "w #q"])
def test_mlflow_store_of_an_odd_workdir_name_stays_inside_it(tmp_path, name):
    from mlflow import MlflowClient

    from fairl_ray.orchestration.tracking import Tracker, default_tracking_uri, sqlite_path

    workdir = tmp_path / name
    workdir.mkdir()
    uri = default_tracking_uri(workdir)
    assert sqlite_path(uri) == (workdir / "mlflow.db").resolve()
    tracker = Tracker(uri, workdir / "mlartifacts")
    run = tracker.start_run("stage")
    tracker.log_metrics(run, {"auc": 0.75})
    (tmp_path / "card.json").write_text("{}")
    tracker.log_artifact(run, tmp_path / "card.json")
    tracker.end_run(run)
    # MLflow 3.17 itself makes the parent of the URI's path as written (quoted): an empty directory, nothing in it.
    stray = [p for p in tmp_path.iterdir() if p.name not in ("card.json", name)]
    assert [p.name for p in stray] in ([], [name.replace("%", "%25").replace("?", "%3F")])
    assert all(not any(p.iterdir()) for p in stray)
    assert (workdir / "mlflow.db").is_file() and (workdir / "mlflow.db.lock").is_file()
    client = MlflowClient(uri)
    assert client.get_run(run).data.metrics == {"auc": 0.75}
    assert [f.path for f in client.list_artifacts(run)] == ["card.json"]
    assert list((workdir / "mlartifacts").rglob("card.json"))


# ------------------------------------------------------------------------------------- busy MLflow store


def test_run_on_a_store_locked_by_another_process_names_it(tmp_path, capsys, monkeypatch):
    import time

    from fairl_ray.orchestration.tracking import StoreBusyError, Tracker, default_tracking_uri

    workdir = tmp_path / "w"
    uri = default_tracking_uri(workdir)
    Tracker(uri)
    db = workdir / "mlflow.db"
    holder = py(
        f"import sqlite3, time; con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "con.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("FAIRL_STORE_WAIT_S", "2")
        t0 = time.monotonic()
        line = fail(capsys, ["run", "--workdir", str(workdir)])
        assert 1.5 < time.monotonic() - t0 < 20
        assert str(db) in line and "locked" in line and f"pid {holder.pid}" in line
        with pytest.raises(StoreBusyError, match=f"pid {holder.pid}"):
            Tracker(uri)
    finally:
        holder.kill()
        holder.wait()
    Tracker(uri)  # free again: opens at once


# --------------------------------------------------------------------------------- read-only workdirs


@pytest.fixture
def immutable():
    """Make a tree read-only even for root (tests run as root, which ignores chmod): ``chattr -R +i``."""
    frozen = []

    def freeze(path):
        if subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported here")
        frozen.append(path)

    yield freeze
    for path in frozen:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)


def test_run_on_a_read_only_workdir_says_what_could_not_be_written(tmp_path, capsys, immutable):
    workdir = tmp_path / "archived"
    workdir.mkdir()
    (workdir / "results.json").write_text("{}")
    immutable(workdir)
    line = fail(capsys, ["run", "--workdir", str(workdir)])
    assert str(workdir) in line and "cannot write" in line


def test_ui_serves_a_read_only_workdir(tmp_path, immutable):
    import socket
    import time
    import urllib.request

    from fairl_ray.orchestration.tracking import Tracker, default_tracking_uri

    workdir = tmp_path / "archived"
    tracker = Tracker(default_tracking_uri(workdir), workdir / "mlartifacts")
    run = tracker.start_run("stage")
    (tmp_path / "card.json").write_text("{}")
    tracker.log_artifact(run, tmp_path / "card.json")
    tracker.end_run(run)
    immutable(workdir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen(
        [sys.executable, "-m", "fairl_ray.cli", "ui", "--workdir", str(workdir), "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert ui.poll() is None, ui.stdout.read()
            assert time.monotonic() < deadline, "the MLflow UI never came up"
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        url = f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={run}"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert [f["path"] for f in json.load(r)["files"]] == ["card.json"]
    finally:
        ui.terminate()
        ui.wait(timeout=60)
    assert "read-only" in ui.stdout.read()


# ------------------------------------------------------------------------------------------- encoders


class _Payload:
    """A pickle that would run a command when unpickled (it must never be)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_encoder_weights_are_refused_and_say_why(tmp_path, capsys):
    import pickle

    from fairl_ray.features import resolve_encoder_path

    packaged = resolve_encoder_path("all-MiniLM-L6-v2")
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    for item in packaged.iterdir():  # the packaged model's files, with its weights as a pickle
        if item.name != "model.safetensors":
            (encoder / item.name).symlink_to(item)
    marker = tmp_path / "payload-ran"
    (encoder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Payload(marker)}))
    pairs = write_jsonl(tmp_path / "p.jsonl", rows(12))
    argv = ["irl", str(pairs), "--set", f"features.encoder={encoder}", "--out", str(tmp_path / "o"), *FAST]
    line = fail(capsys, argv)
    assert "pytorch_model.bin" in line and "pickled weights are not loaded" in line and "safetensors" in line
    assert "weights_only" not in line
    assert not marker.exists()


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


def test_a_swap_killed_between_its_two_renames_loses_nothing(tmp_path):
    """``fairl irl`` replaces each output by two renames (old aside, new in). Killed between them, an output exists
    only aside: the next run puts it back before it cleans up, so the old reward is not lost."""
    import json

    from fairl_ray.irl_on_pairs import ASIDE_INDEX, OLD_PREFIX, restore_aside

    out = tmp_path / "out"
    aside = out / f"{OLD_PREFIX}x"
    (aside / "0").mkdir(parents=True)  # rewards/b: set aside, its new copy never arrived
    (aside / "0" / "reward.safetensors").write_bytes(b"old b")
    (aside / "1").write_text("old metrics")  # metrics.json: set aside, and the new one is in place
    (out / "metrics.json").write_text("new metrics")
    (aside / ASIDE_INDEX).write_text(json.dumps(["rewards/b", "metrics.json"]))
    restore_aside(out, aside)
    assert (out / "rewards" / "b" / "reward.safetensors").read_bytes() == b"old b"
    assert (out / "metrics.json").read_text() == "new metrics"

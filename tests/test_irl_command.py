"""`fairl irl` and `fairl score` on a user's pairs file, with the real packaged encoder."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fairl_ray.cli import main

GOOD = ["kind", "helpful", "gentle", "friendly", "generous", "honest", "brave", "cheerful", "patient", "wise"]
BAD = ["stupid", "idiotic", "worthless", "pathetic", "disgusting", "moronic", "useless", "awful", "vile", "hateful"]


def pairs_rows(n=60):
    rows = []
    for i in range(n):
        rows.append(
            {
                "prompt": f"The neighbour number {i} is",
                "chosen": f"very {GOOD[i % len(GOOD)]}",
                "rejected": f"so {BAD[(3 * i) % len(BAD)]}",
                "chosen_label": 1,
                "rejected_label": -1,
                "chosen_reward": 0.5,
                "rejected_reward": -0.5,
            }
        )
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


FAST = [
    "--set",
    "irl.epochs=40",
    "--set",
    "irl.curriculum_rounds=20",
    "--set",
    "seeds=[0, 1]",
    "--set",
    "irl.hidden_dim=32",
]


def test_fairl_irl_writes_rewards_and_metrics_and_score_uses_them(tmp_path, capsys, monkeypatch):
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(pairs_rows()), pairs)
    out = tmp_path / "out"
    assert (
        main(["irl", str(pairs), "--method", "max_margin", "--method", "fa_irl_mm_gt", "--out", str(out), *FAST]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_method"]) == {"max_margin", "fa_irl_mm_gt"}
    assert metrics["test_pairs"] == 15  # 25% held out (pairs.test_fraction)
    for member in metrics["per_member"]:
        assert member["pair_accuracy"] >= 0.9, member
    reward_dir = out / "rewards" / "fa_irl_mm_gt" / "seed1"
    card = json.loads((reward_dir / "reward_card.json").read_text())
    assert card["method"] == "fa_irl_mm_gt" and card["encoder"] == "all-MiniLM-L6-v2"
    assert (out / "reward_distributions.png").stat().st_size > 1000

    # One MLflow run `irl` in <out>/mlflow.db, a child per method measured as `fairl run`'s method runs are.
    from mlflow import MlflowClient

    from fairl_ray.orchestration.tracking import default_tracking_uri

    assert "MLflow run " in capsys.readouterr().out
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fairl-ray").experiment_id], "run_name = 'irl'")
    assert run.info.status == "FINISHED" and run.data.params["irl.epochs"] == "40"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"metrics.json", "report.md"}
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    by_method = {c.data.params["method"]: c for c in children}
    assert set(by_method) == {"max_margin", "fa_irl_mm_gt"}
    for method, child in by_method.items():
        assert child.info.run_name == method and child.data.params["seeds"] == "[0, 1]"
        roc_auc = metrics["per_method"][method]["roc_auc"]["mean"]
        assert child.data.metrics["test.roc_auc"] == pytest.approx(roc_auc)
    assert "test.failure_path_share" in by_method["fa_irl_mm_gt"].data.metrics
    # and every output is readable by the group and others, as far as the umask lets files be
    import os

    umask = os.umask(0)  # reading the umask sets it: put it back at once
    os.umask(umask)
    readable = 0o044 & ~umask
    assert not [p for p in out.rglob("*") if p.stat().st_mode & readable != readable]

    texts = tmp_path / "texts.txt"
    texts.write_text("very kind\nso stupid\nvery helpful\n")
    capsys.readouterr()
    assert main(["score", str(reward_dir), str(texts)]) == 0
    scores = [float(s) for s in capsys.readouterr().out.split()]
    assert len(scores) == 3 and scores[0] > scores[1] and scores[2] > scores[1]

    # A whole run's rewards at once: a TSV with one column per reward, the texts encoded once
    from fairl_ray.features import SentenceEncoder

    calls = []
    real_encode = SentenceEncoder.encode
    monkeypatch.setattr(
        SentenceEncoder, "encode", lambda self, t, *a, **k: calls.append(len(t)) or real_encode(self, t, *a, **k)
    )
    assert main(["score", str(out / "rewards"), str(texts)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    names = header.split("\t")
    assert len(names) == len(list((out / "rewards").rglob("reward_card.json"))) >= 2
    assert calls == [3]  # one encoding for every reward
    table = np.array([[float(x) for x in r.split("\t")] for r in rows])
    assert table.shape == (3, len(names))
    assert table[:, names.index("fa_irl_mm_gt/seed1")] == pytest.approx(scores, abs=1e-6)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_empty_chosen_in_row_7_names_row_and_column_and_writes_nothing(tmp_path, suffix):
    rows = pairs_rows(10)
    rows[7]["chosen"] = ""
    pairs = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        write_jsonl(pairs, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), pairs)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "fairl_ray.cli", "irl", str(pairs), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "row 7" in result.stderr and "chosen" in result.stderr
    assert not out.exists()


def test_non_numeric_label_and_missing_column(tmp_path, capsys):
    rows = pairs_rows(10)
    rows[3]["rejected_label"] = "toxic"
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, rows)
    assert main(["irl", str(pairs), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "rejected_label" in err
    write_jsonl(pairs, [{k: v for k, v in r.items() if k != "rejected"} for r in pairs_rows(5)])
    assert main(["irl", str(pairs), "--out", str(tmp_path / "o")]) == 2
    assert "rejected" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_score_rejects_a_directory_that_is_not_a_reward(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("x\n")
    assert main(["score", str(tmp_path), str(tmp_path / "t.txt")]) == 2
    assert "not a reward artifact" in capsys.readouterr().err


def test_ui_serves_the_workdir_store_on_localhost(tmp_path):
    from fairl_ray.orchestration.tracking import Tracker, default_tracking_uri

    Tracker(default_tracking_uri(tmp_path))  # creates the sqlite store
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fairl_ray.cli", "ui", "--workdir", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline, body = time.time() + 90, None
        while time.time() < deadline and body is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read().decode()
            except OSError:
                time.sleep(1)
        assert body is not None and "OK" in body
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

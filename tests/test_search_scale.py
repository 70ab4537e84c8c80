"""`fairl tune` at scale: packed trials, pruning, several models, ASHA, live MLflow, kill -9 + resume, retries.

Same synthetic workdirs as test_search.py (pairs from a known linear reward over 16-d features, no encoder).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pandas as pd
import pytest
from mlflow import MlflowClient
from test_search import make_workdir

from fairl_ray.cli import main
from fairl_ray.orchestration.tracking import default_tracking_uri
from fairl_ray.search import data_from_workdir, evaluate_config, evaluate_pack, load_search_config

SMALL = [
    "fixed.epochs=6",
    "fixed.hidden_dim=16",
    "space.curriculum_rounds.randint=[2, 6]",
    "seeds=[0, 1]",
    "fresh_seeds=[7]",
]


def sets(*overrides):
    return [x for o in overrides for x in ("--set", o)]


def children(workdir, name):
    client = MlflowClient(tracking_uri=default_tracking_uri(workdir))
    runs = client.search_runs([client.get_experiment_by_name("fairl-ray").experiment_id], max_results=5000)
    parent = next(r for r in runs if r.info.run_name == f"tune:{name}")
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def test_a_pack_scores_each_config_as_if_it_were_trained_alone(tmp_path):
    """Packing is free of cross-talk: configs trained × seeds in ONE batched ensemble get the metrics each gets
    alone (up to float rounding)."""
    cfg = load_search_config(None, SMALL)
    data = data_from_workdir(make_workdir(tmp_path / "wd"), cfg)
    configs = [
        {"method": "fa_irl_mm_gt", "epochs": 6, "hidden_dim": 16, "curriculum_rounds": 3, "lambda_0": 2.0},
        {"method": "fa_irl_me_margin", "epochs": 5, "hidden_dim": 16, "curriculum_rounds": 5, "lr": 3e-3},
        {"method": "max_margin", "epochs": 4, "hidden_dim": 8},
    ]
    packed = evaluate_pack(data, configs, [0, 1], "val")
    for c, p in zip(configs, packed):
        alone = evaluate_config(data, c, [0, 1], "val")
        for metric in ("starc", "pair_accuracy", "roc_auc"):
            assert p[metric]["mean"] == pytest.approx(alone[metric]["mean"], abs=1e-4), (c["method"], metric)


def test_two_models_side_by_side_with_pruning_and_asha(tmp_path, ray_session, capsys):
    """Two runs in one search (`models:`), packs of 3 under ASHA, the median pruner inside packs: a best config per
    model, the cross-model matrix, pruned configs stopped at the first rung, one MLflow child per config."""
    a, b = make_workdir(tmp_path / "a", seed=0), make_workdir(tmp_path / "b", seed=5)
    search = tmp_path / "search.yaml"
    search.write_text(
        textwrap.dedent(f"""\
        name: two
        models:
          - {{name: a, workdir: {a}}}
          - {{name: b, workdir: {b}}}
        space:
          method: {{choice: [fa_irl_mm_gt, fa_irl_me_gt]}}
          lambda_0: {{loguniform: [0.5, 30.0]}}
          lr: {{loguniform: [0.0003, 0.01]}}
          curriculum_rounds: {{randint: [2, 6]}}
        """)
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "tune",
                str(search),
                "--out",
                str(out),
                "--workdir",
                str(a),
                *sets(
                    *SMALL,
                    "num_samples=9",
                    "pack_size=3",
                    "max_concurrent_trials=1",
                    "scheduler=asha",
                    "pruner=median",
                    "pruner_startup=1",
                    "fixed.epochs=8",
                ),
            ]
        )
        == 0
    )
    best = json.loads((out / "best.json").read_text())
    trials = pd.read_csv(out / "trials.csv")
    assert set(best["models"]) == {"a", "b"} and best["primary_model"] == "a"
    assert len(trials) == 18 and set(trials["status"]) <= {"ok", "pruned"}
    for m in ("a", "b"):
        mine = trials[trials["model"] == m]
        ok = mine[mine["status"] == "ok"]
        assert best["models"][m]["best_val_objective"] == pytest.approx(ok["val_starc"].min())
        assert (out / "models" / m / "best_irl.yaml").is_file()
    pruned = trials[trials["status"] == "pruned"]
    assert len(pruned) >= 1, "the median pruner never stopped a config"
    assert (pruned["epochs"] == 2).all() and (trials.loc[trials["status"] == "ok", "epochs"] == 8).all()
    matrix = best["comparison"]["matrix"]
    assert set(matrix) == {"a", "b"} and all(set(row) == {"a", "b"} for row in matrix.values())
    table = (out / "models.md").read_text()
    header = table.splitlines()[2].split("|")
    assert [h.strip() for h in header[1:4]] == ["hyperparameter", "a", "b"] and best["comparison"]["statement"] in table
    assert "wins everywhere" in best["comparison"]["statement"]
    _, runs = children(a, "two")
    trial_runs = [r for r in runs if r.data.tags.get("fairl.kind") == "tune_trial"]
    assert sorted(r.data.tags["fairl.trial"] for r in trial_runs) == sorted(trials["trial_id"])
    assert {r.data.tags["optuna.state"] for r in trial_runs} == {"COMPLETE", "PRUNED"}
    assert {r.info.run_name for r in runs} >= {"best_on_fresh_seeds:a", "best_on_fresh_seeds:b"}
    assert "Best config per model" in capsys.readouterr().out


def test_a_changed_search_in_the_same_out_is_refused(tmp_path, capsys):
    wd = make_workdir(tmp_path / "wd")
    state = wd / "tune" / "fa-irl" / "state"
    state.mkdir(parents=True)
    (state / "search.json").write_text(json.dumps({"name": "fa-irl", "fingerprint": "0000", "parent_run_id": "x"}))
    assert main(["tune", "--workdir", str(wd), "--set", "num_samples=3"]) == 2
    assert "different config" in capsys.readouterr().err and not (wd / "mlflow.db").exists()


def test_a_search_over_changed_data_in_the_same_out_is_refused(tmp_path, capsys):
    wd = make_workdir(tmp_path / "wd")
    cfg = load_search_config(None, [])
    state = wd / "tune" / "fa-irl" / "state"
    state.mkdir(parents=True)
    (state / "search.json").write_text(
        json.dumps(
            {
                "name": "fa-irl",
                "fingerprint": cfg.fingerprint(),
                "parent_run_id": "x",
                "data": {"main": "0123456789abcdef"},
            }
        )
    )
    assert main(["tune", "--workdir", str(wd)]) == 2
    assert "over different data (model(s) main changed" in capsys.readouterr().err


def test_realign_top_needs_a_run_workdir(tmp_path, capsys):
    from test_irl_command import pairs_rows, write_jsonl

    write_jsonl(tmp_path / "pairs.jsonl", pairs_rows(12))
    assert (
        main(["tune", "--pairs", str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "o"), "--realign-top", "2"])
        == 2
    )
    assert "--realign-top needs a finished `fairl run` workdir" in capsys.readouterr().err


KILL_RUN = sets(
    *SMALL,
    "num_samples=32",
    "pack_size=4",
    "max_concurrent_trials=1",
    "fixed.epochs=40",
    "space.curriculum_rounds.randint=[5, 40]",
    "pruner=none",
)


def _tune(workdir, env, lines, stop_after=None):
    """`fairl tune` in its own process (its own Ray); collects output lines; SIGKILLs it after ``stop_after``
    configs were logged. Returns the exit status."""
    code = "import sys; from fairl_ray.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "tune", "--workdir", str(workdir), *KILL_RUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.time() + 400
    try:
        while proc.poll() is None and time.time() < deadline:
            done = sum(1 for l in lines if l.startswith("[tune] ") and "/32 main/" in l)
            if stop_after is not None and done >= stop_after:
                os.kill(proc.pid, signal.SIGKILL)  # kill -9 the `fairl tune` driver mid-way
                break
            time.sleep(0.2)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        try:  # Ray's own processes fate-share with the driver; make sure none of ours lingers either way
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reader.join(timeout=10)
    return proc.returncode


def test_kill_9_mid_search_then_rerun_completes_only_the_rest(tmp_path):
    """Acceptance: kill -9 a `fairl tune` of 32 configs mid-way; the rerun resumes it (from the Optuna
    journal), evaluates only the remaining configs, and MLflow holds exactly one child per config. The first
    run also has a pack crash once (injected): FailureConfig retries it and keeps its finished configs."""
    wd = make_workdir(tmp_path / "wd")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "FAIRL_TUNE_CRASH_ONCE": str(tmp_path / "crashed")}
    env.pop("RAY_ADDRESS", None)
    first = []
    rc = _tune(wd, env, first, stop_after=10)
    log1 = "\n".join(first)
    assert rc == -signal.SIGKILL, log1[-3000:]
    assert (tmp_path / "crashed").is_file() and "crashed (retried" in log1, log1[-3000:]
    logged_first = {l.split()[2] for l in first if l.startswith("[tune] ") and "/32 main/" in l}
    assert 10 <= len(logged_first) < 32

    env.pop("FAIRL_TUNE_CRASH_ONCE")
    second = []
    assert _tune(wd, env, second) == 0, "\n".join(second)[-3000:]
    log2 = "\n".join(second)
    assert "resuming from the Optuna journal" in log2, log2[-3000:]
    logged_second = {l.split()[2] for l in second if l.startswith("[tune] ") and "/32 main/" in l}
    assert not logged_first & logged_second  # nothing evaluated/logged twice ...
    assert len(logged_first | logged_second) <= 32  # (a config told to Optuna just before the kill is logged by
    # the rerun's reconciliation instead of a progress line)

    import optuna

    from fairl_ray.search.study import journal_path

    out = wd / "tune" / "fa-irl"
    study = optuna.load_study(
        study_name="main",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal_path(out)))),
    )
    tagged = [t for t in study.get_trials() if "pack" in t.user_attrs]
    assert len(tagged) == 32 and all(t.state.name == "COMPLETE" for t in tagged)  # ... and nothing lost
    parent, runs = children(wd, "fa-irl")
    keys = [r.data.tags["fairl.trial"] for r in runs if r.data.tags.get("fairl.kind") == "tune_trial"]
    assert len(keys) == 32 and len(set(keys)) == 32  # exactly one MLflow child per config
    assert parent.info.status == "FINISHED"
    assert len(pd.read_csv(out / "trials.csv")) == 32
    print(
        f"kill -9 after {len(logged_first)} logged configs; the rerun logged {len(logged_second)} more; "
        f"Optuna: {len(tagged)} finished configs; MLflow: {len(keys)} children"
    )

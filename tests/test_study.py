"""``fairl study``: variants of one experiment as one Ray job on a shared stage store — shared stages computed
once, every shipped study at a small size, a killed study resumed. Real Ray, TRL, encoder and MLflow (sqlite).
(The two-node test of variants running side by side is in tests/test_multinode.py.)"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fairl_ray.config import tune_configs_dir
from fairl_ray.config.study import load_study
from fairl_ray.orchestration.study import Study

HERE = Path(__file__).resolve().parent
#: a small variant: the e2e test's sizes, one IRL seed and method, no re-RLHF
SMALL = [
    "seeds=[0, 1]",
    "prompts.n_rlhf=16",
    "prompts.n_pairs=160",
    "prompts.n_eval=16",
    "expert_rlhf.max_steps=2",
    "expert_rlhf.per_device_train_batch_size=8",
    "irl.methods=[max_margin, fa_irl_mm_margin]",
    "irl.epochs=10",
    "irl.curriculum_rounds=5",
    "irl.hidden_dim=16",
    "realign.methods=[]",
]
SHARED = ("base_policy", "prompts", "expert_rlhf", "generate", "reference_toxicity")


def _run(study, workdir):
    lines = []
    summary = Study(study, workdir, log=lines.append).run()
    return summary, "\n".join(lines)


def test_pair_mix_study_trains_and_generates_once_for_every_fraction(ray_session, tmp_path):
    study = load_study(tune_configs_dir() / "studies" / "pair_mix.yaml", SMALL)
    assert len(study.variants) == 5
    summary, log = _run(study, tmp_path / "pm")
    computed = {v["name"]: set(v["computed"]) for v in summary["variants"]}
    first, *rest = computed.values()
    assert set(SHARED) <= first
    for name, stages in list(computed.items())[1:]:
        assert not stages & set(SHARED), name  # shared with the first variant, not recomputed
        assert {"pairs", "irl", "evaluate"} <= stages, name
    for stage in SHARED:  # ran once in the log, shared by the 4 others
        assert len(re.findall(rf"\] \[fairl\] {stage} +running", log)) == 1, stage
        assert len(re.findall(rf"\] \[fairl\] {stage} +shared", log)) == 4, stage
    # every variant has its own results, and different pair mixes really made different pairs
    pairs = set()
    for v in summary["variants"]:
        results = json.loads((tmp_path / "pm" / v["workdir"] / "results.json").read_text())
        assert "max_margin" in results["metrics"]["per_method"]
        pairs.add(results["stages"]["pairs"]["key"])
    assert len(pairs) == 5
    assert "toxic_to_nontoxic_fraction" in (tmp_path / "pm" / "study.md").read_text()
    page = (tmp_path / "pm" / "report.html").read_text()  # curves along the axis, rebuilt from the stored results
    assert "pairs.toxic_to_nontoxic_fraction" in page and page.count("data:image/png;base64,") >= 1
    # MLflow: one study run, a child per variant whose params carry the axis
    client = MlflowClient(summary["mlflow"]["tracking_uri"])
    experiment = client.get_experiment_by_name("fairl-ray").experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{summary['mlflow']['study_run_id']}'")
    fractions = sorted(float(r.data.params["pairs.toxic_to_nontoxic_fraction"]) for r in children)
    assert fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    study_run = client.get_run(summary["mlflow"]["study_run_id"])
    assert study_run.info.status == "FINISHED" and study_run.data.tags["fairl.kind"] == "study"


@pytest.mark.parametrize("name", ["model_size", "rl_noise", "preference_noise", "expert_seeds"])
def test_every_shipped_study_runs_at_a_small_size(ray_session, tmp_path, name):
    study = load_study(
        tune_configs_dir() / "studies" / f"{name}.yaml", [*SMALL, "seeds=[0]", "irl.methods=[max_margin]"]
    )
    summary, _ = _run(study, tmp_path / name)
    assert [v["name"] for v in summary["variants"]] == [v.name for v in study.variants]
    for v in summary["variants"]:
        results = json.loads((tmp_path / name / v["workdir"] / "results.json").read_text())
        assert results["metrics"]["per_method"]["max_margin"]["pair_accuracy"]["n"] == 1
    experts = {
        json.loads((tmp_path / name / v["workdir"] / "results.json").read_text())["stages"]["expert_rlhf"]["key"]
        for v in summary["variants"]
    }
    # the studies that vary the expert's recipe train one expert per variant; the others share one
    assert len(experts) == (len(study.variants) if name != "preference_noise" else 1)


def test_a_killed_study_resumes_without_recomputing_finished_stages(ray_session, tmp_path):
    study_file = tmp_path / "two.yaml"
    study_file.write_text("name: two\nbase: default.yaml\ngrid:\n  pairs.flip_fraction: [0.0, 0.2]\n")
    workdir = tmp_path / "two"
    argv = [sys.executable, "-m", "fairl_ray.cli", "study", str(study_file), "--workdir", str(workdir)]
    for s in SMALL:
        argv += ["--set", s]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 600
    try:  # kill it once the expert is finished and before the study is
        while time.time() < deadline and not list((workdir / "stages").glob("generate-*/stage.json")):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and not (workdir / "study.json").exists(), out[-3000:]
    finished = {p.parent.name for p in (workdir / "stages").glob("*/stage.json")}
    assert any(n.startswith("expert_rlhf-") for n in finished)

    summary, log = _run(load_study(study_file, SMALL), workdir)
    recomputed = {f"{s}-{k}" for v in summary["variants"] for s, k in _computed_keys(workdir, v)}
    assert not recomputed & finished, recomputed & finished
    assert "expert_rlhf" in log and not re.search(r"\[fairl\] expert_rlhf +running", log)
    assert (workdir / "study.json").is_file()


def _computed_keys(workdir: Path, variant: dict):
    stages = json.loads((workdir / variant["workdir"] / "results.json").read_text())["stages"]
    return [(name, stages[name]["key"]) for name in variant["computed"]]

"""An extracted reward logged as an MLflow pyfunc (texts → rewards): same rewards as ``fairl score``, no pickles."""

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from fairl_ray.cli import main
from fairl_ray.features import DEFAULT_ENCODER
from fairl_ray.irl.heads import init_member_params
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.mlflow_model import load_reward_model, log_reward_model
from fairl_ray.irl.reward import save_reward
from fairl_ray.irl.trainer import TrainedMember
from fairl_ray.orchestration.tracking import Tracker, sqlite_uri

TEXTS = ["you are wonderful", "you are an idiot", "the weather is nice today"]


def test_logged_reward_predicts_what_fairl_score_prints(tmp_path, capsys):
    cfg = IRLConfig(method="max_margin", head="linear", seed=0)
    params = init_member_params("linear", 384, 4, False, torch.Generator().manual_seed(0))
    member = TrainedMember(cfg, params, {"val_loss": [0.5]}, best_epoch=1, epochs_run=1)
    reward_dir = save_reward(tmp_path / "r", member, DEFAULT_ENCODER, {"mean": 0.1, "std": 2.0}, threshold=0.0)
    uri = sqlite_uri(tmp_path / "mlflow.db")
    tracker = Tracker(uri, artifact_root=tmp_path / "mlartifacts")
    run_id = tracker.start_run("irl")
    info = log_reward_model(uri, run_id, reward_dir, "reward_max_margin_seed0", registered_model_name="fairl-test")
    tracker.end_run(run_id)

    client = MlflowClient(uri)  # read back from the store: a logged model of the run, registered as version 1
    assert client.get_logged_model(info.model_id).source_run_id == run_id
    assert client.get_model_version("fairl-test", "1").run_id == run_id
    model = load_reward_model(info.model_uri, uri)
    assert model.metadata.signature is not None
    assert str(model.metadata.signature.inputs.inputs[0].type) in ("DataType.string", "string")
    predicted = np.asarray(model.predict(TEXTS), dtype=np.float64)
    files = {p.name for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file()}
    assert {"reward.safetensors", "reward_card.json", "reward_pyfunc.py", "MLmodel"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    for source in (str(reward_dir), "models:/fairl-test/1", f"runs:/{run_id}/reward_max_margin_seed0"):
        capsys.readouterr()
        assert main(["score", source, str(texts), "--tracking-uri", uri]) == 0
        scores = [float(x) for x in capsys.readouterr().out.split()]
        assert scores == pytest.approx(predicted, abs=1e-5), source

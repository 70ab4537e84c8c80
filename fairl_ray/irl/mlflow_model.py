"""An extracted reward as an MLflow pyfunc model (texts → rewards), so MLflow can hand it on (DESIGN §2).

The model folder holds no pickle: it is logged "from code" (``python_model`` is the path of
:mod:`fairl_ray.irl.reward_pyfunc`, which MLflow copies and runs at load time instead of cloudpickling an object),
and its one artifact is the reward directory :mod:`fairl_ray.irl.reward` writes (``reward.safetensors`` +
``reward_card.json``). The encoder is referenced by the card's offline name or path (``features.load_encoder``), not
packaged. Loading needs ``fairl_ray`` importable. The signature comes from ``predict``'s type hints.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

CODE_FILE = Path(__file__).with_name("reward_pyfunc.py")
ARTIFACT = "reward"  # the key of the reward directory in the model's artifacts


class RewardPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(texts) -> rewards``: the normalised rewards :class:`RewardModel` gives (``fairl score``'s)."""

    def load_context(self, context) -> None:
        from fairl_ray.irl.reward import RewardModel

        self.reward = RewardModel.from_dir(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: list[str], params=None) -> list[float]:
        return self.reward(list(model_input))


def log_reward_model(
    tracking_uri: str, run_id: str, reward_dir: str | Path, name: str, registered_model_name: str | None = None
):
    """Log ``reward_dir`` as a pyfunc model named ``name`` under ``run_id`` (registered as
    ``registered_model_name`` if given); returns MLflow's ``ModelInfo`` (``model_uri`` is ``models:/m-…``)."""
    import torch
    from mlflow.tracking import fluent

    previous, previous_experiment = mlflow.get_tracking_uri(), fluent._active_experiment_id
    # Model.log writes through the fluent client, and files the logged model under the *active* experiment (not
    # the run's): point both at the run's for this call, and put them back after.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient(tracking_uri).get_run(run_id).info.experiment_id)
    try:
        return mlflow.models.Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            python_model=str(CODE_FILE),
            artifacts={ARTIFACT: str(reward_dir)},
            # Given, not inferred: inference loads the model in a subprocess (seconds per model).
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                "safetensors",
            ],
            registered_model_name=registered_model_name,
            run_id=run_id,
        )
    finally:
        mlflow.set_tracking_uri(previous)
        fluent._active_experiment_id = previous_experiment


def load_reward_model(uri: str, tracking_uri: str | None = None):
    """A ``models:/…`` or ``runs:/…`` URI as a pyfunc (``.predict(texts)``), read from ``tracking_uri``."""
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(uri)

"""The models-from-code file of a logged reward (:mod:`fairl_ray.irl.mlflow_model`): MLflow runs it at load time."""

import mlflow

from fairl_ray.irl.mlflow_model import RewardPyfunc

mlflow.models.set_model(RewardPyfunc())

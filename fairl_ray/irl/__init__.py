"""The IRL engine: losses, failure sets, schedules, batched heads and trainer, reward artifact.

Papers: FA-IRL ("Learning from failures", §4, Algorithm 1) and Insights from the Inverse (eq. 1, §4).
"""

from .failures import (
    FAILURE_SOURCES,
    bottom_k_failure_mask,
    label_midpoint,
    margin_failure_mask,
    sample_failures,
    supervised_failure_mask,
)
from .heads import HeadEnsemble, init_member_params, member_params, reward_from_params
from .hyperparameters import IRLConfig
from .losses import (
    BASE_LOSSES,
    FAILURE_LOSSES,
    asymmetric_margin_loss,
    asymmetric_released_loss,
    fa_irl_loss,
    failure_max_entropy_loss,
    failure_max_margin_loss,
    masked_mean,
    max_entropy_loss,
    max_margin_loss,
)
from .methods import (
    METHOD_TABLE,
    METHODS,
    ROUTINGS,
    TABLE1_METHODS,
    Method,
    baseline_of,
    comparisons,
    get_method,
    other_routing_of,
    placebo_of,
)
from .schedules import failure_fraction_schedule, gamma_schedule, lambda_schedule

__all__ = [
    "BASE_LOSSES",
    "FAILURE_LOSSES",
    "FAILURE_SOURCES",
    "METHODS",
    "METHOD_TABLE",
    "TABLE1_METHODS",
    "Method",
    "baseline_of",
    "comparisons",
    "other_routing_of",
    "placebo_of",
    "ROUTINGS",
    "get_method",
    "label_midpoint",
    "failure_max_entropy_loss",
    "failure_max_margin_loss",
    "IRLConfig",
    "bottom_k_failure_mask",
    "margin_failure_mask",
    "sample_failures",
    "supervised_failure_mask",
    "HeadEnsemble",
    "init_member_params",
    "member_params",
    "reward_from_params",
    "asymmetric_margin_loss",
    "asymmetric_released_loss",
    "fa_irl_loss",
    "masked_mean",
    "max_entropy_loss",
    "max_margin_loss",
    "failure_fraction_schedule",
    "gamma_schedule",
    "lambda_schedule",
    "PairFeatures",
    "TrainedMember",
    "train_ensemble",
    "train_single",
    "RewardModel",
    "save_reward",
]


def __getattr__(name):  # trainer and reward artifact import lazily (keeps `import fairl_ray.irl` light)
    if name in ("PairFeatures", "TrainedMember", "train_ensemble", "train_single"):
        from . import trainer

        return getattr(trainer, name)
    if name in ("RewardModel", "save_reward"):
        from . import reward

        return getattr(reward, name)
    raise AttributeError(f"module 'fairl_ray.irl' has no attribute {name!r}")

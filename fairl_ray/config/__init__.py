"""fairl-ray's configuration, one package.

* :mod:`fairl_ray.config.loading` — the machinery: YAML files, ``key=value`` overrides, typed construction of
  dataclasses from plain data with dotted-key errors (:class:`ConfigError`).
* :mod:`fairl_ray.config.pipeline` — the pipeline's sections (:class:`PipelineConfig` and one dataclass per
  stage), :func:`load_config` and the shipped YAML paths.

The IRL engine's own per-member hyperparameters stay with the engine (:mod:`fairl_ray.irl.hyperparameters`).
"""

from fairl_ray.config.loading import (
    ConfigError,
    apply_overrides,
    flatten,
    from_dict,
    load_yaml,
    parse_override,
    to_dict,
)
from fairl_ray.config.pipeline import (
    WORLDS,
    EvaluationConfig,
    FeaturesConfig,
    IRLStageConfig,
    PairsConfig,
    PipelineConfig,
    PromptsConfig,
    RealignConfig,
    ResourcesConfig,
    WorldConfig,
    config_to_yaml,
    default_config_path,
    load_config,
    tune_config_path,
    tune_configs_dir,
)

__all__ = [
    "WORLDS",
    "ConfigError",
    "EvaluationConfig",
    "FeaturesConfig",
    "IRLStageConfig",
    "PairsConfig",
    "PipelineConfig",
    "PromptsConfig",
    "RealignConfig",
    "ResourcesConfig",
    "WorldConfig",
    "apply_overrides",
    "config_to_yaml",
    "default_config_path",
    "flatten",
    "from_dict",
    "load_config",
    "load_yaml",
    "parse_override",
    "to_dict",
    "tune_config_path",
    "tune_configs_dir",
]

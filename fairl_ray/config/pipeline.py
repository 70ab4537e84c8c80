"""The pipeline's configuration: one typed section per stage (DESIGN §2).

Load with :func:`load_config` (a YAML file, or the embedded default ``tune_configs/default.yaml``, plus
``key=value`` overrides). Everything is validated at load time, before Ray or MLflow start: an unknown key,
a value of the wrong type or out of range raises :class:`~fairl_ray.config.loading.ConfigError` naming the
dotted key (``irl.bogus``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from fairl_ray.config.loading import apply_overrides, from_dict, load_yaml, to_dict
from fairl_ray.config_error import ConfigError
from fairl_ray.irl.hyperparameters import METHODS, IRLConfig
from fairl_ray.stages.generate import GenerationConfig
from fairl_ray.stages.pairs import PairsConfig
from fairl_ray.stages.rlhf import RLHFConfig
from fairl_ray.worlds import WORLD_NAMES, WorldConfig  # one section per registered world (world.<name>)

WORLDS = WORLD_NAMES


@dataclass
class PromptsConfig:
    """How many prompts each stage draws from the world; the three sets are disjoint draws of one seed."""

    n_rlhf: int = 256
    """Prompts the expert RLHF and every re-RLHF train on."""
    n_pairs: int = 1200
    """Prompts on which π0 and π_E are sampled to make preference pairs (one pair per prompt at most)."""
    n_eval: int = 300
    """Held-out prompts on which toxicity of base, expert and re-aligned models is measured."""
    seed: int = 0
    """Seed of the prompt draw."""

    def __post_init__(self):
        for name in ("n_rlhf", "n_pairs", "n_eval"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be at least 1")


@dataclass
class FeaturesConfig:
    """Frozen features h(o) the IRL engine trains on, cached per (encoder, text)."""

    encoder: str = "all-MiniLM-L6-v2"
    """``all-MiniLM-L6-v2`` (the packaged encoder), a local sentence-transformers directory, or
    ``hidden:base`` for the base policy's last-layer hidden state at the last token (Insights §3)."""
    batch_size: int = 256
    """Encoding batch size."""

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError("batch_size", "must be at least 1")
        from fairl_ray.features import check_encoder_spec

        try:  # before any work, not after RLHF and generation
            check_encoder_spec(self.encoder, allow=("hidden:base",))
        except ValueError as err:
            raise ConfigError("encoder", str(err)) from None


# Keys of IRLConfig that IRLStageConfig sets per member from ``methods`` and ``seeds``; it does not have them.
_PER_MEMBER_IRL_KEYS = {"method": "irl.methods", "seed": "seeds"}


def _irl_stage_fields() -> list[tuple]:
    """IRLConfig's shared hyperparameters (every field but the per-member ones) plus the stage's own."""
    import typing

    hints = typing.get_type_hints(IRLConfig)  # real types: IRLConfig's string annotations name its own module
    fields = []
    for f in dataclasses.fields(IRLConfig):
        if f.name in _PER_MEMBER_IRL_KEYS:
            continue
        default = (
            field(default_factory=f.default_factory) if f.default is dataclasses.MISSING else field(default=f.default)
        )
        fields.append((f.name, hints[f.name], default))
    return fields + [
        (
            "methods",
            list[str],
            field(default_factory=lambda: ["max_margin", "max_entropy", "fa_irl_mm_margin", "fa_irl_me_gt"]),
        ),
        ("device", str, field(default="auto")),
    ]


def _irl_stage_post_init(self) -> None:
    if not self.methods:
        raise ConfigError("methods", "list at least one method")
    for m in self.methods:
        if m not in METHODS:
            raise ConfigError("methods", f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if len(set(self.methods)) != len(self.methods):
        raise ConfigError("methods", "a method is listed twice")
    if self.device not in ("auto", "cpu", "cuda"):
        raise ConfigError("device", "must be auto, cpu or cuda")
    try:  # every hyperparameter checked as each method will use it (IRLConfig's checks)
        self.member_configs([0])
    except ConfigError as err:  # IRLConfig keys its problems as this section's (irl.margin); here: the field
        raise ConfigError(err.field, err.why) from None


def _member_configs(self, seeds: list[int]) -> list[IRLConfig]:
    """One :class:`IRLConfig` per (method, seed), sharing every other hyperparameter."""
    per_member = _PER_MEMBER_IRL_KEYS
    shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(IRLConfig) if f.name not in per_member}
    return [IRLConfig(**shared, method=m, seed=s) for m in self.methods for s in seeds]


# Composed, not inherited: the stage has every shared IRLConfig hyperparameter (``irl.margin=1.0`` applies to every
# member) but not ``method`` and ``seed``, which each member gets from ``irl.methods`` and ``seeds``.
IRLStageConfig = dataclasses.make_dataclass(
    "IRLStageConfig",
    _irl_stage_fields(),
    namespace={
        "__doc__": "The IRL stage: which methods to train, each over every seed, as one batched ensemble.\n\n"
        "Every :class:`~fairl_ray.irl.hyperparameters.IRLConfig` hyperparameter except ``method`` and ``seed`` can "
        "be set here and applies to every member; ``methods`` lists the IRL methods (FA-IRL Table 1 names, see "
        "``fairl_ray.irl.hyperparameters.METHODS``), ``device`` is ``auto`` (CUDA when the stage's worker has a GPU), "
        "``cpu`` or ``cuda``.",
        "__post_init__": _irl_stage_post_init,
        "member_configs": _member_configs,
    },
)
IRLStageConfig.__module__ = __name__


@dataclass
class RealignConfig:
    """Re-RLHF: a fresh copy of π0 trained with each extracted reward (FA-IRL §5 "downstream utility")."""

    methods: list[str] | None = None
    """IRL methods whose reward is used; ``null`` means every method in ``irl.methods``. The reward of the
    method's first seed is used (one re-RLHF per method keeps the cost linear in methods, not seeds)."""
    rlhf: RLHFConfig = field(default_factory=RLHFConfig)
    """Trainer settings; the same trainer as the expert RLHF."""
    models: list[str] = field(default_factory=list)
    """Rewards from an MLflow store to re-align a fresh π0 with too, beside ``methods``: ``models:/NAME/VERSION``
    (e.g. registered by another run's ``tracking.register_rewards``) or ``runs:/RUN_ID/NAME``, read from this run's
    tracking URI (a tracking server for rewards from another machine). Keyed by the URI: name a version, not
    ``latest``."""

    def __post_init__(self):
        for uri in self.models:
            if not isinstance(uri, str) or not uri.startswith(("models:/", "runs:/")) or uri.rstrip("/").count("/") < 2:
                raise ConfigError("models", f"{uri!r} is not models:/NAME/VERSION or runs:/RUN_ID/NAME")
        if len(set(self.models)) != len(self.models):
            raise ConfigError("models", "a model is listed twice")


@dataclass
class TrackingConfig:
    """What MLflow gets beyond every stage's params, metrics and artifacts (none of it changes an output)."""

    register_rewards: str | None = None
    """Register each IRL method's first-seed reward (logged as an MLflow model either way) in the MLflow Model
    Registry as ``<this>-<method>``, a new version per run that trains it: ``models:/<this>-max_margin/1`` is
    then what ``fairl score`` and ``realign.models`` take. Null: logged, not registered."""

    def __post_init__(self):
        if self.register_rewards is not None and not str(self.register_rewards).strip():
            raise ConfigError("register_rewards", "must be a non-empty name prefix or null")


@dataclass
class EvaluationConfig:
    """How toxicity of base, expert and re-aligned models is measured on the held-out prompts."""

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Sampling settings for evaluation completions."""
    seed: int = 1234
    """Sampling seed (the same for every model, so they see the same prompts and random stream)."""


@dataclass
class ResourcesConfig:
    """Ray resources each stage and model worker *requests*. Requests, not what the cluster has at start, are
    what Ray's autoscaler scales on: set ``gpus_per_worker`` > 0 and an autoscaling cluster whose GPU workers
    start at ``min_workers: 0`` grows GPU nodes for the model work (DESIGN §6)."""

    cpus_per_task: float = 1.0
    """CPUs per stage task and per model worker (re-RLHF tasks of different methods run side by side)."""
    gpus_per_worker: float = 0.0
    """GPUs each model worker asks for: every model stage (RLHF, re-RLHF, features) and every policy worker of
    the generation pool. Fractional values (``0.25``) let small models share a GPU; ``0`` runs on CPUs."""
    generation_workers: int = 1
    """Policy workers in a generation pool (each loads its policies once and takes fixed-size prompt shards;
    completions do not depend on this number). With GPUs: one per GPU (or per GPU fraction); on CPUs: up to
    the cores you can spare."""
    custom: dict[str, float] = field(default_factory=dict)
    """Ray custom resources every model stage and policy worker asks for too, e.g. ``{node_a: 1}`` to run them
    only on nodes started with ``--resources='{"node_a": 4}'`` (a study can pin each variant's experts to its own
    nodes). Empty: CPUs and GPUs only."""
    node_wait_s: float = 45.0
    """On a cluster (``--address``), how long to wait for the autoscaler to add a node that fits these requests
    before stopping with an error naming the key; a local Ray that cannot fit them fails at once."""

    def __post_init__(self):
        if self.node_wait_s < 0:
            raise ConfigError("node_wait_s", "must be >= 0")
        if self.cpus_per_task <= 0:
            raise ConfigError("cpus_per_task", "must be positive")
        if self.gpus_per_worker < 0:
            raise ConfigError("gpus_per_worker", "must be >= 0")
        if self.gpus_per_worker > 1 and not float(self.gpus_per_worker).is_integer():
            raise ConfigError("gpus_per_worker", "above 1 it must be a whole number of GPUs")
        if self.generation_workers < 1:
            raise ConfigError("generation_workers", "must be at least 1")
        for name, amount in self.custom.items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount <= 0:
                raise ConfigError("custom", f"{name}: must be a positive amount")


@dataclass
class PipelineConfig:
    """The whole pipeline: prompts → expert RLHF → generation → pairs → features → IRL → evaluate → re-RLHF."""

    name: str = "default"
    """Name of the pipeline run (MLflow parent run name)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """IRL seeds: every method is trained once per seed; tables report mean ± std over them."""
    world: WorldConfig = field(default_factory=WorldConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    expert_rlhf: RLHFConfig = field(default_factory=RLHFConfig)
    """RLHF of the expert π_E from π0 with the (noisy) ground-truth reward R*."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Sampling of the completions that make the preference pairs."""
    pairs: PairsConfig = field(default_factory=PairsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    irl: IRLStageConfig = field(default_factory=IRLStageConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    realign: RealignConfig = field(default_factory=RealignConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("seeds", "list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", "a seed is listed twice")
        for m in self.realign.methods or []:
            if m not in self.irl.methods:
                raise ConfigError("realign", f"method {m!r} is not in irl.methods")
        if self.world.supplies_pairs:  # no policy: no prompts to budget, no base policy to take hidden states from
            if self.features.encoder == "hidden:base":
                why = f"hidden:base needs a base policy; world {self.world.name} has none"
                raise ConfigError("features.encoder", why)
            return
        if not self.world.has_judge and self.pairs.toxic_to_nontoxic_fraction is not None:
            why = "the pair mix needs toxicity labels and the world has no judge (judge.kind: none); set it to null"
            raise ConfigError("pairs.toxic_to_nontoxic_fraction", why)
        self._check_pair_budget()

    def _check_pair_budget(self) -> None:
        """``prompts.n_pairs`` bounds the pairs (one per prompt at most); refuse a bound that cannot leave the IRL
        stage 2 train pairs and 1 test pair, now rather than after RLHF and generation."""
        most = self.prompts.n_pairs if self.pairs.max_pairs is None else min(self.prompts.n_pairs, self.pairs.max_pairs)
        n_test = round(self.pairs.test_fraction * most)
        if n_test < 1 or most - n_test < 2:
            key = "prompts.n_pairs" if most == self.prompts.n_pairs else "pairs.max_pairs"
            raise ConfigError(
                key,
                f"at most {most} pairs with pairs.test_fraction={self.pairs.test_fraction:g} "
                f"leave {most - n_test} train and {n_test} test pairs; IRL needs at least 2 train "
                "pairs and 1 test pair (and generation usually keeps fewer pairs than prompts)",
            )

    @property
    def realign_methods(self) -> list[str]:
        return list(self.realign.methods) if self.realign.methods is not None else list(self.irl.methods)


def tune_configs_dir() -> Path:
    """The shipped experiment and search YAMLs: package data (``fairl_ray/tune_configs/``), so a wheel has them
    too; a source checkout's top-level ``tune_configs`` is a symlink to this folder."""
    return Path(__file__).resolve().parents[1] / "tune_configs"


def tune_config_path(name: str) -> Path:
    """A YAML shipped in ``fairl_ray/tune_configs/``."""
    return tune_configs_dir() / name


def default_config_path() -> Path:
    """The embedded default experiment, ``tune_configs/default.yaml``."""
    return tune_config_path("default.yaml")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read YAML (default: the embedded default), apply ``key=value`` overrides, validate everything."""
    data = load_yaml(path or default_config_path())
    data = apply_overrides(data, overrides or [])
    irl = data.get("irl")
    if isinstance(irl, dict):
        for key, instead in _PER_MEMBER_IRL_KEYS.items():
            if key in irl:
                raise ConfigError(f"irl.{key}", f"is set per ensemble member; use {instead} instead")
    return from_dict(PipelineConfig, data)


def config_to_yaml(config: PipelineConfig) -> str:
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False)

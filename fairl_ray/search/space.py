"""The search config (``tune_configs/search_*.yaml``): what to search, over which models, how trials are packed,
pruned, retried and re-evaluated. Validated on construction, so a typo fails before Ray, MLflow or Optuna start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fairl_ray.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from fairl_ray.irl.hyperparameters import METHODS, IRLConfig

OBJECTIVES = {"starc": "min", "pair_accuracy": "max", "roc_auc": "max", "accuracy": "max"}
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
IRL_FIELDS = tuple(f.name for f in dataclasses.fields(IRLConfig))


# ------------------------------------------------------------------------------------------------------------
# 1. the search config
# ------------------------------------------------------------------------------------------------------------
@dataclass
class SearchConfig:
    """What to search, how many trials, and how the winner is re-evaluated. Validated on construction."""

    name: str = "fa-irl"
    """name of the search: the MLflow parent run is ``tune:<name>``, the default output ``<workdir>/tune/<name>``."""
    num_samples: int = 16
    """number of trials Optuna proposes."""
    objective: Literal["auto", "starc", "pair_accuracy", "roc_auc", "accuracy"] = "auto"
    """validation metric: ``starc`` (STARC l1/l1, minimised; needs R*), ``pair_accuracy``, ``roc_auc`` or
    ``accuracy`` (maximised); ``auto`` = ``starc`` when the pairs carry R*, else ``pair_accuracy``."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """seeds of every trial: the trial's config × these seeds train as ONE batched ensemble; objective = mean."""
    fresh_seeds: list[int] = field(default_factory=lambda: [100, 101, 102])
    """seeds the best config is re-trained on (whole train split) and evaluated with on the TEST split."""
    val_fraction: float = 0.2
    """fraction of the train pairs carved off (seeded by ``split_seed``) as the validation split."""
    split_seed: int = 0
    """seed of the validation carve (fixed across trials so trials are comparable)."""
    search_seed: int = 0
    """seed of Optuna's sampler: the same seed and data propose the same configs."""
    max_concurrent_trials: int = 2
    """Tune trials (packs) running at once; each asks for 1 CPU and ``gpus_per_trial`` GPUs."""
    gpus_per_trial: float = 0.0
    """GPUs each pack (Tune trial) asks for; fractional values (0.25) let packs share a GPU. A request from config,
    not from what the cluster has at start: it is what makes an autoscaling cluster add GPU nodes (DESIGN §6)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """torch device of every trial (``auto``: cuda when the trial's worker sees a GPU)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """``IRLConfig`` fields applied to every trial (e.g. ``epochs: 100``); unset fields keep the paper defaults."""
    space: dict[str, Any] = field(default_factory=dict)
    """``IRLConfig`` field → one of ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``
    (lo > 0) or ``{randint: [lo, hi]}`` (integers lo ≤ x ≤ hi)."""
    pack_size: int = 16
    """configurations per Tune trial: a trial asks Optuna for ``pack_size`` configs and trains them × ``seeds`` as
    ONE batched ensemble (1 = one config per Tune trial, the unpacked baseline)."""
    rungs: list[float] = field(default_factory=lambda: [0.25, 1.0])
    """fractions of each config's ``epochs`` at which it is scored on val (intermediate reports; the last must be
    1.0). Each rung re-trains from scratch at that epoch budget (the engine has no warm start)."""
    pruner: Literal["median", "successive_halving", "none"] = "median"
    """Optuna pruner deciding after each rung which configs of a pack stop (pruned configs leave the ensemble)."""
    pruner_startup: int = 5
    """finished configs the median pruner waits for before it prunes."""
    scheduler: Literal["none", "asha"] = "none"
    """Tune trial scheduler over packs: ``asha`` stops whole packs whose best rung value lags (ASHA)."""
    max_failures: int = 2
    """retries of a crashed Tune trial (``FailureConfig``); its finished configs are kept, the rest re-run."""
    models: list[dict] = field(default_factory=list)
    """the runs / pairs files the search covers, each ``{name, workdir}`` or ``{name, pairs}``; empty = the one
    given by ``--workdir`` / ``--pairs``. Each model gets its own Optuna study and its own best config."""

    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(key, msg)

        if not self.name or any(c in self.name for c in "/\\ "):
            raise bad("name", f"must be a non-empty name without slashes or spaces, got {self.name!r}")
        if self.num_samples < 1:
            raise bad("num_samples", f"must be >= 1, got {self.num_samples}")
        if self.max_concurrent_trials < 1:
            raise bad("max_concurrent_trials", f"must be >= 1, got {self.max_concurrent_trials}")
        for key in ("seeds", "fresh_seeds"):
            seeds = getattr(self, key)
            if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
                raise bad(key, f"must be a non-empty list of distinct integers >= 0, got {seeds}")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if self.pack_size < 1:
            raise bad("pack_size", f"must be >= 1, got {self.pack_size}")
        if (
            not self.rungs
            or any(not 0.0 < r <= 1.0 for r in self.rungs)
            or self.rungs != sorted(set(self.rungs))
            or self.rungs[-1] != 1.0
        ):
            raise bad("rungs", f"must be increasing fractions in (0, 1] ending with 1.0, got {self.rungs}")
        if self.gpus_per_trial < 0:
            raise bad("gpus_per_trial", f"must be >= 0, got {self.gpus_per_trial}")
        if self.max_failures < 0:
            raise bad("max_failures", f"must be >= 0, got {self.max_failures}")
        names = []
        for i, m in enumerate(self.models):
            if (
                not isinstance(m, dict)
                or set(m) - {"name", "workdir", "pairs"}
                or len({"workdir", "pairs"} & set(m)) != 1
            ):
                raise bad(f"models.{i}", f"must be {{name, workdir}} or {{name, pairs}}, got {m!r}")
            name = str(m.get("name") or Path(m.get("workdir") or m["pairs"]).name)
            if any(c in name for c in "/\\ :") or name in names:
                raise bad(f"models.{i}.name", f"must be a unique name without slashes, spaces or colons, got {name!r}")
            m["name"] = name
            names.append(name)
        if not self.space:
            raise bad("space", "is empty: name at least one IRLConfig field to search")
        for section in ("fixed", "space"):
            for key in getattr(self, section):
                if key == "seed":
                    raise bad(f"{section}.seed", "seeds are set by `seeds` / `fresh_seeds`")
                if key not in IRL_FIELDS:
                    raise bad(f"{section}.{key}", f"not an IRLConfig field (known: {', '.join(IRL_FIELDS)})")
        overlap = sorted(set(self.fixed) & set(self.space))
        if overlap:
            raise bad(f"fixed.{overlap[0]}", "is also in space; a field is either fixed or searched")
        try:
            IRLConfig(**self.fixed)
        except ConfigError as err:  # IRLConfig's own check, keyed by its field
            raise bad(f"fixed.{err.field}", err.why) from None
        except (TypeError, ValueError) as err:  # e.g. a comparison of a value of the wrong type
            raise bad("fixed", str(err)) from None
        for key, spec in self.space.items():  # other searched fields at their first value / lower bound
            others = {k: _first(v) for k, v in self.space.items() if k != key and _first(v) is not None}
            _check_distribution(f"space.{key}", key, spec, {**self.fixed, **others})
        unread = _unread_fields(self.space, self.fixed)
        if unread:
            raise bad(
                f"space.{unread[0]}",
                "no searched method reads it (see each method's hyperparameters in irl/methods.py)",
            )

    @property
    def searched(self) -> list[str]:
        return list(self.space)

    def fingerprint(self) -> str:
        """Hash of everything that defines the search's trials (not how many run at once, nor the device): a
        resumed search must have the same fingerprint as the interrupted one."""
        d = {
            k: v
            for k, v in to_dict(self).items()
            if k not in ("max_concurrent_trials", "device", "max_failures", "gpus_per_trial")
        }
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _first(spec: Any) -> Any:
    """A representative value of a ``space`` entry (its first choice or lower bound); None if malformed."""
    try:
        ((kind, args),) = spec.items()
        return int(args[0]) if kind == "randint" else args[0]
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None


def _unread_fields(space: dict, fixed: dict) -> list[str]:
    """Searched fields that are some method's own hyperparameter (``Method.hyperparameters``) but not one of the
    searched methods': searching them only spends trials on configurations that train the same."""
    from fairl_ray.irl.methods import METHOD_TABLE

    spec = space.get("method")
    methods = spec["choice"] if isinstance(spec, dict) and "choice" in spec else [fixed.get("method", "max_margin")]
    method_specific = {f for m in METHOD_TABLE.values() for f in m.hyperparameters}
    read = {f for m in methods if m in METHOD_TABLE for f in METHOD_TABLE[m].hyperparameters}
    return [k for k in space if k in method_specific and k not in read]


def _check_distribution(key: str, fld: str, spec: Any, fixed: dict) -> None:
    """One ``space`` entry: exactly one known distribution, well-formed bounds, and every bound/choice a valid
    ``IRLConfig`` value on its own (with ``fixed`` applied), so a typo fails here and not in trial 7."""
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(
            key,
            f"must be one of {{choice: [...]}}, {{uniform: [lo, hi]}}, {{loguniform: [lo, hi]}}, "
            f"{{randint: [lo, hi]}}; got {spec!r}",
        )
    ((kind, args),) = spec.items()
    dotted = f"{key}.{kind}"
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(dotted, f"must be a non-empty list, got {args!r}")
        if fld == "method":
            for m in args:
                if m not in METHODS:
                    raise ConfigError(dotted, f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        values = args
    else:
        if (
            not isinstance(args, list)
            or len(args) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in args)
        ):
            raise ConfigError(dotted, f"must be [lo, hi] (two numbers), got {args!r}")
        lo, hi = args
        if not lo < hi:
            raise ConfigError(dotted, f"needs lo < hi, got lo={lo} and hi={hi}")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(dotted, f"needs lo > 0 (log scale), got {lo}")
        if kind == "randint" and not (float(lo).is_integer() and float(hi).is_integer()):
            raise ConfigError(dotted, f"needs integer bounds, got {args!r}")
        values = [int(lo), int(hi)] if kind == "randint" else [float(lo), float(hi)]
    for v in values:
        try:
            IRLConfig(**{**fixed, fld: v})
        except (TypeError, ValueError) as err:
            why = err.why if isinstance(err, ConfigError) else str(err)
            raise ConfigError(dotted, f"value {v!r} is not a valid {fld}: {why}") from None


def default_search_path() -> Path:
    """The shipped FA-IRL search (``tune_configs/search_fa_irl.yaml``)."""
    from fairl_ray.config import tune_config_path

    return tune_config_path("search_fa_irl.yaml")


def load_search_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SearchConfig:
    """YAML (default: the shipped FA-IRL search) + ``key=value`` overrides → a validated :class:`SearchConfig`.
    Raises :class:`ConfigError` naming the dotted key (``fixed.bogus``, ``space.margin_fail.uniform``)."""
    data = apply_overrides(load_yaml(path or default_search_path()), overrides or [])
    return from_dict(SearchConfig, data)


def suggest(trial, space: dict) -> dict:
    """Ask an Optuna trial for one value per ``space`` entry (a resumed trial gets back what it was given)."""
    out = {}
    for fld, spec in space.items():
        ((kind, args),) = spec.items()
        if kind == "choice":
            out[fld] = trial.suggest_categorical(fld, list(args))
        elif kind == "uniform":
            out[fld] = trial.suggest_float(fld, float(args[0]), float(args[1]))
        elif kind == "loguniform":
            out[fld] = trial.suggest_float(fld, float(args[0]), float(args[1]), log=True)
        else:  # randint: both bounds included
            out[fld] = trial.suggest_int(fld, int(args[0]), int(args[1]))
    return out

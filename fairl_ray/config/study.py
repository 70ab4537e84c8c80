"""A study: one base experiment and its variations, run as one job (``fairl study``; issue 15).

YAML::

    name: pair_mix
    base: default.yaml              # the experiment: a shipped config's name, or a path relative to this file
    set:                            # overrides every variant gets (dotted keys, as ``--set``)
      realign.methods: []
    grid:                           # every combination of these values is a variant ...
      pairs.toxic_to_nontoxic_fraction: [0.0, 0.25, 0.5, 0.75, 1.0]
    variants:                       # ... and/or variants listed by hand
      - {name: no_noise, set: {pairs.flip_fraction: 0.0}}

Every variant's config is loaded and validated here, before any work: an error names the variant and the key.
A variant is named by its values (``toxic_to_nontoxic_fraction=0.25``) unless given a name.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fairl_ray.config.loading import load_yaml
from fairl_ray.config.pipeline import PipelineConfig, load_config, tune_config_path, tune_configs_dir
from fairl_ray.config_error import ConfigError


@dataclass
class Variant:
    """One point of a study: its name, the overrides that make it, and its validated config."""

    name: str
    overrides: dict[str, Any]
    config: PipelineConfig


@dataclass
class StudyConfig:
    """A validated study: its name, base experiment, axes (the grid's keys and values) and variants."""

    name: str
    base: Path
    axes: dict[str, list] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)


def _override(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it (the value written as flow YAML)."""
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def _variant_name(values: dict[str, Any]) -> str:
    """``toxic_to_nontoxic_fraction=0.25,seed=1``: each key's last part and its value (a directory name)."""
    text = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items()) or "base"
    return re.sub(r"[^A-Za-z0-9_.,=+-]+", "-", text)


def resolve_base(base: str, study_file: Path) -> Path:
    """A base experiment: a path relative to the study file, else a shipped config (``default.yaml``)."""
    path = (study_file.parent / base).expanduser()
    if path.is_file():
        return path
    if (tune_configs_dir() / base).is_file():
        return tune_config_path(base)
    raise ConfigError("base", f"{base}: neither a file next to {study_file.name} nor a shipped config")


def load_study(path: str | Path, overrides: list[str] | None = None) -> StudyConfig:
    """Read and validate a study YAML (``overrides`` apply to every variant, after the study's own ``set``)."""
    path = Path(path)
    data = load_yaml(path)
    unknown = set(data) - {"name", "base", "set", "grid", "variants"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown key of a study (name, base, set, grid, variants)")
    if "base" not in data:
        raise ConfigError("base", "a study names its base experiment (a shipped config or a path)")
    base = resolve_base(str(data["base"]), path)
    shared = data.get("set") or {}
    grid = data.get("grid") or {}
    listed = data.get("variants") or []
    for key, section in (("set", shared), ("grid", grid)):
        if not isinstance(section, dict):
            raise ConfigError(key, "must be a mapping of dotted config keys")
    if not isinstance(listed, list):
        raise ConfigError("variants", "must be a list of {name, set}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}", "must be a non-empty list of values")
    points: list[tuple[str | None, dict]] = (
        [(None, dict(zip(grid, combo))) for combo in itertools.product(*grid.values())] if grid else []
    )
    for i, item in enumerate(listed):
        if not isinstance(item, dict) or not isinstance(item.get("set", {}), dict):
            raise ConfigError(f"variants[{i}]", "must be {name: ..., set: {key: value}}")
        points.append((item.get("name"), dict(item.get("set") or {})))
    if not points:
        points = [(None, {})]
    variants, names = [], set()
    for given, values in points:
        name = str(given) if given else _variant_name(values)
        if name in names:
            raise ConfigError("variants", f"two variants are named {name!r}")
        names.add(name)
        sets = [_override(k, v) for k, v in {**shared, **values}.items()] + list(overrides or [])
        try:
            cfg = load_config(base, sets)
        except ConfigError as err:
            raise ConfigError(f"variant {name}: {err.key}" if err.key else f"variant {name}", err.why) from None
        variants.append(Variant(name, values, cfg))
    # The axes: the grid's keys, then every key a listed variant sets, with its values in order of appearance.
    axes = {k: list(v) for k, v in grid.items()}
    for _, values in points[len(points) - len(listed) :] if listed else []:
        for k, v in values.items():
            if v not in axes.setdefault(k, []):
                axes[k].append(v)
    return StudyConfig(str(data.get("name") or path.stem), base, axes, variants)

"""Typed configs from YAML plus ``key=value`` overrides, validated before any work starts.

Every config section is a dataclass. :func:`from_dict` builds one from plain data and rejects, by dotted
name, any unknown key or any value of the wrong type; each dataclass's ``__post_init__`` then checks value
ranges and raises :class:`~fairl_ray.config_error.ConfigError` with the field's key, which :func:`from_dict`
puts under the section's own key. The error carries the dotted key so the CLI can say exactly what is wrong
(``irl.bogus: unknown key``) and exit non-zero before Ray or MLflow start.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from fairl_ray.config_error import MAX_VALUE_REPR, ConfigError

T = TypeVar("T")


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing aliases (``*name``): a few hundred bytes of nested aliases expand to
    billions of nodes (a "billion laughs" bomb) in any code that walks the result. Configs never need them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not accepted in fairl configs; write the value out", mark
            )
        return super().compose_node(parent, index)


def safe_load_yaml(text: str, source: str = "<string>") -> Any:
    """``yaml.safe_load`` without aliases; errors name ``source`` and the line and column."""
    loader = _NoAliasLoader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: ``<source>, line L, column C: <problem>`` (PyYAML's own spans several)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).split("\n", 1)[0]
    if mark is None:
        return problem
    return f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: {problem}"


def short_repr(value: Any) -> str:
    """``repr(value)`` for an error message: bounded work and at most :data:`MAX_VALUE_REPR` characters."""
    limited = reprlib.Repr()
    limited.maxlevel, limited.maxlist, limited.maxdict = 3, 10, 10
    limited.maxstring = limited.maxother = MAX_VALUE_REPR
    text = limited.repr(value)
    return text if len(text) <= MAX_VALUE_REPR else text[: MAX_VALUE_REPR - 1] + "…"


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML, so ``3``, ``0.5``, ``true``, ``[a, b]`` and ``null`` work."""
    if "=" not in text:
        raise ConfigError(text, "an override must look like key=value (e.g. irl.margin=0.9)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(key or text, "empty key in override")
    try:
        value = safe_load_yaml(raw, f"--set {key}") if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(key, f"value {short_repr(raw)} is not valid YAML: {yaml_problem(err)}") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of ``data`` with each ``key=value`` override set (nested dicts are created as needed)."""
    data = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(".".join(path[: i + 1]), "is a value, not a section; cannot set a key inside it")
            node = child
        node[path[-1]] = value
    return data


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"expected a mapping of keys for section {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(dotted, f"unknown key (known keys here: {known})")
        kwargs[key] = _coerce(hints[key], value, dotted)
    try:
        return cls(**kwargs)
    except ConfigError as err:  # a check of ``cls`` (its ``__post_init__``), keyed by the field it concerns
        raise err.under(prefix) from None
    except (ValueError, TypeError) as err:  # anything else concerns the section as a whole
        raise ConfigError(prefix, str(err)) from None


def to_dict(config: Any) -> Any:
    """Plain-data form of a config (for hashing, YAML and MLflow params)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are kept as values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not a text file (not UTF-8); a config is a YAML file") from None
    except OSError as err:
        raise ConfigError("", f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        data = safe_load_yaml(text, str(path)) or {}
    except yaml.YAMLError as err:
        raise ConfigError("", f"{path} is not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: the top level must be a mapping of sections")
    return data


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(err.why)
        raise ConfigError(key, "; ".join(errors) or f"invalid value {short_repr(value)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"must be one of {', '.join(map(repr, args))}, got {short_repr(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]  # a scalar for a list field means a one-element list (handy for --set)
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {short_repr(value)}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {short_repr(value)}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(key, f"expected an integer, got {short_repr(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {short_repr(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {short_repr(value)}")
        return value
    return value


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data

"""One registry pattern for every extension point: a name → entry table with one error for an unknown name.

Each extension point (IRL losses and failure sources, worlds, judges, RLHF algorithms, analyses) owns one
:class:`Registry` next to its small abstract base class; an entry is registered once, where it is defined, and
everything that lists or validates names (config checks, the CLI, the report) reads the registry. The shape follows
``imitation``'s ``util/registry.py``: ``register`` / ``get`` / ``names`` / iteration, nothing more.

Use::

    LOSSES: Registry[PairLoss] = Registry("base loss")
    LOSSES.register("mm", PairLoss(...))             # or as a decorator: @LOSSES.register("mm")
    LOSSES.get("mm"); LOSSES.names(); "mm" in LOSSES; for name, loss in LOSSES.items(): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name no entry of a registry has; the message lists the known names."""


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order (the order configs, tables and reports list them in)."""

    def __init__(self, kind: str):
        self.kind = kind
        """What an entry is, for messages ("world", "RLHF algorithm")."""
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None):
        """Add ``entry`` under ``name`` (a second entry under one name is an error: names are identities in configs
        and artifacts). Without ``entry``, a decorator registering what it decorates."""
        if entry is None:

            def decorate(obj: T) -> T:
                self.register(name, obj)
                return obj

            return decorate
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests register throwaway entries and remove them again)."""
        self._entries.pop(name)

    def get(self, name: str) -> T:
        """The entry called ``name``; :class:`UnknownNameError` listing the known names if there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name" from a config (a list, a mapping)
            raise UnknownNameError(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        """The message for a name that is not registered: ``unknown world 'x'; choose one of a, b``."""
        return f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(tuple(self._entries.items()))

    def values(self) -> Iterator[T]:
        return iter(tuple(self._entries.values()))

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


__all__ = ["Registry", "UnknownNameError"]

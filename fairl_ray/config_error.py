"""The one error type of configuration checks: :class:`ConfigError`, a problem and the dotted key it concerns.

A leaf module (it imports nothing of ours) so that every config dataclass — the pipeline's sections, the stages',
the worlds', the IRL engine's — can raise it from its checks without importing the ``config`` package, which imports
them all.
"""

from __future__ import annotations

MAX_VALUE_REPR = 200
"""Characters of a value quoted in an error message (:func:`fairl_ray.config.loading.short_repr`)."""


class ConfigError(ValueError):
    """A configuration problem: ``key``, the dotted key it concerns, and ``why``.

    A config dataclass's checks (``__post_init__``) raise it with the key of the field as that dataclass names it
    (``ConfigError("margin", "must be > 0")``); :func:`~fairl_ray.config.loading.from_dict` re-raises it under the
    section it is building (:meth:`under`: ``irl.margin``). The message is ``"<key>: <why>"``.
    """

    def __init__(self, key: str, why: str):
        if len(why) > 4 * MAX_VALUE_REPR:  # a value quoted whole by a section's own check
            why = why[: 4 * MAX_VALUE_REPR - 1] + "…"
        self.key = key
        self.why = why
        super().__init__(f"{key}: {why}" if key else why)

    @property
    def field(self) -> str:
        """The key's last part: the field whose check failed (``irl.margin`` → ``margin``)."""
        return self.key.rsplit(".", 1)[-1]

    def under(self, section: str) -> ConfigError:
        """The same problem with its key inside ``section`` (``margin`` under ``irl`` → ``irl.margin``)."""
        if not section:
            return self
        return ConfigError(f"{section}.{self.key}" if self.key else section, self.why)

    def __reduce__(self):  # picklable across Ray: rebuilt from (key, why), not from the formatted message
        return ConfigError, (self.key, self.why)


__all__ = ["MAX_VALUE_REPR", "ConfigError"]

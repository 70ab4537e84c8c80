"""Worlds: where prompts, the base policy π0 and the ground-truth reward R* come from (DESIGN §3).

Every world is used through the same small :class:`World` object, so the pipeline has one code path:

    world = get_world("synthetic", SyntheticWorldConfig())
    prompts = world.make_prompts(256, seed=0)
    base_dir = world.build_base_policy(out_dir)
    rewards = world.reward(completions)                  # exact R*, for evaluation
    rewards = world.reward(completions, noisy=True, seed=3)  # R* + RL noise, for RLHF only
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

WORLD_NAMES: tuple[str, ...] = ("synthetic",)


@dataclass
class World:
    """A world seen by the pipeline: prompts, base policy, ground truth R* and labels over completion strings."""

    name: str
    """World name ("synthetic", ...)."""
    cfg: Any
    """The world's own config dataclass."""
    _make_prompts: Callable[[int, int], list[str]]
    _build_base_policy: Callable[[Any, Path], Path]
    _reward: Callable[..., list[float]]
    _label: Callable[[str], int]
    _subtype: Callable[[str], str | None]
    _is_toxic: Callable[[str], bool]
    rl_noise: float = 0.0
    """Half-width of the uniform noise ``reward(..., noisy=True)`` adds (RL only)."""

    def make_prompts(self, n: int, seed: int) -> list[str]:
        """``n`` prompts, deterministic for ``seed``."""
        return self._make_prompts(n, seed)

    def build_base_policy(self, out_dir: str | os.PathLike) -> Path:
        """Build/obtain π0 and save it (model + tokenizer, safetensors) into ``out_dir``; returns ``out_dir``."""
        return self._build_base_policy(self.cfg, Path(out_dir))

    def reward(self, texts: list[str], noisy: bool = False, seed: int | None = 0) -> list[float]:
        """R* of each completion. ``noisy=True`` adds the world's RL noise (never use it for evaluation); the noise
        is drawn from ``np.random.default_rng(seed)``: pass a different seed per call (or None for fresh entropy)
        when the same batch must not always get the same noise."""
        if noisy and self.rl_noise > 0:
            return self._reward(list(texts), noise=self.rl_noise, rng=np.random.default_rng(seed))
        return self._reward(list(texts))

    def noisy_reward_fn(self, seed: int = 0) -> Callable[[list[str]], list[float]]:
        """A ``texts -> rewards`` callable for RLHF: R* plus RL noise from one generator seeded once with ``seed``
        (so successive calls get fresh, reproducible noise)."""
        rng = np.random.default_rng(seed)

        def reward_fn(texts: list[str]) -> list[float]:
            if self.rl_noise > 0:
                return self._reward(list(texts), noise=self.rl_noise, rng=rng)
            return self._reward(list(texts))

        return reward_fn

    def labels(self, texts: list[str]) -> list[int]:
        """+1 non-toxic, −1 toxic, 0 unknown (neither), per text."""
        return [self._label(t) for t in texts]

    def subtypes(self, texts: list[str]) -> list[str | None]:
        """Toxic subtype per text (None if not toxic)."""
        return [self._subtype(t) for t in texts]

    def is_toxic(self, texts: list[str]) -> list[bool]:
        """Whether each text is toxic under the world's ground truth."""
        return [bool(self._is_toxic(t)) for t in texts]


def get_world(name: str, cfg: Any = None) -> World:
    """The world called ``name`` with its config ``cfg`` (None: that world's defaults)."""
    if name == "synthetic":
        from fairl_ray.worlds import synthetic

        if cfg is None:
            cfg = synthetic.SyntheticWorldConfig()
        if not isinstance(cfg, synthetic.SyntheticWorldConfig):
            raise TypeError(f"world 'synthetic' needs a SyntheticWorldConfig, got {type(cfg).__name__}")
        return World(
            name="synthetic",
            cfg=cfg,
            _make_prompts=synthetic.make_prompts,
            _build_base_policy=synthetic.build_base_policy,
            _reward=synthetic.ground_truth_reward,
            _label=synthetic.toxicity_label,
            _subtype=synthetic.toxic_subtype,
            _is_toxic=synthetic.is_toxic,
            rl_noise=cfg.rl_noise,
        )
    raise ValueError(f"unknown world {name!r}; known worlds: {', '.join(WORLD_NAMES)}")


__all__ = ["World", "WORLD_NAMES", "get_world"]

"""Worlds: where prompts, the base policy π0 and the ground-truth reward R* come from (DESIGN §3).

A world is a plug-in: one module with a :class:`~fairl_ray.worlds.base.WorldPlugin` (its config dataclass, which
becomes the section ``world.<name>`` of the pipeline config; ``make_world(cfg) -> World``; optionally
``check_selected`` — what is missing when it is the selected world, reported at config load — and
``supplies_pairs`` — the world draws its preference pairs itself and has no policy: the pipeline then plans no base
policy, RLHF, generation or re-alignment), registered in :data:`WORLDS` by one line below.

Use::

    world = get_world("synthetic")                  # or get_world(cfg.world.name, cfg.world.section)
    sets = world.prompt_sets(256, 1200, 300, seed=0)
    base_dir = world.build_base_policy(out_dir)
    reward, label, subtype = world.score(completions)   # one batched call of the judge
    rewards = world.reward(completions, noisy=True, seed=3)  # R* + RL noise, for RLHF only
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fairl_ray.config_error import ConfigError
from fairl_ray.registry import Registry
from fairl_ray.worlds import hf, preference_text, synthetic
from fairl_ray.worlds.base import Scores, World, WorldPlugin

#: Every world by ``world.name``. A new world is one module plus one line here (before :data:`WorldConfig` is built
#: from this registry, below: its section is a field of that dataclass).
WORLDS: Registry[WorldPlugin] = Registry("world")
WORLDS.register("synthetic", synthetic.SyntheticPlugin())  # lexicon toy world; tiny GPT-2 built and SFT'd in-process
WORLDS.register("hf", hf.HFPlugin())  # any HF causal LM; prompts from a file/dataset; profanity-check or a classifier
WORLDS.register("texts", preference_text.TextsPlugin())  # real texts, no policy; Bradley–Terry preferences

WORLD_NAMES: tuple[str, ...] = WORLDS.names()


def get_world(name: str, cfg: Any = None) -> World:
    """The world called ``name`` with its config ``cfg`` (None: that world's defaults)."""
    plugin = WORLDS.get(name)
    if cfg is None:
        cfg = plugin.config_class()
    if not isinstance(cfg, plugin.config_class):
        raise TypeError(f"world {name!r} needs a {plugin.config_class.__name__}, got {type(cfg).__name__}")
    return plugin.make_world(cfg)


def _world_config_class():
    """``WorldConfig``: ``name`` plus one section per registered world (built from :data:`WORLDS`)."""

    def __post_init__(self):
        if self.name not in WORLDS:
            raise ConfigError("name", WORLDS.unknown(self.name))
        # settings a world needs only when it is the selected one (e.g. hf.policy)
        problem = WORLDS.get(self.name).check_selected(getattr(self, self.name))
        if problem:
            raise ConfigError(self.name, problem)

    def section(self):
        """The config section of the selected world."""
        return getattr(self, self.name)

    def supplies_pairs(self) -> bool:
        """Whether the selected world draws its preference pairs itself (and so has no policy)."""
        return WORLDS.get(self.name).supplies_pairs

    def given_expert(self) -> tuple[str, float] | None:
        """``(π_E, β)`` when the selected world gives π_E instead of training it (``WorldPlugin.given_expert``)."""
        return WORLDS.get(self.name).given_expert(self.section)

    def has_judge(self) -> bool:
        """Whether the selected world knows R* (``WorldPlugin.has_judge``)."""
        return WORLDS.get(self.name).has_judge(self.section)

    def active_dict(self) -> dict:
        """``{"name": ..., <name>: <section as a dict>}``: what identifies the selected world (for hashing)."""
        from fairl_ray.config.loading import to_dict

        return {"name": self.name, self.name: to_dict(self.section)}

    fields: list = [("name", str, dataclasses.field(default="synthetic"))]
    for name, plugin in WORLDS.items():
        fields.append((name, plugin.config_class, dataclasses.field(default_factory=plugin.config_class)))
    cls = dataclasses.make_dataclass(
        "WorldConfig",
        fields,
        namespace={
            "__post_init__": __post_init__,
            "section": property(section),
            "supplies_pairs": property(supplies_pairs),
            "given_expert": property(given_expert),
            "has_judge": property(has_judge),
            "active_dict": active_dict,
        },
    )
    cls.__module__ = __name__
    cls.__doc__ = (
        "Where prompts, the base policy π0 and R* come from (DESIGN §3): ``name`` picks a world of "
        f"{', '.join(WORLD_NAMES)}; each world has its own section (``world.<name>``), used when selected."
    )
    return cls


WorldConfig = _world_config_class()

__all__ = ["WORLDS", "Scores", "World", "WORLD_NAMES", "WorldConfig", "WorldPlugin", "get_world"]

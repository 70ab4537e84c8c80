"""Worlds: where prompts, the base policy π0 and the ground-truth reward R* come from (DESIGN §3).

A world is a plug-in: one module registered in :data:`REGISTRY` (one line per world) that defines

* ``CONFIG`` — its config dataclass (validated in ``__post_init__``); it becomes the section ``world.<name>``
  of the pipeline config;
* ``make_world(cfg) -> World`` — a :class:`~fairl_ray.worlds.base.World` (prompts, base policy, batched judge);
* optionally ``check_selected(cfg) -> str | None`` — what is missing when it is the selected world (a package, a
  file), reported at config load;
* optionally ``SUPPLIES_PAIRS = True`` — the world draws its preference pairs itself (``World.make_pairs``) and has
  no policy: the pipeline then plans no base policy, RLHF, generation or re-alignment.

Use::

    world = get_world("synthetic")                  # or get_world(cfg.world.name, cfg.world.section)
    sets = world.prompt_sets(256, 1200, 300, seed=0)
    base_dir = world.build_base_policy(out_dir)
    reward, label, subtype = world.score(completions)   # one batched call of the judge
    rewards = world.reward(completions, noisy=True, seed=3)  # R* + RL noise, for RLHF only
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from fairl_ray.worlds.base import Scores, World

#: World name -> module. A new world is one module plus one line here.
REGISTRY: dict[str, str] = {
    "synthetic": "fairl_ray.worlds.synthetic",  # lexicon toy world; tiny GPT-2 built and SFT'd in-process
    "hf": "fairl_ray.worlds.hf",  # any HF causal LM; prompts from a file/dataset; profanity-check or HF classifier
    "texts": "fairl_ray.worlds.preference_text",  # real texts, no policy; Bradley–Terry preferences from a judge
}

WORLD_NAMES: tuple[str, ...] = tuple(REGISTRY)


def world_module(name: str):
    """The module of world ``name`` (raises ValueError naming the known worlds)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown world {name!r}; known worlds: {', '.join(WORLD_NAMES)}")
    return importlib.import_module(REGISTRY[name])


def get_world(name: str, cfg: Any = None) -> World:
    """The world called ``name`` with its config ``cfg`` (None: that world's defaults)."""
    module = world_module(name)
    if cfg is None:
        cfg = module.CONFIG()
    if not isinstance(cfg, module.CONFIG):
        raise TypeError(f"world {name!r} needs a {module.CONFIG.__name__}, got {type(cfg).__name__}")
    return module.make_world(cfg)


def _world_config_class():
    """``WorldConfig``: ``name`` plus one section per registered world (built from :data:`REGISTRY`)."""

    def __post_init__(self):
        if self.name not in REGISTRY:
            raise ValueError(f"name: unknown world {self.name!r}; choose one of {', '.join(WORLD_NAMES)}")
        check = getattr(world_module(self.name), "check_selected", None)
        if check is not None:  # settings a world needs only when it is the selected one (e.g. hf.policy)
            problem = check(getattr(self, self.name))
            if problem:
                raise ValueError(f"{self.name}: {problem}")

    def section(self):
        """The config section of the selected world."""
        return getattr(self, self.name)

    def supplies_pairs(self) -> bool:
        """Whether the selected world draws its preference pairs itself (and so has no policy)."""
        return bool(getattr(world_module(self.name), "SUPPLIES_PAIRS", False))

    def active_dict(self) -> dict:
        """``{"name": ..., <name>: <section as a dict>}``: what identifies the selected world (for hashing)."""
        from fairl_ray.config.loading import to_dict

        return {"name": self.name, self.name: to_dict(self.section)}

    fields: list = [("name", str, dataclasses.field(default="synthetic"))]
    for name in REGISTRY:
        config_cls = world_module(name).CONFIG
        fields.append((name, config_cls, dataclasses.field(default_factory=config_cls)))
    cls = dataclasses.make_dataclass(
        "WorldConfig",
        fields,
        namespace={
            "__post_init__": __post_init__,
            "section": property(section),
            "supplies_pairs": property(supplies_pairs),
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

__all__ = ["REGISTRY", "Scores", "World", "WORLD_NAMES", "WorldConfig", "get_world", "world_module"]

"""The :class:`World` interface every world plug-in implements (DESIGN §3).

A world provides three things to the pipeline:

* prompts — :meth:`World.prompt_sets` (the RLHF, pairs and evaluation sets, seeded and disjoint);
* a base policy π0 — :meth:`World.build_base_policy` saves it as a local ``save_pretrained`` folder;
* a batched judge — :meth:`World.score` gives R*, the label (+1 non-toxic, −1 toxic, 0 unknown) and the toxic
  subtype of every text in **one call**, so a classifier judge runs once per batch, not once per text and
  per quantity.

Everything else (noisy R* for RL, toxicity flags, the optional held-out labelled set) is derived here. A world
without a policy (``texts``) draws its pairs itself (:meth:`World.make_pairs`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class Scores(NamedTuple):
    """The judge's verdict on a batch of texts (one entry per text, in order)."""

    reward: list[float | None]
    """Exact ground-truth reward R* (never noisy); None where the world has no judge."""
    label: list[int]
    """+1 non-toxic, −1 toxic, 0 unknown."""
    subtype: list[str | None]
    """Toxic subtype, or None (not toxic, or the judge has no subtypes)."""


class World:
    """Base class of a world. Subclasses implement :meth:`make_prompts`, :meth:`build_base_policy` and
    :meth:`score`; they may override :meth:`prompt_sets`, :meth:`noisy_rewards` and :meth:`heldout`."""

    name: str = "world"
    rl_noise: float = 0.0
    """Half-width of the uniform noise added to R* during RL only (never in evaluation)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    # -- to implement ----------------------------------------------------------------------------------

    def make_prompts(self, n: int, seed: int) -> list[str]:
        """``n`` prompts, deterministic for ``seed``."""
        raise NotImplementedError

    def build_base_policy(self, out_dir: str | os.PathLike) -> Path:
        """Build/obtain π0 and save it (model + tokenizer, safetensors) into ``out_dir``; returns ``out_dir``."""
        raise NotImplementedError

    def build_expert_policy(self, out_dir: str | os.PathLike) -> Path:
        """Only a world whose plug-in names a given π_E (:meth:`WorldPlugin.given_expert`): save it as
        :meth:`build_base_policy` saves π0."""
        raise NotImplementedError(f"world {self.name} names no given expert: its π_E is trained here")

    def score(self, texts: list[str]) -> Scores:
        """R*, label and subtype of every text, in one batched call."""
        raise NotImplementedError

    # -- defaults --------------------------------------------------------------------------------------

    def prompt_sets(self, n_rlhf: int, n_pairs: int, n_eval: int, seed: int) -> dict[str, list[str]]:
        """The RLHF, pairs and evaluation prompts: by default one seeded draw cut into three."""
        drawn = self.make_prompts(n_rlhf + n_pairs + n_eval, seed)
        return {
            "rlhf": drawn[:n_rlhf],
            "pairs": drawn[n_rlhf : n_rlhf + n_pairs],
            "eval": drawn[n_rlhf + n_pairs :],
        }

    def noisy_rewards(self, texts: list[str], rng: np.random.Generator) -> list[float]:
        """R* plus U[−rl_noise, rl_noise] on every text (the synthetic world spares its "neither" case)."""
        reward = self.score(list(texts)).reward
        if self.rl_noise <= 0:
            return [float(r) for r in reward]
        return [float(r + rng.uniform(-self.rl_noise, self.rl_noise)) for r in reward]

    def heldout(self) -> tuple[list[str], list[int]] | None:
        """Optional held-out labelled texts (``texts``, labels +1/−1) for evaluating extracted rewards."""
        return None

    def make_pairs(self, pairs_cfg) -> tuple[list[dict], dict]:
        """Only a world whose module sets ``SUPPLIES_PAIRS = True``: its preference pairs (the ``pairs_io``
        columns, split included) and a summary of how they were drawn, instead of pairs of generated outputs."""
        raise NotImplementedError(f"world {self.name} draws no pairs itself: its pairs come from its policies")

    # -- derived ---------------------------------------------------------------------------------------

    def reward(self, texts: list[str], noisy: bool = False, seed: int | None = 0) -> list[float]:
        """R* of each text. ``noisy=True`` adds the world's RL noise drawn from ``np.random.default_rng(seed)``
        (never use it for evaluation)."""
        if noisy and self.rl_noise > 0:
            return self.noisy_rewards(list(texts), np.random.default_rng(seed))
        return list(self.score(list(texts)).reward)

    def noisy_reward_fn(self, seed: int = 0) -> Callable[[list[str]], list[float]]:
        """A ``texts -> rewards`` callable for RLHF: R* plus RL noise from one generator seeded once with ``seed``
        (so successive calls get fresh, reproducible noise)."""
        rng = np.random.default_rng(seed)

        def reward_fn(texts: list[str]) -> list[float]:
            if self.rl_noise > 0:
                return self.noisy_rewards(list(texts), rng)
            return list(self.score(list(texts)).reward)

        return reward_fn

    def labels(self, texts: list[str]) -> list[int]:
        """+1 non-toxic, −1 toxic, 0 unknown, per text."""
        return list(self.score(list(texts)).label)

    def subtypes(self, texts: list[str]) -> list[str | None]:
        """Toxic subtype per text (None if not toxic)."""
        return list(self.score(list(texts)).subtype)

    def is_toxic(self, texts: list[str]) -> list[bool]:
        """Whether each text is toxic under the world's ground truth (its label is −1)."""
        return [lab == -1 for lab in self.score(list(texts)).label]


class WorldPlugin(ABC):
    """One kind of world as ``world.name: <name>`` selects it (registered in :data:`fairl_ray.worlds.WORLDS`): its
    config dataclass, which becomes the section ``world.<name>`` (validated in ``__post_init__``), and how to build
    the :class:`World` from it."""

    config_class: type
    """The world's config dataclass (every field defaulted: an unselected world's section is its defaults)."""
    supplies_pairs: bool = False
    """The world draws its preference pairs itself (:meth:`World.make_pairs`) and has no policy: the pipeline then
    plans no base policy, RLHF, generation or re-alignment."""

    @abstractmethod
    def make_world(self, cfg) -> World:
        """The world for its config section ``cfg``."""

    def check_selected(self, cfg) -> str | None:
        """What is missing when this is the selected world (a package, a file), reported at config load; None."""
        return None

    def given_expert(self, cfg) -> tuple[str, float] | None:
        """``(what names π_E, its β)`` when the config gives π_E (auditing a model aligned elsewhere): the pipeline
        then trains no expert and reads it with :meth:`World.build_expert_policy`. None: π_E is trained here."""
        return None

    def has_judge(self, cfg) -> bool:
        """Whether the world knows R* (a judge). Without one, the pipeline computes only what needs no ground
        truth, measures no toxicity and re-aligns nothing."""
        return True


__all__ = ["Scores", "World", "WorldPlugin"]

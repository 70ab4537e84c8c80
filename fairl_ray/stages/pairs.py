"""Preference pairs from paired completions: o+ = expert π_E(p), o− = base π0(p) (FA-IRL §4, Insights §3).

Columns follow TRL's preference convention (``prompt``, ``chosen``, ``rejected``) plus ours: ``chosen_reward``
/ ``rejected_reward`` (exact R*, no RL noise), ``chosen_label`` / ``rejected_label`` (+1 non-toxic, −1 toxic,
0 unknown), ``subtype`` (the toxic subtype of o−, else of o+, else null), ``chosen_subtype`` / ``rejected_subtype``
(each output's own, for the per-subtype failure analyses) and ``split`` (train/test).

A world that draws its pairs itself (``texts``: real comments, Bradley–Terry preferences) builds its rows with
:func:`pair_rows` and :func:`finish_pairs` too, so every world's pairs get the same mix, cap, noise and split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairl_ray.config_error import ConfigError
from fairl_ray.pairs_io import test_mask


@dataclass
class PairsConfig:
    """Preference pairs o+ = π_E(p), o− = π0(p) (FA-IRL §4 problem set-up)."""

    toxic_to_nontoxic_fraction: float | None = 1.0
    """Pair mix: fraction of kept pairs whose o− is toxic and o+ non-toxic (by the world's labels); the other
    pairs are drawn from the rest. ``1.0`` keeps only toxic→non-toxic pairs, as Insights §3 does ("non-toxic
    outputs of the RLHF model as expert examples, toxic outputs of the pre-RLHF model as suboptimal");
    ``null`` keeps the natural mix. Pairs whose two texts are identical carry no preference and are always
    dropped."""
    test_fraction: float = 0.25
    """Fraction of pairs held out as the test split (seeded)."""
    max_pairs: int | None = None
    """Cap on the number of pairs (after mixing); ``null`` for no cap."""
    flip_fraction: float = 0.0
    """Preference noise: this fraction of the kept pairs (seeded, after the mix and the cap) have chosen and
    rejected swapped, as an annotator who picks the wrong output at that rate. A swapped pair whose two R* differ
    goes against R*; the pairs summary counts every such pair (``noisy_preferences``). ``0`` keeps every pair as
    the policies produced it."""
    seed: int = 0
    """Seed of mixing, preference noise and splitting."""

    def __post_init__(self):
        f = self.toxic_to_nontoxic_fraction
        if f is not None and not 0.0 <= f <= 1.0:
            raise ConfigError("toxic_to_nontoxic_fraction", "must be in [0, 1] or null")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError("test_fraction", "must be strictly between 0 and 1")
        if self.max_pairs is not None and self.max_pairs < 4:
            raise ConfigError("max_pairs", "must be at least 4 (or null)")
        if not 0.0 <= self.flip_fraction < 0.5:
            raise ConfigError("flip_fraction", "must be in [0, 0.5) (at 0.5 a preference says nothing)")


def build_pairs(prompts: list[str], expert: list[str], base: list[str], world, cfg: PairsConfig) -> list[dict]:
    """Pair each prompt's expert completion (chosen) with its base completion (rejected).

    Identical texts are dropped (no preference); then :func:`finish_pairs` applies the pair mix, the cap, the
    preference noise and the seeded train/test split.
    """
    if not (len(prompts) == len(expert) == len(base)):
        raise ValueError("prompts, expert and base completions must have the same length")
    keep = [i for i in range(len(prompts)) if expert[i].strip() and base[i].strip() and expert[i] != base[i]]
    chosen = [expert[i] for i in keep]
    rejected = [base[i] for i in keep]
    # One batched call of the world's judge for every text (a classifier judge runs once, not once per quantity).
    rows = pair_rows([prompts[i] for i in keep], chosen, rejected, world.score(chosen + rejected))
    return finish_pairs(rows, cfg, "the expert and base completions are too similar", "prompts.n_pairs")


def pair_rows(prompts: list[str], chosen: list[str], rejected: list[str], scores) -> list[dict]:
    """One row per pair ``chosen[j] ≻ rejected[j]``; ``scores`` (a :class:`~fairl_ray.worlds.base.Scores`) holds the
    judge's verdict on ``chosen + rejected``, in that order."""
    reward, label, subtype = scores
    n = len(chosen)
    return [
        {
            "prompt": prompts[j],
            "chosen": chosen[j],
            "rejected": rejected[j],
            "chosen_reward": None if reward[j] is None else float(reward[j]),  # None: no judge, R* unknown
            "rejected_reward": None if reward[n + j] is None else float(reward[n + j]),
            "chosen_label": int(label[j]),
            "rejected_label": int(label[n + j]),
            "subtype": subtype[n + j] or subtype[j],
            "chosen_subtype": subtype[j],
            "rejected_subtype": subtype[n + j],
        }
        for j in range(n)
    ]


def finish_pairs(rows: list[dict], cfg: PairsConfig, too_few: str, count_key: str) -> list[dict]:
    """The pair mix (:func:`mix_pairs`), the cap ``max_pairs``, the preference noise ``flip_fraction``
    (:func:`flip_preferences`) and a seeded train/test split, in that order (a split the rows already carry is
    kept); ``too_few`` says why there may be fewer than 4 pairs and ``count_key`` which config key makes more."""
    rng = np.random.default_rng(cfg.seed)
    rows = mix_pairs(rows, cfg.toxic_to_nontoxic_fraction, rng)
    if cfg.max_pairs is not None:
        rows = rows[: cfg.max_pairs]
    if len(rows) < 4:
        raise RuntimeError(
            f"only {len(rows)} usable preference pairs: {too_few} (or the pair mix too strict); "
            f"raise {count_key} or relax pairs.toxic_to_nontoxic_fraction"
        )
    # After the mix and the cap: the noise is exactly that fraction of the pairs kept, and a flipped pair is never
    # dropped by the mix for being flipped (Insights' toxic→non-toxic mix would otherwise remove every flipped pair).
    rows = flip_preferences(rows, cfg.flip_fraction, rng)
    if rows and all("split" in r for r in rows):  # the world split its outputs itself (texts: text-disjoint)
        is_test = np.array([r["split"] == "test" for r in rows])
    else:
        is_test = test_mask(len(rows), cfg.test_fraction, cfg.seed)
    if not is_test.any():
        raise RuntimeError(
            f"pairs.test_fraction={cfg.test_fraction} of {len(rows)} pairs holds out no test pair; "
            "raise pairs.test_fraction or the number of pairs"
        )
    for row, held_out in zip(rows, is_test):
        row["split"] = "test" if held_out else "train"
    return rows


def flip_preferences(rows: list[dict], fraction: float, rng: np.random.Generator) -> list[dict]:
    """Swap chosen and rejected (texts, R*, labels, subtypes) in a seeded ``round(fraction · n)`` of the pairs:
    uniform preference noise, as an annotator who picks the wrong output at that rate. ``fraction = 0`` returns the
    rows unchanged (and draws nothing from ``rng``)."""
    n_flip = int(round(fraction * len(rows)))
    if n_flip == 0:
        return rows
    for i in rng.permutation(len(rows))[:n_flip]:
        r = rows[int(i)]
        for a, b in (("chosen", "rejected"), ("chosen_reward", "rejected_reward"), ("chosen_label", "rejected_label")):
            r[a], r[b] = r[b], r[a]
        if "chosen_subtype" in r:
            r["chosen_subtype"], r["rejected_subtype"] = r["rejected_subtype"], r["chosen_subtype"]
            r["subtype"] = r["rejected_subtype"] or r["chosen_subtype"]
    return rows


def against_rstar(rows: list[dict]) -> int:
    """Pairs whose chosen output has the lower ground-truth reward, R*(o+) < R*(o−): the noisy preferences (exact
    ties do not count; pairs without R* neither)."""
    return sum(
        r.get("chosen_reward") is not None
        and r.get("rejected_reward") is not None
        and r["chosen_reward"] < r["rejected_reward"]
        for r in rows
    )


def mix_pairs(rows: list[dict], fraction: float | None, rng: np.random.Generator) -> list[dict]:
    """Subsample so that ``fraction`` of the pairs are toxic→non-toxic (o− toxic, o+ non-toxic).

    Keeps as many pairs as the mix allows; ``None`` returns every row (shuffled).
    """
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    if fraction is None:
        return rows
    contrastive = [r for r in rows if r["chosen_label"] == 1 and r["rejected_label"] == -1]
    other = [r for r in rows if not (r["chosen_label"] == 1 and r["rejected_label"] == -1)]
    if fraction >= 1.0:
        return contrastive
    if fraction <= 0.0:
        return other
    # Largest n with n*fraction <= len(contrastive) and n*(1-fraction) <= len(other).
    n = int(min(len(contrastive) / fraction, len(other) / (1.0 - fraction)))
    n_contrastive = int(round(n * fraction))
    mixed = contrastive[:n_contrastive] + other[: n - n_contrastive]
    return [mixed[i] for i in rng.permutation(len(mixed))]

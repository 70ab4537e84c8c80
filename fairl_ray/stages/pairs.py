"""Preference pairs from paired completions: o+ = expert π_E(p), o− = base π0(p) (FA-IRL §4, Insights §3).

Columns follow TRL's preference convention (``prompt``, ``chosen``, ``rejected``) plus ours: ``chosen_reward``
/ ``rejected_reward`` (exact R*, no RL noise), ``chosen_label`` / ``rejected_label`` (+1 non-toxic, −1 toxic,
0 unknown), ``subtype`` (the toxic subtype of o−, else of o+, else null), ``chosen_subtype`` / ``rejected_subtype``
(each output's own, for the per-subtype failure analyses) and ``split`` (train/test).
"""

from __future__ import annotations

import numpy as np

from fairl_ray.config import PairsConfig
from fairl_ray.pairs_io import test_mask


def build_pairs(prompts: list[str], expert: list[str], base: list[str], world, cfg: PairsConfig) -> list[dict]:
    """Pair each prompt's expert completion (chosen) with its base completion (rejected).

    Identical texts are dropped (no preference); then the pair mix is applied (see
    :attr:`PairsConfig.toxic_to_nontoxic_fraction`), the cap, and a seeded train/test split.
    """
    if not (len(prompts) == len(expert) == len(base)):
        raise ValueError("prompts, expert and base completions must have the same length")
    keep = [i for i in range(len(prompts)) if expert[i].strip() and base[i].strip() and expert[i] != base[i]]
    chosen = [expert[i] for i in keep]
    rejected = [base[i] for i in keep]
    # One batched call of the world's judge for every text (a classifier judge runs once, not once per quantity).
    reward, label, subtype = world.score(chosen + rejected)
    n = len(keep)
    rows = [
        {
            "prompt": prompts[i],
            "chosen": chosen[j],
            "rejected": rejected[j],
            "chosen_reward": float(reward[j]),
            "rejected_reward": float(reward[n + j]),
            "chosen_label": int(label[j]),
            "rejected_label": int(label[n + j]),
            "subtype": subtype[n + j] or subtype[j],
            "chosen_subtype": subtype[j],
            "rejected_subtype": subtype[n + j],
        }
        for j, i in enumerate(keep)
    ]
    rng = np.random.default_rng(cfg.seed)
    rows = mix_pairs(rows, cfg.toxic_to_nontoxic_fraction, rng)
    if cfg.max_pairs is not None:
        rows = rows[: cfg.max_pairs]
    if len(rows) < 4:
        raise RuntimeError(
            f"only {len(rows)} usable preference pairs: the expert and base completions are too similar "
            "(or the pair mix too strict); raise prompts.n_pairs or relax pairs.toxic_to_nontoxic_fraction"
        )
    is_test = test_mask(len(rows), cfg.test_fraction, cfg.seed)
    if not is_test.any():
        raise RuntimeError(
            f"pairs.test_fraction={cfg.test_fraction} of {len(rows)} pairs holds out no test pair; "
            "raise pairs.test_fraction or prompts.n_pairs"
        )
    for row, held_out in zip(rows, is_test):
        row["split"] = "test" if held_out else "train"
    return rows


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

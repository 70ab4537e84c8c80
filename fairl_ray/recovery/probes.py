"""Perturbation probes (Insights Table 6): how far each recovered reward moves when a text is changed in a way
whose direction is known — a toxic word added (the reward should fall), the probe's toxic words removed (it should
rise), a light paraphrase (a filler adverb inserted: it should barely move).

Chosen before any result, for any English text world: :data:`PROBE_WORDS`, eight common mild insults (some are
also in the synthetic world's lexicon, most are not: the probe asks whether a reward learnt "toxic" or only its
world's own words), and :data:`FILLERS`, five adverbs that change no meaning. Each test output gets one seeded
edit per probe; ``remove`` applies only to outputs containing a probe word (often none outside the synthetic
world: then its row says n = 0). A shift is in the reward's normalised units (its train std), per seed, then
mean ± std over seeds; ``agree`` is the share of edited outputs whose reward moved the expected way (add: down,
remove: up). Rewards that are not IRL members (the implicit reward needs the policies) are not probed.
"""

from __future__ import annotations

import re

import numpy as np

#: the probe's toxic words (fixed; see the module docstring)
PROBE_WORDS = ("stupid", "idiot", "pathetic", "worthless", "dumb", "crap", "loser", "disgusting")
#: light-paraphrase fillers
FILLERS = ("really", "very", "just", "quite", "truly")
PROBES = ("add_toxic", "remove_toxic", "paraphrase")
_WORD_RE = re.compile(r"\b(" + "|".join(PROBE_WORDS) + r")\b", re.IGNORECASE)


def perturb(texts: list[str], seed: int = 0) -> dict[str, tuple[list[int], list[str]]]:
    """``{probe: (indices of the edited texts, edited texts)}`` for :data:`PROBES` (seeded)."""
    rng = np.random.default_rng(seed)
    add, paraphrase = [], []
    for text in texts:
        add.append(f"{text.rstrip(' .!?')} {PROBE_WORDS[rng.integers(len(PROBE_WORDS))]}")
        words = text.split()
        at = int(rng.integers(len(words) + 1))
        paraphrase.append(" ".join(words[:at] + [FILLERS[rng.integers(len(FILLERS))]] + words[at:]))
    removable = [i for i, t in enumerate(texts) if _WORD_RE.search(t)]
    removed = [" ".join(_WORD_RE.sub("", texts[i]).split()) for i in removable]
    every = list(range(len(texts)))
    return {"add_toxic": (every, add), "remove_toxic": (removable, removed), "paraphrase": (every, paraphrase)}


def probe_shifts(fitted, texts: list[str], encode, seed: int = 0) -> dict:
    """Each fitted member's reward shift under every probe of :func:`perturb`, on ``texts`` (the test outputs).

    ``fitted``: :class:`~fairl_ray.recovery.fit.FittedRewards`; ``encode(texts) -> features`` (the run's cached
    encoder). Result: ``{"probes": {probe: n edited}, "methods": {method: {probe: {"shift": mean ± std over seeds,
    "abs_shift": ..., "agree": ...}}}}``."""
    from fairl_ray.analyses.base import mean_std

    edits = perturb(texts, seed)
    original = encode(list(texts))
    edited = {p: encode(e) if e else None for p, (_, e) in edits.items()}
    per_method: dict[str, dict[str, list[dict]]] = {}
    for member in fitted.members:
        reward = member.reward_model()
        base = np.asarray(reward.score_features(original), dtype=np.float64)
        rows = per_method.setdefault(member.label, {p: [] for p in PROBES})
        for probe, (idx, _) in edits.items():
            if not idx:
                continue
            delta = np.asarray(reward.score_features(edited[probe]), dtype=np.float64) - base[idx]
            expected = {"add_toxic": -1.0, "remove_toxic": 1.0}.get(probe)
            rows[probe].append(
                {
                    "shift": float(delta.mean()),
                    "abs_shift": float(np.abs(delta).mean()),
                    "agree": float((np.sign(delta) == expected).mean()) if expected else None,
                }
            )
    methods = {
        method: {
            probe: {k: mean_std(r[k] for r in runs) for k in ("shift", "abs_shift", "agree")}
            for probe, runs in probes.items()
            if runs
        }
        for method, probes in per_method.items()
    }
    return {"probes": {p: len(idx) for p, (idx, _) in edits.items()}, "outputs": len(texts), "methods": methods}

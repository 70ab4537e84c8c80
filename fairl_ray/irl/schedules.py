"""FA-IRL schedules (Algorithm 1 line 13). ``t`` / ``round`` is the 0-based epoch index (one round = one epoch)."""

from __future__ import annotations

import math


def lambda_schedule(t: float, lambda_0: float = 10.0, decay: float = 0.05) -> float:
    """Failure weight λ_t = λ_0·exp(−decay·t) (FA-IRL: λ_0 = 10, "decayed exponentially")."""
    return float(lambda_0) * math.exp(-float(decay) * float(t))


def _linear(t: float, start: float, end: float, rounds: int) -> float:
    if rounds <= 0:
        return float(end)
    frac = min(max(float(t) / float(rounds), 0.0), 1.0)
    return float(start) + (float(end) - float(start)) * frac


def failure_fraction_schedule(round: float, start: float = 0.2, end: float = 0.0, rounds: int = 100) -> float:
    """Bottom-k_t fraction: linear from ``start`` at round 0 to ``end`` at round ``rounds``, then held at ``end``
    (FA-IRL self-supervised variant: 20% → 0% over 100 rounds)."""
    return _linear(round, start, end, rounds)


def gamma_schedule(round: float, start: float = 0.0, end: float = 0.4, rounds: int = 100) -> float:
    """Margin-failure threshold γ_t: linear from ``start`` to ``end`` over ``rounds``, then held. Used by the
    ``fa_irl_*_gt`` variants (F^margin = {Δ ≤ γ_t}); the defaults 0 → 0.4 first flag only mis-ordered pairs, then
    progressively near-ties (the "obvious errors first, subtler ambiguities later" curriculum of §4.3)."""
    return _linear(round, start, end, rounds)

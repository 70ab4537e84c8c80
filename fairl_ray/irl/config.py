"""Hyperparameters of one IRL ensemble member (one method × one setting × one seed).

Defaults follow the papers: FA-IRL §5 "Implementation details" (two-layer MLP head, Adam lr 1e-3, batch 32,
up to 800 epochs with early stopping, M = 0.8, τ = 1.0, λ_0 = 10 decayed exponentially, self-supervised
curriculum 20% → 0% over 100 rounds) and Insights §4 "Training details" (linear head, asymmetric loss, penalty
factor 5 and minimum margin 5 for Pythia-70M).

Method names (FA-IRL Table 1 rows, plus the two Insights losses):

==========================  ==================================================================================
``max_margin``              FA-IRL eq. 1: mean max(0, M − Δ)
``asymmetric_released``     Insights eq. 1 as in the released code: −Δ if Δ > 0, −2Δ if Δ < 0 (unbounded below)
``asymmetric_margin``       Insights §4 "penalty factor c / minimum margin m": max(0, m − Δ) + (c − 1)·max(0, −Δ)
``max_entropy``             FA-IRL eq. 2: mean −log σ(Δ/τ)
``fa_irl_mm_gt``            FA-IRL, base loss eq. 1, failures = margin failures {Δ ≤ γ_t} ∪ supervised (labels)
``fa_irl_mm_margin``        FA-IRL, base loss eq. 1, failures = bottom-k_t of each minibatch by Δ (self-supervised)
``fa_irl_me_gt``            as ``fa_irl_mm_gt`` with base loss eq. 2
``fa_irl_me_margin``        as ``fa_irl_mm_margin`` with base loss eq. 2
==========================  ==================================================================================

A *round* of the curriculum is one epoch (one pass over the training pairs); every schedule (λ_t, γ_t, k_t,
p_t) is evaluated once per epoch with t = the 0-based epoch index and held fixed within the epoch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

METHODS = (
    "max_margin",
    "asymmetric_released",
    "asymmetric_margin",
    "max_entropy",
    "fa_irl_mm_gt",
    "fa_irl_mm_margin",
    "fa_irl_me_gt",
    "fa_irl_me_margin",
)
HEADS = ("linear", "mlp")

# base-loss family of each method ("mm", "me", "asym_released", "asym_margin")
BASE_LOSS = {
    "max_margin": "mm",
    "asymmetric_released": "asym_released",
    "asymmetric_margin": "asym_margin",
    "max_entropy": "me",
    "fa_irl_mm_gt": "mm",
    "fa_irl_mm_margin": "mm",
    "fa_irl_me_gt": "me",
    "fa_irl_me_margin": "me",
}
# failure source of the FA-IRL methods: "gt" (margin γ_t ∪ supervised labels) or "margin" (bottom-k_t)
FAILURE_SOURCE = {
    "fa_irl_mm_gt": "gt",
    "fa_irl_mm_margin": "margin",
    "fa_irl_me_gt": "gt",
    "fa_irl_me_margin": "margin",
}


@dataclass
class IRLConfig:
    """One ensemble member's hyperparameters. Validated on construction (``ValueError`` naming the field)."""

    method: str = "max_margin"
    """IRL objective, one of ``METHODS`` (see the module docstring for what each one is)."""
    head: str = "mlp"
    """reward head on the frozen features: ``"linear"`` (θᵀh + b, Insights) or ``"mlp"`` (two-layer ReLU MLP, FA-IRL)."""
    hidden_dim: int = 128
    """hidden width of the MLP head (ignored by the linear head)."""
    lr: float = 1e-3
    """Adam learning rate (FA-IRL: 1e-3); betas (0.9, 0.999), eps 1e-8, no weight decay."""
    batch_size: int = 32
    """pairs per minibatch (FA-IRL: 32); the last minibatch of an epoch may be smaller."""
    epochs: int = 800
    """maximum number of epochs (FA-IRL: up to 800)."""
    patience: int = 20
    """early stopping: stop after this many epochs without a strictly lower validation loss; 0 disables it."""
    margin: float = 0.8
    """M of the max-margin loss, eq. 1 (FA-IRL: 0.8)."""
    temperature: float = 1.0
    """τ of the max-entropy loss, eq. 2 (FA-IRL: 1.0)."""
    penalty_factor: float = 5.0
    """``asymmetric_margin``: slope multiplier c on mis-ordered pairs (Δ < 0) (Insights: 5 for 70M, 10 for 410M)."""
    min_margin: float = 5.0
    """``asymmetric_margin``: minimum reward margin m below which the hinge is active (Insights: 5 / 10)."""
    margin_fail: float = 1.6
    """FA-IRL MM variants: stricter margin M_fail > M used on failures (Alg. 1 line 11); default 2·M."""
    temperature_fail: float = 0.5
    """FA-IRL ME variants: sharper temperature τ_fail < τ used on failures (Alg. 1 line 11); default τ/2."""
    weight_fail: float = 1.0
    """extra multiplier on the failure loss (the "larger loss weight" option of §4.2); 1 = only M_fail / τ_fail
    make it stricter, λ_t already weights it 10× at the start."""
    lambda_0: float = 10.0
    """initial failure weight λ_0 of eq. 3 (FA-IRL: 10)."""
    lambda_decay: float = 0.05
    """λ_t = λ_0·exp(−lambda_decay·t), t = epoch; 0.05 brings λ to ≈0.07 by the end of the 100-round curriculum."""
    failure_fraction_start: float = 0.2
    """``fa_irl_*_margin``: fraction of each minibatch flagged as failures (lowest Δ) at round 0 (FA-IRL: 20%)."""
    failure_fraction_end: float = 0.0
    """``fa_irl_*_margin``: fraction at and after round ``curriculum_rounds`` (FA-IRL: 0%)."""
    curriculum_rounds: int = 100
    """length in epochs of the linear curricula (bottom-k_t fraction and γ_t) (FA-IRL: 100 rounds)."""
    gamma_start: float = 0.0
    """``fa_irl_*_gt``: margin-failure threshold γ_0 (flag Δ ≤ γ_t): start with mis-ordered pairs only ..."""
    gamma_end: float = 0.4
    """... and anneal linearly to this value over ``curriculum_rounds`` so near-ties (0 < Δ ≤ γ) join later."""
    sample_rate: float = 1.0
    """p_t: each failure enters S_t independently with this probability (Alg. 1 line 10); constant over t."""
    seed: int = 0
    """seeds this member's initialisation, minibatch order and failure sampling (not the validation split)."""

    def __post_init__(self) -> None:
        def bad(field: str, msg: str) -> ValueError:
            return ValueError(f"irl.{field}: {msg}")

        if self.method not in METHODS:
            raise bad("method", f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.head not in HEADS:
            raise bad("head", f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        for name in ("hidden_dim", "batch_size", "epochs", "curriculum_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, f"must be an integer >= 1, got {v!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise bad("patience", f"must be an integer >= 0 (0 disables early stopping), got {self.patience!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", f"must be an integer >= 0, got {self.seed!r}")

        def finite(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(name, f"must be a finite number, got {v!r}")
            return float(v)

        for name in ("lr", "margin", "temperature", "temperature_fail"):
            if finite(name) <= 0:
                raise bad(name, f"must be > 0, got {getattr(self, name)!r}")
        for name in ("min_margin", "lambda_0", "lambda_decay"):
            if finite(name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)!r}")
        for name in ("penalty_factor", "weight_fail"):
            if finite(name) < 1:
                raise bad(name, f"must be >= 1, got {getattr(self, name)!r}")
        for name in ("failure_fraction_start", "failure_fraction_end", "sample_rate"):
            if not 0.0 <= finite(name) <= 1.0:
                raise bad(name, f"must be in [0, 1], got {getattr(self, name)!r}")
        finite("gamma_start")
        finite("gamma_end")
        if self.margin_fail < self.margin or not math.isfinite(self.margin_fail):
            raise bad("margin_fail", f"must be >= margin ({self.margin}) (stricter failure loss), got {self.margin_fail!r}")
        if self.temperature_fail > self.temperature:
            raise bad(
                "temperature_fail",
                f"must be <= temperature ({self.temperature}) (sharper failure loss), got {self.temperature_fail!r}",
            )

    # ---- derived facts -------------------------------------------------------------------------------------
    @property
    def base_loss(self) -> str:
        """Loss family of the base path: ``"mm"``, ``"me"``, ``"asym_released"`` or ``"asym_margin"``."""
        return BASE_LOSS[self.method]

    @property
    def is_failure_aware(self) -> bool:
        """True for the four FA-IRL methods (dual-path head)."""
        return self.method in FAILURE_SOURCE

    @property
    def failure_source(self) -> str | None:
        """``"gt"``, ``"margin"`` or ``None`` (not FA-IRL)."""
        return FAILURE_SOURCE.get(self.method)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IRLConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"irl.{unknown[0]}: unknown field; known fields: {', '.join(sorted(known))}")
        return cls(**d)

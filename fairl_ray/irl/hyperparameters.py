"""Hyperparameters of one IRL ensemble member (one method × one setting × one seed).

Defaults follow the papers: FA-IRL §5 "Implementation details" (two-layer MLP head, Adam lr 1e-3, batch 32,
up to 800 epochs with early stopping, M = 0.8, τ = 1.0, λ_0 = 10 decayed exponentially, self-supervised
curriculum 20% → 0% over 100 rounds) and Insights §4 "Training details" (linear head, asymmetric loss, penalty
factor 5 and minimum margin 5 for Pythia-70M).

Methods (their base loss, failure source and the fields below that each reads) are listed in ONE place,
``fairl_ray/irl/methods.py``.

A *round* of the curriculum is one epoch (one pass over the training pairs); every schedule (λ_t, γ_t, k_t,
p_t) is evaluated once per epoch with t = the 0-based epoch index and held fixed within the epoch.

Equal budgets (CHOICE, measured): every method — plain, FA-IRL and placebo — runs under ONE stopping rule: no
member stops early or returns a checkpoint before epoch ``min_epochs`` (by default ``curriculum_rounds``), and each
then stops after ``patience`` epochs without improvement. The first landing held only FA-IRL members to the end of
their curriculum while their baselines could stop at epoch ≈ 11; a placebo with no failures under that gate matched
every FA variant (MM family STARC .590 placebo vs .594–.603 FA vs .515 max_margin at its own best epoch on the
Table-1 world), i.e. the gap was the gate, not the failures. With one gate for all the comparison differs only in
what it is meant to test; ``tests/test_fair_comparison.py`` pins that a split placebo trains to its base method's
parameters exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fairl_ray.config_error import ConfigError

from .methods import METHODS, get_method

HEADS = ("linear", "mlp")
FAILURE_RANKINGS = ("minibatch", "dataset")
PROTOCOLS = ("fa_irl", "insights")
INSIGHTS_MAX_EPOCHS = 60
SOLVERS = ("auto", "adam", "exact")
#: Base losses (``methods.Method.base_loss``) whose linear-head objective is convex in θ AND attains its minimum
#: or tends to it along a ray (bounded below): the ones the full-batch solver of ``exact.py`` takes. Not
#: ``asym_released``: −Δ / −2Δ is convex but unbounded below (no optimum to solve for).
CONVEX_BASE_LOSSES = ("mm", "me", "asym_margin")


@dataclass
class IRLConfig:
    """One ensemble member's hyperparameters. Validated on construction (``ValueError`` naming the field)."""

    method: str = "max_margin"
    """IRL objective, one of ``METHODS`` (see the module docstring for what each one is)."""
    head: str = "mlp"
    """reward head on the frozen features: ``"linear"`` (θᵀh + b, Insights) or ``"mlp"`` (two-layer ReLU MLP,
    FA-IRL)."""
    hidden_dim: int = 128
    """hidden width of the MLP head (ignored by the linear head)."""
    lr: float = 1e-3
    """Adam learning rate (FA-IRL: 1e-3); betas (0.9, 0.999), eps 1e-8, no weight decay."""
    batch_size: int = 32
    """pairs per minibatch (FA-IRL: 32); the last minibatch of an epoch may be smaller."""
    epochs: int = 800
    """maximum number of epochs (FA-IRL: up to 800)."""
    protocol: str = "fa_irl"
    """the training protocol. ``fa_irl`` (FA-IRL §5): every epoch is a pass over all training pairs in minibatches of
    ``batch_size``, the classification threshold is fit on the train outputs. ``insights`` (Insights §4 and its
    review answers: "at most 60 iterations, each iteration processing a batch of just 50 toxic + 50 non-toxic
    examples"): every epoch is ONE minibatch of ``batch_size`` pairs drawn at random from the training pairs
    (``batch_size: 50`` is 50 chosen + 50 rejected outputs: the paper's 50 non-toxic + 50 toxic when the pair mix is
    toxic→non-toxic, ``pairs.toxic_to_nontoxic_fraction: 1``), ``epochs`` <= 60, and the classification threshold
    is 0 on the normalised reward (i.e. the train outputs' mean: a pairwise loss never trains the raw reward's
    offset, so a raw 0 would be arbitrary)."""
    min_epochs: int | None = None
    """the budget every method shares: no member (plain, FA-IRL or placebo) stops early or returns a checkpoint
    before this epoch; ``None`` = ``curriculum_rounds`` (so FA-IRL's curriculum runs to its end and the methods it is
    compared with get the same budget), capped at ``epochs``. Must be <= ``epochs``, and >= ``curriculum_rounds`` for
    FA-IRL methods."""
    patience: int = 20
    """early stopping: stop after this many epochs without a strictly lower validation loss; 0 disables it."""
    min_delta: float = 1e-4
    """early stopping: a validation loss counts as better only if it is at least this much below the best so far.
    Max-entropy losses never stop falling on separable pairs (the reward scale grows without bound); without a
    minimum improvement they would always run to ``epochs``."""
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
    weight_fail: float = 2.0
    """w_fail ≥ 1, multiplier on the failure loss (the "larger loss weight" of §4.2). With w_fail > 1 the failure
    loss is strictly larger than the base loss on every failure, whatever the sign of Δ (see ``losses.py``)."""
    lambda_0: float = 10.0
    """initial failure weight λ_0 of eq. 3 (FA-IRL: 10)."""
    lambda_decay: float = 0.05
    """λ_t = λ_0·exp(−lambda_decay·t), t = epoch; 0.05 brings λ to ≈0.07 by the end of the 100-round curriculum."""
    failure_fraction_start: float = 0.2
    """``fa_irl_*_margin``: fraction of each minibatch flagged as failures (lowest Δ) at round 0 (FA-IRL: 20%)."""
    failure_fraction_end: float = 0.0
    """``fa_irl_*_margin``: fraction at and after round ``curriculum_rounds`` (FA-IRL: 0%)."""
    curriculum_rounds: int = 100
    """length in epochs of the linear curricula (bottom-k_t fraction and γ_t) (FA-IRL: 100 rounds). It is also the
    default ``min_epochs``: no member of any method stops or returns a checkpoint before it."""
    failure_ranking: str = "minibatch"
    """``fa_irl_*_margin``: where the bottom-k_t pairs are ranked. ``minibatch``: the k = ⌊f_t·B⌋ lowest-Δ pairs of
    each minibatch (Algorithm 1 identifies failures on the minibatch, lines 2–4). ``dataset``: once per round, the
    ⌊f_t·N⌋ lowest-Δ pairs over ALL training pairs (§5's "the fraction of pairs considered failures", counted per
    round, reads as a dataset-level fraction); they are then failures in whatever minibatch they fall."""
    gamma_start: float = 0.0
    """``fa_irl_*_gt``: margin-failure threshold γ_0 (flag Δ ≤ γ_t): start with mis-ordered pairs only ..."""
    gamma_end: float = 0.4
    """... and anneal linearly to this value over ``curriculum_rounds`` so near-ties (0 < Δ ≤ γ) join later."""
    sample_rate: float = 1.0
    """p_t: each failure enters S_t independently with this probability (Alg. 1 line 10); constant over t."""
    seed: int = 0
    """seeds this member's initialisation, minibatch order and failure sampling (not the validation split)."""
    solver: str = "auto"
    """how the member is fit. ``adam``: the minibatch Adam trainer (``trainer.py``: ``lr``, ``batch_size``, the
    protocol's minibatches). ``exact``: the full-batch solver of ``exact.py``, for a convex member only (linear head,
    single-path method, base loss in ``CONVEX_BASE_LOSSES``, and ``min_margin`` > 0 for ``asymmetric_margin``): its
    iterates are full-batch steps from the same initialisation (gradient flow, then Newton to the optimum when the
    validation loss still improves at the end of ``epochs`` steps), each one an epoch of the curve; ``epochs``,
    ``patience`` and ``min_delta`` keep their meaning per iterate, ``min_epochs`` does not apply (the gate is the
    Adam comparisons' shared budget; see ``exact.py``), ``lr`` and ``batch_size`` are not read. ``auto``: ``exact``
    for a convex member of an ensemble without dual-path (FA-IRL / placebo) members, else ``adam`` (a method and its
    FA-IRL variants are compared under one optimiser and one budget)."""

    def __post_init__(self) -> None:
        def bad(field: str, msg: str) -> ConfigError:  # keyed as the pipeline's irl section names the field
            return ConfigError(f"irl.{field}", msg)

        if self.method not in METHODS:
            raise bad("method", f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.protocol not in PROTOCOLS:
            raise bad("protocol", f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.protocol == "insights" and isinstance(self.epochs, int) and self.epochs > INSIGHTS_MAX_EPOCHS:
            raise bad(
                "epochs", f"the insights protocol runs at most {INSIGHTS_MAX_EPOCHS} iterations, got {self.epochs!r}"
            )
        if self.failure_ranking not in FAILURE_RANKINGS:
            raise bad(
                "failure_ranking",
                f"unknown ranking {self.failure_ranking!r}; choose one of {', '.join(FAILURE_RANKINGS)}",
            )
        if self.head not in HEADS:
            raise bad("head", f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        for name in ("hidden_dim", "batch_size", "epochs", "curriculum_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, f"must be an integer >= 1, got {v!r}")
        if self.min_epochs is not None and (
            isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int) or self.min_epochs < 1
        ):
            raise bad("min_epochs", f"must be an integer >= 1 or null (= curriculum_rounds), got {self.min_epochs!r}")
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
        for name in ("min_margin", "lambda_0", "lambda_decay", "min_delta"):
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
            raise bad(
                "margin_fail", f"must be >= margin ({self.margin}) (stricter failure loss), got {self.margin_fail!r}"
            )
        if self.min_epochs is not None and self.min_epochs > self.epochs:
            raise bad("min_epochs", f"must be <= epochs ({self.epochs}), got {self.min_epochs!r}")
        if self.is_failure_aware and self.curriculum_rounds > self.epochs:
            raise bad(
                "curriculum_rounds",
                f"must be <= epochs ({self.epochs}) so the curriculum runs to its end, got {self.curriculum_rounds!r}",
            )
        if self.is_failure_aware and self.curriculum_rounds > self.checkpoint_from:
            raise bad(
                "curriculum_rounds",
                f"must be <= min_epochs ({self.min_epochs}) so the curriculum runs to its end inside the budget every "
                f"method shares, got {self.curriculum_rounds!r}",
            )
        if self.solver not in SOLVERS:
            raise bad("solver", f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.solver == "exact" and self.not_convex_because is not None:
            raise bad("solver", f"exact needs a convex member, and {self.method!r} is not: {self.not_convex_because}")
        if self.temperature_fail > self.temperature:
            raise bad(
                "temperature_fail",
                f"must be <= temperature ({self.temperature}) (sharper failure loss), got {self.temperature_fail!r}",
            )

    # ---- derived facts -------------------------------------------------------------------------------------
    @property
    def base_loss(self) -> str:
        """Loss family of the base path (``methods.Method.base_loss``)."""
        return get_method(self.method).base_loss

    @property
    def is_failure_aware(self) -> bool:
        """True for the FA-IRL methods (they learn from failures; their placebos do not)."""
        return get_method(self.method).is_failure_aware

    @property
    def dual_path(self) -> bool:
        """R = R_D + R_F: the FA-IRL methods and their placebos."""
        return get_method(self.method).dual_path

    @property
    def routing(self) -> str | None:
        """``joint`` (eq. 3 as printed), ``split`` (§4.1), None for a single-path method."""
        return get_method(self.method).routing

    @property
    def failure_source(self) -> str | None:
        """``"gt"``, ``"margin"`` or ``None`` (not FA-IRL)."""
        return get_method(self.method).failure_source

    @property
    def not_convex_because(self) -> str | None:
        """Why the full-batch solver cannot take this member (None: it can): its objective must be convex in θ and
        bounded below, i.e. a linear head, one path and a loss in ``CONVEX_BASE_LOSSES``."""
        if self.head != "linear":
            return f"the {self.head} head makes the objective non-convex in its parameters (head: linear does not)"
        if self.dual_path:
            return "a dual-path (FA-IRL / placebo) objective mixes failure sets and a penalty schedule over epochs"
        if self.base_loss not in CONVEX_BASE_LOSSES:
            return f"its loss ({self.base_loss}) is unbounded below, there is no optimum"
        if self.base_loss == "asym_margin" and self.min_margin == 0:
            return "with min_margin 0 its minimisers include θ = 0 (a constant reward)"
        return None

    @property
    def pairs_per_epoch(self) -> int | None:
        """Pairs one epoch trains on: all of them (None) or, under the insights protocol, one minibatch."""
        return self.batch_size if self.protocol == "insights" else None

    @property
    def checkpoint_from(self) -> int:
        """First epoch (1-based) that early stopping may stop at or return, the same for every method:
        ``min_epochs``, by default the end of the curriculum (so λ_t, γ_t and k_t all run their course)."""
        gate = self.curriculum_rounds if self.min_epochs is None else self.min_epochs
        return min(gate, self.epochs)  # a plain method asked for fewer epochs than the curriculum trains them all

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IRLConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"irl.{unknown[0]}: unknown field; known fields: {', '.join(sorted(known))}")
        return cls(**d)

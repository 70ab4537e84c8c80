"""The IRL methods: the ONE place that says what each method is.

A method is a base loss (a name in :data:`fairl_ray.irl.losses.BASE_LOSSES`), optionally a failure source (a name
in :data:`fairl_ray.irl.failures.FAILURE_SOURCES`: FA-IRL's dual-path head and eq. 3 are then used) with a gradient
ROUTING. The :class:`~fairl_ray.irl.hyperparameters.IRLConfig` hyperparameters it reads follow from these (each loss
and source declares its own). The trainer, the config validation, the search space checks, the analyses and the
report all read this table; adding a method is adding one entry here (and, for a new loss or failure source, one
function and one registration in ``losses.py`` / ``failures.py``; a new hyperparameter is also an ``IRLConfig``
field).

FA-IRL Table 1 has six rows: ``max_margin``, ``max_entropy`` and the four FA-IRL variants {MM, ME} × {ground-truth
failures, IRL-margin failures}. Each FA-IRL variant exists in two routings (``objective.py`` has the arithmetic):

* ``joint`` — eq. 3 as printed: ONE objective L_base + λ_t·L_fail(S_t) + (λ_t/2)·‖w_F‖² minimised over all
  parameters (Algorithm 1 line 12). Names without a suffix: ``fa_irl_mm_gt`` …
* ``split`` — §4.1's other reading ("a base path, trained on all pairs, and a failure path, trained only on the
  identified failure set"): L_base trains R_D only, L_fail trains R_F only. Names ending in ``_split``.

Controls (so every FA-IRL result has one that differs only in the thing tested):

* the PLACEBO ``fa_irl_{mm,me}_placebo[_split]``: the FA-IRL method's dual-path head, routing, λ_t schedule,
  penalty (λ_t/2)·‖w_F‖² and gate, with S_t ≡ ∅ — eq. 3 without its failure term, so it differs from the FA-IRL
  method ONLY in the failures. Without failures the curriculum (γ_t or k_t) selects nothing, so one placebo per
  (base loss, routing) serves both failure sources. The split placebo is the base method itself, exactly: its
  failure path starts at zero output and nothing moves it (``tests/test_fair_comparison.py`` pins equal
  parameters); the joint placebo is the dual-path head trained on L_base + the penalty. (A first version set
  λ_t ≡ 0, which also dropped the joint penalty: its R_F then grew unregularised, w_F norm 0.43 against 0.02 for an
  FA member that found no failure — a control that differed in more than the failures.)
* the base method, under the SAME budget and stopping rule (``IRLConfig.min_epochs``, one gate for every method).
"""

from __future__ import annotations

from dataclasses import dataclass

from fairl_ray.registry import Registry

from .failures import FAILURE_SOURCES
from .losses import BASE_LOSSES, FAILURE_LOSSES

#: The ``IRLConfig`` fields of eq. 3 itself, read by every FA-IRL method (not its placebo: see ``hyperparameters``):
#: the λ_t schedule, the curriculum length and the sampling rate p_t of S_t.
FA_IRL_HYPERPARAMETERS: tuple[str, ...] = ("lambda_0", "lambda_decay", "curriculum_rounds", "sample_rate")

ROUTINGS = ("joint", "split")


@dataclass(frozen=True)
class Method:
    """What one IRL method is."""

    name: str
    """Name used in configs, artifacts and tables."""
    base_loss: str
    """Loss family of the base path (``losses.BASE_LOSSES`` key): ``mm``, ``me``, ``asym_released``, ``asym_margin``."""
    failure_source: str | None
    """``None`` for a plain IRL method; else how failures are found (``failures.FAILURE_SOURCES`` key): ``gt``
    (margin failures {Δ ≤ γ_t} ∪ supervised failures from labels) or ``margin`` (bottom-k_t, self-supervised)."""
    paper: str
    """Where it comes from (the report's method legend)."""
    routing: str | None = None
    """FA-IRL gradient routing, ``joint`` (eq. 3 as printed) or ``split`` (§4.1); None for a single-path method."""
    placebo: bool = False
    """A control: FA-IRL's dual-path head, routing, λ_t schedule, penalty and gate, with no failures (S_t ≡ ∅)."""

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The ``IRLConfig`` fields this method reads besides the shared head / optimiser / budget fields, as its
        loss and failure source declare them: L_base's; for an FA-IRL method also L_fail's, eq. 3's
        (:data:`FA_IRL_HYPERPARAMETERS`) and its source's. The search space checks that a searched field is read by
        some searched method; MLflow logs them as the method run's params. A placebo lists its base loss's only (as
        it always has), although its penalty reads λ_0 and λ_decay too."""
        own = BASE_LOSSES.get(self.base_loss).hyperparameters
        if self.is_failure_aware:
            own += FAILURE_LOSSES.get(self.base_loss).hyperparameters + FA_IRL_HYPERPARAMETERS
            own += FAILURE_SOURCES.get(self.failure_source).hyperparameters
        return tuple(dict.fromkeys(own))

    @property
    def dual_path(self) -> bool:
        """R = R_D + R_F (FA-IRL §4.1): the FA-IRL methods and their placebos."""
        return self.routing is not None

    @property
    def is_failure_aware(self) -> bool:
        """Learns from failures (eq. 3 with λ_t > 0): the FA-IRL methods, not their placebos."""
        return self.failure_source is not None and not self.placebo


_LOSS = {"mm": "MM", "me": "ME"}
_SOURCE = {"gt": "ground-truth failures", "margin": "IRL margin failures"}
_ROUTING = {"joint": ("", "eq. 3 as printed, one objective"), "split": ("_split", "§4.1 split routing")}


def _fa_variants() -> list[Method]:
    out = []
    for routing, (suffix, how) in _ROUTING.items():
        for loss, short in _LOSS.items():
            for source, what in _SOURCE.items():
                out.append(
                    Method(
                        f"fa_irl_{loss}_{source}{suffix}",
                        loss,
                        source,
                        f"FA-IRL Table 1 ({short}, {what}); {how}",
                        routing=routing,
                    )
                )
            out.append(
                Method(
                    f"fa_irl_{loss}_placebo{suffix}",
                    loss,
                    None,
                    f"placebo of FA-IRL ({short}, {how}): no failures (S_t ≡ ∅), all else equal",
                    routing=routing,
                    placebo=True,
                )
            )
    return out


#: Every method, in table order (FA-IRL Table 1 first). A new method: one ``register`` line (here, or anywhere
#: before configs are read); configs, the search space and the report then know it.
METHOD_TABLE: Registry[Method] = Registry("method")
for _method in (
    Method("max_margin", "mm", None, "FA-IRL eq. 1 (Max-Margin IRL)"),
    Method("max_entropy", "me", None, "FA-IRL eq. 2 (Max-Entropy IRL)"),
    *_fa_variants(),
    Method("asymmetric_released", "asym_released", None, "Insights eq. 1 as released (−Δ / −2Δ)"),
    Method("asymmetric_margin", "asym_margin", None, "Insights §4 (penalty factor c, minimum margin m)"),
):
    METHOD_TABLE.register(_method.name, _method)
del _method

#: Method names, in table order: the table itself (iterating it gives the names, ``in`` tests one), so a method
#: registered later is valid everywhere ``METHODS`` is read.
METHODS: Registry[Method] = METHOD_TABLE

#: FA-IRL Table 1, in the paper's order (eq. 3 as printed).
TABLE1_METHODS: tuple[str, ...] = (
    "max_margin", "max_entropy", "fa_irl_mm_gt", "fa_irl_mm_margin", "fa_irl_me_gt", "fa_irl_me_margin",
)  # fmt: skip


#: The ``IRLConfig`` fields every method reads: head, optimiser, budget and stopping rule (``Method.hyperparameters``
#: lists the rest, each method's own).
SHARED_HYPERPARAMETERS: tuple[str, ...] = (
    "head", "hidden_dim", "lr", "batch_size", "epochs", "protocol", "min_epochs", "patience", "min_delta",
)  # fmt: skip


def hyperparameters_read(name: str) -> tuple[str, ...]:
    """Every ``IRLConfig`` field method ``name`` reads: the shared ones, then its own."""
    return SHARED_HYPERPARAMETERS + get_method(name).hyperparameters


def get_method(name: str) -> Method:
    """The method called ``name`` (``ValueError`` naming the known ones)."""
    return METHOD_TABLE.get(name)


def baseline_of(name: str) -> str | None:
    """The plain IRL method an FA-IRL variant (or placebo) is compared with (same base loss): ``fa_irl_me_margin`` →
    ``max_entropy``. None for a single-path method."""
    m = get_method(name)
    if not m.dual_path:
        return None
    return next((o.name for o in METHOD_TABLE.values() if o.base_loss == m.base_loss and not o.dual_path), None)


def placebo_of(name: str) -> str | None:
    """The placebo of an FA-IRL variant: same base loss and routing, no failures. None for anything else."""
    m = get_method(name)
    if not m.is_failure_aware:
        return None
    return next(
        (o.name for o in METHOD_TABLE.values() if o.placebo and o.base_loss == m.base_loss and o.routing == m.routing),
        None,
    )


def other_routing_of(name: str) -> str | None:
    """The same FA-IRL variant in the other routing (``fa_irl_mm_gt`` ↔ ``fa_irl_mm_gt_split``)."""
    m = get_method(name)
    if not m.is_failure_aware:
        return None
    return next(
        (
            o.name
            for o in METHOD_TABLE.values()
            if o.is_failure_aware
            and o.base_loss == m.base_loss
            and o.failure_source == m.failure_source
            and o.routing != m.routing
        ),
        None,
    )


def comparisons(methods) -> list[tuple[str, str, str]]:
    """Every fair comparison among ``methods`` (names that ran): ``(treatment, control, kind)`` with kind
    ``baseline`` (FA-IRL vs its plain method), ``placebo`` (FA-IRL vs its no-failure twin: only the failures differ) or
    ``routing`` (joint vs split of one variant; listed once, joint first). In the order of ``methods``."""
    present = list(dict.fromkeys(methods))
    out = []
    for name in present:
        m = get_method(name)
        if not m.is_failure_aware:
            continue
        for kind, control in (
            ("baseline", baseline_of(name)),
            ("placebo", placebo_of(name)),
            ("routing", other_routing_of(name) if m.routing == "joint" else None),
        ):
            if control is not None and control in present:
                out.append((name, control, kind))
    return out

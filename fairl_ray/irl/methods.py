"""The IRL methods: the ONE place that says what each method is.

A method is a base loss (a key of :data:`fairl_ray.irl.losses.BASE_LOSSES`), optionally a failure source (a key of
:data:`fairl_ray.irl.failures.FAILURE_SOURCES`: FA-IRL's dual-path head and eq. 3 are then used), and the
:class:`~fairl_ray.irl.hyperparameters.IRLConfig` hyperparameters it reads. The trainer, the config validation, the
search
space checks and the docs all read this table; adding a method is adding one entry here (and, for a new loss or
failure source, one function in ``losses.py`` / ``failures.py``).

FA-IRL Table 1 has six rows: ``max_margin``, ``max_entropy`` and the four FA-IRL variants {MM, ME} × {ground-truth
failures, IRL-margin failures}. The two Insights losses are extra rows.
"""

from __future__ import annotations

from dataclasses import dataclass

_FA_HP = ("lambda_0", "lambda_decay", "curriculum_rounds", "sample_rate", "weight_fail")


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
    hyperparameters: tuple[str, ...]
    """The ``IRLConfig`` fields this method reads (besides the shared head / optimiser / schedule fields)."""
    paper: str
    """Where it comes from."""

    @property
    def is_failure_aware(self) -> bool:
        return self.failure_source is not None


def _fa(
    name: str, base: str, source: str, base_hp: tuple[str, ...], fail_hp: str, source_hp: tuple[str, ...], row: str
) -> Method:
    return Method(name, base, source, base_hp + (fail_hp,) + _FA_HP + source_hp, f"FA-IRL Table 1, {row}")


_GT = ("gamma_start", "gamma_end")
_BOTTOM_K = ("failure_fraction_start", "failure_fraction_end")

#: Every method, in table order (FA-IRL Table 1 first).
METHOD_TABLE: dict[str, Method] = {
    m.name: m
    for m in (
        Method("max_margin", "mm", None, ("margin",), "FA-IRL eq. 1 (Max-Margin IRL)"),
        Method("max_entropy", "me", None, ("temperature",), "FA-IRL eq. 2 (Max-Entropy IRL)"),
        _fa("fa_irl_mm_gt", "mm", "gt", ("margin",), "margin_fail", _GT, "FA-IRL (MM, ground-truth failures)"),
        _fa(
            "fa_irl_mm_margin",
            "mm",
            "margin",
            ("margin",),
            "margin_fail",
            _BOTTOM_K,
            "FA-IRL (MM, IRL margin failures)",
        ),
        _fa(
            "fa_irl_me_gt", "me", "gt", ("temperature",), "temperature_fail", _GT, "FA-IRL (ME, ground-truth failures)"
        ),
        _fa(
            "fa_irl_me_margin",
            "me",
            "margin",
            ("temperature",),
            "temperature_fail",
            _BOTTOM_K,
            "FA-IRL (ME, IRL margin failures)",
        ),
        Method("asymmetric_released", "asym_released", None, (), "Insights eq. 1 as released (−Δ / −2Δ)"),
        Method(
            "asymmetric_margin",
            "asym_margin",
            None,
            ("min_margin", "penalty_factor"),
            "Insights §4 (penalty factor c, minimum margin m)",
        ),
    )
}

#: Method names, in table order.
METHODS: tuple[str, ...] = tuple(METHOD_TABLE)

#: FA-IRL Table 1, in the paper's order.
TABLE1_METHODS: tuple[str, ...] = (
    "max_margin", "max_entropy", "fa_irl_mm_gt", "fa_irl_mm_margin", "fa_irl_me_gt", "fa_irl_me_margin",
)  # fmt: skip


def get_method(name: str) -> Method:
    try:
        return METHOD_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def baseline_of(name: str) -> str | None:
    """The plain IRL method an FA-IRL variant is compared with (same base loss): ``fa_irl_me_margin`` →
    ``max_entropy``. None for a method without failures, or without a plain twin."""
    m = get_method(name)
    if not m.is_failure_aware:
        return None
    return next((o.name for o in METHOD_TABLE.values() if o.base_loss == m.base_loss and not o.is_failure_aware), None)

"""``fairl tune``: IRL hyperparameter search at scale — Ray Tune over packed trials, Optuna, MLflow.

Modules, by job:

* :mod:`~fairl_ray.search.space` — the search config (what to search, over which models, packing, pruning).
* :mod:`~fairl_ray.search.data` — pairs + cached features per model (a ``PairData``), the seeded validation carve.
* :mod:`~fairl_ray.search.study` — the searcher state: one Optuna study per model in a shared journal file.
* :mod:`~fairl_ray.search.trial` — one Tune trial = a pack of configs × seeds trained as one batched ensemble.
* :mod:`~fairl_ray.search.tracking` — live MLflow children (one per config) and their reconciliation.
* :mod:`~fairl_ray.search.tuner` — the driver: Tuner / Tuner.restore, FailureConfig, ASHA, the winners.
* :mod:`~fairl_ray.search.outputs` — trial table, best config per model side by side, files and tables.
* :mod:`~fairl_ray.search.realign` — ``--realign-top N``: re-RLHF a fresh π0 with the N best rewards.

This package imports nothing heavy at import time; Ray, Optuna and torch load when a search runs.
"""

from fairl_ray.search.data import data_from_pairs, data_from_workdir, load_models, resolve_objective
from fairl_ray.search.space import OBJECTIVES, SearchConfig, default_search_path, load_search_config
from fairl_ray.search.trial import evaluate_config, evaluate_pack

__all__ = [
    "OBJECTIVES",
    "SearchConfig",
    "data_from_pairs",
    "data_from_workdir",
    "default_search_path",
    "evaluate_config",
    "evaluate_pack",
    "load_models",
    "load_search_config",
    "resolve_objective",
    "run_search",
    "summary_table",
    "check_resumable",
    "SearchStateError",
]


def __getattr__(name):  # the driver pulls in Ray Tune: import it only when asked for
    if name in ("run_search", "check_resumable", "SearchStateError"):
        from fairl_ray.search import tuner

        return getattr(tuner, name)
    if name == "summary_table":
        from fairl_ray.search.outputs import summary_table

        return summary_table
    raise AttributeError(f"module 'fairl_ray.search' has no attribute {name!r}")

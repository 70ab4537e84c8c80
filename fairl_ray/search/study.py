"""The searcher's state: one Optuna study per model in a journal file on the search's shared ``out``.

Why a shared Optuna storage instead of Tune's ``OptunaSearch``: a packed Tune trial asks Optuna for
``pack_size`` configs at once (TPE with ``constant_liar``, Optuna's own recipe for parallel asks), and the study
outlives any process — a retried trial (``FailureConfig``), a restored search (``Tuner.restore``) or a trial on
another node all see the same history. The journal file is the searcher checkpoint; Tune's experiment state
(``ray_results/``) says which packs are finished.

Every config is an Optuna trial tagged with its ``pack`` (user attr). A pack is idempotent: it evaluates its
configs that are not finished yet (asked before a crash or a kill and never told) and asks only for the rest,
so a resumed search completes the remaining configs only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fairl_ray.search.space import OBJECTIVES, SearchConfig, suggest


def journal_path(out: str | Path) -> Path:
    return Path(out) / "state" / "optuna.journal"


def _storage(journal: str | Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    journal = Path(journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    # An open(O_EXCL)-based lock works on NFS-like shared storage too (the symlink lock needs symlinks).
    return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal))))


def sampler_seed(search_seed: int, model: str, pack: int) -> int:
    """Each pack samples with its own seed (fresh samplers with one shared seed would repeat each other's random
    start-up draws); deterministic, so the same search proposes the same configs."""
    return int(hashlib.sha256(f"{search_seed}:{model}:{pack}".encode()).hexdigest()[:8], 16)


def pruner(cfg: SearchConfig):
    import optuna

    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup, n_warmup_steps=0)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    return optuna.pruners.NopPruner()


def open_study(journal: str | Path, model: str, objective: str, cfg: SearchConfig, pack: int = -1):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed(cfg.search_seed, model, pack), constant_liar=True)
    return optuna.create_study(
        storage=_storage(journal),
        study_name=model,
        sampler=sampler,
        pruner=pruner(cfg),
        direction="minimize" if OBJECTIVES[objective] == "min" else "maximize",
        load_if_exists=True,
    )


def pack_sizes(cfg: SearchConfig) -> list[int]:
    """``num_samples`` configs cut into packs of ``pack_size`` (the last one may be smaller)."""
    n, p = cfg.num_samples, cfg.pack_size
    return [min(p, n - i) for i in range(0, n, p)]


def pack_trials(study, cfg: SearchConfig, pack: int) -> tuple[list, list]:
    """The pack's configs as ``(finished, todo)``: ``finished`` FrozenTrials; ``todo`` live ``optuna.Trial`` objects
    with their params — the pack's unfinished trials from an earlier attempt first, then newly asked ones."""
    import optuna
    from optuna.trial import TrialState

    size = pack_sizes(cfg)[pack]
    mine = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("pack") == pack), key=lambda t: t.number
    )
    finished = [t for t in mine if t.state.is_finished()]
    todo = [optuna.trial.Trial(study, t._trial_id) for t in mine if t.state == TrialState.RUNNING]
    for _ in range(size - len(mine)):
        trial = study.ask()
        trial.set_user_attr("pack", pack)
        todo.append(trial)
    for trial in todo:  # a resumed trial gets back the values it was given; missing ones are sampled now
        trial.set_user_attr("config", suggest(trial, cfg.space))
    return finished, todo


def stop_unfinished(study, pack: int | None = None) -> list[int]:
    """Trials still RUNNING — of one ``pack`` stopped by the scheduler, or (``pack=None``, after the search) any
    left by a pack that never finished — become PRUNED when they reported an intermediate value (ASHA stopped
    their pack), else FAIL; so the study holds no phantom work. Returns their numbers."""
    from optuna.trial import TrialState

    left = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if pack is None or t.user_attrs.get("pack") == pack
    ]
    for t in left:
        state = TrialState.PRUNED if t.intermediate_values else TrialState.FAIL
        study.tell(t.number, state=state, skip_if_finished=True)
    return [t.number for t in left]

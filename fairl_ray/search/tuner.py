"""``fairl tune``'s driver: Ray Tune over packs (models × packs grid), resumable, then the winners.

1. **State.** ``<out>/state/search.json`` holds the search's fingerprint and its MLflow parent run; the Optuna
   journal ``<out>/state/optuna.journal`` holds every config; the data the trials read is in
   ``<out>/state/data/<model>/``; Tune's experiment is ``<out>/ray_results/<name>``. ``out`` must be on storage
   every node sees (Tune syncs nothing to the head since Ray 2.7).
2. **Resume.** A rerun resumes from the search's own JSON state only: the Optuna journal (JSON lines; the file
   backend keeps no pickled snapshot) says which configs are finished, ``search.json`` which MLflow parent run to
   continue. Tune's experiment state is never restored: ``Tuner.restore`` unpickles ``tuner.pkl`` and the trial
   states of ``<out>/ray_results/<name>``, and whoever can write ``out`` could plant code there. So Tune starts a
   fresh experiment over every pack (the old folder is moved to ``<name>.previous``, never read); each pack
   evaluates only its configs that are not finished in the Optuna study (a finished pack returns at once), so
   unfinished and errored packs continue as before. A search whose config changed is refused (``--restart``
   starts over). One ``fairl tune`` at a time per ``out`` (``workdir_lock``): a second waits, then resumes.
3. **Trials.** ``FailureConfig(max_failures)`` retries a crashed pack; ``scheduler: asha`` stops lagging packs
   on their per-rung reports; the Optuna pruner stops lagging configs inside packs. Each finished config is an
   MLflow child at once (:mod:`fairl_ray.search.tracking`).
4. **Winners.** Per model: the best config re-trained on ``fresh_seeds`` and evaluated on the TEST split (the
   selection noise of the search does not flatter the reported number). With several models: every best config
   on every model's val split, and whether one config wins everywhere. Optionally (``realign_top``) the N best
   rewards re-align a fresh π0 (:mod:`fairl_ray.search.realign`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from fairl_ray.config import flatten, to_dict
from fairl_ray.recovery.data import PairData
from fairl_ray.search.data import resolve_objective, save_data
from fairl_ray.search.space import OBJECTIVES, SearchConfig
from fairl_ray.search.study import journal_path, open_study, pack_sizes, stop_unfinished


class SearchStateError(ValueError):
    """``out`` holds a different search (its config changed): refuse to mix them."""


def read_state(out: Path) -> dict | None:
    f = Path(out) / "state" / "search.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _write_state(out: Path, state: dict) -> None:
    from fairl_ray.atomic_io import atomic_write_bytes

    atomic_write_bytes(Path(out) / "state" / "search.json", json.dumps(state, indent=2).encode())


def check_resumable(cfg: SearchConfig, out: str | Path, models: dict[str, PairData] | None = None) -> dict | None:
    """The interrupted search in ``out`` (None if there is none); raises :class:`SearchStateError` if its config —
    or, given ``models``, its data (pairs, features, splits) — differs (checked before anything starts)."""
    state = read_state(Path(out))
    if state and state["fingerprint"] != cfg.fingerprint():
        raise SearchStateError(
            f"{out} holds search {state['name']!r} with a different config (fingerprint "
            f"{state['fingerprint']} != {cfg.fingerprint()}); rerun with --restart to start it "
            f"over, or pick another --out"
        )
    if state and models is not None and "data" in state:
        now = {m: d.digest() for m, d in models.items()}
        if now != state["data"]:
            changed = sorted(m for m in set(now) | set(state["data"]) if now.get(m) != state["data"].get(m))
            raise SearchStateError(
                f"{out} holds search {state['name']!r} over different data (model(s) "
                f"{', '.join(changed)} changed since it started); rerun with --restart to start it "
                f"over, or pick another --out"
            )
    return state


def run_search(
    cfg: SearchConfig,
    models: dict[str, PairData],
    out: str | Path,
    tracking_uri: str,
    artifact_root: str | Path | None = None,
    address: str | None = None,
    restart: bool = False,
    realign_top: int = 0,
    realign_workdir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the whole search; write the outputs into ``out``; return the contents of best.json (plus
    ``out``, ``seconds`` and the MLflow ids). One search at a time per ``out``: a second waits for the lock."""
    from fairl_ray.orchestration.stage_store import workdir_lock

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with workdir_lock(out, log):
        return _run_search_locked(
            cfg, models, out, tracking_uri, artifact_root, address, restart, realign_top, realign_workdir, log
        )


def _run_search_locked(
    cfg: SearchConfig,
    models: dict[str, PairData],
    out: Path,
    tracking_uri: str,
    artifact_root: str | Path | None,
    address: str | None,
    restart: bool,
    realign_top: int,
    realign_workdir: str | Path | None,
    log: Callable[[str], None],
) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from fairl_ray.orchestration.ray_runtime import init_ray, shutdown_ray
    from fairl_ray.orchestration.tracking import Tracker
    from fairl_ray.search.tracking import LiveSearchLog, reconcile
    from fairl_ray.search.trial import run_pack

    started = time.time()
    if restart:
        for p in (out / "state", out / "ray_results"):
            shutil.rmtree(p, ignore_errors=True)
    state = check_resumable(cfg, out, models)
    primary = next(iter(models))
    objective = resolve_objective(cfg, models[primary])
    metric, mode = f"val_{objective}", OBJECTIVES[objective]
    journal = journal_path(out)
    data_dirs = {m: str(save_data(d, out / "state" / "data" / m)) for m, d in models.items()}
    n_packs = len(pack_sizes(cfg))
    total = cfg.num_samples * len(models)

    tracker = Tracker(tracking_uri, artifact_root=artifact_root or out / "mlartifacts")
    if state:
        parent = state["parent_run_id"]
        tracker.reopen_run(parent)
        log(f"[tune] resuming search {cfg.name!r} in {out} (MLflow run {parent})")
    else:
        parent = tracker.start_run(
            f"tune:{cfg.name}", tags={"fairl.kind": "tune", "fairl.out": str(out), "fairl.models": ",".join(models)}
        )
        first = models[primary]
        tracker.log_params(
            parent,
            {
                **flatten(to_dict(cfg)),
                "objective_resolved": objective,
                "models_resolved": ",".join(f"{m}={d.source}" for m, d in models.items()),
                "packs_per_model": n_packs,
                "pairs.train": len(first.train_index),
                "pairs.val": len(first.val_index),
                "pairs.test": len(first.test_index),
            },
        )
        _write_state(
            out,
            {
                "name": cfg.name,
                "fingerprint": cfg.fingerprint(),
                "parent_run_id": parent,
                "data": {m: d.digest() for m, d in models.items()},
                "tracking_uri": tracking_uri,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    own_ray = not ray.is_initialized()
    status = "FAILED"
    try:
        if own_ray:
            init_ray(address=address)
        spec = {"cfg": to_dict(cfg), "objective": objective, "journal": str(journal), "data_dirs": data_dirs}
        trainable = tune.with_resources(
            tune.with_parameters(run_pack, spec=spec), {"cpu": 1, "gpu": cfg.gpus_per_trial}
        )
        experiment = out / "ray_results" / cfg.name
        if state:
            done = sum(
                1
                for m in models
                for t in open_study(journal, m, objective, cfg).get_trials(deepcopy=False)
                if t.state.is_finished() and "pack" in t.user_attrs
            )
            log(f"[tune] resuming from the Optuna journal: {done}/{total} configs already finished")
        _set_aside(experiment)  # never restored (its pickles are not ours to trust): a fresh Tune experiment
        scheduler = (
            ASHAScheduler(max_t=len(cfg.rungs), grace_period=1, reduction_factor=2) if cfg.scheduler == "asha" else None
        )
        live = LiveSearchLog(
            tracking_uri,
            str(artifact_root or out / "mlartifacts"),
            parent,
            dict(cfg.fixed),
            objective,
            total,
            str(journal),
            to_dict(cfg),
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"model": tune.grid_search(list(models)), "pack": tune.grid_search(list(range(n_packs)))},
            tune_config=tune.TuneConfig(
                metric=metric,
                mode=mode,
                num_samples=1,
                scheduler=scheduler,
                max_concurrent_trials=cfg.max_concurrent_trials,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=str(out / "ray_results"),
                verbose=0,
                callbacks=[live],
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            ),
        )
        log(
            f"[tune] {cfg.num_samples} configs × {len(cfg.seeds)} seeds per model, {len(models)} model(s), packs of "
            f"{cfg.pack_size} ({n_packs} Tune trials per model), rungs {cfg.rungs}, pruner {cfg.pruner}, "
            f"scheduler {cfg.scheduler}"
        )
        tuner.fit()

        studies = {m: open_study(journal, m, objective, cfg) for m in models}
        for study in studies.values():
            stop_unfinished(study)
        added = reconcile(tracker, parent, studies, dict(cfg.fixed))
        if added:
            log(f"[tune] logged {added} finished config(s) an interruption kept out of MLflow")
        from fairl_ray.search.outputs import trial_rows, write_outputs

        trials = trial_rows(studies, cfg)
        summary = _winners(cfg, models, trials, objective, mode, metric, tracker, parent, log)

        if realign_top:
            from fairl_ray.search.realign import realign_top_rewards

            ok = sorted(
                (t for t in trials if t["model"] == primary and t["status"] == "ok"),
                key=lambda t: t[metric],
                reverse=mode == "max",
            )
            ranked = [(t["trial_id"], {**cfg.fixed, **{k: t[k] for k in cfg.searched}}) for t in ok]
            summary["realign"] = realign_top_rewards(
                cfg, models[primary], ranked, realign_top, realign_workdir, out / "realign", tracker, parent, log
            )

        summary["seconds"] = round(time.time() - started, 1)
        summary["mlflow"] = {
            "tracking_uri": tracking_uri,
            "parent_run_id": parent,
            "experiment_id": tracker.experiment_id,
        }
        summary["out"] = str(out)
        # best.json complete before it is written and logged (it was rewritten after MLflow got a partial copy)
        files = write_outputs(out, cfg, models, trials, summary, metric)
        for f in files:
            tracker.log_artifact(parent, f, f"models/{f.parent.name}" if f.parent.parent == out / "models" else None)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end_run(parent, status)
        if own_ray:
            shutdown_ray(remove_session=status == "FINISHED")


def _set_aside(experiment: Path) -> None:
    """Move an earlier attempt's Tune experiment folder to ``<name>.previous`` (its error.txt files stay readable)
    so the fresh experiment reads nothing of it; an older ``.previous`` is removed."""
    if experiment.exists():
        previous = experiment.with_name(experiment.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        experiment.rename(previous)


def _winners(
    cfg: SearchConfig,
    models: dict[str, PairData],
    trials: list[dict],
    objective: str,
    mode: str,
    metric: str,
    tracker,
    parent: str,
    log,
) -> dict:
    """Per model: best config, its fresh-seed TEST metrics (an MLflow child, once); with several models the
    cross-model comparison. Returns best.json's content."""
    from fairl_ray.devices import select_device
    from fairl_ray.orchestration.tracking import split_metrics
    from fairl_ray.search.outputs import best_of, compare_models
    from fairl_ray.search.trial import evaluate_config

    device = select_device(cfg.device)
    per_model = {}
    existing = {
        r.info.run_name
        for r in tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=50000
        )
    }
    for model, data in models.items():
        mine = [t for t in trials if t["model"] == model]
        best = best_of(mine, metric, mode)
        if best is None:
            errors = sum(t["status"] == "error" for t in mine)
            raise RuntimeError(f"model {model!r}: no config finished ({len(mine)} asked, {errors} failed)")
        best_irl = {**cfg.fixed, **{k: best[k] for k in cfg.searched}}
        log(
            f"[tune] {model}: best config {best['trial_id']} ({metric}={best[metric]:.4f}); re-training it on "
            f"fresh seeds {cfg.fresh_seeds}, evaluating on {len(data.test_index)} test pairs"
        )
        fresh = evaluate_config(data, best_irl, cfg.fresh_seeds, "test", device)
        per_model[model] = {
            "objective": objective,
            "mode": mode,
            "best_trial": best["trial_id"],
            "best_config": best_irl,
            "best_val_objective": best[metric],
            "best_val_objective_std": best.get(f"{metric}_std"),
            "val_seeds": list(cfg.seeds),
            "fresh_seeds": list(cfg.fresh_seeds),
            "fresh_seed_test_metrics": fresh,
            "trials": {
                "total": len(mine),
                "ok": sum(t["status"] == "ok" for t in mine),
                "pruned": sum(t["status"] == "pruned" for t in mine),
                "failed": sum(t["status"] == "error" for t in mine),
            },
            "pairs": {
                "train": len(data.train_index),
                "val": len(data.val_index),
                "test": len(data.test_index),
            },
            "source": data.source,
        }
        name = "best_on_fresh_seeds" if len(models) == 1 else f"best_on_fresh_seeds:{model}"
        if name not in existing:
            child = tracker.start_run(
                name, parent_run_id=parent, tags={"fairl.kind": "tune_best", "fairl.model": model}
            )
            tracker.log_params(child, {**best_irl, "fresh_seeds": cfg.fresh_seeds, "best_trial": best["trial_id"]})
            tracker.log_metrics(child, split_metrics("test", fresh))
            tracker.end_run(child)
        # on the parent, per model: the best config's val objective and its fresh-seed test metrics (same names)
        tracker.log_metrics(
            parent,
            {f"{model}.val.{objective}": best[metric]}
            | {f"{model}.{k}": v for k, v in split_metrics("test", fresh).items() if not k.endswith("_std")},
        )
    primary = next(iter(models))
    summary = {
        "name": cfg.name,
        "objective": objective,
        "mode": mode,
        "searched": cfg.searched,
        "val_seeds": list(cfg.seeds),
        "primary_model": primary,
        **per_model[primary],
        "models": per_model,
        "trials": {k: sum(m["trials"][k] for m in per_model.values()) for k in ("total", "ok", "pruned", "failed")},
        "packing": {
            "pack_size": cfg.pack_size,
            "packs_per_model": len(pack_sizes(cfg)),
            "rungs": cfg.rungs,
            "pruner": cfg.pruner,
            "scheduler": cfg.scheduler,
        },
    }
    if len(models) > 1:
        summary["comparison"] = compare_models(
            models, {m: s["best_config"] for m, s in per_model.items()}, cfg.seeds, objective, mode, device
        )
        log(f"[tune] {summary['comparison']['statement']}")
    return summary

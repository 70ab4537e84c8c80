"""One Tune trial = one PACK of configurations, trained × seeds as ONE batched ensemble and scored on val.

The engine trains hundreds of members in one computation (DESIGN §4), so a trial that evaluates a single
config pays Tune's per-trial overhead for a few members' work. A packed trial instead asks the model's Optuna
study for ``pack_size`` configs (:mod:`fairl_ray.search.study`), and at each rung (a fraction of the epochs):

1. trains every live config × ``seeds`` with ``train_ensemble`` in one call (``evaluate_pack``);
2. scores each member on the validation pairs with the pipeline's own evaluation (``recovery.score``), all in
   memory;
3. reports each config's mean objective to its Optuna trial (``trial.report``) and asks the pruner whether
   it should stop (pruned configs leave the next rung's ensemble); finished configs are told to Optuna;
4. reports the pack's best value to Tune (``tune.report``), so a Tune scheduler (ASHA) can stop the whole pack,
   together with the configs that finished at this rung (the driver logs each as an MLflow child at once).

A rung re-trains from scratch at its epoch budget (the engine has no warm start): with rungs [0.25, 1.0] a
surviving config costs 1.25× its full training, a pruned one 0.25×.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Literal

from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.recovery.data import PairData


def at_budget(config: dict, fraction: float) -> dict:
    """A config at a rung's budget: ``epochs`` and the curriculum length (``curriculum_rounds``, which FA-IRL runs to
    its end) both scaled by ``fraction``, so the schedules keep their shape. ``fraction == 1``: unchanged."""
    if fraction >= 1.0:
        return dict(config)
    full = IRLConfig(**config)
    epochs = max(1, round(fraction * full.epochs))
    return {
        **config,
        "epochs": epochs,
        "curriculum_rounds": min(epochs, max(1, round(fraction * full.curriculum_rounds))),
    }


def evaluate_pack(
    data: PairData,
    configs: list[dict],
    seeds: list[int],
    on: Literal["val", "test"],
    device: str = "cpu",
    budget: float = 1.0,
) -> list[dict[str, dict[str, float]]]:
    """Train every config × seed as ONE ``train_ensemble`` call and score each; per config ``{metric: {mean, std,
    n}}`` over its seeds. ``budget`` < 1 trains every config at that fraction of its epochs (:func:`at_budget`).

    In memory, as the pipeline fits and scores (``recovery.fit`` / ``recovery.score``, each config labelled
    ``cfg<i>`` since a pack may hold several configs of one method, each one "method" of the metrics):
    ``on="val"`` trains on the train pairs outside the validation split and scores the validation pairs (the
    test pairs play no part); ``on="test"`` trains on the whole train split and scores the test pairs (the
    fresh-seed re-evaluation). Metrics only: none of the evaluation's analyses (they read each member's label as
    a method name).
    """
    from fairl_ray.recovery.fit import fit
    from fairl_ray.recovery.score import score

    members, labels = [], []
    for i, c in enumerate(configs):
        c = at_budget(c, budget)
        for s in seeds:
            members.append(IRLConfig(**{**c, "seed": int(s)}))
            labels.append(f"cfg{i}")
    if on == "test":
        data = data.without_validation()
    fitted = fit(data, members, device, labels, progress=False)
    summary = score(fitted, data, split=on, analyses=False).summary
    return [summary["per_method"][f"cfg{i}"] for i in range(len(configs))]


def evaluate_config(
    data: PairData, irl: dict, seeds: list[int], on: Literal["val", "test"], device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """One config × ``seeds`` (a pack of one): ``{metric: {mean, std, n}}``."""
    return evaluate_pack(data, [irl], seeds, on, device)[0]


def flat_metrics(stats: dict[str, dict[str, float]], prefix: str = "val_") -> dict[str, float]:
    out = {}
    for metric, s in stats.items():
        if s["n"]:
            out[f"{prefix}{metric}"] = s["mean"]
            out[f"{prefix}{metric}_std"] = s["std"]
    return out


def _record(
    trial, model: str, pack: int, state: str, config: dict, metrics: dict, epochs: int, rung: int, node: str
) -> dict:
    return {
        "model": model,
        "number": trial.number,
        "pack": pack,
        "state": state,
        "config": config,
        "metrics": metrics,
        "epochs": epochs,
        "rung": rung,
        "node_id": node,
    }


def run_pack(config: dict, spec: dict) -> None:
    """The Tune function trainable. ``config``: ``{"model", "pack"}`` (a grid over models × packs); ``spec``: plain
    paths and the search config (no object refs, so ``Tuner.restore`` can re-create it)."""
    import contextlib
    import io

    import ray
    from optuna.trial import TrialState
    from ray import tune

    from fairl_ray.config import from_dict
    from fairl_ray.devices import select_device
    from fairl_ray.search.data import load_data
    from fairl_ray.search.space import OBJECTIVES, SearchConfig
    from fairl_ray.search.study import open_study, pack_trials

    cfg = from_dict(SearchConfig, spec["cfg"])
    model, pack, objective = config["model"], int(config["pack"]), spec["objective"]
    metric, better = f"val_{objective}", (min if OBJECTIVES[objective] == "min" else max)
    node = ray.get_runtime_context().get_node_id()
    data = load_data(spec["data_dirs"][model])
    study = open_study(spec["journal"], model, objective, cfg, pack)
    finished, todo = pack_trials(study, cfg, pack)
    done_values = [t.value for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    device = select_device(cfg.device)
    if not todo:  # every config of this pack finished in an earlier attempt
        tune.report(
            {
                metric: better(done_values) if done_values else float("nan"),
                "rung": len(cfg.rungs) - 1,
                "configs_alive": 0,
                "finished_json": "[]",
                "node_id": node,
            }
        )
        return
    invalid = []
    for trial in todo:  # a combination the engine rejects (e.g. curriculum_rounds > epochs) fails alone
        try:
            IRLConfig(**{**cfg.fixed, **trial.user_attrs["config"]})
        except (TypeError, ValueError) as err:
            trial.set_user_attr("error", str(err))
            study.tell(trial, state=TrialState.FAIL)
            invalid.append(_record(trial, model, pack, "FAIL", trial.user_attrs["config"], {}, 0, 0, node))
    todo = [t for t in todo if not any(r["number"] == t.number for r in invalid)]
    if not todo:
        tune.report(
            {
                metric: float("nan"),
                "rung": 0,
                "configs_alive": 0,
                "node_id": node,
                "finished_json": json.dumps(invalid, default=float),
            }
        )
        return
    for r, fraction in enumerate(cfg.rungs):
        last = r == len(cfg.rungs) - 1
        configs = [{**cfg.fixed, **t.user_attrs["config"]} for t in todo]
        epochs = [at_budget(c, fraction).get("epochs", IRLConfig(**c).epochs) for c in configs]
        with contextlib.redirect_stderr(io.StringIO()):  # trainer bars would drown Tune's output
            stats = evaluate_pack(data, configs, cfg.seeds, "val", device, fraction)
        now, keep, values = (invalid if r == 0 else []), [], []
        for trial, s, e in zip(todo, stats, epochs):
            value = s.get(objective, {}).get("mean")
            metrics = {**flat_metrics(s), "val_pairs": len(data.val_index)}
            trial.set_user_attr("metrics", metrics)
            trial.set_user_attr("epochs", e)
            config_only = trial.user_attrs["config"]
            if value is None or not math.isfinite(value):
                study.tell(trial, state=TrialState.FAIL)
                now.append(_record(trial, model, pack, "FAIL", config_only, metrics, e, r, node))
                continue
            values.append(value)
            with warnings.catch_warnings():  # a retried pack re-reports the rungs it reached before its crash
                warnings.simplefilter("ignore", UserWarning)
                trial.report(value, r)
            if last:
                study.tell(trial, value)
                now.append(_record(trial, model, pack, "COMPLETE", config_only, metrics, e, r, node))
            elif trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                now.append(_record(trial, model, pack, "PRUNED", config_only, metrics, e, r, node))
            else:
                keep.append(trial)
        todo = keep
        _maybe_crash(model, pack, r, last)
        tune.report(
            {
                metric: better(values) if values else float("nan"),
                "rung": r,
                "epochs": max(epochs),
                "configs_alive": len(todo),
                "finished_json": json.dumps(now, default=float),
                "node_id": node,
            }
        )
        if not todo:
            return


def _maybe_crash(model: str, pack: int, rung: int, last: bool) -> None:
    """Fault injection for the retry test: with ``FAIRL_TUNE_CRASH_ONCE=<file>`` in the environment, the first
    pack to finish a non-final rung while ``<file>`` does not exist creates it and crashes (once per search)."""
    marker = os.environ.get("FAIRL_TUNE_CRASH_ONCE")
    if not marker or last:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{model}/{pack}/rung{rung}\n".encode())
    os.close(fd)
    raise RuntimeError(f"injected crash (FAIRL_TUNE_CRASH_ONCE) in pack {model}/{pack} after rung {rung}")

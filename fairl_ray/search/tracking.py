"""Live MLflow for a search: one child run per configuration, created the moment the config finishes.

The packed trials report the configs that finished at each rung (``finished_json``); a Tune callback on the
driver turns each into a child run of the search's parent run (``mlflow.parentRunId``) right away, so a killed
search leaves every finished config in MLflow. The driver is the only MLflow writer (no sqlite contention
between trial processes). Children are keyed by the tag ``fairl.trial = <model>/<number>`` and never logged
twice: a resumed search first reads which exist, and :func:`reconcile` adds the ones a kill fell between
(told to Optuna, not yet logged) from the Optuna study at the end.
"""

from __future__ import annotations

import json

from ray.tune import Callback

from fairl_ray.search.space import OBJECTIVES

TRIAL_TAG = "fairl.trial"


def trial_key(model: str, number: int) -> str:
    return f"{model}/{number}"


def existing_children(tracker, parent: str) -> set[str]:
    """``fairl.trial`` tags of the parent's config children already in MLflow."""
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=50000
    )
    return {r.data.tags[TRIAL_TAG] for r in runs if TRIAL_TAG in r.data.tags}


def log_config_run(tracker, parent: str, record: dict, fixed: dict) -> None:
    """One config as a child run: params = fixed + its searched values; metrics = its val metrics at the rung it
    reached; tags: model, pack, Optuna state, node."""
    key = trial_key(record["model"], record["number"])
    child = tracker.start_run(
        f"trial:{key}",
        parent_run_id=parent,
        tags={
            "fairl.kind": "tune_trial",
            TRIAL_TAG: key,
            "fairl.model": record["model"],
            "fairl.pack": str(record["pack"]),
            "optuna.state": record["state"],
            "fairl.node_id": record.get("node_id") or "",
        },
    )
    tracker.log_params(child, {**fixed, **record["config"], "epochs_run": record.get("epochs")})
    tracker.log_metrics(child, {**mlflow_names(record["metrics"]), "rung": record.get("rung", 0)})
    tracker.end_run(child, "FAILED" if record["state"] == "FAIL" else "FINISHED")


def mlflow_names(metrics: dict[str, float]) -> dict[str, float]:
    """A trial's metrics (``val_<metric>``, ``val_<metric>_std``: the names of Optuna, Tune and trials.csv) under
    the MLflow names every fairl command logs (``val.<metric>``; see ``tracking.split_metrics``)."""
    return {f"val.{k[len('val_') :]}" if k.startswith("val_") else k: v for k, v in metrics.items()}


class LiveSearchLog(Callback):
    """A Tune callback on the driver: the live MLflow children and one progress line per finished config."""

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: str,
        parent: str,
        fixed: dict,
        objective: str,
        total: int,
        journal: str,
        cfg_dict: dict,
    ):
        self.tracking_uri, self.artifact_root, self.parent = tracking_uri, artifact_root, parent
        self.fixed, self.objective, self.total, self.journal, self.cfg_dict = fixed, objective, total, journal, cfg_dict
        self.tracker = None
        self.logged: set[str] = set()
        self.best: dict[str, float] = {}

    def __getstate__(self):  # Tune pickles its callbacks with the experiment state; the MLflow client stays out
        return {**self.__dict__, "tracker": None}

    def setup(self, **info):
        self._tracker()

    def _tracker(self):
        if self.tracker is None:
            from fairl_ray.orchestration.tracking import Tracker

            self.tracker = Tracker(self.tracking_uri, artifact_root=self.artifact_root)
            self.logged = existing_children(self.tracker, self.parent)
        return self.tracker

    def _log(self, record: dict) -> None:
        key = trial_key(record["model"], record["number"])
        tracker = self._tracker()
        if key in self.logged:
            return
        log_config_run(tracker, self.parent, record, self.fixed)
        self.logged.add(key)
        value = record["metrics"].get(f"val_{self.objective}")
        model, best = record["model"], self.best.get(record["model"])
        if (
            record["state"] == "COMPLETE"
            and value is not None
            and (best is None or (value < best if OBJECTIVES[self.objective] == "min" else value > best))
        ):
            self.best[model] = best = value
        shown = "n/a" if value is None else f"{value:.4f}"
        best = "" if best is None else f" (best of {model} {best:.4f})"
        print(
            f"[tune] {len(self.logged)}/{self.total} {key} {record['config'].get('method', '')} "
            f"{record['state'].lower()} at {record['epochs']} epochs val_{self.objective}={shown}{best}",
            flush=True,
        )

    def on_trial_result(self, iteration, trials, trial, result, **info):
        for record in json.loads(result.get("finished_json") or "[]"):
            self._log(record)
        # A pack trains its configs as one batched computation, so they finish together at its last rung (or
        # when pruned): Tune delivers each report at once (no result buffering), but without this line a search
        # of long rungs would print nothing between its start and the first finished pack.
        if result.get("configs_alive"):
            metric = f"val_{self.objective}"
            print(
                f"[tune] pack {trial.config.get('model')}/{trial.config.get('pack')} rung "
                f"{int(result.get('rung', 0)) + 1}/{len(self.cfg_dict['rungs'])} at {result.get('epochs')} epochs: "
                f"{result['configs_alive']} config(s) go on, best {metric}={result.get(metric, float('nan')):.4f}",
                flush=True,
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        # A pack stopped by the scheduler (ASHA) leaves configs asked but never told: prune them in Optuna and
        # log them now, with the last metrics they reported. A pack that ran to its last rung has none left
        # (configs_alive 0): no need to replay the journal for it.
        if not (trial.last_result or {}).get("configs_alive"):
            return
        from fairl_ray.config import from_dict
        from fairl_ray.search.space import SearchConfig
        from fairl_ray.search.study import open_study, stop_unfinished

        model, pack = trial.config["model"], int(trial.config["pack"])
        study = open_study(self.journal, model, self.objective, from_dict(SearchConfig, self.cfg_dict))
        if stop_unfinished(study, pack):
            for record in study_records(study, model, pack=pack):
                self._log(record)

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(
            f"[tune] pack {trial.config.get('model')}/{trial.config.get('pack')} crashed (retried, up to "
            f"max_failures times; its finished configs are kept): {trial.error_file}",
            flush=True,
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        print(
            f"[tune] pack {trial.config.get('model')}/{trial.config.get('pack')} FAILED after its retries: "
            f"{trial.error_file}",
            flush=True,
        )


def study_records(study, model: str, pack: int | None = None) -> list[dict]:
    """Finished trials of an Optuna study as the records :func:`log_config_run` takes."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if (
            not t.state.is_finished()
            or "config" not in t.user_attrs
            or (pack is not None and t.user_attrs.get("pack") != pack)
        ):
            continue
        out.append(
            {
                "model": model,
                "number": t.number,
                "pack": t.user_attrs.get("pack"),
                "state": t.state.name,
                "config": t.user_attrs["config"],
                "metrics": t.user_attrs.get("metrics", {}),
                "epochs": t.user_attrs.get("epochs"),
                "rung": max(t.intermediate_values, default=0),
                "node_id": "",
            }
        )
    return out


def reconcile(tracker, parent: str, studies: dict, fixed: dict) -> int:
    """Log every finished config the live callback missed (a kill between Optuna's tell and the driver's log, or a
    pack that crashed before it reported). Returns how many were added."""
    have = existing_children(tracker, parent)
    added = 0
    for model, study in studies.items():
        for record in study_records(study, model):
            if trial_key(model, record["number"]) not in have:
                log_config_run(tracker, parent, record, fixed)
                added += 1
    return added

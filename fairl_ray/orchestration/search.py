"""``fairl tune``: search IRL hyperparameters with Ray Tune + Optuna on cached features, tracked in MLflow.

FA-IRL §5 ("Implementation details" / hyperparameters) fixes one setting — M = 0.8, M_fail, τ_fail, λ_0 = 10
decayed exponentially, a 20% → 0% curriculum over 100 rounds, Adam lr 1e-3 — and says those were *chosen*.
This module is how a user re-chooses them for their own pairs, without ever touching the test split:

1. **Data.** The pairs table and its cached feature arrays (a finished ``fairl run`` workdir, or a pairs file
   featurised once into ``<out>/features``). A VALIDATION split is carved, seeded, from the train pairs
   (:func:`carve_validation`); the test pairs are dropped from everything a trial sees.
2. **Trials.** Optuna (seeded TPE, via Ray Tune's ``OptunaSearch``) proposes one ``IRLConfig`` per trial from
   ``space``; ``fixed`` is applied on top of the ``IRLConfig`` defaults. A trial trains that config × ``seeds``
   as ONE batched ensemble (``train_ensemble`` through ``stages.irl_fit.fit_rewards``) on train − val and
   scores it with ``stages.evaluate.evaluate_rewards`` on the val pairs; the objective is the mean over seeds.
   The feature arrays travel once through the object store (``tune.with_parameters``).
3. **Re-evaluation.** The best config is re-trained on ``fresh_seeds`` on the whole train split and evaluated
   on the TEST split (imitation-style re-evaluation: the selection noise of the search does not flatter the
   reported number).
4. **Tracking.** A parent MLflow run ``tune:<name>`` (params: the flattened search config), one child run per
   trial (params: its config; metrics: its val metrics), a child ``best_on_fresh_seeds`` (test metrics), and
   on the parent: ``best.json``, ``best_irl.yaml``, ``trials.csv``, ``splits.json`` and ``search.png``.

Everything the search writes goes to ``out`` (default ``<workdir>/tune/<name>``) and to the MLflow store.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fairl_ray.config import ConfigError, apply_overrides, flatten, from_dict, load_yaml, to_dict
from fairl_ray.irl.config import METHODS, IRLConfig
from fairl_ray.orchestration.stage_store import read_summary

OBJECTIVES = {"starc": "min", "pair_accuracy": "max", "roc_auc": "max", "accuracy": "max"}
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
IRL_FIELDS = tuple(f.name for f in dataclasses.fields(IRLConfig))


# ------------------------------------------------------------------------------------------------------------
# 1. the search config
# ------------------------------------------------------------------------------------------------------------
@dataclass
class SearchConfig:
    """What to search, how many trials, and how the winner is re-evaluated. Validated on construction."""

    name: str = "fa-irl"
    """name of the search: the MLflow parent run is ``tune:<name>``, the default output ``<workdir>/tune/<name>``."""
    num_samples: int = 16
    """number of trials Optuna proposes."""
    objective: Literal["auto", "starc", "pair_accuracy", "roc_auc", "accuracy"] = "auto"
    """validation metric: ``starc`` (STARC l1/l1, minimised; needs R*), ``pair_accuracy``, ``roc_auc`` or
    ``accuracy`` (maximised); ``auto`` = ``starc`` when the pairs carry R*, else ``pair_accuracy``."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """seeds of every trial: the trial's config × these seeds train as ONE batched ensemble; objective = mean."""
    fresh_seeds: list[int] = field(default_factory=lambda: [100, 101, 102])
    """seeds the best config is re-trained on (whole train split) and evaluated with on the TEST split."""
    val_fraction: float = 0.2
    """fraction of the train pairs carved off (seeded by ``split_seed``) as the validation split."""
    split_seed: int = 0
    """seed of the validation carve (fixed across trials so trials are comparable)."""
    search_seed: int = 0
    """seed of Optuna's sampler: the same seed and data propose the same configs."""
    max_concurrent_trials: int = 2
    """trials running at once (each asks for 1 CPU, and 1 GPU when the cluster has one and device is not cpu)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """torch device of every trial (``auto``: cuda when the trial's worker sees a GPU)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """``IRLConfig`` fields applied to every trial (e.g. ``epochs: 100``); unset fields keep the paper defaults."""
    space: dict[str, Any] = field(default_factory=dict)
    """``IRLConfig`` field → one of ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``
    (lo > 0) or ``{randint: [lo, hi]}`` (integers lo ≤ x ≤ hi)."""

    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(key, msg)

        if not self.name or any(c in self.name for c in "/\\ "):
            raise bad("name", f"must be a non-empty name without slashes or spaces, got {self.name!r}")
        if self.num_samples < 1:
            raise bad("num_samples", f"must be >= 1, got {self.num_samples}")
        if self.max_concurrent_trials < 1:
            raise bad("max_concurrent_trials", f"must be >= 1, got {self.max_concurrent_trials}")
        for key in ("seeds", "fresh_seeds"):
            seeds = getattr(self, key)
            if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
                raise bad(key, f"must be a non-empty list of distinct integers >= 0, got {seeds}")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if not self.space:
            raise bad("space", "is empty: name at least one IRLConfig field to search")
        for section in ("fixed", "space"):
            for key in getattr(self, section):
                if key == "seed":
                    raise bad(f"{section}.seed", "seeds are set by `seeds` / `fresh_seeds`")
                if key not in IRL_FIELDS:
                    raise bad(f"{section}.{key}", f"not an IRLConfig field (known: {', '.join(IRL_FIELDS)})")
        overlap = sorted(set(self.fixed) & set(self.space))
        if overlap:
            raise bad(f"fixed.{overlap[0]}", "is also in space; a field is either fixed or searched")
        try:
            IRLConfig(**self.fixed)
        except (TypeError, ValueError) as err:
            raise bad(f"fixed.{_irl_field(err)}", str(err).split(": ", 1)[-1]) from None
        for key, spec in self.space.items():
            _check_distribution(f"space.{key}", key, spec, self.fixed)

    @property
    def searched(self) -> list[str]:
        return list(self.space)


def _irl_field(err: Exception) -> str:
    """``"irl.margin: must be > 0"`` → ``"margin"``."""
    return str(err).split(":", 1)[0].split(".")[-1]


def _check_distribution(key: str, fld: str, spec: Any, fixed: dict) -> None:
    """One ``space`` entry: exactly one known distribution, well-formed bounds, and every bound/choice a valid
    ``IRLConfig`` value on its own (with ``fixed`` applied), so a typo fails here and not in trial 7."""
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(key, f"must be one of {{choice: [...]}}, {{uniform: [lo, hi]}}, {{loguniform: [lo, hi]}}, "
                               f"{{randint: [lo, hi]}}; got {spec!r}")
    (kind, args), = spec.items()
    dotted = f"{key}.{kind}"
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(dotted, f"must be a non-empty list, got {args!r}")
        if fld == "method":
            for m in args:
                if m not in METHODS:
                    raise ConfigError(dotted, f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        values = args
    else:
        if not isinstance(args, list) or len(args) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                             for v in args):
            raise ConfigError(dotted, f"must be [lo, hi] (two numbers), got {args!r}")
        lo, hi = args
        if not lo < hi:
            raise ConfigError(dotted, f"needs lo < hi, got lo={lo} and hi={hi}")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(dotted, f"needs lo > 0 (log scale), got {lo}")
        if kind == "randint" and not (float(lo).is_integer() and float(hi).is_integer()):
            raise ConfigError(dotted, f"needs integer bounds, got {args!r}")
        values = [int(lo), int(hi)] if kind == "randint" else [float(lo), float(hi)]
    for v in values:
        try:
            IRLConfig(**{**fixed, fld: v})
        except (TypeError, ValueError) as err:
            raise ConfigError(dotted, f"value {v!r} is not a valid {fld}: {str(err).split(': ', 1)[-1]}") from None


def default_search_path() -> Path:
    """The shipped FA-IRL search (``tune_configs/search_fa_irl.yaml``)."""
    from fairl_ray.config import tune_config_path

    return tune_config_path("search_fa_irl.yaml")


def load_search_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SearchConfig:
    """YAML (default: the shipped FA-IRL search) + ``key=value`` overrides → a validated :class:`SearchConfig`.
    Raises :class:`ConfigError` naming the dotted key (``fixed.bogus``, ``space.margin_fail.uniform``)."""
    data = apply_overrides(load_yaml(path or default_search_path()), overrides or [])
    return from_dict(SearchConfig, data)


def tune_space(cfg: SearchConfig) -> dict:
    """``space`` as Ray Tune domains (``OptunaSearch`` converts them to Optuna distributions)."""
    from ray import tune

    out = {}
    for fld, spec in cfg.space.items():
        (kind, args), = spec.items()
        if kind == "choice":
            out[fld] = tune.choice(list(args))
        elif kind == "uniform":
            out[fld] = tune.uniform(float(args[0]), float(args[1]))
        elif kind == "loguniform":
            out[fld] = tune.loguniform(float(args[0]), float(args[1]))
        else:  # Tune's randint excludes the upper bound; ours includes it
            out[fld] = tune.randint(int(args[0]), int(args[1]) + 1)
    return out


# ------------------------------------------------------------------------------------------------------------
# 2. the data: pairs + cached features, and the three splits
# ------------------------------------------------------------------------------------------------------------
@dataclass
class SearchData:
    """Everything a trial needs (shipped once to the object store): the pairs' rows (with ``split``), their
    cached feature arrays, the feature encoder's name (for the reward cards) and the validation rows."""

    rows: list[dict]
    chosen: np.ndarray
    rejected: np.ndarray
    encoder: str
    val_index: list[int]
    source: str = ""

    @property
    def train_index(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r["split"] == "train"]

    @property
    def test_index(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r["split"] == "test"]

    @property
    def has_rstar(self) -> bool:
        return all(r.get("chosen_reward") is not None and r.get("rejected_reward") is not None for r in self.rows)


def carve_validation(rows: list[dict], fraction: float, seed: int) -> list[int]:
    """Seeded validation rows drawn from the TRAIN rows only (never a test row); sorted row indices."""
    train = [i for i, r in enumerate(rows) if r["split"] == "train"]
    n_val = min(max(1, int(round(fraction * len(train)))), len(train) - 2)
    if n_val < 1:
        raise ValueError(f"need at least 3 train pairs to carve a validation split, got {len(train)}")
    pick = np.random.default_rng(seed).permutation(len(train))[:n_val]
    return sorted(train[i] for i in pick)


def data_from_workdir(workdir: str | Path, cfg: SearchConfig) -> SearchData:
    """A finished ``fairl run`` workdir: ``results.json`` → ``stages.pairs.dir`` / ``stages.features.dir``."""
    from fairl_ray.pairs_io import read_pairs
    from fairl_ray.stages.featurize import load_pair_features

    workdir = Path(workdir)
    results = workdir / "results.json"
    if not results.is_file():
        raise ValueError(f"{results} not found: run `fairl run --workdir {workdir}` first, or use --pairs FILE")
    stages = json.loads(results.read_text()).get("stages", {})
    try:
        pairs_dir, features_dir = Path(stages["pairs"]["dir"]), Path(stages["features"]["dir"])
    except KeyError as err:
        raise ValueError(f"{results}: no stages.{err.args[0]}.dir (did the pipeline finish?)") from None
    rows = read_pairs(pairs_dir / "pairs.parquet").to_pylist()
    chosen, rejected = load_pair_features(features_dir)
    if len(chosen) != len(rows):
        raise ValueError(f"{features_dir}: {len(chosen)} feature rows for {len(rows)} pairs")
    encoder = read_summary(features_dir).get("encoder", "all-MiniLM-L6-v2")
    return _finish(rows, chosen, rejected, encoder, cfg, str(workdir))


def data_from_pairs(path: str | Path, cfg: SearchConfig, out: Path) -> SearchData:
    """A user's pairs file, featurised once into ``<out>/features`` (per-text cache ``<out>/feature_cache``) with
    the pipeline's default encoder; without a ``split`` column the pipeline's seeded test split is held out."""
    from fairl_ray.config import load_config
    from fairl_ray.pairs_io import read_pairs
    from fairl_ray.stages.irl_fit import featurize_table

    table = read_pairs(path)  # its errors already name the file, row and column
    try:
        rows, chosen, rejected, encoder = featurize_table(
            table, load_config(None), out / "features", out / "feature_cache", min_train=3
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return _finish(rows, chosen, rejected, encoder, cfg, str(path))


def _finish(rows, chosen, rejected, encoder, cfg: SearchConfig, source: str) -> SearchData:
    for r in rows:
        r["split"] = r.get("split") or "train"
    data = SearchData(rows, np.asarray(chosen, np.float32), np.asarray(rejected, np.float32), encoder, [], source)
    if not data.test_index:
        raise ValueError(f"{source}: no test pairs (split == 'test'); the fresh-seed re-evaluation needs some")
    data.val_index = carve_validation(rows, cfg.val_fraction, cfg.split_seed)
    return data


def resolve_objective(cfg: SearchConfig, data: SearchData) -> str:
    """``auto`` → ``starc`` with R*, else ``pair_accuracy``; ``starc`` without R* is a config error."""
    if cfg.objective == "auto":
        return "starc" if data.has_rstar else "pair_accuracy"
    if cfg.objective == "starc" and not data.has_rstar:
        raise ConfigError("objective", "starc needs R* (chosen_reward / rejected_reward on every pair); "
                                       "use pair_accuracy, roc_auc or accuracy")
    return cfg.objective


# ------------------------------------------------------------------------------------------------------------
# 3. one evaluation: a config × seeds as one batched ensemble, scored on val (trials) or test (fresh seeds)
# ------------------------------------------------------------------------------------------------------------
def evaluate_config(data: SearchData, irl: dict, seeds: list[int], on: Literal["val", "test"],
                    device: str = "cpu") -> dict[str, dict[str, float]]:
    """Train ``IRLConfig(**irl)`` × ``seeds`` (one batched ensemble) and score it; ``{metric: {mean, std, n}}``.

    ``on="val"``: train on train − val, score the val rows; the test rows are not passed at all.
    ``on="test"``: train on the whole train split, score the test rows (the fresh-seed re-evaluation).
    The existing stage functions do the work: ``fit_rewards`` trains on the rows marked ``train`` and fits the
    normalisation and threshold there; ``evaluate_rewards`` scores the rows marked ``test``.
    """
    from fairl_ray.stages.evaluate import evaluate_rewards
    from fairl_ray.stages.irl_fit import fit_rewards

    if on == "val":
        val = set(data.val_index)
        fit_idx = [i for i in data.train_index if i not in val]
        index = fit_idx + data.val_index
        rows = [{**data.rows[i], "split": "train"} for i in fit_idx] + [{**data.rows[i], "split": "test"}
                                                                        for i in data.val_index]
    else:
        index = data.train_index + data.test_index
        rows = [data.rows[i] for i in index]
    chosen, rejected = data.chosen[index], data.rejected[index]
    members = [IRLConfig(**{**irl, "seed": int(s)}) for s in seeds]
    with tempfile.TemporaryDirectory(prefix="fairl-tune-") as tmp:
        fitted = fit_rewards(rows, chosen, rejected, members, data.encoder, Path(tmp), device)
        summary = evaluate_rewards(rows, chosen, rejected, Path(tmp), fitted["members"], Path(tmp), plots=False)
    return summary["per_method"][members[0].method]


def run_trial(config: dict, data: SearchData, fixed: dict, seeds: list[int], device: str) -> None:
    """The Tune function trainable: evaluate ``fixed`` + the proposed ``config`` on val; report ``val_<metric>``
    (mean over seeds) and ``val_<metric>_std`` for every metric ``evaluate_rewards`` computes."""
    import contextlib
    import io

    from ray import tune

    from fairl_ray.stages.irl_fit import resolve_device

    with contextlib.redirect_stderr(io.StringIO()):  # the trainer's epoch bars would drown Tune's status table
        stats = evaluate_config(data, {**fixed, **config}, seeds, "val", resolve_device(device))
    report = {"val_pairs": len(data.val_index)}
    for metric, s in stats.items():
        if s["n"]:
            report[f"val_{metric}"] = s["mean"]
            report[f"val_{metric}_std"] = s["std"]
    tune.report(report)


# ------------------------------------------------------------------------------------------------------------
# 4. the search: Tune + Optuna, fresh-seed re-evaluation, artifacts and MLflow
# ------------------------------------------------------------------------------------------------------------
def run_search(cfg: SearchConfig, data: SearchData, out: str | Path, tracking_uri: str,
               artifact_root: str | Path | None = None, address: str | None = None) -> dict:
    """Run the whole search; write ``out``/{best.json, best_irl.yaml, trials.csv, splits.json, search.png};
    log everything to MLflow; return the contents of best.json (plus ``out`` and the MLflow ids)."""
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from fairl_ray.orchestration.ray_runtime import gpus_available, init_ray
    from fairl_ray.orchestration.tracking import Tracker
    from fairl_ray.stages.irl_fit import resolve_device

    started = time.time()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    objective = resolve_objective(cfg, data)
    metric, mode = f"val_{objective}", OBJECTIVES[objective]

    tracker = Tracker(tracking_uri, artifact_root=artifact_root or out / "mlartifacts")
    parent = tracker.start_run(f"tune:{cfg.name}", tags={"fairl.kind": "tune", "fairl.source": data.source})
    tracker.log_params(parent, {**flatten(to_dict(cfg)), "objective_resolved": objective,
                                "pairs.train": len(data.train_index) - len(data.val_index),
                                "pairs.val": len(data.val_index), "pairs.test": len(data.test_index)})
    own_ray = not ray.is_initialized()
    status = "FAILED"
    try:
        if own_ray:
            init_ray(address=address)
        use_gpu = cfg.device != "cpu" and gpus_available() > 0
        searcher = ConcurrencyLimiter(OptunaSearch(seed=cfg.search_seed), max_concurrent=cfg.max_concurrent_trials)
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, data=data, fixed=dict(cfg.fixed), seeds=list(cfg.seeds),
                                 device=cfg.device),
            {"cpu": 1, "gpu": 1 if use_gpu else 0},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(cfg),
            tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=searcher, num_samples=cfg.num_samples,
                                        reuse_actors=True),
            # verbose=0 silences Tune's per-trial boxes; _Progress prints one line per finished trial instead
            run_config=tune.RunConfig(name=cfg.name, storage_path=str(out / "ray_results"), verbose=0,
                                      callbacks=[_Progress(metric, mode, cfg.num_samples)]),
        )
        grid = tuner.fit()
        trials = _trial_table(grid, cfg, metric)
        done = [t for t in trials if t["status"] == "ok"]
        if not done:
            raise RuntimeError(f"every trial failed; first error: {trials[0].get('error') if trials else 'none'}")
        best = (min if mode == "min" else max)(done, key=lambda t: t[metric])
        best_irl = {**cfg.fixed, **{k: best[k] for k in cfg.searched}}

        # 3. the winner on fresh seeds, on the TEST split
        print(f"[tune] best trial {best['trial_id']}: re-training it on fresh seeds {cfg.fresh_seeds}, "
              f"evaluating on {len(data.test_index)} test pairs", flush=True)
        fresh = evaluate_config(data, best_irl, cfg.fresh_seeds, "test", resolve_device(cfg.device))

        summary = {
            "name": cfg.name,
            "objective": objective,
            "mode": mode,
            "best_trial": best["trial_id"],
            "best_config": best_irl,
            "best_val_objective": best[metric],
            "best_val_objective_std": best.get(f"{metric}_std"),
            "val_seeds": list(cfg.seeds),
            "fresh_seeds": list(cfg.fresh_seeds),
            "fresh_seed_test_metrics": fresh,
            "trials": {"total": len(trials), "ok": len(done)},
            "pairs": {"train": len(data.train_index) - len(data.val_index), "val": len(data.val_index),
                      "test": len(data.test_index)},
            "source": data.source,
        }
        _write_outputs(out, cfg, data, trials, summary, metric)

        # MLflow: one child per trial, the fresh-seed child, artifacts on the parent
        for t in trials:
            child = tracker.start_run(f"trial:{t['trial_id']}", parent_run_id=parent,
                                      tags={"fairl.kind": "tune_trial", "status": t["status"]})
            tracker.log_params(child, {**cfg.fixed, **{k: t[k] for k in cfg.searched}})
            tracker.log_metrics(child, {k: v for k, v in t.items() if k.startswith("val_")})
            tracker.end_run(child, "FINISHED" if t["status"] == "ok" else "FAILED")
        child = tracker.start_run("best_on_fresh_seeds", parent_run_id=parent, tags={"fairl.kind": "tune_best"})
        tracker.log_params(child, {**best_irl, "fresh_seeds": cfg.fresh_seeds, "best_trial": best["trial_id"]})
        tracker.log_metrics(child, {f"test_{m}": s["mean"] for m, s in fresh.items()}
                            | {f"test_{m}_std": s["std"] for m, s in fresh.items()})
        tracker.end_run(child)
        tracker.log_metrics(parent, {f"best_{metric}": best[metric]}
                            | {f"fresh_test_{m}": s["mean"] for m, s in fresh.items()})
        for name in ("best.json", "best_irl.yaml", "trials.csv", "splits.json", "search.png"):
            tracker.log_artifact(parent, out / name)
        summary["seconds"] = round(time.time() - started, 1)
        summary["mlflow"] = {"tracking_uri": tracking_uri, "parent_run_id": parent,
                             "experiment_id": tracker.experiment_id}
        summary["out"] = str(out)
        status = "FINISHED"
        return summary
    finally:
        tracker.end_run(parent, status)
        if own_ray:
            ray.shutdown()


def _progress_class():
    from ray.tune import Callback

    class Progress(Callback):
        """One line per finished trial: ``[tune] 3/16 trial 1a2b3c4d fa_irl_mm_margin val_starc=0.2338 (best 0.2301)``."""

        def __init__(self, metric: str, mode: str, total: int):
            self.metric, self.mode, self.total, self.done, self.best = metric, mode, total, 0, None

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            value = (trial.last_result or {}).get(self.metric)
            if value is not None and (self.best is None or (value < self.best if self.mode == "min" else value > self.best)):
                self.best = value
            method = trial.config.get("method", "")
            shown = "n/a" if value is None else f"{value:.4f}"
            best = "" if self.best is None else f" (best {self.best:.4f})"
            print(f"[tune] {self.done}/{self.total} trial {trial.trial_id} {method} {self.metric}={shown}{best}", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            print(f"[tune] {self.done}/{self.total} trial {trial.trial_id} FAILED: {trial.error_file}", flush=True)

    return Progress


def _Progress(metric: str, mode: str, total: int):
    return _progress_class()(metric, mode, total)


def _trial_table(grid, cfg: SearchConfig, metric: str) -> list[dict]:
    """One plain dict per trial: ``trial_id``, ``status`` (ok / error), the searched values, the val metrics."""
    rows = []
    for result in grid:
        m = result.metrics or {}
        row = {"trial_id": m.get("trial_id") or Path(str(result.path)).name,
               "status": "ok" if result.error is None and metric in m else "error"}
        for k in cfg.searched:
            v = (result.config or {}).get(k)
            row[k] = v.item() if isinstance(v, np.generic) else v
        row.update({k: float(v) for k, v in m.items() if k.startswith("val_") and isinstance(v, (int, float))})
        if result.error is not None:
            row["error"] = str(result.error).splitlines()[0][:300]
        rows.append(row)
    return rows


def _write_outputs(out: Path, cfg: SearchConfig, data: SearchData, trials: list[dict], summary: dict,
                   metric: str) -> None:
    import pandas as pd
    import yaml

    (out / "best.json").write_text(json.dumps(summary, indent=2, default=float))
    irl = {k: v for k, v in summary["best_config"].items() if k != "method"}
    irl = {"methods": [summary["best_config"].get("method", IRLConfig.method)], **irl}
    header = (f"# Best config of `fairl tune` search {cfg.name!r} ({summary['objective']} on val = "
              f"{summary['best_val_objective']:.4f}).\n# Merge this irl: section into your experiment YAML "
              f"(fairl run my.yaml), or pass its keys with --set irl.<key>=<value>.\n")
    (out / "best_irl.yaml").write_text(header + yaml.safe_dump({"irl": irl}, sort_keys=False))
    pd.DataFrame(trials).to_csv(out / "trials.csv", index=False)
    (out / "splits.json").write_text(json.dumps(
        {"val_index": data.val_index, "test_index": data.test_index, "val_fraction": cfg.val_fraction,
         "split_seed": cfg.split_seed}))
    plot_search(trials, cfg, metric, summary["mode"], out / "search.png")


def plot_search(trials: list[dict], cfg: SearchConfig, metric: str, mode: str, path: Path) -> None:
    """One small scatter per searched hyperparameter: the val objective of every trial against its value
    (categorical values on a labelled axis, loguniform ones on a log axis); the best trial is a red star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [t for t in trials if t["status"] == "ok"]
    best = (min if mode == "min" else max)(done, key=lambda t: t[metric])
    keys = cfg.searched
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 2.6 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        (kind, args), = cfg.space[key].items()
        y = [t[metric] for t in done]
        if kind == "choice":
            labels = [str(a) for a in args]
            pos = {lab: i for i, lab in enumerate(labels)}
            x = [pos[str(t[key])] for t in done]
            jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(x))
            ax.scatter(np.array(x) + jitter, y, s=18, alpha=0.7)
            ax.scatter([pos[str(best[key])]], [best[metric]], marker="*", s=140, color="tab:red", zorder=3)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels([lab.replace("fa_irl_", "") for lab in labels], fontsize=7, rotation=20)
        else:
            ax.scatter([t[key] for t in done], y, s=18, alpha=0.7)
            ax.scatter([best[key]], [best[metric]], marker="*", s=140, color="tab:red", zorder=3)
            if kind == "loguniform":  # ticks at 1·10^k and 3·10^k, plain numbers, no crowded minor labels
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 3.0)))
                ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(f"{metric} ({'↓' if mode == 'min' else '↑'})", fontsize=8)
    fig.suptitle(f"fairl tune {cfg.name}: {len(done)} trials, best = red star", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_table(summary: dict) -> str:
    """The table ``fairl tune`` prints: best config, its val objective, and its fresh-seed test metrics."""
    from fairl_ray.report import markdown_table, metrics_table

    cfg_rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in summary["best_config"].items()]
    std = summary.get("best_val_objective_std")
    val = f"{summary['best_val_objective']:.4f}" + (f" ± {std:.4f}" if std is not None else "")
    method = summary["best_config"].get("method", IRLConfig.method)
    return "\n\n".join([
        f"Best of {summary['trials']['ok']}/{summary['trials']['total']} trials (trial {summary['best_trial']})\n\n"
        + markdown_table(["hyperparameter", "value"], cfg_rows),
        f"Validation objective: {summary['objective']} = {val} (mean ± std over {len(summary['val_seeds'])} seeds, "
        f"{summary['pairs']['val']} val pairs)",
        metrics_table({method: summary["fresh_seed_test_metrics"]}, len(summary["fresh_seeds"]))
        .replace("(mean ± std", f"— best config re-trained on fresh seeds {summary['fresh_seeds']} (mean ± std"),
    ])

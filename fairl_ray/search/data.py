"""The data a search trains on: per model, its pairs and cached features as a :class:`~fairl_ray.recovery.data.PairData`
with the three splits.

A model of the search is a finished ``fairl run`` workdir or a user's pairs file (featurised once). A
VALIDATION split is carved, seeded, from the train pairs (``PairData.carve_validation``); trials never see the
test pairs. The data is written once to ``<out>/state/data/<model>/`` (the pairs table as Parquet, the feature
arrays as numpy, the validation rows in ``meta.json``), and every trial reads it from there, so a trial needs
only paths: it survives ``Tuner.restore`` (object-store references do not) and runs on any node that sees the
shared ``out``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fairl_ray.config import ConfigError
from fairl_ray.orchestration.stage_store import read_summary
from fairl_ray.recovery.data import PairData
from fairl_ray.search.space import SearchConfig


def data_from_workdir(workdir: str | Path, cfg: SearchConfig) -> PairData:
    """A finished ``fairl run`` workdir: ``results.json`` → ``stages.pairs.dir`` / ``stages.features.dir``."""
    workdir = Path(workdir)
    results = workdir / "results.json"
    if not results.is_file():
        raise ValueError(f"{results} not found: run `fairl run --workdir {workdir}` first, or use --pairs FILE")
    stages = json.loads(results.read_text()).get("stages", {})
    try:
        pairs_dir, features_dir = workdir / stages["pairs"]["dir"], workdir / stages["features"]["dir"]
    except KeyError as err:
        raise ValueError(f"{results}: no stages.{err.args[0]}.dir (did the pipeline finish?)") from None
    encoder = read_summary(features_dir).get("encoder", "all-MiniLM-L6-v2")
    return _finish(PairData.read(pairs_dir / "pairs.parquet", features_dir, encoder), cfg, str(workdir))


def data_from_pairs(path: str | Path, cfg: SearchConfig, out: Path) -> PairData:
    """A user's pairs file, featurised once into ``<out>/features`` (per-text cache ``<out>/feature_cache``) with
    the pipeline's default encoder; without a ``split`` column the pipeline's seeded test split is held out."""
    import pyarrow as pa

    from fairl_ray.config import load_config
    from fairl_ray.pairs_io import read_pairs
    from fairl_ray.recovery.data import hold_out
    from fairl_ray.recovery.featurize import featurize

    table = read_pairs(path)  # its errors already name the file, row and column
    pipeline = load_config(None)
    try:
        train, test = hold_out(table, pipeline.pairs.test_fraction, pipeline.pairs.seed, min_train=3)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    data = featurize(
        pa.concat_tables([train, test]), pipeline.features.encoder, out / "feature_cache", pipeline.features.batch_size
    )
    (out / "features").mkdir(parents=True, exist_ok=True)
    data.save_features(out / "features")
    return _finish(data, cfg, str(path))


def _finish(data: PairData, cfg: SearchConfig, source: str) -> PairData:
    if not data.test.any():
        raise ValueError(f"{source}: no test pairs (split == 'test'); the fresh-seed re-evaluation needs some")
    return replace(data, source=source).carve_validation(cfg.val_fraction, cfg.split_seed)


def resolve_objective(cfg: SearchConfig, data: PairData) -> str:
    """``auto`` → ``starc`` with R*, else ``pair_accuracy``; ``starc`` without R* is a config error."""
    if cfg.objective == "auto":
        return "starc" if data.has_rstar else "pair_accuracy"
    if cfg.objective == "starc" and not data.has_rstar:
        raise ConfigError(
            "objective",
            "starc needs R* (chosen_reward / rejected_reward on every pair); use pair_accuracy, roc_auc or accuracy",
        )
    return cfg.objective


def load_models(
    cfg: SearchConfig, workdir: str | Path | None, pairs: str | Path | None, out: Path
) -> dict[str, PairData]:
    """Every model of the search, by name: ``cfg.models`` if given, else the one ``--workdir`` / ``--pairs``."""
    specs = cfg.models or [{"name": "main", **({"workdir": str(workdir)} if workdir else {"pairs": str(pairs)})}]
    models = {}
    for spec in specs:
        if spec.get("workdir"):
            models[spec["name"]] = data_from_workdir(spec["workdir"], cfg)
        else:
            where = out if len(specs) == 1 else out / "models" / spec["name"]
            models[spec["name"]] = data_from_pairs(spec["pairs"], cfg, where)
        resolve_objective(cfg, models[spec["name"]])
    if len({resolve_objective(cfg, d) for d in models.values()}) > 1:
        raise ConfigError("objective", "auto resolves differently across models (some lack R*); set it explicitly")
    return models


def save_data(data: PairData, directory: Path) -> Path:
    """Write ``data`` for the trials (idempotent: an existing copy is kept; the pairs never change in a search)."""
    import pyarrow.parquet as pq

    from fairl_ray.atomic_io import atomic_directory

    directory = Path(directory)
    if (directory / "meta.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(directory) as tmp:
        np.save(tmp / "chosen.npy", data.chosen)
        np.save(tmp / "rejected.npy", data.rejected)
        pq.write_table(data.table, tmp / "pairs.parquet")
        (tmp / "meta.json").write_text(
            json.dumps({"encoder": data.encoder, "val_index": data.val_index, "source": data.source})
        )
    return directory


_LOADED: dict[str, PairData] = {}


def load_data(directory: str | Path) -> PairData:
    """Read what :func:`save_data` wrote; cached per process (a reused Tune actor reads it once)."""
    import pyarrow.parquet as pq

    key = str(Path(directory).resolve())
    if key not in _LOADED:
        d = Path(directory)
        meta = json.loads((d / "meta.json").read_text())
        table = pq.read_table(d / "pairs.parquet")
        data = PairData.from_table(
            table, np.load(d / "chosen.npy"), np.load(d / "rejected.npy"), meta["encoder"], meta["source"]
        )
        _LOADED[key] = data.with_validation(meta["val_index"])
    return _LOADED[key]

"""The data a search trains on: a pairs table and its cached feature arrays, with the three splits.

A model of the search is a finished ``fairl run`` workdir or a user's pairs file (featurised once). A
VALIDATION split is carved, seeded, from the train pairs (:func:`carve_validation`); trials never see the test
pairs. The data is written once to ``<out>/state/data/<model>/`` (numpy arrays + JSON rows), and every trial
reads it from there, so a trial needs only paths: it survives ``Tuner.restore`` (object-store references do not)
and runs on any node that sees the shared ``out``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairl_ray.config import ConfigError
from fairl_ray.orchestration.stage_store import read_summary
from fairl_ray.search.space import SearchConfig


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

    def digest(self) -> str:
        """Content hash of the pairs, their features and the splits: a resumed search must see the same data."""
        import hashlib

        h = hashlib.sha256(json.dumps([self.rows, self.val_index, self.encoder], sort_keys=True, default=str).encode())
        h.update(np.ascontiguousarray(self.chosen).tobytes())
        h.update(np.ascontiguousarray(self.rejected).tobytes())
        return h.hexdigest()[:16]

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
        pairs_dir, features_dir = workdir / stages["pairs"]["dir"], workdir / stages["features"]["dir"]
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
        raise ConfigError(
            "objective",
            "starc needs R* (chosen_reward / rejected_reward on every pair); use pair_accuracy, roc_auc or accuracy",
        )
    return cfg.objective


def load_models(
    cfg: SearchConfig, workdir: str | Path | None, pairs: str | Path | None, out: Path
) -> dict[str, SearchData]:
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


def save_data(data: SearchData, directory: Path) -> Path:
    """Write ``data`` for the trials (idempotent: an existing copy is kept; the pairs never change in a search)."""
    from fairl_ray.atomic_io import atomic_directory

    directory = Path(directory)
    if (directory / "meta.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(directory) as tmp:
        np.save(tmp / "chosen.npy", data.chosen)
        np.save(tmp / "rejected.npy", data.rejected)
        (tmp / "rows.json").write_text(json.dumps(data.rows, default=str))
        (tmp / "meta.json").write_text(
            json.dumps({"encoder": data.encoder, "val_index": data.val_index, "source": data.source})
        )
    return directory


_LOADED: dict[str, SearchData] = {}


def load_data(directory: str | Path) -> SearchData:
    """Read what :func:`save_data` wrote; cached per process (a reused Tune actor reads it once)."""
    key = str(Path(directory).resolve())
    if key not in _LOADED:
        d = Path(directory)
        meta = json.loads((d / "meta.json").read_text())
        _LOADED[key] = SearchData(
            json.loads((d / "rows.json").read_text()),
            np.load(d / "chosen.npy"),
            np.load(d / "rejected.npy"),
            meta["encoder"],
            meta["val_index"],
            meta["source"],
        )
    return _LOADED[key]

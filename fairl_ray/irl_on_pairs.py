"""``fairl irl``: IRL on a user's own pairs file, outside the pipeline (features → batched IRL → evaluation).

The ``--out`` folder is shared with its earlier runs and with whatever the user keeps there, so:

* one ``fairl irl`` at a time per folder (the workdir lock of ``fairl run``);
* everything is written into a temporary folder inside ``--out`` first; only once it is complete are the new
  outputs renamed into place, so a run killed mid-way leaves the earlier rewards and metrics.json as they were;
* ``manifest.json`` records what the command made; a rerun removes only entries an earlier run recorded there
  and does not make again (reward folders of other methods), never folders the user put under ``rewards/``.

Each run is also an MLflow run ``irl`` in ``<out>/mlflow.db`` (artifacts in ``<out>/mlartifacts``, both kept
across runs like the feature cache), with a child run per method named and measured as ``fairl run``'s are.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from fairl_ray.analyses import SUBTYPE_TRANSFER
from fairl_ray.atomic_io import atomic_write_bytes, readable_as_umask_allows
from fairl_ray.orchestration.stage_store import workdir_lock
from fairl_ray.recovery.featurize import featurize
from fairl_ray.recovery.fit import fit
from fairl_ray.recovery.score import score
from fairl_ray.recovery.transfer import subtype_transfer
from fairl_ray.report import analyses_report, metrics_table
from fairl_ray.stages.evaluate import write_evaluation

MANIFEST = "manifest.json"
CACHE_DIR = "feature_cache"  # kept across runs (a per-text cache), never swapped
NEW_PREFIX, OLD_PREFIX = ".fairl-irl-new-", ".fairl-irl-old-"
ASIDE_INDEX = "index.json"  # in an OLD_PREFIX folder: the output path of each numbered entry set aside


class PairsInputError(ValueError):
    """A pairs file ``fairl irl`` cannot use: unreadable, malformed (the message names the row and column) or too
    few pairs for a split."""


def irl_command_config(overrides: list[str], methods: list[str] | None = None):
    """Config of ``fairl irl``: the pipeline's ``irl``, ``features``, ``seeds`` and ``pairs`` sections (the default
    config with ``--method`` / ``--set`` applied); raises ConfigError naming the key."""
    from fairl_ray.config import ConfigError, load_config

    extra = [f"irl.methods={json.dumps(methods)}"] if methods else []
    cfg = load_config(None, extra + list(overrides))
    if cfg.features.encoder == "hidden:base":
        raise ConfigError(
            "features.encoder",
            "hidden:base means the pipeline's base policy; with `fairl irl` name it: "
            "hidden:<local causal LM directory>",
        )
    return cfg


def load_pairs(path: str | Path, cfg) -> tuple[pa.Table, pa.Table, list[str]]:
    """The pairs of ``fairl irl``, read, cleaned (degenerate pairs dropped, with a note) and split ONCE
    (``recovery.data.hold_out``: the file's ``split`` column, else ``pairs.test_fraction`` / ``pairs.seed``):
    ``(train, test, notes)``; notes also warn about a split some methods cannot learn from. Raises
    :class:`PairsInputError` naming the file (and the row and column where one is bad)."""
    from fairl_ray.pairs_io import PairsFileError, drop_degenerate, read_pairs, split_warnings
    from fairl_ray.recovery.data import TooFewPairs, hold_out

    try:
        table, notes = drop_degenerate(read_pairs(path), path)
        train, test = hold_out(table, cfg.pairs.test_fraction, cfg.pairs.seed)
    except (PairsFileError, OSError) as err:
        raise PairsInputError(str(err)) from None
    except TooFewPairs as err:
        raise PairsInputError(f"{path}: {err}") from None
    return train, test, notes + split_warnings(train, test, cfg.irl.methods, path)


def run_irl_on_pairs(train: pa.Table, test: pa.Table, cfg, out_dir: Path) -> dict:
    """``fairl irl``: features → batched IRL → evaluation on a user's (already validated) pairs, split once by
    the caller (``recovery.data.hold_out``: the file's ``split`` column, else ``pairs.test_fraction`` /
    ``pairs.seed``) into ``train`` and ``test``.

    Uses the pipeline config's ``features``, ``irl`` and ``seeds``. Writes ``rewards/``,
    ``features.safetensors``, ``metrics.json``, ``report.md``, the failure analyses (``analyses.json``, CSVs,
    figures; the cross-subtype transfer when pairs carry a ``subtype``), the plots and ``manifest.json`` into
    ``out_dir``, and logs an MLflow run there (:func:`track_irl_run`); returns the summary, whose ``removed``
    lists the entries of an earlier run that this one replaced by nothing and ``mlflow`` the run.
    """
    out_dir = Path(out_dir)
    with workdir_lock(out_dir, command="fairl irl", after_wait="its outputs will be replaced by this run's"):
        for leftover in out_dir.glob(OLD_PREFIX + "*"):  # a run killed mid-swap: put back what it had set aside
            restore_aside(out_dir, leftover)
        for leftover in [*out_dir.glob(NEW_PREFIX + "*"), *out_dir.glob(OLD_PREFIX + "*")]:  # of a killed run
            shutil.rmtree(leftover, ignore_errors=True)
        new = Path(tempfile.mkdtemp(prefix=NEW_PREFIX, dir=out_dir))
        started = time.time()
        try:
            summary = _train_and_evaluate(pa.concat_tables([train, test]), cfg, new, out_dir / CACHE_DIR)
            readable_as_umask_allows(new)  # mkdtemp's 0700 aside, safetensors writes features 0600
            summary["removed"] = _replace_outputs(out_dir, new)
        finally:
            shutil.rmtree(new, ignore_errors=True)
        # After the swap: the run's artifacts are the outputs now in place.
        summary["mlflow"] = track_irl_run(summary, cfg, out_dir, started)
    return summary


def track_irl_run(summary: dict, cfg, out_dir: Path, started: float) -> dict:
    """The MLflow record of one ``fairl irl``: a run ``irl`` (the config as params, metrics.json and report.md as
    artifacts) with one child per method whose params and ``test.<metric>`` names are the pipeline's method runs'
    (so MLflow compares them with ``fairl run``'s and ``fairl tune``'s). Returns the store's URI and run id."""
    from fairl_ray.config import flatten, to_dict
    from fairl_ray.orchestration.tracking import Tracker, default_tracking_uri, method_metrics, method_params

    uri = default_tracking_uri(out_dir)
    tracker = Tracker(uri, out_dir / "mlartifacts")
    ended = time.time()
    run_id = tracker.start_run("irl", tags={"fairl.command": "fairl irl"}, start_time=started)
    # The config sections `fairl irl` reads (the rest of the pipeline config plays no part).
    used = {"irl": to_dict(cfg.irl), "features": to_dict(cfg.features), "pairs": to_dict(cfg.pairs)}
    tracker.log_params(run_id, {**flatten(used), "seeds": list(cfg.seeds)})
    tracker.log_metrics(run_id, {"test_pairs": summary["test_pairs"]})
    for name in ("metrics.json", "report.md"):
        tracker.log_artifact(run_id, out_dir / name)
    irl, failure_path = to_dict(cfg.irl), summary.get("analyses", {}).get("failure_path", {})
    for method, stats in summary["per_method"].items():
        child = tracker.start_run(method, parent_run_id=run_id, tags={"fairl.method": method}, start_time=started)
        tracker.log_params(child, {**method_params(method, irl), "seeds": list(cfg.seeds)})
        tracker.log_metrics(child, method_metrics(stats, failure_path.get(method)))
        tracker.end_run(child, end_time=ended)
    tracker.end_run(run_id, end_time=ended)
    return {"tracking_uri": uri, "run_id": run_id, "experiment_id": tracker.experiment_id}


def _train_and_evaluate(table: pa.Table, cfg, out_dir: Path, cache_dir: Path) -> dict:
    """Featurise (train rows first, as ``features.safetensors`` keeps them), fit, save, score and write."""
    data = featurize(table, cfg.features.encoder, cache_dir, cfg.features.batch_size)
    data.save_features(out_dir)
    fitted = fit(data, cfg.irl.member_configs(list(cfg.seeds)), cfg.irl.device)
    fitted.save(out_dir)
    evaluation = score(fitted, data)
    summary = evaluation.summary
    if data.has_subtypes:  # FA-IRL §6 cross-subtype transfer, first seed
        transfer = subtype_transfer(data, cfg.irl.member_configs(list(cfg.seeds)[:1]), cfg.irl.device)
        summary.setdefault("analyses", {})[SUBTYPE_TRANSFER.name] = transfer
    write_evaluation(evaluation, out_dir, curves=fitted.curves)  # every analysis of the summary, transfer too
    (out_dir / "report.md").write_text(irl_report(summary, len(cfg.seeds)))
    return summary


def irl_report(summary: dict, n_seeds: int) -> str:
    """``report.md``: the tables ``fairl irl`` prints (recovery per method, the failure analyses)."""
    tables = [metrics_table(summary["per_method"], n_seeds)]
    if summary.get("analyses"):
        tables.append(analyses_report(summary["analyses"]))
    return "\n\n".join(tables) + "\n"


def made_entries(out_dir: Path) -> list[str]:
    """What an earlier ``fairl irl`` recorded it made in ``out_dir`` (paths relative to it); [] if none."""
    try:
        made = json.loads((Path(out_dir) / MANIFEST).read_text()).get("made", [])
    except (OSError, ValueError, AttributeError):
        return []
    # Only plain relative names: a hand-edited manifest must not point the clean-up outside out_dir.
    return [m for m in made if isinstance(m, str) and m and ".." not in Path(m).parts and not Path(m).is_absolute()]


def restore_aside(out_dir: Path, aside: Path) -> None:
    """Put back the outputs a killed swap had moved into ``aside`` whose place in ``out_dir`` is still empty."""
    try:
        index = json.loads((aside / ASIDE_INDEX).read_text())
    except (OSError, ValueError):
        return
    for i, rel in enumerate(index):
        dest = out_dir / rel
        if (aside / str(i)).exists() and not dest.exists() and ".." not in Path(rel).parts:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(aside / str(i), dest)


def _replace_outputs(out_dir: Path, new: Path) -> list[str]:
    """Rename the complete outputs in ``new`` into ``out_dir``; remove what the last run made and this one did not.

    Each entry is replaced by two renames (old aside, new in), reward folders first and ``metrics.json`` last, so
    at no point is a reward folder missing or ``metrics.json`` naming rewards that are not there."""
    rewards = sorted(f"rewards/{p.name}" for p in (new / "rewards").iterdir())
    others = sorted(p.name for p in new.iterdir() if p.name not in ("rewards", "metrics.json"))
    made = rewards + others + ["metrics.json"]
    stale = [m for m in made_entries(out_dir) if m not in made and (out_dir / m).exists()]
    aside = Path(tempfile.mkdtemp(prefix=OLD_PREFIX, dir=out_dir))
    # Which aside entry was which output: a run killed between the two renames of an entry leaves it only aside,
    # and the next run puts it back (restore_aside) before anything else.
    atomic_write_bytes(aside / ASIDE_INDEX, json.dumps(made + stale).encode())
    try:
        (out_dir / "rewards").mkdir(exist_ok=True)
        for i, rel in enumerate(made + stale):
            dest = out_dir / rel
            if dest.exists() or dest.is_symlink():
                os.replace(dest, aside / str(i))
            if rel in made:
                os.replace(new / rel, dest)
        manifest = {"command": "fairl irl", "made": made}
        atomic_write_bytes(out_dir / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return stale

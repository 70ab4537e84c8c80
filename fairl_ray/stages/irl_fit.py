"""The IRL stage: every (method, seed) member trained as one batched ensemble on cached features (DESIGN §4).

Each member becomes a reward artifact (``rewards/<method>/seed<k>/``: safetensors weights + JSON card) that
loads as a text → float callable. Two calibration choices are made here and recorded in the card:

* normalisation — raw rewards are standardised by their mean and std over the training outputs (o+ and o−),
  so rewards of different methods and seeds share one scale (what re-RLHF and the plots consume);
* threshold — the classification threshold on the normalised reward that maximises training accuracy
  (FA-IRL §5: "optimized on the training set ... then held fixed for evaluation on the test set").

Output classes for classification come from each output's OWN toxicity label (+1 non-toxic → class 1, −1 toxic →
class 0), never from its side of the pair: the same text would otherwise be class 1 when chosen and class 0 when
rejected. An unlabelled output (label 0 or missing) gets ``NO_CLASS`` (−1) and is left out of every classification
metric and of the threshold fit; rank and fidelity metrics (STARC, correlations, pair accuracy) still use it.
With no labelled training output at all the threshold is 0 (the normalised train mean) and the classification
metrics are ``nan``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fairl_ray.irl.heads import reward_from_params
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.reward import save_reward
from fairl_ray.irl.trainer import PairFeatures, train_ensemble
from fairl_ray.metrics.classification import NO_CLASS, fit_threshold_labelled


def output_classes(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Classes of each pair's chosen and rejected output from its own label: 1 non-toxic, 0 toxic, ``NO_CLASS`` (−1)
    unlabelled (see module doc)."""

    def classes(side: str) -> np.ndarray:
        labels = [int(r.get(f"{side}_label") or 0) for r in rows]
        return np.array([1 if y > 0 else 0 if y < 0 else NO_CLASS for y in labels], dtype=np.int64)

    return classes("chosen"), classes("rejected")


def pair_features(chosen: np.ndarray, rejected: np.ndarray, rows: list[dict]) -> PairFeatures:
    def labels(side: str):
        if not rows or f"{side}_label" not in rows[0]:
            return None
        return torch.tensor([float(r.get(f"{side}_label") or 0) for r in rows])

    return PairFeatures(
        chosen=torch.from_numpy(np.asarray(chosen, dtype=np.float32)),
        rejected=torch.from_numpy(np.asarray(rejected, dtype=np.float32)),
        chosen_label=labels("chosen"),
        rejected_label=labels("rejected"),
    )


def resolve_device(device: str) -> str:
    """The IRL stage's device by the rule every model stage uses (``policy_io.select_device``): ``auto`` is the GPU
    Ray assigned to this worker, the CPU when it assigned none."""
    from fairl_ray.policy_io import select_device

    return select_device(device)


def calibration(raw_train: np.ndarray, train_classes: np.ndarray) -> tuple[float, float, float]:
    """``(mean, std, threshold)`` of a reward from its raw values on the training outputs: normalisation by their
    mean/std, threshold fit for accuracy on the labelled ones (unlabelled outputs have no class), in normalised
    units. Every evaluated reward is calibrated so: the IRL members and the scored rewards of ``evaluate``."""
    raw_train = np.asarray(raw_train, dtype=np.float64)
    mean, std = float(raw_train.mean()), float(raw_train.std()) or 1.0
    return mean, std, float(fit_threshold_labelled((raw_train - mean) / std, train_classes))


def save_calibrated(member, train_x: torch.Tensor, train_classes: np.ndarray, out: Path, encoder: str) -> None:
    """Write ``member`` as a reward artifact with its :func:`calibration` on the training outputs ``train_x``
    (threshold 0 under the insights protocol)."""
    with torch.no_grad():
        raw = reward_from_params({k: v.cpu() for k, v in member.params.items()}, train_x).numpy()
    mean, std, threshold = calibration(raw, train_classes)
    if member.config.protocol == "insights":  # Insights classifies at 0 of the normalised reward (the train mean)
        threshold = 0.0
    save_reward(out, member, encoder=encoder, normalisation={"mean": mean, "std": std}, threshold=threshold)


def fit_rewards(
    rows: list[dict],
    chosen: np.ndarray,
    rejected: np.ndarray,
    members: list[IRLConfig],
    encoder: str,
    out_dir: Path,
    device: str = "auto",
    labels: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Train ``members`` on the train split; write one reward artifact per member; return a summary.

    Artifacts are named ``rewards/<label>/seed<k>`` with ``label`` the member's method, or ``labels[i]`` when given
    (a search pack holds several configs of one method: ``cfg0``, ``cfg1``, ...)."""
    train_index = [i for i, r in enumerate(rows) if r.get("split", "train") == "train"]
    train_rows = [rows[i] for i in train_index]
    train = pair_features(chosen[train_index], rejected[train_index], train_rows)
    trained = train_ensemble(train, members, device=resolve_device(device), progress=progress)

    class_chosen, class_rejected = output_classes(train_rows)
    train_classes = np.concatenate([class_chosen, class_rejected])
    train_x = torch.cat([train.chosen, train.rejected])
    summary, curves = {"members": []}, {}
    for member, label in zip(trained, labels or [m.method for m in members]):
        name = f"{label}/seed{member.config.seed}"
        curves[name] = member.curve
        save_calibrated(member, train_x, train_classes, out_dir / "rewards" / name, encoder)
        summary["members"].append(
            {
                "method": label,
                "seed": member.config.seed,
                "reward_dir": f"rewards/{name}",
                "best_epoch": member.best_epoch,
                "epochs_run": member.epochs_run,
            }
        )
    (out_dir / "curves.json").write_text(json.dumps(curves, default=float))
    summary["train_pairs"] = len(train_index)
    return summary


def featurize_table(table, cfg, features_dir: Path, cache_dir: Path, min_train: int = 2):
    """A user's validated pairs table → ``(rows, chosen, rejected, encoder_name)`` for the IRL engine.

    The test split is the pipeline's (``pairs.test_fraction`` / ``pairs.seed``, or the file's ``split``
    column), checked before any encoding; features come from ``features.encoder`` through the per-text cache.
    """
    from fairl_ray.pairs_io import split_pairs
    from fairl_ray.stages.featurize import featurize_pairs, load_pair_features

    train, test = split_pairs(table, cfg.pairs.test_fraction, cfg.pairs.seed)
    if train.num_rows < min_train or test.num_rows < 1:
        raise ValueError(
            f"need at least {min_train} train pairs and 1 test pair, got {train.num_rows} train "
            f"and {test.num_rows} test"
        )
    rows = train.to_pylist() + test.to_pylist()
    Path(features_dir).mkdir(parents=True, exist_ok=True)
    summary = featurize_pairs(rows, cfg.features.encoder, cache_dir, features_dir, cfg.features.batch_size)
    chosen, rejected = load_pair_features(features_dir)
    return rows, chosen, rejected, summary["encoder"]

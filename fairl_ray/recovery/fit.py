"""Fit rewards: every (method, seed) member trained as one batched ensemble on the train pairs' features, then
calibrated (DESIGN §4). In memory: :class:`FittedRewards` holds each member's head parameters and calibration;
:meth:`FittedRewards.save` writes them as reward artifacts only where a caller keeps them (the IRL stage,
``fairl irl``), and :meth:`FittedRewards.load` reads those back.

Two calibration choices are made per member, on the TRAINING outputs (o⁺ and o−), and recorded in its card:

* normalisation — raw rewards are standardised by their mean and std, so rewards of different methods and seeds
  share one scale (what re-RLHF and the plots consume): ``score = (R(h) − mean) / std``;
* threshold — the classification threshold on the normalised reward that maximises training accuracy over the
  labelled outputs (FA-IRL §5: "optimized on the training set ... then held fixed for evaluation on the test
  set"); 0 (the normalised train mean) under the Insights protocol, or when no training output is labelled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fairl_ray.irl.heads import reward_from_params
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.irl.reward import RewardModel, save_reward
from fairl_ray.metrics.classification import fit_threshold_labelled
from fairl_ray.recovery.data import PairData

CURVES_FILE = "curves.json"


def calibration(raw_train: np.ndarray, train_classes: np.ndarray) -> tuple[float, float, float]:
    """``(mean, std, threshold)`` of a reward from its raw values on the training outputs: normalisation by their
    mean/std, threshold fit for accuracy on the labelled ones (unlabelled outputs have no class), in normalised
    units. Every evaluated reward is calibrated so: the IRL members and the scored rewards of ``score``."""
    raw_train = np.asarray(raw_train, dtype=np.float64)
    mean, std = float(raw_train.mean()), float(raw_train.std()) or 1.0
    return mean, std, float(fit_threshold_labelled((raw_train - mean) / std, train_classes))


@dataclass
class FittedMember:
    """One trained, calibrated reward: its head parameters (``heads.member_params`` format, CPU float32), its
    calibration and its training record. ``label`` names it in the summaries: the method, or a search pack's
    ``cfg<i>``."""

    label: str
    config: IRLConfig
    params: dict[str, torch.Tensor]
    mean: float
    std: float
    threshold: float
    curve: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def name(self) -> str:
        """``<label>/seed<k>``: its reward folder under ``rewards/`` and its key in ``curves.json``."""
        return f"{self.label}/seed{self.seed}"

    def reward_model(self) -> RewardModel:
        """This member as a :class:`RewardModel` in memory (the artifact's own scoring code, no file): scores
        ``(R(h) − mean) / std``, path rewards for FA-IRL. Its card holds only what scoring reads."""
        card = {
            "normalisation": {"mean": self.mean, "std": self.std},
            "threshold": self.threshold,
            "feature_dim": int(self.params["base.w" if "base.w" in self.params else "base.w1"].shape[0]),
        }
        return RewardModel(self.params, card)

    def save(self, directory: Path, encoder: str) -> Path:
        """The reward artifact (``reward.safetensors`` + ``reward_card.json``) at ``directory``."""
        return save_reward(
            directory,
            self,
            encoder=encoder,
            normalisation={"mean": self.mean, "std": self.std},
            threshold=self.threshold,
        )


def calibrate(member, train_x: torch.Tensor, train_classes: np.ndarray, label: str | None = None) -> FittedMember:
    """A trained member (``trainer.TrainedMember``) with its :func:`calibration` on the training outputs ``train_x``
    (``[2n, d]``: o⁺ rows, then o⁻ rows; classes in the same order)."""
    params = {n: t.detach().to("cpu", torch.float32).contiguous() for n, t in member.params.items()}
    with torch.no_grad():
        raw = reward_from_params(params, train_x).numpy()
    mean, std, threshold = calibration(raw, train_classes)
    if member.config.protocol == "insights":  # Insights classifies at 0 of the normalised reward (the train mean)
        threshold = 0.0
    return FittedMember(
        label if label is not None else member.config.method,
        member.config,
        params,
        mean,
        std,
        threshold,
        member.curve,
        member.best_epoch,
        member.epochs_run,
    )


@dataclass
class FittedRewards:
    """Every fitted member of one :func:`fit`, the feature encoder they read (for the reward cards) and how many
    pairs they trained on."""

    members: list[FittedMember]
    encoder: str
    train_pairs: int

    def save(self, directory: Path) -> dict:
        """Write ``rewards/<label>/seed<k>/`` per member and ``curves.json`` into ``directory``; return the IRL
        summary (``members``: method, seed, reward_dir, best_epoch, epochs_run; ``train_pairs``) that
        :meth:`load` reads back."""
        directory = Path(directory)
        names = [m.name for m in self.members]
        if len(set(names)) < len(names):  # one folder would silently overwrite the other
            raise ValueError(f"two fitted members share a reward folder name: {names}; label them apart")
        summary: dict = {"members": []}
        for m in self.members:
            m.save(directory / "rewards" / m.name, self.encoder)
            summary["members"].append(
                {
                    "method": m.label,
                    "seed": m.seed,
                    "reward_dir": f"rewards/{m.name}",
                    "best_epoch": m.best_epoch,
                    "epochs_run": m.epochs_run,
                }
            )
        (directory / CURVES_FILE).write_text(json.dumps({m.name: m.curve for m in self.members}, default=float))
        summary["train_pairs"] = self.train_pairs
        return summary

    @classmethod
    def load(cls, directory: Path, summary: dict) -> FittedRewards:
        """The rewards :meth:`save` wrote into ``directory`` (``summary``: what it returned)."""
        directory = Path(directory)
        curves_file = directory / CURVES_FILE
        curves = json.loads(curves_file.read_text()) if curves_file.is_file() else {}
        members, encoder = [], ""
        for entry in summary["members"]:
            reward = RewardModel.from_dir(directory / entry["reward_dir"])
            card = reward.card
            encoder = card["encoder"]
            config = IRLConfig(**card["hyperparameters"])
            member = FittedMember(
                entry["method"],
                config,
                reward.params,
                float(card["normalisation"]["mean"]),
                float(card["normalisation"]["std"]),
                float(card["threshold"]),
                best_epoch=int(card["best_epoch"]),
                epochs_run=int(card["epochs_run"]),
            )
            member.curve = curves.get(member.name, {})
            members.append(member)
        return cls(members, encoder, int(summary.get("train_pairs", 0)))

    @property
    def curves(self) -> dict[str, dict[str, list[float]]]:
        """``{<label>/seed<k>: curve}``: what ``curves.json`` holds."""
        return {m.name: m.curve for m in self.members}


def fit(
    data: PairData,
    members: list[IRLConfig],
    device: str = "auto",
    labels: list[str] | None = None,
    progress: bool = True,
) -> FittedRewards:
    """Train ``members`` on ``data``'s train pairs as one ``train_ensemble`` call (its early-stopping validation
    split is drawn inside those train pairs) and calibrate each on them.

    Members are labelled by their method, or by ``labels[i]`` when given (a search pack holds several configs of
    one method: ``cfg0``, ``cfg1``, ...)."""
    from fairl_ray.devices import select_device
    from fairl_ray.irl.trainer import train_ensemble

    train = data.pair_features("train")
    # The device rule of every model stage: ``auto`` is the GPU Ray assigned to this worker, else the CPU.
    trained = train_ensemble(train, members, device=select_device(device), progress=progress)
    train_classes = data.output_classes("train")
    train_x = torch.cat([train.chosen, train.rejected])
    fitted = [
        calibrate(member, train_x, train_classes, label)
        for member, label in zip(trained, labels or [m.method for m in members])
    ]
    return FittedRewards(fitted, data.encoder, len(train))

"""The extracted-reward artifact (DESIGN §2): weights + card, loadable as a plain ``texts -> floats`` callable.

A reward directory holds exactly two files, never a pickle:

* ``reward.safetensors``: one member's parameters in the ``heads.member_params`` format
  (``base.w, base.b`` or ``base.w1, base.b1, base.w2, base.b2``; ``fail.*`` for FA-IRL's failure path)
* ``reward_card.json``: ``format``, ``method``, ``head``, ``hyperparameters`` (the full ``IRLConfig``),
  ``encoder`` (a ``fairl_ray.features.load_encoder`` spec), ``feature_dim``, ``normalisation`` ``{mean, std}``,
  ``threshold``, ``best_epoch``, ``epochs_run``, ``param_names`` and ``extra`` (caller's free-form JSON).

Scores are normalised: ``score = (R(h) − mean) / std`` with the card's normalisation; ``threshold`` (if any) is
in the same normalised units (score > threshold ⇒ classified good / non-toxic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fairl_ray.atomic_io import atomic_directory

from .heads import path_forward, reward_from_params
from .hyperparameters import IRLConfig

WEIGHTS_FILE = "reward.safetensors"
CARD_FILE = "reward_card.json"
FORMAT = "fairl-ray/reward/v1"


def save_reward(
    out_dir,
    member,
    encoder: str,
    normalisation: dict | None = None,
    threshold: float | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``member`` (a ``trainer.TrainedMember``) as a reward directory at ``out_dir``, atomically: files are
    written to a temporary sibling directory that is then renamed into place (replacing an existing one)."""
    out = Path(out_dir)
    norm = {"mean": 0.0, "std": 1.0} if normalisation is None else dict(normalisation)
    if set(norm) != {"mean", "std"}:
        raise ValueError(f"normalisation must have exactly the keys mean and std, got {sorted(norm)}")
    norm = {"mean": float(norm["mean"]), "std": float(norm["std"])}
    if not np.isfinite(norm["mean"]) or not np.isfinite(norm["std"]) or norm["std"] <= 0:
        raise ValueError(f"normalisation needs finite mean and std > 0, got {norm}")
    params = {n: t.detach().to("cpu", torch.float32).contiguous() for n, t in member.params.items()}
    feature_dim = int((params.get("base.w") if "base.w" in params else params["base.w1"]).shape[0])
    cfg: IRLConfig = member.config
    card = {
        "format": FORMAT,
        "method": cfg.method,
        "head": cfg.head,
        "hyperparameters": cfg.to_dict(),
        "encoder": encoder,
        "feature_dim": feature_dim,
        "normalisation": norm,
        "threshold": None if threshold is None else float(threshold),
        "best_epoch": int(member.best_epoch),
        "epochs_run": int(member.epochs_run),
        "param_names": sorted(params),
        "extra": extra or {},
    }
    with atomic_directory(out) as tmp:
        save_file(params, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True))
    return out


class RewardModel:
    """A loaded reward: ``score_features(h)`` on feature arrays, ``model(texts)`` on strings."""

    def __init__(self, params: dict[str, torch.Tensor], card: dict, encoder=None):
        self.params = params
        self.card = card
        self._encoder = encoder
        norm = card["normalisation"]
        self._mean, self._std = float(norm["mean"]), float(norm["std"])

    @classmethod
    def from_dir(cls, path, encoder=None) -> RewardModel:
        """Load a reward directory (safetensors + JSON only). ``encoder``: an object with ``.encode(texts)`` used
        instead of ``load_encoder(card["encoder"])`` (tests, or an encoder already in memory)."""
        path = Path(path)
        try:
            card = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path / CARD_FILE}: unreadable reward card ({err})") from None
        if not isinstance(card, dict) or card.get("format") != FORMAT:
            found = card.get("format") if isinstance(card, dict) else type(card).__name__
            raise ValueError(f"{path / CARD_FILE}: unknown reward format {found!r}, expected {FORMAT}")
        missing = [k for k in ("param_names", "normalisation", "feature_dim", "encoder") if k not in card]
        if missing:
            raise ValueError(f"{path / CARD_FILE}: corrupt reward card, missing {', '.join(missing)}")
        try:
            params = load_file(str(path / WEIGHTS_FILE))
        except Exception as err:  # safetensors raises its own SafetensorError on a truncated or foreign file
            raise ValueError(f"{path / WEIGHTS_FILE}: unreadable weights ({err})") from None
        if sorted(params) != sorted(card["param_names"]):
            raise ValueError(f"{path}: weights {sorted(params)} do not match the card's {card['param_names']}")
        return cls(params, card, encoder)

    @property
    def threshold(self) -> float | None:
        return self.card.get("threshold")

    def score_features(self, features) -> np.ndarray:
        """Normalised rewards ``(R(h) − mean) / std`` of features ``[N, d]`` (numpy or torch) → float32 ``[N]``."""
        x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
        x = x.detach().to("cpu", torch.float32)
        if x.ndim != 2 or x.shape[1] != self.card["feature_dim"]:
            raise ValueError(f"features must be [N, {self.card['feature_dim']}], got {tuple(x.shape)}")
        with torch.no_grad():
            raw = reward_from_params(self.params, x)
        return ((raw.numpy().astype(np.float64) - self._mean) / self._std).astype(np.float32)

    @property
    def has_failure_path(self) -> bool:
        """True for an FA-IRL reward (R = R_D + R_F)."""
        return any(n.startswith("fail.") for n in self.params)

    def path_rewards(self, features) -> dict[str, np.ndarray]:
        """RAW (unnormalised) reward of each path, ``{"base": R_D, "fail": R_F}`` (``fail`` only for FA-IRL), for
        the failure-path share and ablation."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        with torch.no_grad():
            out = {"base": path_forward(self.params, "base", x).numpy().astype(np.float64)}
            if self.has_failure_path:
                out["fail"] = path_forward(self.params, "fail", x).numpy().astype(np.float64)
        return out

    def _get_encoder(self):
        if self._encoder is None:
            from fairl_ray.features import (
                load_encoder,  # lazy: pulls in sentence-transformers / transformers
            )

            self._encoder = load_encoder(self.card["encoder"])
        return self._encoder

    def __call__(self, texts: list[str]) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("RewardModel expects a list of strings; wrap a single text in a list")
        if len(texts) == 0:
            return []
        feats = self._get_encoder().encode(list(texts))
        return [float(v) for v in self.score_features(feats)]


def find_rewards(path) -> dict[str, Path]:
    """The reward directories at or under ``path`` by name: ``path`` itself when it is one (named by its folder),
    else every folder below it holding a reward card (an IRL stage's ``rewards/``, a whole workdir), named by its
    path relative to ``path`` (``max_margin/seed0``); ValueError when there is none."""
    path = Path(path)
    if (path / CARD_FILE).is_file():
        return {path.name: path}
    found = {str(card.parent.relative_to(path)): card.parent for card in sorted(path.rglob(CARD_FILE))}
    if not found:
        raise ValueError(f"{path} is not a reward artifact (no {CARD_FILE}) and holds none")
    return found


def score_texts(rewards: dict[str, RewardModel], texts: list[str]) -> dict[str, np.ndarray]:
    """Every reward's normalised scores of ``texts``, encoding the texts ONCE per encoder (rewards of one run share
    theirs: a whole run's rewards cost one encoding), then only each head's matrix product."""
    by_encoder: dict[str, list[str]] = {}
    for name, reward in rewards.items():
        by_encoder.setdefault(str(reward.card["encoder"]), []).append(name)
    out: dict[str, np.ndarray] = {}
    for names in by_encoder.values():
        features = rewards[names[0]]._get_encoder().encode(list(texts)) if texts else None
        for name in names:
            out[name] = rewards[name].score_features(features) if texts else np.zeros(0, dtype=np.float32)
    return {name: out[name] for name in rewards}

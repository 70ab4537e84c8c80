"""The pairs the reward recovery works on: one table, its feature arrays and its train / validation / test masks.

:class:`PairData` is what every caller of ``featurize → fit → score`` hands around (the pipeline's features, IRL,
evaluate and subtype-transfer stages, ``fairl irl``, the search trials). The pairs stay a columnar pyarrow table:
a 200k-row file as Python dicts costs ~10× its size in memory, and nothing here needs a row as a dict.

Masks, not in-row strings: ``train``, ``val`` and ``test`` are disjoint boolean masks over the rows. ``test``
comes from the table's ``split`` column (``pairs_io.split_pairs`` drew it, or the file had it); ``val`` is empty
until :meth:`PairData.carve_validation` moves a seeded share of the train pairs into it (the search's validation
split); ``train`` is every other row. Per-output arrays (classes, subtypes, R*) are ordered as the evaluation
scores them: every selected pair's o⁺, then every selected pair's o⁻.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fairl_ray.metrics.classification import NO_CLASS

FEATURES_FILE = "features.safetensors"
Split = Literal["train", "val", "test"]


def output_classes(table: pa.Table) -> np.ndarray:
    """Class of every output (o⁺ of each row, then o⁻ of each row) from its OWN label: 1 non-toxic (+1), 0 toxic
    (−1), ``NO_CLASS`` (−1) unlabelled (0, null or no label column), never from its side of the pair: the same
    text would otherwise be class 1 when chosen and class 0 when rejected. Unlabelled outputs are left out of
    every classification metric and of the threshold fit."""
    labels = np.concatenate([_labels(table, "chosen_label"), _labels(table, "rejected_label")])
    return np.where(labels > 0, 1, np.where(labels < 0, 0, NO_CLASS)).astype(np.int64)


def output_subtypes(table: pa.Table) -> list[str]:
    """Per output (every row's o⁺, then every row's o⁻): its toxic subtype when known, else ``non-toxic`` /
    ``toxic`` / ``unlabelled``. Uses ``chosen_subtype`` / ``rejected_subtype`` when the table has them; with only
    the pair-level ``subtype`` (the subtype of o−, else of o⁺) an output gets it when it is the pair's toxic
    output it was taken from."""
    chosen_label, rejected_label = _labels(table, "chosen_label"), _labels(table, "rejected_label")
    pair_subtype = _strings(table, "subtype")

    def side(labels: np.ndarray, name: str) -> list[str]:
        own = _strings(table, f"{name}_subtype") if f"{name}_subtype" in table.column_names else None
        out = []
        for i, label in enumerate(labels):
            if label > 0:
                out.append("non-toxic")
            elif label == 0:
                out.append("unlabelled")
            elif own is not None:
                out.append(own[i] or "toxic")
            elif name == "rejected" or rejected_label[i] >= 0:  # the pair's subtype is this output's
                out.append(pair_subtype[i] or "toxic")
            else:
                out.append("toxic")
        return out

    return side(chosen_label, "chosen") + side(rejected_label, "rejected")


def rstar(table: pa.Table) -> np.ndarray | None:
    """R* of every output (o⁺ rows, then o⁻ rows, float64), or None when any is unknown (or there is no row)."""
    if table.num_rows == 0 or any(
        c not in table.column_names or table.column(c).null_count for c in ("chosen_reward", "rejected_reward")
    ):
        return None
    return np.concatenate([_floats(table, "chosen_reward"), _floats(table, "rejected_reward")])


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 (null → 0)."""
    column = table.column(name).cast(pa.float64())
    return np.array(pc.fill_null(column, 0.0).to_numpy(), dtype=np.float64)


def _labels(table: pa.Table, name: str) -> np.ndarray:
    """A label column (+1 / −1 / 0), null or absent → 0."""
    return _floats(table, name) if name in table.column_names else np.zeros(table.num_rows)


def _strings(table: pa.Table, name: str) -> list[str | None]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


@dataclass
class PairData:
    """N preference pairs o⁺ ≻ o−: the pairs ``table`` (pyarrow, the pairs-file columns), their features
    ``chosen`` / ``rejected`` ``[N, d]`` (float32, from ``encoder``) and the disjoint split masks (module doc)."""

    table: pa.Table
    chosen: np.ndarray
    rejected: np.ndarray
    encoder: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str = ""
    """where the pairs came from (a workdir or a file; for messages and the search's records)"""

    def __post_init__(self) -> None:
        n = self.table.num_rows
        if self.chosen.shape != self.rejected.shape or len(self.chosen) != n:
            raise ValueError(
                f"{self.source or '<pairs>'}: {len(self.chosen)} chosen and {len(self.rejected)} rejected feature "
                f"rows for {n} pairs"
            )
        if (self.train.astype(int) + self.val + self.test != 1).any():
            raise ValueError("train / val / test masks must cover every pair exactly once")

    @classmethod
    def from_table(
        cls, table: pa.Table, chosen: np.ndarray, rejected: np.ndarray, encoder: str, source: str = ""
    ) -> PairData:
        """Masks from the table's ``split`` column: ``test`` rows are test, every other row (also without the
        column) is train; no validation rows."""
        n = table.num_rows
        if "split" in table.column_names:
            test = np.asarray(pc.fill_null(pc.equal(table.column("split"), "test"), False).to_numpy(), dtype=bool)
        else:
            test = np.zeros(n, dtype=bool)
        return cls(
            table,
            np.asarray(chosen, dtype=np.float32),
            np.asarray(rejected, dtype=np.float32),
            encoder,
            ~test,
            np.zeros(n, dtype=bool),
            test,
            source,
        )

    @classmethod
    def read(cls, pairs_file: Path, features_dir: Path, encoder: str) -> PairData:
        """A pairs file (validated by ``pairs_io.read_pairs``) and the ``features.safetensors`` made from it."""
        from safetensors.torch import load_file

        from fairl_ray.pairs_io import read_pairs

        tensors = load_file(str(Path(features_dir) / FEATURES_FILE))
        table = read_pairs(pairs_file)
        return cls.from_table(table, tensors["chosen"].numpy(), tensors["rejected"].numpy(), encoder, str(pairs_file))

    def save_features(self, directory: Path) -> Path:
        """``features.safetensors`` (``chosen`` / ``rejected``, float32) in ``directory``; returns its path."""
        import torch
        from safetensors.torch import save_file

        path = Path(directory) / FEATURES_FILE
        save_file(
            {
                "chosen": torch.from_numpy(np.ascontiguousarray(self.chosen, dtype=np.float32)),
                "rejected": torch.from_numpy(np.ascontiguousarray(self.rejected, dtype=np.float32)),
            },
            str(path),
        )
        return path

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def dim(self) -> int:
        return int(self.chosen.shape[1])

    def mask(self, split: Split) -> np.ndarray:
        return {"train": self.train, "val": self.val, "test": self.test}[split]

    def index(self, split: Split) -> list[int]:
        """Row indices of ``split``, ascending."""
        return np.flatnonzero(self.mask(split)).tolist()

    @property
    def train_index(self) -> list[int]:
        return self.index("train")

    @property
    def val_index(self) -> list[int]:
        return self.index("val")

    @property
    def test_index(self) -> list[int]:
        return self.index("test")

    def subset(self, rows) -> PairData:
        """The pairs at ``rows`` (a boolean mask or row indices), in that order, with their masks."""
        rows = np.asarray(rows)
        index = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return replace(
            self,
            table=self.table.take(pa.array(index, type=pa.int64())),
            chosen=self.chosen[index],
            rejected=self.rejected[index],
            train=self.train[index],
            val=self.val[index],
            test=self.test[index],
        )

    def carve_validation(self, fraction: float, seed: int) -> PairData:
        """A seeded validation split drawn from the TRAIN pairs only (never a test pair): round(fraction · n_train)
        pairs, at least 1 and leaving at least 2 to train on, moved from ``train`` to ``val``."""
        train = np.flatnonzero(self.train)
        n_val = min(max(1, int(round(fraction * len(train)))), len(train) - 2)
        if n_val < 1:
            raise ValueError(f"need at least 3 train pairs to carve a validation split, got {len(train)}")
        val = np.zeros(len(self), dtype=bool)
        val[train[np.random.default_rng(seed).permutation(len(train))[:n_val]]] = True
        return replace(self, train=self.train & ~val, val=self.val | val)

    def with_validation(self, val_index) -> PairData:
        """These pairs with exactly the rows ``val_index`` (train rows) as the validation split."""
        val = np.zeros(len(self), dtype=bool)
        val[np.asarray(val_index, dtype=np.int64)] = True
        if (val & self.test).any():
            raise ValueError("a validation pair cannot be a test pair")
        return replace(self, train=(self.train | self.val) & ~val, val=val)

    def without_validation(self) -> PairData:
        """The validation pairs back in train (the search's fresh-seed re-evaluation trains on the whole train
        split)."""
        return replace(self, train=self.train | self.val, val=np.zeros(len(self), dtype=bool))

    def split_table(self, split: Split) -> pa.Table:
        return self.table.filter(pa.array(self.mask(split)))

    def output_classes(self, split: Split) -> np.ndarray:
        """:func:`output_classes` of the ``split`` pairs (o⁺ rows, then o⁻ rows)."""
        return output_classes(self.split_table(split))

    def output_subtypes(self, split: Split) -> list[str]:
        """:func:`output_subtypes` of the ``split`` pairs."""
        return output_subtypes(self.split_table(split))

    def output_texts(self, split: Split) -> list[str]:
        """The texts of the ``split`` outputs (o⁺ rows, then o⁻ rows: the order of :meth:`outputs`)."""
        table = self.split_table(split)
        return [str(t) for t in _strings(table, "chosen") + _strings(table, "rejected")]

    def rstar(self, split: Split) -> np.ndarray | None:
        """:func:`rstar` of the ``split`` pairs."""
        return rstar(self.split_table(split))

    @property
    def has_rstar(self) -> bool:
        """R* known for every output of every pair."""
        return all(c in self.table.column_names and not self.table.column(c).null_count for c in _REWARDS)

    @property
    def has_subtypes(self) -> bool:
        """Some pair names its toxic subtype (what the cross-subtype transfer needs)."""
        return any(_strings(self.table, "subtype"))

    def outputs(self, split: Split) -> np.ndarray:
        """Features of the ``split`` outputs ``[2n, d]``: o⁺ rows, then o⁻ rows."""
        mask = self.mask(split)
        return np.concatenate([self.chosen[mask], self.rejected[mask]])

    def pair_features(self, split: Split):
        """The ``split`` pairs as the trainer's ``PairFeatures``, with each output's label (+1 / −1 / 0) when the
        table has that label column (FA-IRL's ground-truth failure sets)."""
        import torch

        from fairl_ray.irl.trainer import PairFeatures

        mask = self.mask(split)
        table = self.split_table(split)

        def labels(column: str):
            if table.num_rows == 0 or column not in table.column_names:
                return None
            return torch.from_numpy(_labels(table, column)).float()

        return PairFeatures(
            chosen=torch.from_numpy(np.ascontiguousarray(self.chosen[mask], dtype=np.float32)),
            rejected=torch.from_numpy(np.ascontiguousarray(self.rejected[mask], dtype=np.float32)),
            chosen_label=labels("chosen_label"),
            rejected_label=labels("rejected_label"),
        )

    def digest(self) -> str:
        """Content hash of the pairs (every column), their features, the encoder and the masks: a resumed search
        must see the same data. Column by column, so the whole table is never one Python object."""
        h = hashlib.sha256(json.dumps([self.encoder, self.table.column_names]).encode())
        for name in self.table.column_names:
            h.update(json.dumps(self.table.column(name).to_pylist(), default=str).encode())
        for array in (self.train, self.val, self.test, self.chosen, self.rejected):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:16]


_REWARDS = ("chosen_reward", "rejected_reward")


class TooFewPairs(ValueError):
    """A split with fewer train or test pairs than reward recovery needs."""


def hold_out(table: pa.Table, test_fraction: float, seed: int, min_train: int = 2) -> tuple[pa.Table, pa.Table]:
    """``(train, test)`` of a user's pairs table, each with its ``split`` column: the file's ``split`` column, else
    the pipeline's seeded split (``pairs_io.split_pairs``). Checked before any encoding: raises
    :class:`TooFewPairs` unless there are ``min_train`` train pairs and a test pair. The one place ``fairl irl``
    and ``fairl tune --pairs`` split; :func:`~fairl_ray.recovery.featurize.featurize` then takes
    ``pa.concat_tables([train, test])`` (train rows first, as the features file has them)."""
    from fairl_ray.pairs_io import split_pairs

    train, test = split_pairs(table, test_fraction, seed)
    if train.num_rows < min_train or test.num_rows < 1:
        raise TooFewPairs(
            f"{table.num_rows} usable pairs give {train.num_rows} train and {test.num_rows} test pairs; IRL needs "
            f"at least {min_train} train pairs and 1 test pair (add pairs, or set pairs.test_fraction or a split "
            "column)"
        )
    return train, test

"""Cross-subtype transfer (FA-IRL §6, Figure 3): fit each method on ONE toxic subtype's training pairs, test its
pair ranking accuracy on the test pairs of every subtype.

A pair's subtype is the table's ``subtype`` column (the toxic subtype of o−, else of o⁺). Subtypes with fewer
than ``MIN_TRAIN_PAIRS`` training pairs are skipped (too few to train on), and so are test subtypes without a
test pair. Unlike the other analyses this one trains: one :func:`~fairl_ray.recovery.fit.fit` per training
subtype. Its tables and figure are ``analyses.subtype_transfer``'s.
"""

from __future__ import annotations

import torch

from fairl_ray.irl.heads import reward_from_params
from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.recovery.data import PairData
from fairl_ray.recovery.fit import fit

MIN_TRAIN_PAIRS = 8


def subtype_transfer(data: PairData, members: list[IRLConfig], device: str = "auto") -> dict:
    """The transfer grid per method: ``methods[method][trained on][tested on]`` = pair accuracy (Δ̂ > 0), with
    ``train_subtypes``, ``test_subtypes``, ``n_train``, ``n_test`` and ``skipped``. ``members``: one config per
    method (the pipeline and ``fairl irl`` pass every method of the run at its first seed)."""
    subtypes = data.table.column("subtype").to_pylist() if "subtype" in data.table.column_names else []
    train_idx: dict[str, list[int]] = {}
    test_idx: dict[str, list[int]] = {}
    for i, s in enumerate(subtypes):
        if s:
            (test_idx if data.test[i] else train_idx).setdefault(s, []).append(i)
    trainable = sorted(s for s, idx in train_idx.items() if len(idx) >= MIN_TRAIN_PAIRS)
    testable = sorted(test_idx)
    result = {
        "train_subtypes": trainable,
        "test_subtypes": testable,
        "n_train": {s: len(train_idx[s]) for s in sorted(train_idx)},
        "n_test": {s: len(test_idx[s]) for s in testable},
        "skipped": sorted(s for s in train_idx if s not in trainable),
        "methods": {},
    }
    if not trainable or not testable:
        return result
    x = {t: (torch.from_numpy(data.chosen[idx]), torch.from_numpy(data.rejected[idx])) for t, idx in test_idx.items()}
    for s in trainable:
        one_subtype = data.subset(train_idx[s]).without_validation()
        for member in fit(one_subtype, members, device, progress=False).members:
            accs = result["methods"].setdefault(member.config.method, {}).setdefault(s, {})
            with torch.no_grad():
                for t, (xc, xr) in x.items():
                    delta = reward_from_params(member.params, xc) - reward_from_params(member.params, xr)
                    accs[t] = float((delta > 0).float().mean())
    return result

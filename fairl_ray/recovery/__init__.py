"""Reward recovery in memory, no Ray, no MLflow: pairs → features → fitted rewards → metrics and analyses.

* :mod:`~fairl_ray.recovery.data` — :class:`PairData`: the pairs table, its feature arrays, the encoder and
  the train / val / test masks (subset, validation carving, output classes, subtypes, R*, a content digest).
* :mod:`~fairl_ray.recovery.featurize` — :func:`featurize`: a pairs table → :class:`PairData` (per-text cache).
* :mod:`~fairl_ray.recovery.fit` — :func:`fit`: the batched ensemble on the train pairs, calibrated
  (:class:`FittedRewards`; saved as reward artifacts only by a caller that keeps them).
* :mod:`~fairl_ray.recovery.score` — :func:`score`: metrics per member and method, and the failure analyses.
* :mod:`~fairl_ray.recovery.transfer` — :func:`subtype_transfer`: the cross-subtype transfer grid (it trains).

The pipeline's stages, ``fairl irl`` and the search trials are callers; each writes what it keeps at its edge.
Import from the modules (``from fairl_ray.recovery.fit import fit``): this package imports nothing, so
``recovery.data`` stays light (no torch) for the search driver.
"""

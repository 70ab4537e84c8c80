"""Moved: ``fairl tune`` lives in the package :mod:`fairl_ray.search` (split by job: space, data, study, trial,
tracking, tuner, outputs, realign). This module re-exports its public names for existing imports."""

from fairl_ray.search import *  # noqa: F401,F403
from fairl_ray.search import __all__, __getattr__  # noqa: F401

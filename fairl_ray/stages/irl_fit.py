"""The IRL stage's device rule (the fitting itself is ``recovery.fit``)."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """The IRL stage's device by the rule every model stage uses (``policy_io.select_device``): ``auto`` is the GPU
    Ray assigned to this worker, the CPU when it assigned none."""
    from fairl_ray.policy_io import select_device

    return select_device(device)

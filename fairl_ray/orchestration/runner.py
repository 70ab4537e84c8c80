"""Runs stage bodies as Ray tasks: one runner for the pipeline's waves and for ``fairl tune --realign-top``.

A stage body is ``fn(out_dir, **kwargs) -> summary`` (``orchestration.pipeline``'s ``stage_*`` functions). The
runner launches each in a Ray task with the resources it is given, runs it into a temporary directory that is
published atomically as the stage's content-addressed output (:class:`~fairl_ray.orchestration.stage_store.
StageWriter`) and hands back each summary as its task finishes. When one fails, the tasks still running are
cancelled (finished outputs stay: a rerun resumes from them) and :class:`StageFailed` carries the stage's name,
output and the task's exception to the caller, which words the error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fairl_ray.orchestration.stage_store import StageOutput, StageWriter


def run_stage_body(output: StageOutput, fn: Callable, kwargs: dict) -> tuple[dict, dict]:
    """Body of every stage's Ray task: run ``fn`` into a temp dir and publish it atomically as ``output``; returns
    its summary and where and when it ran (:class:`Placement`)."""
    import ray
    import torch
    from transformers.utils import logging as hf_logging

    began = time.time()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    # Weight-loading/saving bars of tiny models flash by and clutter the driver's log; stage progress stays.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    writer = StageWriter(output)
    with writer as tmp:
        writer.summary = fn(tmp, **kwargs) or {}
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return writer.summary, {"node_id": node, "began": began, "ended": time.time()}


class StageFailed(Exception):
    """A stage's task raised: ``name`` and ``output`` say which, ``cause`` is what the task raised (a
    ``RayTaskError`` wrapping the body's exception)."""

    def __init__(self, name: str, output: StageOutput, cause: BaseException, started: float):
        super().__init__(f"{name}: {cause}")
        self.name, self.output, self.cause, self.started = name, output, cause, started


@dataclass
class Finished:
    """A stage whose task returned: its summary, and when it started and ended (wall clock)."""

    name: str
    output: StageOutput
    summary: dict
    started: float
    ended: float
    context: Any = None  # what the caller attached at launch
    placement: dict | None = None
    """Where and when the body ran, by the task's own clock: ``node_id``, ``began``, ``ended`` (a task waits in
    Ray's queue between ``started``, its launch, and ``began``)."""


class StageRunner:
    """Launch stage tasks side by side, then collect them in the order they finish (see the module doc)."""

    def __init__(self) -> None:
        self._pending: dict[Any, tuple[str, StageOutput, float, Any]] = {}

    def launch(
        self,
        name: str,
        output: StageOutput,
        fn: Callable,
        kwargs: dict,
        num_cpus: float,
        num_gpus: float = 0,
        context: Any = None,
        resources: dict[str, float] | None = None,
    ) -> None:
        """Start ``fn`` as a Ray task named ``fairl:<name>`` asking for ``num_cpus`` / ``num_gpus`` and the custom
        ``resources``."""
        import ray

        task = ray.remote(run_stage_body).options(
            num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources or {}), name=f"fairl:{name}"
        )
        self._pending[task.remote(output, fn, kwargs)] = (name, output, time.time(), context)

    def __len__(self) -> int:
        return len(self._pending)

    def finished(self) -> Iterator[Finished]:
        """Yield each launched stage as its task finishes; on a failure cancel the rest and raise StageFailed."""
        import ray

        while self._pending:
            done, _ = ray.wait(list(self._pending), num_returns=1)
            name, output, started, context = self._pending.pop(done[0])
            try:
                summary, placement = ray.get(done[0])
            except Exception as err:
                for ref in self._pending:
                    ray.cancel(ref)
                self._pending.clear()
                raise StageFailed(name, output, err, started) from err
            yield Finished(name, output, summary, started, time.time(), context, placement)

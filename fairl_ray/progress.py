"""Progress of a long loop that reads well where it is shown.

A tqdm bar only helps on a terminal: redirected to a log, or inside a Ray worker (whose output Ray forwards to the
driver line by line: 229 lines for one IRL stage, DESIGN §6), it is either silent until it ends or a flood. Off a
terminal this prints one plain line every ``every_s`` seconds and one when the loop ends.
"""

from __future__ import annotations

import sys
import time


class EpochProgress:
    """``update(active=…)`` once per epoch, ``close(active=…)`` at the end; ``active``: members still training."""

    def __init__(self, total: int, desc: str, every_s: float = 10.0, stream=None):
        self.total, self.desc, self.every_s = total, desc, every_s
        self.stream = sys.stderr if stream is None else stream
        self.epoch = 0
        self.started = self.last = time.monotonic()
        self.bar = None
        if _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="epoch", file=self.stream)

    def update(self, active: int) -> None:
        self.epoch += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(active=active)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(f"epoch {self.epoch}/{self.total}, {active} member(s) still training")

    def close(self, active: int) -> None:
        if self.bar is not None:
            self.bar.close()
            return
        stopped = f", {active} still training at the epoch budget" if active else ", every member stopped early"
        self._line(f"done after {self.epoch} epoch(s){stopped if self.epoch else ''}")

    def _line(self, text: str) -> None:
        print(f"[fairl] {self.desc}: {text} ({time.monotonic() - self.started:.0f} s)", file=self.stream, flush=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False

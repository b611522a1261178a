"""Cycles at a fixed period, one at a time: a late cycle is reported, never stacked.

Cycle ``k`` is due at ``start + k * period``. The scheduler runs the due cycle, then waits for
the next due time. When a cycle runs past one or more due times, those cycles are skipped (not
run late in a burst, as a ``java.util.Timer`` at a fixed rate would) and reported as overruns,
so a slow SSH or AWS call delays only itself (the original's bug 28).

Time comes from the caller: ``clock()`` reads it and ``wait(seconds)`` waits (returning true
when asked to stop), so tests drive the scheduler on a virtual clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Overrun:
    """A cycle that ran past the next due time: the due cycles it made the scheduler skip."""

    started: float
    finished: float
    skipped: int


@dataclass
class Scheduler:
    period: float
    clock: Callable[[], float] = time.time
    wait: Callable[[float], bool] | None = None  # default: an Event's wait, stopped by stop()

    def __post_init__(self) -> None:
        if not (self.period > 0 and math.isfinite(self.period)):
            raise ValueError(f"the period must be a positive number of seconds (got {self.period!r})")
        self._stopping = threading.Event()
        if self.wait is None:
            self.wait = self._stopping.wait

    def stop(self) -> None:
        """Stop after the cycle that runs now (or at once, while waiting)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, cycle: Callable[[float], object], on_overrun: Callable[[Overrun], object] = lambda _: None,
            cycles: int | None = None) -> int:
        """Run ``cycle(at)`` at every due time until stopped (or ``cycles`` have run); return how many ran.

        ``at`` is the due time, so that samples and decisions line up on the period's grid whatever the
        small delay of waking up. ``period`` may be changed between cycles (a reloaded policy)."""
        assert self.wait is not None
        due = self.clock()
        ran = 0
        while not self.stopping and (cycles is None or ran < cycles):
            now = self.clock()
            if now < due and self.wait(due - now):
                break
            cycle(due)
            ran += 1
            finished = self.clock()
            following = due + self.period
            if finished > following:
                skipped = math.ceil((finished - following) / self.period)
                on_overrun(Overrun(due, finished, skipped))
                following += skipped * self.period
            due = following
        return ran

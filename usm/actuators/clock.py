"""The time an actuator waits on, as a parameter.

Actuators wait for real things (a container to run, the delay before a migrated container's original stops). They
take a :class:`Clock` instead of calling :mod:`time`, so that a test can hand them a virtual clock and check *what*
they waited for without waiting, and the simulator can run them on its own time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""


class WallClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


WALL_CLOCK = WallClock()

__all__ = ["WALL_CLOCK", "Clock", "WallClock"]

"""Event predictions: windows in which a service needs a given number of replicas (a sale, a match, a launch).

A window runs from ``start`` (included) to ``end`` (excluded), in seconds on the caller's clock (epoch seconds live,
seconds from the scenario's start in the simulator); a weekly one repeats every seven days from ``start`` on. While
windows are open, the largest of their ``min_replicas`` replaces the service's own minimum (it may be lower). The
original took the most recently edited prediction whose dates matched and ignored the times of day (bug 11).

Replicas take time to start, so a window counts as open ``lead`` seconds early (the service's start-up time): the
replicas are running when the window opens. When it closes the minimum falls back and the extra replicas are the
policy's again (an idle one is stopped by the default ``stop-idle-container`` rule).

Pure: time is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

WEEK = 7 * 24 * 3600.0
"""Seconds in a week: weekly windows repeat after exactly this (UTC, no daylight saving)."""


@dataclass(frozen=True)
class PredictionWindow:
    """``min_replicas`` from ``start`` to ``end`` (seconds), every week from ``start`` on when ``weekly``."""

    start: float
    end: float
    min_replicas: int
    weekly: bool = False
    name: str = ""

    def problems(self) -> list[str]:
        """What makes the window unusable, in words (empty when it is fine)."""
        found = []
        if self.end <= self.start:
            found.append("the window ends before it starts; make end later than start")
        elif self.weekly and self.end - self.start >= WEEK:
            found.append("a weekly window must last less than a week (it would always be open); shorten it or "
                         "make it not weekly")
        if self.min_replicas < 0:
            found.append(f"min_replicas is {self.min_replicas}; it must be 0 or more")
        return found


def window_open(window: PredictionWindow, at: float, lead: float = 0.0) -> bool:
    """Whether ``window`` counts as open at ``at``: from ``lead`` seconds before it starts until it ends (every
    week for a weekly one; a lead that makes a weekly window a week long keeps it open)."""
    begins = window.start - lead
    if at < begins:
        return False
    if not window.weekly:
        return at < window.end
    return (at - begins) % WEEK < window.end - begins


def effective_min_replicas(own: int, windows: Iterable[PredictionWindow], at: float, lead: float = 0.0) -> int:
    """A service's minimum replicas at ``at``: the largest ``min_replicas`` of its windows open then (counting
    ``lead`` seconds early, see ``window_open``), else ``own``."""
    open_now = [w.min_replicas for w in windows if window_open(w, at, lead)]
    return max(open_now) if open_now else own


__all__ = ["WEEK", "PredictionWindow", "effective_min_replicas", "window_open"]

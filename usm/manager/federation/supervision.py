"""Liveness and hand-overs: when a worker counts as down, and which regions change hands.

A worker proves it is alive by a heartbeat every ``Timing.heartbeat`` seconds (15 s, as the original's); after
``Timing.countdown`` seconds without one (60 s) the master counts it down and takes its region over, and when its
heartbeats come back the master hands the region back (original-system §5.2). The master is the only one that
moves leases, so two managers never race to claim a region; a worker only ever gives its region up (when it stops).

Pure: times are seconds on whatever clock the caller reads, passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """How often workers beat, and how long a silence counts a worker down."""

    heartbeat: float = 15.0
    countdown: float = 60.0

    def __post_init__(self) -> None:
        for name in ("heartbeat", "countdown"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"the {name} must be a positive number of seconds, not {value!r}")
        if self.countdown <= self.heartbeat:
            raise ValueError(f"the countdown ({self.countdown:g}s) must be longer than the heartbeat interval "
                             f"({self.heartbeat:g}s), or every worker would count down between two beats")


@dataclass(frozen=True)
class WorkerStatus:
    """A worker as the master reads it: its region, whether it is marked ready, and its last heartbeat."""

    name: str
    region: str
    ready: bool
    heard_at: float | None


@dataclass(frozen=True)
class MarkDown:
    """Mark a silent worker down."""

    worker: str


@dataclass(frozen=True)
class TakeOver:
    """The master takes ``region`` from ``worker`` (silent, or gone)."""

    region: str
    worker: str


@dataclass(frozen=True)
class HandBack:
    """The master hands ``region`` to ``worker``, which is alive."""

    region: str
    worker: str


Change = MarkDown | TakeOver | HandBack


def silent(worker: WorkerStatus, now: float, timing: Timing) -> bool:
    """Not heard from for longer than the countdown (never heard from counts as silent)."""
    return worker.heard_at is None or now - worker.heard_at > timing.countdown


def supervise(workers: Iterable[WorkerStatus], leases: Mapping[str, str | None], now: float,
              timing: Timing) -> tuple[Change, ...]:
    """What the master changes at ``now``, given the workers and each region's holder (``None``: the master).

    A ready worker gone silent is marked down; a region whose holder is silent or unknown is taken over; a region
    the master holds goes to the first (by name) live worker registered for it. Regions in name order."""
    workers = sorted(workers, key=lambda w: w.name)
    known = {w.name: w for w in workers}
    quiet = {w.name for w in workers if silent(w, now, timing)}
    changes: list[Change] = [MarkDown(w.name) for w in workers if w.ready and w.name in quiet]
    for region in sorted(leases):
        holder = leases[region]
        if holder is not None and (holder in quiet or holder not in known):
            changes.append(TakeOver(region, holder))
            holder = None
        if holder is None:
            alive = [w.name for w in workers if w.region == region and w.name not in quiet]
            if alive:
                changes.append(HandBack(region, alive[0]))
    return tuple(changes)


def due(last: float | None, now: float, interval: float) -> bool:
    """Whether something done every ``interval`` seconds, last at ``last`` (``None``: never), is due at ``now``."""
    return last is None or now - last >= interval


__all__ = ["Change", "HandBack", "MarkDown", "TakeOver", "Timing", "WorkerStatus", "due", "silent", "supervise"]

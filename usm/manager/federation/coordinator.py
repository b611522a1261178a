"""The store side of a running master or worker: registration and heartbeats, supervision (master), the regions a
manager holds, the stored policy and site versions, stop requests, and acting under a region's lease.

Every call is one short transaction, except :meth:`Coordinator.acting`, which keeps its transaction (and the lock
on the leases it checked) open while a plan step runs: that is what keeps a region from changing hands in the
middle of a step (``usm.manager.store.federation.lock_held``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from usm.geo.regions import cloud_region
from usm.manager.federation.partition import Regions, step_hosts
from usm.manager.federation.supervision import (
    Change,
    HandBack,
    MarkDown,
    TakeOver,
    Timing,
    WorkerStatus,
    supervise,
)
from usm.manager.ports import Actuator, Outcome
from usm.manager.store import federation as store
from usm.manager.store.configs import ConfigKind, ConfigVersion, latest_number, latest_version
from usm.manager.store.federation import Worker, WorkerState

log = logging.getLogger("usm.federation")

MASTER = "master"
"""The name the master goes by in decision logs and messages (its leases name no worker)."""


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Coordinator:
    """One manager's dealings with the store. ``worker`` is the worker's name, ``None`` for the master."""

    def __init__(self, sessions: sessionmaker[Session], worker: str | None, timing: Timing | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self.worker = worker
        self.timing = timing or Timing()
        self.clock = clock

    @property
    def name(self) -> str:
        return self.worker or MASTER

    # --- liveness -------------------------------------------------------------------------------------------

    def register(self, region: str, address: str, port: int) -> None:
        assert self.worker is not None, "only a worker registers"
        with self.sessions.begin() as session:
            store.register_worker(session, self.worker, region, address, port, moment(self.clock()))

    def beat(self, at: float | None = None) -> bool:
        """A worker's heartbeat; ``False`` when its registration is gone (the master cleared the store)."""
        assert self.worker is not None, "only a worker beats"
        with self.sessions.begin() as session:
            return store.heartbeat(session, self.worker, moment(self.clock() if at is None else at))

    def supervise(self, at: float | None = None) -> tuple[Change, ...]:
        """The master's look at its workers: mark the silent ones down, take their regions over, hand regions back
        to workers that beat again. Each change in a transaction of its own."""
        now = self.clock() if at is None else at
        with self.sessions.begin() as session:
            workers = [WorkerStatus(w.name, w.region.name if w.region else "", w.state is WorkerState.READY,
                                    w.heartbeat_at.timestamp() if w.heartbeat_at else None)
                       for w in session.scalars(select(Worker))]
            holders = {region: lease.holder for region, lease in store.leases(session).items()}
        changes = supervise(workers, holders, now, self.timing)
        for change in changes:
            with self.sessions.begin() as session:
                if isinstance(change, MarkDown):
                    store.mark_down(session, [change.worker])
                elif isinstance(change, TakeOver):
                    store.hand_over(session, change.region, None, moment(now))
                elif isinstance(change, HandBack):
                    store.hand_over(session, change.region, change.worker, moment(now))
            log.warning("%s", describe(change))
        return changes

    # --- what this manager holds ------------------------------------------------------------------------------

    def held(self) -> dict[str, int]:
        """Region -> the epoch this manager holds it at."""
        with self.sessions.begin() as session:
            return {region: lease.epoch for region, lease in store.leases(session).items()
                    if lease.holder == self.worker}

    def stop_requested(self) -> str | None:
        if self.worker is None:
            return None
        with self.sessions.begin() as session:
            return store.stop_requested(session, self.worker)

    # --- stored versions --------------------------------------------------------------------------------------

    def newest(self, kind: ConfigKind) -> int:
        with self.sessions.begin() as session:
            return latest_number(session, kind)

    def version(self, kind: ConfigKind) -> ConfigVersion | None:
        with self.sessions.begin() as session:
            return latest_version(session, kind)

    # --- acting -------------------------------------------------------------------------------------------------

    @contextmanager
    def acting(self, held: Mapping[str, int]) -> Iterator[list[str]]:
        """Lock the leases of ``held`` (region -> epoch) for the duration of the block, which is given the regions
        no longer held at those epochs (empty: act). The transaction ends with the block."""
        with self.sessions.begin() as session:
            yield store.lock_held(session, held)


def describe(change: Change) -> str:
    if isinstance(change, MarkDown):
        return f"worker {change.worker} is silent: counted down"
    if isinstance(change, TakeOver):
        return f"region {change.region} taken over by the master from {change.worker}"
    return f"region {change.region} handed to worker {change.worker}"


class LeasedActuator:
    """Carries a step out only inside a transaction that holds the leases of the regions the step touches, at the
    epochs the manager had when it observed them (``held``, updated before each cycle). A region that changed hands
    since (the master took it over, a worker got it back) refuses the step: the decision was made in a tenure that
    is over."""

    def __init__(self, inner: Actuator, coordinator: Coordinator, regions: Regions) -> None:
        self.inner = inner
        self.coordinator = coordinator
        self.regions = regions
        self.held: dict[str, int] = {}

    def regions_of(self, step: Any) -> set[str]:
        hosts, clouds = step_hosts(step)
        touched = {self.regions.of_host(h) for h in hosts}
        return touched | {self.regions.of_host("", cloud_region(code).location) for code in clouds}

    def execute(self, step: Any, at: float) -> Outcome:
        touched = self.regions_of(step)
        missing = sorted(touched - set(self.held))
        if missing:
            return Outcome(step, False, f"not carried out: {self.coordinator.name} does not hold "
                                        f"{', '.join(missing)}")
        outcome: Outcome | None = None
        try:
            with self.coordinator.acting({r: self.held[r] for r in touched}) as lost:
                if lost:
                    return Outcome(step, False, f"not carried out: {', '.join(lost)} changed hands since this "
                                                "cycle's observation")
                outcome = self.inner.execute(step, at)
            return outcome
        except SQLAlchemyError as error:
            if outcome is not None:  # carried out under the lock; only its release failed
                return outcome
            return Outcome(step, False, f"not carried out: the store cannot be reached to check the lease "
                                        f"({getattr(error, 'orig', None) or error})", transient=True)


__all__ = ["MASTER", "Coordinator", "LeasedActuator", "describe", "moment"]

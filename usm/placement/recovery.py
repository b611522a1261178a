"""Container recovery: restore a failed container near where it was, and give up on one that keeps failing.

The original's recovery (§3.11) was dead code, and buggy: its give-up test counted expired entries (always 0),
it relaunched only when the chosen host equalled the old one, and its retry loop could launch five copies. Here:

* ``RecoveryTracker`` is an immutable record of recent failures per *lineage* (a container and the ones restored
  in its place share one lineage); every method takes the time as a parameter and returns a new tracker;
* a lineage is given up while it has ``max_failures`` (3) failures within ``window_s`` (600 s = 10 minutes):
  the first two failures are restored, the third within 10 minutes is not. Once its oldest failures age out of
  the window, the lineage is no longer given up (the reset);
* ``plan_recovery`` makes exactly one ``RestoreContainer`` on the best host near the previous one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from usm.geo.sphere import Coordinates
from usm.placement.hosts import choose_host
from usm.placement.model import DEFAULT_OPTIONS, Cluster, ContainerDemand, PlacementOptions
from usm.placement.plans import NoPlan, RestoreContainer


@dataclass(frozen=True)
class FailureRecord:
    """The service of a lineage and the times (seconds) of its failures still inside the window, oldest first."""

    service: str
    times: tuple[float, ...]


@dataclass(frozen=True)
class GiveUpRecovery:
    """The container is not restored: its lineage failed ``failures`` times within the window."""

    container: str
    service: str
    lineage: str
    failures: int


@dataclass(frozen=True)
class RecoveryTracker:
    """Recent failures per lineage; immutable (every change returns a new tracker). Times are seconds on any
    clock the caller uses consistently (e.g. the simulator's virtual clock)."""

    max_failures: int = 3
    window_s: float = 600.0
    history: Mapping[str, FailureRecord] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.window_s <= 0:
            raise ValueError("window_s must be positive")
        object.__setattr__(self, "history", MappingProxyType(dict(self.history)))

    def recent(self, lineage: str, at: float) -> tuple[float, ...]:
        """The lineage's failures younger than the window at time ``at`` (age ``at - t < window_s``)."""
        record = self.history.get(lineage)
        if record is None:
            return ()
        return tuple(t for t in record.times if t <= at and at - t < self.window_s)

    def is_given_up(self, lineage: str, at: float) -> bool:
        """Whether the lineage has ``max_failures`` or more recent failures at time ``at``."""
        return len(self.recent(lineage, at)) >= self.max_failures

    def services_given_up(self, at: float) -> frozenset[str]:
        """Services with a given-up lineage at time ``at``: leave them out of minimum-replica enforcement
        (``plan_minimum_replicas(skip=...)``) so that it does not undo the give-up."""
        return frozenset(r.service for lineage, r in self.history.items() if self.is_given_up(lineage, at))

    def record_failure(self, lineage: str, service: str, at: float) -> RecoveryTracker:
        """The tracker after a failure of ``lineage`` at ``at`` (failures that aged out are dropped)."""
        times = (*self.recent(lineage, at), at)
        return replace(self, history={**self.history, lineage: FailureRecord(service, times)})

    def pruned(self, at: float) -> RecoveryTracker:
        """The tracker without failures that aged out at ``at`` (and without lineages left with none)."""
        kept = {
            lineage: FailureRecord(r.service, recent)
            for lineage, r in self.history.items()
            if (recent := self.recent(lineage, at))
        }
        return replace(self, history=kept)


def plan_recovery(
    cluster: Cluster,
    tracker: RecoveryTracker,
    failed: ContainerDemand,
    at: float,
    options: PlacementOptions = DEFAULT_OPTIONS,
    near: Coordinates | None = None,
) -> tuple[RecoveryTracker, RestoreContainer | GiveUpRecovery | NoPlan]:
    """Record the failure of ``failed`` at ``at`` and plan its restoration.

    Gives up when this failure makes ``max_failures`` within the window. Otherwise the container is restored by
    ``choose_host`` near ``near`` (default: its previous host's location), the previous host included when it
    still runs and has room. The failed container is taken out of the cluster first, so its own demand does not
    block its replacement. ``NoPlan`` when no host can take it or its location is unknown (the failure is
    recorded all the same).
    """
    lineage = failed.lineage_key
    tracker = tracker.record_failure(lineage, failed.service, at)
    failures = len(tracker.recent(lineage, at))
    if failures >= tracker.max_failures:
        return tracker, GiveUpRecovery(failed.name, failed.service, lineage, failures)
    if near is None and cluster.has_host(failed.host):
        near = cluster.host(failed.host).location
    if near is None:
        return tracker, NoPlan(f"recovery of {failed.name}: its host {failed.host} is unknown and no location given")
    on = choose_host(cluster.without_container(failed.name), failed.demand, near, options)
    if isinstance(on, NoPlan):
        return tracker, NoPlan(f"recovery of {failed.name}: {on.reason}")
    return tracker, RestoreContainer(failed.name, failed.service, lineage, near, on)


__all__ = ["FailureRecord", "GiveUpRecovery", "RecoveryTracker", "plan_recovery"]

"""Per-region support components (load balancer, registration server, ...): when to start and stop them.

A pure state machine per region (a world area such as ``europe``), stepped by the control loop with the number of
application containers in each region and the time:

* a region with containers whose support is not running → ``StartSupport``;
* a running region left with no container → a stop is armed for ``stop_delay_s`` later (default 300 s = the
  original's 5 minutes, ``ArmSupportStop``), and ``StopSupport`` is emitted at the first step at or after it;
* containers coming back before then cancel the stop (``CancelSupportStop``).

Fixes against the original (§3.9, §13 item 20): its timer was never cancelled when containers came back, and it
counted the support components' own containers, so a region was almost never seen as empty. Only application
containers count here (``containers_by_region`` leaves system containers out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from usm.placement.model import Cluster


@dataclass(frozen=True)
class RegionSupport:
    """One region's support: whether it runs, and when an armed stop is due (``None``: no stop armed)."""

    running: bool = False
    stop_at: float | None = None


@dataclass(frozen=True)
class StartSupport:
    region: str


@dataclass(frozen=True)
class StopSupport:
    region: str


@dataclass(frozen=True)
class ArmSupportStop:
    region: str
    stop_at: float


@dataclass(frozen=True)
class CancelSupportStop:
    region: str


SupportEvent = StartSupport | StopSupport | ArmSupportStop | CancelSupportStop


@dataclass(frozen=True)
class SupportState:
    """Every region's support state; immutable. Regions not listed are not running."""

    regions: Mapping[str, RegionSupport] = field(default_factory=lambda: MappingProxyType({}))
    stop_delay_s: float = 300.0

    def __post_init__(self) -> None:
        if self.stop_delay_s < 0:
            raise ValueError("stop_delay_s must be >= 0")
        object.__setattr__(self, "regions", MappingProxyType(dict(self.regions)))

    def region(self, name: str) -> RegionSupport:
        return self.regions.get(name, RegionSupport())

    def with_region(self, name: str, support: RegionSupport) -> SupportState:
        """This state with one region replaced (e.g. marked running again after a stop that failed)."""
        return replace(self, regions={**self.regions, name: support})


def containers_by_region(cluster: Cluster) -> dict[str, int]:
    """Number of application (non-system) containers per region of their host, starting ones included.
    Containers on hosts the cluster does not hold, or on hosts without a region, are not counted."""
    counts: Counter[str] = Counter()
    for c in cluster.containers:
        if not c.system and cluster.has_host(c.host) and cluster.host(c.host).region:
            counts[cluster.host(c.host).region] += 1
    return dict(counts)


def _step_region(
    name: str, support: RegionSupport, count: int, at: float, delay: float
) -> tuple[RegionSupport, list[SupportEvent]]:
    if count > 0:
        if not support.running:
            return RegionSupport(running=True), [StartSupport(name)]
        if support.stop_at is not None:
            return RegionSupport(running=True), [CancelSupportStop(name)]
        return support, []
    if not support.running:
        return support, []
    events: list[SupportEvent] = []
    stop_at = support.stop_at
    if stop_at is None:
        stop_at = at + delay
        if at < stop_at:
            events.append(ArmSupportStop(name, stop_at))
    if at >= stop_at:
        return RegionSupport(), [*events, StopSupport(name)]
    return RegionSupport(running=True, stop_at=stop_at), events


def step_support(
    state: SupportState, containers: Mapping[str, int], at: float
) -> tuple[SupportState, tuple[SupportEvent, ...]]:
    """Advance every region's support to time ``at`` given ``containers`` (region → application containers;
    regions left out have none). Returns the new state and the events, regions in name order."""
    new_regions = dict(state.regions)
    events: list[SupportEvent] = []
    for name in sorted(set(state.regions) | set(containers)):
        support, region_events = _step_region(name, state.region(name), containers.get(name, 0), at, state.stop_delay_s)
        new_regions[name] = support
        events.extend(region_events)
    return replace(state, regions=new_regions), tuple(events)


__all__ = [
    "ArmSupportStop",
    "CancelSupportStop",
    "RegionSupport",
    "StartSupport",
    "StopSupport",
    "SupportEvent",
    "SupportState",
    "containers_by_region",
    "step_support",
]

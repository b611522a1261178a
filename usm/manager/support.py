"""Per-region support components over time: start a region's registry member, load balancer and worker when the
region has application containers, stop them 5 minutes after it has none.

The decisions are ``usm.placement.support``'s pure state machine; this module carries them out through
:class:`RegionComponent` actuators and feeds failures back into the state: a start that fails leaves the region
not running (the next step starts it again) after stopping what had started; a stop that fails leaves the region
running with its stop due at once (the next step stops it again, unless containers came back). Components are
started in the order given (registry first: the others register in it) and stopped in the reverse order, and
must be idempotent (starting what runs, or stopping what is stopped, does nothing), since a retry repeats them.
The control loop calls :meth:`RegionSupportLifecycle.step` every cycle with the cycle's time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from usm.placement.model import Cluster
from usm.placement.support import (
    ArmSupportStop,
    CancelSupportStop,
    RegionSupport,
    StartSupport,
    StopSupport,
    SupportEvent,
    SupportState,
    containers_by_region,
    step_support,
)

log = logging.getLogger(__name__)


class RegionComponent(Protocol):
    """One kind of per-region component (etcd member, load balancer, worker manager)."""

    name: str

    def start(self, region: str) -> None:
        """Make the region's component run (nothing to do if it runs); raise if it cannot."""

    def stop(self, region: str) -> None:
        """Make it stop (nothing to do if it is stopped); raise if it cannot."""


@dataclass(frozen=True)
class SupportOutcome:
    """What became of one event: ``ok`` False with the failing component and why."""

    at: float
    event: SupportEvent
    ok: bool = True
    detail: str = ""


@dataclass
class RegionSupportLifecycle:
    components: Sequence[RegionComponent]
    state: SupportState = field(default_factory=SupportState)

    def step(self, containers: Mapping[str, int], at: float) -> list[SupportOutcome]:
        """Advance to ``at`` with ``containers`` (region -> application containers) and act on the events."""
        self.state, events = step_support(self.state, containers, at)
        return [self._carry_out(event, at) for event in events]

    def step_cluster(self, cluster: Cluster, at: float) -> list[SupportOutcome]:
        """:meth:`step` with the application containers of ``cluster`` (system containers do not count)."""
        return self.step(containers_by_region(cluster), at)

    def _carry_out(self, event: SupportEvent, at: float) -> SupportOutcome:
        if isinstance(event, StartSupport):
            return self._start(event, at)
        if isinstance(event, StopSupport):
            return self._stop(event, at)
        if isinstance(event, (ArmSupportStop, CancelSupportStop)):
            return SupportOutcome(at, event)
        raise TypeError(f"unknown support event {event!r}")

    def _start(self, event: StartSupport, at: float) -> SupportOutcome:
        started: list[RegionComponent] = []
        for component in self.components:
            try:
                component.start(event.region)
            except Exception as error:  # noqa: BLE001 - any failure of an actuator is reported, not raised
                detail = f"{component.name} did not start in {event.region}: {error}"
                log.warning("%s; stopping what started and retrying at the next cycle", detail)
                for done in reversed(started):
                    self._quietly_stop(done, event.region)
                self.state = self.state.with_region(event.region, RegionSupport())
                return SupportOutcome(at, event, False, detail)
            started.append(component)
        return SupportOutcome(at, event)

    def _stop(self, event: StopSupport, at: float) -> SupportOutcome:
        failures = [f"{component.name}: {error}" for component in reversed(self.components)
                    if (error := self._quietly_stop(component, event.region)) is not None]
        if not failures:
            return SupportOutcome(at, event)
        self.state = self.state.with_region(event.region, RegionSupport(running=True, stop_at=at))
        detail = f"could not stop in {event.region} ({'; '.join(failures)}); retrying at the next cycle"
        log.warning(detail)
        return SupportOutcome(at, event, False, detail)

    @staticmethod
    def _quietly_stop(component: RegionComponent, region: str) -> Exception | None:
        try:
            component.stop(region)
        except Exception as error:  # noqa: BLE001 - reported by the caller
            return error
        return None


@dataclass
class RecordingComponent:
    """A component that only records what it was asked to do: for dry runs (``usm run --dry-run``), where
    support components are decided but not started."""

    name: str
    calls: list[tuple[str, str]] = field(default_factory=list)

    def start(self, region: str) -> None:
        self.calls.append(("start", region))

    def stop(self, region: str) -> None:
        self.calls.append(("stop", region))

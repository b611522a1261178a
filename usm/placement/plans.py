"""What placement answers: where a container goes, and the steps an actuator carries out.

A *host choice* says where a new container goes: on a host that can take it now (``UseHost``), on a stopped host
that must be started first (``StartHost``), or on a cloud host to launch in a region (``LaunchCloudHost``). The
original returned a stopped host as if it were usable and never started it (bug 13); here starting or launching is
an explicit part of the plan, and the actuator places the container once that host runs.

Plans are values: nothing here acts. ``NoPlan`` carries the reason a plan could not be made, for the journal.
"""

from __future__ import annotations

from dataclasses import dataclass

from usm.geo.sphere import Coordinates


@dataclass(frozen=True)
class UseHost:
    """Place on this host, which has room now (running, or starting from an earlier plan)."""

    host: str
    distance_m: float


@dataclass(frozen=True)
class StartHost:
    """Start this stopped host, then place on it."""

    host: str
    distance_m: float


@dataclass(frozen=True)
class LaunchCloudHost:
    """Launch a cloud host in this provider region (e.g. ``eu-west-3``), then place on it."""

    region: str
    distance_m: float


HostChoice = UseHost | StartHost | LaunchCloudHost


@dataclass(frozen=True)
class NoPlan:
    """No plan could be made; ``reason`` says why, in words for the journal."""

    reason: str


def chosen_host(on: HostChoice) -> str | None:
    """The name of the receiving host, or ``None`` while it is still to be launched."""
    return None if isinstance(on, LaunchCloudHost) else on.host


@dataclass(frozen=True)
class PlaceReplica:
    """Start one more container of ``service``, meant to serve callers around ``near``."""

    service: str
    near: Coordinates
    on: HostChoice
    ordinal: int = 0  # among equal steps of one cycle (two replicas for one host), which one: steps stay distinct

    @property
    def host(self) -> str | None:
        return chosen_host(self.on)


@dataclass(frozen=True)
class MoveContainer:
    """Start a copy of ``container`` (of ``service``, now on ``source``) on the chosen host, then stop the original.

    The delay between the two (the original's ``container.delay-before-stop``) is the actuator's business.
    """

    container: str
    service: str
    source: str
    near: Coordinates
    on: HostChoice

    @property
    def host(self) -> str | None:
        return chosen_host(self.on)


@dataclass(frozen=True)
class RestoreContainer:
    """Start a new container of ``service`` in place of ``container``, which failed. The new container carries
    ``lineage`` (e.g. as a label) so that its own failures count with those of the one it replaces."""

    container: str
    service: str
    lineage: str
    near: Coordinates
    on: HostChoice

    @property
    def host(self) -> str | None:
        return chosen_host(self.on)


@dataclass(frozen=True)
class StopContainer:
    """Stop (and remove) this container."""

    container: str
    host: str


@dataclass(frozen=True)
class StopHost:
    """Stop this edge host (it leaves the cluster and may be started again later)."""

    host: str


@dataclass(frozen=True)
class TerminateHost:
    """Terminate this cloud host (it leaves the cluster and stops costing money; the original left it running,
    bug 15)."""

    host: str


@dataclass(frozen=True)
class DrainHost:
    """Move every movable container off ``host``, in order, then stop or terminate it."""

    host: str
    moves: tuple[MoveContainer, ...]
    then: StopHost | TerminateHost


__all__ = [
    "DrainHost",
    "HostChoice",
    "LaunchCloudHost",
    "MoveContainer",
    "NoPlan",
    "PlaceReplica",
    "RestoreContainer",
    "StartHost",
    "StopContainer",
    "StopHost",
    "TerminateHost",
    "UseHost",
    "chosen_host",
]

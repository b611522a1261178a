"""What placement reasons about: hosts with their capacity and usage, containers with what they need, and the
options that bound a placement. Plain frozen data, built by the caller (control loop, simulator, tests).

Units: cpu in cores (a host at 50 % of 4 cores uses 2.0), ram and disk in bytes. The original mixed an already
host-wide CPU percentage with a division by the core count (bug 12); here every quantity has one unit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cached_property

from usm.geo.regions import USABLE_CLOUD_REGIONS, CloudRegion
from usm.geo.sphere import Coordinates


@dataclass(frozen=True)
class Resources:
    """An amount of cpu (cores), ram (bytes) and disk (bytes)."""

    cpu: float = 0.0
    ram: float = 0.0
    disk: float = 0.0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.ram + other.ram, self.disk + other.disk)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.ram - other.ram, self.disk - other.disk)


NOTHING = Resources()


def total_of(amounts: Iterable[Resources]) -> Resources:
    """The sum of some amounts (``NOTHING`` for none)."""
    result = NOTHING
    for amount in amounts:
        result = result + amount
    return result


class HostKind(str, Enum):
    CLOUD = "cloud"  # an instance of a cloud provider: launched, stopped, terminated by its API
    EDGE = "edge"  # a machine the operator owns: started and stopped, never created or destroyed


class HostState(str, Enum):
    RUNNING = "running"
    STARTING = "starting"  # being started or launched: receives placements, is not started again
    STOPPING = "stopping"  # being drained or stopped: receives nothing
    STOPPED = "stopped"  # may be started to make room


RECEIVING_STATES = frozenset({HostState.RUNNING, HostState.STARTING})


@dataclass(frozen=True)
class HostCapacity:
    """A host as placement sees it.

    ``total`` is its capacity; ``used`` what it measurably uses now (all its running containers and everything
    else). ``region`` is its world area (``usm.geo.regions.AREAS``), ``cloud_region`` the provider region of a
    cloud host ("" for edge hosts). Coordinates are required: the original let a host without coordinates reach
    the distance computation and fail (bug 15).
    """

    name: str
    location: Coordinates
    total: Resources
    used: Resources = NOTHING
    kind: HostKind = HostKind.EDGE
    state: HostState = HostState.RUNNING
    region: str = ""
    cloud_region: str = ""


@dataclass(frozen=True)
class ContainerDemand:
    """A container as placement sees it: where it is and what it is expected to use.

    ``starting`` marks a container that was asked for but is not running yet: its host's measured ``used`` does
    not include it, so its ``demand`` is added to the host's load (the original ignored containers being started,
    bug 12). ``system`` containers (per-host and per-region support components) are never moved or stopped by
    placement. ``lineage`` names the container a restored one replaces (see ``usm.placement.recovery``); empty
    means the container's own name.
    """

    name: str
    service: str
    host: str
    demand: Resources = NOTHING
    starting: bool = False
    system: bool = False
    lineage: str = ""

    @property
    def lineage_key(self) -> str:
        return self.lineage or self.name


@dataclass(frozen=True)
class ServiceSpec:
    """What a new replica of a service needs, and how many replicas it must keep at least."""

    name: str
    demand: Resources = NOTHING
    min_replicas: int = 1


@dataclass(frozen=True)
class PlacementOptions:
    """Bounds of a placement.

    * ``max_cpu_percent``, ``max_ram_percent``, ``max_disk_percent``: a host fits a container when, after adding it,
      its load stays **at or below** these shares of its capacity (defaults 90, 90, 100: disk must fit).
    * ``can_start_hosts``, ``can_launch_hosts``: whether a stopped host may be started or a cloud host launched
      when no running host fits (the control loop turns them off when the host count is at its maximum).
    * ``new_host_capacity``: the capacity of a newly launched cloud host; ``None`` trusts that it fits.
    * ``closer_host_factor``: ``None`` (default) uses a running host whenever one fits. A number ``f`` restores
      the original's geographic preference: a running host at distance ``d`` is passed over for a stopped host or a
      new cloud host at distance ``d'`` when ``d > f · d'`` (the original used 1.25 and 1.5).
    """

    max_cpu_percent: float = 90.0
    max_ram_percent: float = 90.0
    max_disk_percent: float = 100.0
    can_start_hosts: bool = True
    can_launch_hosts: bool = True
    new_host_capacity: Resources | None = None
    closer_host_factor: float | None = None


DEFAULT_OPTIONS = PlacementOptions()


@dataclass(frozen=True)
class Cluster:
    """Hosts, containers and the cloud regions where hosts can be launched (empty: none can be).

    Host and container names are unique. A container may name a host the cluster does not hold (a host that
    vanished): it then counts towards its service's replicas but loads no host.
    """

    hosts: tuple[HostCapacity, ...] = ()
    containers: tuple[ContainerDemand, ...] = ()
    cloud_regions: tuple[CloudRegion, ...] = field(default=USABLE_CLOUD_REGIONS)

    def __post_init__(self) -> None:
        for kind, names in (("host", [h.name for h in self.hosts]), ("container", [c.name for c in self.containers])):
            duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
            if duplicates:
                raise ValueError(f"duplicate {kind} names: {', '.join(duplicates)}")

    @cached_property
    def _hosts_by_name(self) -> dict[str, HostCapacity]:
        return {h.name: h for h in self.hosts}

    @cached_property
    def _containers_by_host(self) -> dict[str, tuple[ContainerDemand, ...]]:
        result: dict[str, list[ContainerDemand]] = {}
        for c in self.containers:
            result.setdefault(c.host, []).append(c)
        return {h: tuple(cs) for h, cs in result.items()}

    def host(self, name: str) -> HostCapacity:
        """The host called ``name``; ``KeyError`` if there is none."""
        return self._hosts_by_name[name]

    def has_host(self, name: str) -> bool:
        return name in self._hosts_by_name

    def container(self, name: str) -> ContainerDemand:
        """The container called ``name``; ``KeyError`` if there is none."""
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def containers_on(self, host: str) -> tuple[ContainerDemand, ...]:
        return self._containers_by_host.get(host, ())

    def replicas(self, service: str) -> tuple[ContainerDemand, ...]:
        """The service's containers, starting ones included, by name."""
        return tuple(sorted((c for c in self.containers if c.service == service), key=lambda c: c.name))

    def load(self, host: str) -> Resources:
        """What the host uses once the containers starting on it run: measured use plus starting demands.

        A stopped host runs nothing, so its (stale) measured use is ignored.
        """
        h = self.host(host)
        measured = NOTHING if h.state is HostState.STOPPED else h.used
        return measured + total_of(c.demand for c in self.containers_on(host) if c.starting)

    def with_container(self, container: ContainerDemand) -> Cluster:
        """This cluster with one more container (usually a starting one a plan will create)."""
        return replace(self, containers=(*self.containers, container))

    def without_container(self, name: str) -> Cluster:
        """This cluster without the named container. Its measured use stays in its host's ``used``: the caller
        lowers that if it knows better (placement never assumes a removal relieves a host before it happened)."""
        return replace(self, containers=tuple(c for c in self.containers if c.name != name))

    def with_host_state(self, name: str, state: HostState) -> Cluster:
        """This cluster with the named host in another state."""
        return replace(self, hosts=tuple(replace(h, state=state) if h.name == name else h for h in self.hosts))


__all__ = [
    "DEFAULT_OPTIONS",
    "NOTHING",
    "RECEIVING_STATES",
    "Cluster",
    "ContainerDemand",
    "HostCapacity",
    "HostKind",
    "HostState",
    "PlacementOptions",
    "Resources",
    "ServiceSpec",
    "total_of",
]

"""What placement reasons about: hosts with their capacity and usage, containers with what they need, and the
options that bound a placement. Plain frozen data, built by the caller (control loop, simulator, tests).

Units: cpu in cores (a host at 50 % of 4 cores uses 2.0), ram and disk in bytes. The original mixed an already
host-wide CPU percentage with a division by the core count (bug 12); here every quantity has one unit.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from functools import cached_property, partial
from itertools import compress
from operator import attrgetter, is_not
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from usm.geo.arrays import distances_to
from usm.geo.regions import USABLE_CLOUD_REGIONS, CloudRegion, nearest_cloud_region
from usm.geo.sphere import Coordinates, distance_m

_T = TypeVar("_T")
_name = attrgetter("name")
_service = attrgetter("service")
_starting = attrgetter("starting")


@dataclass(frozen=True, init=False)
class Resources:
    """An amount of cpu (cores), ram (bytes) and disk (bytes)."""

    cpu: float = 0.0
    ram: float = 0.0
    disk: float = 0.0

    def __init__(self, cpu: float = 0.0, ram: float = 0.0, disk: float = 0.0) -> None:
        # What the generated __init__ does, at half its cost (it sets each field of a frozen dataclass through
        # object.__setattr__): the simulated world makes hundreds of amounts per planning cycle.
        state = self.__dict__
        state["cpu"], state["ram"], state["disk"] = cpu, ram, disk

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


@dataclass(frozen=True, init=False)
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

    def __init__(self, name: str, service: str, host: str, demand: Resources = NOTHING, starting: bool = False,
                 system: bool = False, lineage: str = "") -> None:
        # As Resources.__init__: the generated one's work at half its cost (hundreds are made per planning cycle).
        state = self.__dict__
        state["name"], state["service"], state["host"], state["demand"] = name, service, host, demand
        state["starting"], state["system"], state["lineage"] = starting, system, lineage

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


_MEMO_POINTS = 1024
"""How many points a cluster remembers host rankings and launch regions for (the memo is cleared beyond)."""

_RANKING_SLACK_M = 10.0
"""How far apart (metres) numpy's and ``distance_m``'s distances between the same two points may be, with a wide
margin: both compute the same haversine with sines that may differ in the last bit, which moves a distance by
far less than a millimetre, and by at most about a metre near the antipode (where ``asin`` is steepest)."""


@dataclass(frozen=True)
class Cluster:
    """Hosts, containers and the cloud regions where hosts can be launched (empty: none can be).

    Host and container names are unique. A container may name a host the cluster does not hold (a host that
    vanished): it then counts towards its service's replicas but loads no host.

    Lookups are indexed, so that planning stays cheap at thousands of containers: hosts and containers by name
    (built with the cluster, which checks the names with them), containers by host, starting containers by host
    (all a load reads), replicas by service and their counts (built on first use), host loads (each computed on
    first use), and for each point planning looks around, the hosts
    ranked by distance and the launch region. ``with_container``, ``without_container`` and ``with_host_state``
    derive their result's indexes from this cluster's, redoing only what the change touches, so a plan that
    reserves step after step never rebuilds them. The indexes are a cache: no answer depends on them.
    """

    hosts: tuple[HostCapacity, ...] = ()
    containers: tuple[ContainerDemand, ...] = ()
    cloud_regions: tuple[CloudRegion, ...] = field(default=USABLE_CLOUD_REGIONS)

    def __post_init__(self) -> None:
        for kind, index, items in (
            ("host", self._hosts_by_name, self.hosts),
            ("container", self._containers_by_name, self.containers),
        ):
            if len(index) != len(items):
                duplicates = sorted(n for n, count in Counter(i.name for i in items).items() if count > 1)
                raise ValueError(f"duplicate {kind} names: {', '.join(duplicates)}")

    # Indexes and memos (``cached_property``: computed on first use, kept in the instance's ``__dict__``).

    @cached_property
    def _hosts_by_name(self) -> dict[str, HostCapacity]:
        return dict(zip(map(_name, self.hosts), self.hosts))

    @cached_property
    def _hosts_by_state(self) -> dict[HostState, tuple[HostCapacity, ...]]:
        result: dict[HostState, list[HostCapacity]] = {}
        for h in self.hosts:
            result.setdefault(h.state, []).append(h)
        return {state: tuple(hs) for state, hs in result.items()}

    @cached_property
    def _containers_by_name(self) -> dict[str, ContainerDemand]:
        return dict(zip(map(_name, self.containers), self.containers))

    @cached_property
    def _containers_by_host(self) -> dict[str, tuple[ContainerDemand, ...]]:
        """Host name → its containers, in cluster order (the order their demands are summed in)."""
        result: dict[str, list[ContainerDemand]] = {}
        for c in self.containers:
            result.setdefault(c.host, []).append(c)
        return {h: tuple(cs) for h, cs in result.items()}

    @cached_property
    def _starting_by_host(self) -> dict[str, tuple[ContainerDemand, ...]]:
        """Host name → its starting containers, in cluster order: all a ``load`` needs, and a few of them all."""
        result: dict[str, list[ContainerDemand]] = {}
        for c in compress(self.containers, map(_starting, self.containers)):
            result.setdefault(c.host, []).append(c)
        return {h: tuple(cs) for h, cs in result.items()}

    @cached_property
    def _containers_by_service(self) -> dict[str, tuple[ContainerDemand, ...]]:
        """Service → its containers, in cluster order."""
        result: dict[str, list[ContainerDemand]] = {}
        for c in self.containers:
            result.setdefault(c.service, []).append(c)
        return {s: tuple(cs) for s, cs in result.items()}

    @cached_property
    def _replica_counts(self) -> Counter[str]:
        """Service → how many containers it has (counted in C, where grouping them costs a Python loop)."""
        return Counter(map(_service, self.containers))

    @cached_property
    def _replicas(self) -> dict[str, tuple[ContainerDemand, ...]]:
        """Service → ``replicas`` of it, for the services asked about so far (sorting them all costs more than
        grouping them)."""
        return {}

    @cached_property
    def _loads(self) -> dict[str, Resources]:
        """Host name → its ``load``, for the hosts asked about so far."""
        return {}

    @cached_property
    def _host_points(self) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[str, ...]]:
        """Latitudes, longitudes and names of the hosts, for numpy."""
        lat = np.fromiter((h.location.latitude for h in self.hosts), np.float64, len(self.hosts))
        lon = np.fromiter((h.location.longitude for h in self.hosts), np.float64, len(self.hosts))
        return lat, lon, tuple(h.name for h in self.hosts)

    @cached_property
    def _rankings(self) -> dict[Coordinates, tuple[tuple[float, str], ...]]:
        """Point → ``_ranking`` of it (shared by the clusters derived from this one: same hosts, same places)."""
        return {}

    @cached_property
    def _launch_regions(self) -> dict[Coordinates, CloudRegion | None]:
        """Point → ``launch_region`` of it (shared by the clusters derived from this one: same cloud regions)."""
        return {}

    def _built(self, index: str) -> Any:
        """The named index if this cluster built it already, else ``None``."""
        return self.__dict__.get(index)

    # Queries.

    def host(self, name: str) -> HostCapacity:
        """The host called ``name``; ``KeyError`` if there is none."""
        return self._hosts_by_name[name]

    def has_host(self, name: str) -> bool:
        return name in self._hosts_by_name

    def hosts_in(self, state: HostState) -> tuple[HostCapacity, ...]:
        """The hosts in ``state``, in cluster order."""
        return self._hosts_by_state.get(state, ())

    def container(self, name: str) -> ContainerDemand:
        """The container called ``name``; ``KeyError`` if there is none."""
        return self._containers_by_name[name]

    def containers_on(self, host: str) -> tuple[ContainerDemand, ...]:
        return self._containers_by_host.get(host, ())

    def starting_on(self, host: str) -> tuple[ContainerDemand, ...]:
        """The host's starting containers, in cluster order."""
        return self._starting_by_host.get(host, ())

    def replicas(self, service: str) -> tuple[ContainerDemand, ...]:
        """The service's containers, starting ones included, by name."""
        replicas = self._replicas.get(service)
        if replicas is None:
            replicas = tuple(sorted(self._containers_by_service.get(service, ()), key=_name))
            self._replicas[service] = replicas
        return replicas

    def replica_count(self, service: str) -> int:
        """``len(replicas(service))``, without sorting or grouping them."""
        return self._replica_counts[service]

    def load(self, host: str) -> Resources:
        """What the host uses once the containers starting on it run: measured use plus starting demands.

        A stopped host runs nothing, so its (stale) measured use is ignored.
        """
        load = self._loads.get(host)
        if load is None:
            load = self._loads[host] = _load_of(self.host(host), self.starting_on(host))
        return load

    def closest_host(
        self, near: Coordinates, wanted: Callable[[HostCapacity], bool]
    ) -> tuple[HostCapacity, float] | None:
        """The host closest to ``near`` for which ``wanted`` holds, with its distance ``distance_m(host.location,
        near)``; ties by name. ``None`` when ``wanted`` holds for no host.

        Hosts are asked in the order of ``near``'s ranking (``_ranking``, computed once per point), and only until
        no farther host could be closer, so a call usually asks a few hosts and computes one exact distance.
        """
        best: tuple[float, str] | None = None
        for approximate, name in self._ranking(near):
            if best is not None and approximate - _RANKING_SLACK_M > best[0]:
                break  # this host and all later ones are farther than the best one: not even a tie
            h = self._hosts_by_name[name]
            if wanted(h):
                candidate = (distance_m(h.location, near), name)
                if best is None or candidate < best:
                    best = candidate
        return (self._hosts_by_name[best[1]], best[0]) if best is not None else None

    def _ranking(self, near: Coordinates) -> tuple[tuple[float, str], ...]:
        """Every host as ``(distance to near, name)``, closest first, the distances computed by numpy at once.

        numpy's sines may differ from ``math``'s in the last bit, so these distances (and the order of hosts
        closer to each other than ``_RANKING_SLACK_M``) are only approximately ``distance_m``'s: ``closest_host``
        uses them to know where to stop, and ``distance_m`` to choose.
        """
        ranked = self._rankings.get(near)
        if ranked is None:
            lat, lon, names = self._host_points
            distances = distances_to(lat, lon, near)
            ranked = tuple(sorted(zip(distances.tolist(), names)))
            _remember(self._rankings, near, ranked)
        return ranked

    def launch_region(self, near: Coordinates) -> CloudRegion | None:
        """The usable cloud region of ``cloud_regions`` closest to ``near``, where a new host for callers around
        it would be launched (``usm.geo.regions.nearest_cloud_region``); ``None`` when none is usable."""
        if near not in self._launch_regions:
            _remember(self._launch_regions, near, nearest_cloud_region(near, self.cloud_regions))
        return self._launch_regions[near]

    # Derived clusters.

    def with_container(self, container: ContainerDemand) -> Cluster:
        """This cluster with one more container (usually a starting one a plan will create)."""
        if container.name in self._containers_by_name:
            raise ValueError(f"duplicate container names: {container.name}")
        return self._derived(
            {"containers": (*self.containers, container)},
            _hosts_by_name=self._hosts_by_name,
            _hosts_by_state=self._built("_hosts_by_state"),
            _containers_by_name={**self._containers_by_name, container.name: container},
            _containers_by_host=_with_built(self._built("_containers_by_host"), container.host, container),
            _starting_by_host=_with_built(self._built("_starting_by_host"), container.host, container)
            if container.starting else self._built("_starting_by_host"),
            _containers_by_service=_with_built(self._built("_containers_by_service"), container.service, container),
            _replica_counts=_counted(self._built("_replica_counts"), container.service, 1),
            _replicas=_with_replica(self._replicas, container),
            _loads=self._loads_except(container.host) if container.starting else self._loads,
        )

    def without_container(self, name: str) -> Cluster:
        """This cluster without the named container. Its measured use stays in its host's ``used``: the caller
        lowers that if it knows better (placement never assumes a removal relieves a host before it happened)."""
        gone = self._containers_by_name.get(name)
        if gone is None:
            return self
        by_name = dict(self._containers_by_name)
        del by_name[name]
        return self._derived(
            {"containers": _all_but(self.containers, gone)},
            _hosts_by_name=self._hosts_by_name,
            _hosts_by_state=self._built("_hosts_by_state"),
            _containers_by_name=by_name,
            _containers_by_host=_without_built(self._built("_containers_by_host"), gone.host, gone),
            _starting_by_host=_without_built(self._built("_starting_by_host"), gone.host, gone)
            if gone.starting else self._built("_starting_by_host"),
            _containers_by_service=_without_built(self._built("_containers_by_service"), gone.service, gone),
            _replica_counts=_counted(self._built("_replica_counts"), gone.service, -1),
            _replicas=_without(self._replicas, gone.service, gone),
            _loads=self._loads_except(gone.host) if gone.starting else self._loads,
        )

    def with_host_state(self, name: str, state: HostState) -> Cluster:
        """This cluster with the named host in another state."""
        if name not in self._hosts_by_name:
            return self
        changed = replace(self._hosts_by_name[name], state=state)
        return self._derived(
            {"hosts": tuple(changed if h.name == name else h for h in self.hosts)},
            _hosts_by_name={**self._hosts_by_name, name: changed},
            _containers_by_name=self._containers_by_name,
            _containers_by_host=self._built("_containers_by_host"),
            _starting_by_host=self._starting_by_host,  # built now: the derived cluster's loads need it
            _containers_by_service=self._built("_containers_by_service"),
            _replica_counts=self._built("_replica_counts"),
            _replicas=self._replicas,
            _loads=self._loads_except(name),
        )

    def _loads_except(self, host: str) -> dict[str, Resources]:
        """The loads known so far but the named host's (which a change is about to alter)."""
        loads = dict(self._loads)
        loads.pop(host, None)
        return loads

    def _derived(self, changes: dict[str, object], **indexes: object) -> Cluster:
        """A copy of this cluster with ``changes`` made to its fields and the given indexes (``None``: build on
        first use), not validated again (the caller keeps names unique). Memos of points are shared: a derived
        cluster has the same hosts at the same places and the same cloud regions."""
        derived = object.__new__(type(self))
        state = derived.__dict__
        state.update((name, getattr(self, name)) for name in _FIELDS)
        state.update(changes)
        state.update((index, value) for index, value in indexes.items() if value is not None)
        state["_rankings"] = self._rankings
        state["_launch_regions"] = self._launch_regions
        if (points := self._built("_host_points")) is not None:
            state["_host_points"] = points
        return derived


_FIELDS = tuple(f.name for f in fields(Cluster))


def _load_of(host: HostCapacity, containers: Iterable[ContainerDemand]) -> Resources:
    """``Cluster.load`` of a host with these containers on it."""
    measured = NOTHING if host.state is HostState.STOPPED else host.used
    return measured + total_of(c.demand for c in containers if c.starting)


def _with(
    index: dict[str, tuple[ContainerDemand, ...]], key: str, container: ContainerDemand
) -> dict[str, tuple[ContainerDemand, ...]]:
    """``index`` with ``container`` added at the end of the containers under ``key``."""
    return {**index, key: (*index.get(key, ()), container)}


def _counted(counts: Counter[str] | None, service: str, change: int) -> Counter[str] | None:
    """The memo of ``Cluster.replica_count`` with ``service`` counted ``change`` more times (``None``: not built)."""
    if counts is None:
        return None
    result = counts.copy()
    result[service] += change
    return result


def _with_built(
    index: dict[str, tuple[ContainerDemand, ...]] | None, key: str, container: ContainerDemand
) -> dict[str, tuple[ContainerDemand, ...]] | None:
    """``_with`` of an index, if it was built (``None``: it was not, nor is the result)."""
    return None if index is None else _with(index, key, container)


def _without_built(
    index: dict[str, tuple[ContainerDemand, ...]] | None, key: str, gone: ContainerDemand
) -> dict[str, tuple[ContainerDemand, ...]] | None:
    """``_without`` of an index, if it was built."""
    return None if index is None else _without(index, key, gone)


def _with_replica(
    replicas: dict[str, tuple[ContainerDemand, ...]], container: ContainerDemand
) -> dict[str, tuple[ContainerDemand, ...]]:
    """The memo of ``Cluster.replicas`` with ``container`` among its service's replicas, in name order (when the
    memo holds the service at all)."""
    known = replicas.get(container.service)
    if known is None:
        return dict(replicas)
    at = bisect_left(known, container.name, key=_name)
    return {**replicas, container.service: (*known[:at], container, *known[at:])}


def _without(
    index: dict[str, tuple[ContainerDemand, ...]], key: str, gone: ContainerDemand
) -> dict[str, tuple[ContainerDemand, ...]]:
    """``index`` with ``gone`` taken out of the containers under ``key`` (if it holds ``key`` at all)."""
    if key not in index:
        return dict(index)
    return {**index, key: _all_but(index[key], gone)}


def _all_but(containers: tuple[ContainerDemand, ...], gone: ContainerDemand) -> tuple[ContainerDemand, ...]:
    """``containers`` without ``gone`` (compared by identity, in a C loop: the cluster's tuple is long)."""
    return tuple(filter(partial(is_not, gone), containers))


def _remember(memo: dict[Coordinates, _T], near: Coordinates, value: _T) -> None:
    """Store ``value`` for ``near``, forgetting every point first when the memo is full."""
    if len(memo) >= _MEMO_POINTS:
        memo.clear()
    memo[near] = value


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

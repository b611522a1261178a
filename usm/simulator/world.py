"""The simulated world: hosts, containers and users on a virtual clock.

``World(scenario)`` is both the :class:`~usm.manager.ports.Collector` and the :class:`~usm.manager.ports.Actuator`
of a simulation. Time is a float number of seconds from 0, always passed in; nothing here reads a clock or does
I/O. The same scenario and the same calls give the same results, bit for bit.

**Events.** ``advance(to)`` processes, in time order, the events due by ``to``: a container finishing its start,
a host finishing its boot, a scenario fault. Ties are broken by the order in which events were scheduled (a heap
of ``(time, sequence, event)``).

**Routing.** Every workload source sends its requests to the closest *running* replica of its service (great
circle). Replicas at the same distance (within ``TIE_KM``: typically several on one host) share them evenly, as
a round-robin load balancer would; with ties given to the first by name instead, a replica placed beside another
would never get a request, and an idle-replica rule would stop it again at once. A replica forwards, to each
service it depends on, as many requests as it serves, from its host's location to the closest running replica of
that dependency; services are handled callers first. Requests that find no running replica are lost (``unserved_requests_per_sec``). The assignment only changes
when replicas or hosts change, so it is kept as a matrix ``served = routes @ source_rates`` and rebuilt only then.

**Metrics** (one sample per entity and field at each ``observe``; units as in ``usm.placement.model``):

* container: ``cpu`` cores (``cpu_per_request`` × requests served, scaled down when its host is saturated),
  ``cpu_percent`` of the host's cores, ``ram`` (the service's memory) and ``ram_percent`` of the host's,
  ``rx_bytes_per_sec`` / ``tx_bytes_per_sec`` (requests in and responses out, plus its own calls to its
  dependencies), ``requests_per_sec``, ``latency`` in ms: ``2 · d / 100 + 5`` for the request-weighted mean hop
  distance ``d`` in km, plus ``QUEUE_PENALTY_MS`` per 100 % of cpu demand above the host's capacity;
* host (running): ``cpu``, ``cpu_percent``, ``ram``, ``ram_percent``, ``filesystem_available``,
  ``rx_bytes_per_sec``, ``tx_bytes_per_sec``: the sums of its running containers plus a small base for the
  operating system (``HOST_BASE``).

**Delays.** A new container is ``starting`` for its service's ``start_time`` (counted from its host's end of boot
when the host is booting) and then ``running``. A started or launched host is ``starting`` for its boot time.
A moved container's original stops when the copy runs. A drained host is stopped (or terminated) once every
moved container's copy runs. Stopping a container or a host is immediate.

**Minimum replicas.** A service's minimum is its own, or while one of its event predictions is open the largest
minimum they ask for, counted from the service's ``start_time`` before the window opens so that the replicas run
when it does (``usm.placement.predictions``). The services of an app waiting to be launched (``held``) are asked
for none: their app's launch starts them in dependency order (``usm.manager.launcher``, for which the world is
the ``LaunchActuator``).

**Observation.** ``requests`` holds, per service, the expected request counts over ``request_window`` seconds at
the current rates: one entry per workload source and one per host whose replicas call the service. A container's
cpu ``demand`` is what it would use unthrottled; it is republished only when it moves by more than
``DEMAND_TOLERANCE`` (2 %), so that a steady world rebuilds little. Cost: cloud hosts cost their price per hour
while starting, running or being drained.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from usm.engine.inventory import App, Container, Host, Inventory, Service
from usm.engine.policy import Policy, Settings
from usm.engine.simulated import apply_simulated_metrics
from usm.geo.arrays import haversine_m
from usm.geo.regions import cloud_region
from usm.geo.sphere import Coordinates
from usm.manager.launcher import ReplicaState, Started
from usm.manager.ports import Failure, Observation, Outcome
from usm.placement.model import (
    DEFAULT_OPTIONS,
    NOTHING,
    Cluster,
    ContainerDemand,
    HostCapacity,
    HostKind,
    HostState,
    PlacementOptions,
    Resources,
    ServiceSpec,
)
from usm.placement.plans import (
    DrainHost,
    HostChoice,
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    RestoreContainer,
    StartHost,
    StopContainer,
    StopHost,
    TerminateHost,
    UseHost,
)
from usm.placement.predictions import PredictionWindow, effective_min_replicas
from usm.simulator.roster import Roster
from usm.simulator.scenario import Fault, FaultKind, Scenario
from usm.simulator.workload import noise_factors, rate

HOST_BASE = Resources(cpu=0.05, ram=256 * 2.0**20, disk=2 * 2.0**30)
"""What a host's operating system uses, besides its containers."""

QUEUE_PENALTY_MS = 100.0
"""Latency added per 100 % of cpu demand above a host's capacity (200 % demand on a host: +100 ms)."""

TIE_KM = 1e-6
"""Replicas whose distances from a caller differ by less than this (km) are equally close."""

REQUEST_WINDOW = 60.0
"""Seconds of requests an observation's request locations count."""

DEMAND_TOLERANCE = 0.02
"""Relative change of a container's cpu demand below which placement keeps seeing the previous value."""

SAMPLE_SCHEMA = {"ts": pl.Float64, "entity": pl.String, "field": pl.String, "value": pl.Float64}
CONTAINER_FIELDS = ("cpu", "cpu_percent", "ram", "ram_percent", "rx_bytes_per_sec", "tx_bytes_per_sec",
                    "requests_per_sec", "latency")
HOST_FIELDS = ("cpu", "cpu_percent", "ram", "ram_percent", "filesystem_available", "rx_bytes_per_sec",
               "tx_bytes_per_sec")

_RUNS = (HostState.RUNNING, HostState.STOPPING)  # host states in which containers run
_EPSILON = 1e-9


# --- the mutable state of the world --------------------------------------------------------------


@dataclass
class _Host:
    name: str
    kind: HostKind
    location: Coordinates
    total: Resources
    state: HostState
    region: str
    cloud_region: str
    price_per_hour: float
    boot_time: float
    index: int
    ready_at: float = 0.0
    generation: int = 0  # bumped on every start and stop, so a stale boot event is ignored
    gone: bool = False  # terminated

    @cached_property
    def view(self) -> Host:
        """The host as the engine's inventory shows it (while it runs or starts)."""
        return Host(self.name, self.region, self.location.latitude, self.location.longitude)


@dataclass
class _Container:
    name: str
    service: str
    host: str
    state: str  # "starting" or "running"
    lineage: str = ""
    replaces: str = ""  # the container this one is a moved copy of, stopped once this one runs

    @cached_property
    def view(self) -> Container:
        """The container as the engine's inventory shows it."""
        return Container(self.name, self.service, self.host)


@dataclass
class _Drain:
    host: str
    pending: set[str]  # moved containers still waiting for their copy to run
    then: StopHost | TerminateHost


@dataclass(order=True)
class _Event:
    at: float
    sequence: int
    kind: str = field(compare=False)  # "container", "host" or "fault"
    name: str = field(compare=False, default="")
    generation: int = field(compare=False, default=0)
    fault: Fault | None = field(compare=False, default=None)


@dataclass
class _Routing:
    """Who serves whom, for the current set of running replicas (rebuilt when it changes)."""

    running: list[str]  # running containers, by name
    service: NDArray[np.int64]  # service index of each running container
    host: NDArray[np.int64]  # host index of each running container
    routes: NDArray[np.float64]  # (containers, sources): requests a container serves per request of a source
    hop_km: NDArray[np.float64]  # same shape: those requests times the distance of their last hop, in km
    first_hop_km: NDArray[np.float64]  # per source: distance to the replica serving it (nan: none)
    origins: dict[str, tuple[list[Coordinates], NDArray[np.float64]]]  # service -> caller places, (places, sources)
    running_hosts: NDArray[np.int64]  # indices of hosts whose containers run, by name
    entity: pl.Series
    field: pl.Series
    placed: _Placed  # what they take whatever the rates

    @cached_property
    def served(self) -> NDArray[np.bool_]:
        """Per source: whether a replica serves it."""
        return ~np.isnan(self.first_hop_km)

    @cached_property
    def first_hop_order(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """The first-hop distances (0 where no replica serves) and their stable ascending order."""
        distances = np.nan_to_num(self.first_hop_km)
        return distances, np.argsort(distances, kind="stable")


@dataclass
class _ServiceRouting:
    """One service's part of the routing. It depends only on the service's running replicas (a container's host
    never changes), on its callers' parts and on the distances, so it is kept while
    those stay the same."""

    version: int  # the roster's version of the service's running containers
    place_km: NDArray[np.float64]  # the distance table it was worked out with (replaced when a host is added)
    points: NDArray[np.int64]  # where its requests come from, as place numbers (sources, then hosts)
    origins: tuple[list[Coordinates], NDArray[np.float64]]  # caller places, (places, sources)
    routes: NDArray[np.float64]  # (replicas, sources): requests a replica serves per request of a source
    hop_km: NDArray[np.float64]  # same shape: those requests times the distance of their last hop, in km
    first_hop: NDArray[np.float64]  # per source of the service: distance to the replica serving it (nan: none)


@dataclass
class _HostLayout:
    """The cluster's hosts in order, the objects last published for them and their numbers (the containers' side
    is kept by the roster)."""

    hosts: list[_Host]  # every host not terminated, by name
    host_index: NDArray[np.int64]
    capacities: list[Any]  # HostCapacity, or None before the first publication
    host_published: NDArray[np.float64]  # (hosts, 3): the used cpu, ram, disk each published object holds


@dataclass(frozen=True)
class _HostSummary:
    running: int  # hosts running or being drained
    cloud_running: int
    edge_running: int
    cloud_up: int  # cloud hosts starting, running or being drained: those that cost
    cost_per_hour: float


@dataclass(frozen=True)
class _Placed:
    """What a routing's running containers and hosts take whatever the rates: per running container (in the
    routing's order), per host index, and per running host (``running_hosts`` order)."""

    cpu_per_request: NDArray[np.float64]
    rx_per_request: NDArray[np.float64]
    tx_per_request: NDArray[np.float64]
    cores: NDArray[np.float64]  # of the container's host
    memory: NDArray[np.float64]
    memory_percent: NDArray[np.float64]  # of the host's ram
    runs: NDArray[np.float64]  # per host: 1 where containers run, else 0
    host_ram: NDArray[np.float64]  # per host: its containers' memory and the system's (0 where nothing runs)
    host_disk: NDArray[np.float64]
    running_cores: NDArray[np.float64]
    running_ram: NDArray[np.float64]
    running_ram_percent: NDArray[np.float64]
    running_disk_available: NDArray[np.float64]


@dataclass
class _Load:
    """The world's load at one time."""

    at: float
    rates: NDArray[np.float64]  # per source
    expected_rates: NDArray[np.float64]  # per source, without noise
    served: NDArray[np.float64]  # per running container: requests per second
    demand: NDArray[np.float64]  # per running container: cpu cores it would use
    expected_demand: NDArray[np.float64]  # the same without noise: what placement is told
    cpu: NDArray[np.float64]  # per running container: cpu cores it gets
    latency: NDArray[np.float64]
    overloaded: NDArray[np.bool_]
    host_cpu: NDArray[np.float64]  # per host index (0 for hosts that do not run)
    host_ram: NDArray[np.float64]
    host_disk: NDArray[np.float64]
    host_rx: NDArray[np.float64]
    host_tx: NDArray[np.float64]
    rx: NDArray[np.float64]  # per running container
    tx: NDArray[np.float64]
    expected_cpu: dict[str, float] | None = None  # per service, filled in on first use


class World:
    """A simulated world built from a scenario; see the module's documentation."""

    def __init__(self, scenario: Scenario, seed: int | None = None, request_window: float = REQUEST_WINDOW) -> None:
        """``seed`` replaces the scenario's (workload noise, simulated metric draws)."""
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.request_window = request_window
        self.now = 0.0
        self.cost_usd = 0.0
        self.log: list[tuple[float, str]] = []  # what happened, for reports: (time, words)
        self._events: list[_Event] = []
        self._sequence = 0
        self._failures: list[Failure] = []
        self._drains: dict[str, _Drain] = {}
        self._used_names: set[str] = set()
        self._next_number: dict[str, int] = {}

        self._service_index = {s.name: i for i, s in enumerate(scenario.services)}
        services = scenario.services
        by_name = scenario.service_by_name
        self._cpu_per_request = np.array([s.cpu_per_request for s in services])
        self._footprint = (tuple(s.memory for s in services), tuple(s.disk for s in services))  # per service number
        self._memory = np.array([s.memory for s in services])
        self._disk = np.array([s.disk for s in services])
        self._rx_per_request = np.array(
            [s.bytes_per_request + sum(by_name[d].bytes_per_response for d in s.dependencies) for s in services])
        self._tx_per_request = np.array(
            [s.bytes_per_response + sum(by_name[d].bytes_per_request for d in s.dependencies) for s in services])
        self._callers: dict[str, list[str]] = {s.name: [] for s in services}
        for s in services:
            for d in s.dependencies:
                self._callers[d].append(s.name)

        self._sources = scenario.workloads
        self._source_lat = np.array([w.location.latitude for w in self._sources], dtype=np.float64)
        self._source_lon = np.array([w.location.longitude for w in self._sources], dtype=np.float64)
        self._source_service = np.array([self._service_index[w.service] for w in self._sources], dtype=np.int64)
        self._rate_table = self._tabulate_rates()
        self._sources_of = {s.name: np.flatnonzero(self._source_service == self._service_index[s.name])
                            for s in services}
        self._source_places = {name: [self._sources[j].location for j in sources.tolist()]
                               for name, sources in self._sources_of.items()}
        self._source_vectors = {name: np.eye(len(self._sources))[sources] for name, sources in self._sources_of.items()}

        self._hosts: list[_Host] = []
        self._host_by_name: dict[str, _Host] = {}
        for definition in scenario.hosts:
            self._add_host(definition.name, definition.kind, definition.location, definition.total,
                           definition.state, definition.region, definition.cloud_region,
                           definition.price_per_hour, definition.boot_time)
        self._containers: dict[str, _Container] = {}
        self._roster: Roster[_Container] = Roster(len(services))
        for c in scenario.containers:
            self._used_names.add(c.name)
            container = self._containers[c.name] = _Container(c.name, c.service, c.host, "running")
            self._roster.add(container, self._service_index[c.service])
            self._roster.run(container, self._service_index[c.service], self._host_by_name[c.host].index)
        for fault in scenario.faults:
            self._schedule(fault.at, "fault", fault=fault)

        self._routing_cache: _Routing | None = None
        self._service_routing: dict[str, _ServiceRouting] = {}
        self._sample_keys = _SampleKeys()
        self._inventory_cache: Inventory | None = None
        self._summary_cache: _HostSummary | None = None
        self._load_cache: _Load | None = None
        self._layout_cache: _HostLayout | None = None
        self._cluster_cache: Cluster | None = None  # the cluster last made, until something changes
        self._capacities: dict[str, HostCapacity] = {}
        self.held: set[str] = set()  # services of apps waiting to be launched: no minimum is asked for them
        self._windows: dict[str, list[PredictionWindow]] = {}
        for prediction in scenario.predictions:
            self._windows.setdefault(prediction.service, []).append(prediction.window)
        self._own_minimums = tuple(s.min_replicas for s in services)
        self._inventory_minimums = self._own_minimums

    # --- time --------------------------------------------------------------------------------------

    def advance(self, to: float) -> None:
        """Process every event due at or before ``to`` and move the clock there. ``ValueError`` if ``to`` is
        earlier than the clock."""
        if to < self.now - _EPSILON:
            raise ValueError(f"time cannot go back from {self.now:g}s to {to:g}s")
        while self._events and self._events[0].at <= to:
            event = heapq.heappop(self._events)
            self._accrue(event.at)
            self.now = max(self.now, event.at)
            self._handle(event)
        self._accrue(to)
        self.now = max(self.now, to)

    def _schedule(self, at: float, kind: str, name: str = "", generation: int = 0, fault: Fault | None = None) -> None:
        self._sequence += 1
        heapq.heappush(self._events, _Event(at, self._sequence, kind, name, generation, fault))

    def _accrue(self, until: float) -> None:
        if until > self.now:
            self.cost_usd += self.cost_per_hour() * (until - self.now) / 3600.0

    def cost_per_hour(self) -> float:
        """What the cloud hosts cost now (starting, running or being drained), in US dollars per hour."""
        return self._host_summary().cost_per_hour

    def _host_summary(self) -> _HostSummary:
        """Hosts up by kind and what they cost (kept until a host changes: every change calls ``_changed``)."""
        if self._summary_cache is None:
            up = [h for h in self._hosts if not h.gone and h.state in _RUNS]
            billed = [h for h in self._hosts if not h.gone and h.kind is HostKind.CLOUD and h.state is not HostState.STOPPED]
            self._summary_cache = _HostSummary(
                running=len(up), cloud_running=sum(h.kind is HostKind.CLOUD for h in up),
                edge_running=sum(h.kind is HostKind.EDGE for h in up), cloud_up=len(billed),
                cost_per_hour=sum((h.price_per_hour for h in billed), 0.0))
        return self._summary_cache

    def _handle(self, event: _Event) -> None:
        if event.kind == "container":
            self._container_ready(event.name)
        elif event.kind == "host":
            host = self._host_by_name[event.name]
            if host.generation == event.generation and host.state is HostState.STARTING and not host.gone:
                host.state = HostState.RUNNING
                self._changed(routing=True)
                self._note(f"host {host.name} is running")
        elif event.fault is not None:
            self._apply_fault(event.fault)

    def _container_ready(self, name: str) -> None:
        container = self._containers.get(name)
        if container is None or container.state != "starting":
            return
        host = self._host_by_name[container.host]
        if host.state is HostState.STARTING:  # its host was restarted meanwhile: start after the new boot
            start_time = self.scenario.service_by_name[container.service].start_time
            self._schedule(host.ready_at + start_time, "container", name)
            return
        if host.state not in _RUNS or host.gone:
            return
        container.state = "running"
        self._roster.run(container, self._service_index[container.service], host.index)
        self._changed(routing=True, hosts=False)
        self._note(f"container {name} of {container.service} is running on {host.name}")
        if container.replaces and container.replaces in self._containers:
            self._remove(container.replaces, failed=False, why=f"replaced by {name}")

    # --- faults ------------------------------------------------------------------------------------

    def _apply_fault(self, fault: Fault) -> None:
        if fault.kind is FaultKind.CONTAINER_CRASH:
            name = fault.container
            if fault.service:
                running = sorted(c.name for c in self._containers.values()
                                 if c.service == fault.service and c.state == "running")
                name = running[0] if running else ""
            if name in self._containers:
                self._remove(name, failed=True, why="crashed")
            else:
                self._note(f"fault: no container to crash ({fault.container or fault.service})")
        elif fault.kind is FaultKind.HOST_DOWN:
            host = self._host_by_name[fault.host]
            if host.gone or host.state is HostState.STOPPED:
                return
            self._halt(host, failed=True, why="went down")
            self._note(f"host {host.name} went down")
        else:
            host = self._host_by_name[fault.host]
            if not host.gone and host.state is HostState.STOPPED:
                self._boot(host)
                self._note(f"host {host.name} is coming back up")

    # --- changes of state ----------------------------------------------------------------------------

    def _note(self, words: str) -> None:
        self.log.append((self.now, words))

    def _changed(self, routing: bool, hosts: bool = True) -> None:
        """Forget what the change makes stale: ``routing`` when running containers or hosts changed, the host
        layout unless only containers did (``hosts`` false: it holds no container)."""
        self._inventory_cache = None
        self._summary_cache = None
        self._load_cache = None
        self._cluster_cache = None
        if hosts:
            self._layout_cache = None
        if routing:
            self._routing_cache = None

    def _add_host(self, name: str, kind: HostKind, location: Coordinates, total: Resources, state: HostState,
                  region: str, cloud_code: str, price: float, boot_time: float) -> _Host:
        host = _Host(name, kind, location, total, state, region, cloud_code, price, boot_time, len(self._hosts))
        self._hosts.append(host)
        self._host_by_name[name] = host
        self._used_names.add(name)
        self._host_lat = np.array([h.location.latitude for h in self._hosts])
        self._host_lon = np.array([h.location.longitude for h in self._hosts])
        self._host_cores = np.array([h.total.cpu for h in self._hosts])
        self._host_ram_total = np.array([h.total.ram for h in self._hosts])
        self._host_disk_total = np.array([h.total.disk for h in self._hosts])
        self._host_room = np.maximum(self._host_cores - HOST_BASE.cpu, 0.0)  # cores left to containers
        place_lat = np.concatenate([self._source_lat, self._host_lat])
        place_lon = np.concatenate([self._source_lon, self._host_lon])
        self._place_km = haversine_m(place_lat[:, None], place_lon[:, None], self._host_lat, self._host_lon) / 1000.0
        self._changed(routing=True)
        return host

    def _boot(self, host: _Host) -> None:
        host.state = HostState.STARTING
        host.generation += 1
        host.ready_at = self.now + host.boot_time
        self._schedule(host.ready_at, "host", host.name, host.generation)
        self._changed(routing=True)

    def _halt(self, host: _Host, failed: bool, why: str, gone: bool = False) -> None:
        """Stop a host (or terminate it, ``gone``) with every container on it. Costs were accrued up to now by
        ``advance``, which every change goes through first."""
        self._drains.pop(host.name, None)
        for name in [c.name for c in self._roster.containers if c.host == host.name]:  # in name order
            self._remove(name, failed=failed, why=f"its host {host.name} {why}")
        host.state = HostState.STOPPED
        host.generation += 1
        host.gone = gone
        self._changed(routing=True)

    def _new_name(self, prefix: str) -> str:
        number = self._next_number.get(prefix, 0)
        while True:
            number += 1
            name = f"{prefix}-{number}"
            if name not in self._used_names:
                break
        self._next_number[prefix] = number
        self._used_names.add(name)
        return name

    def _start_container(self, service: str, host: _Host, lineage: str = "", replaces: str = "") -> _Container:
        name = self._new_name(service)
        container = _Container(name, service, host.name, "starting", lineage, replaces)
        self._containers[name] = container
        self._roster.add(container, self._service_index[service])
        begin = host.ready_at if host.state is HostState.STARTING else self.now
        self._schedule(max(begin, self.now) + self.scenario.service_by_name[service].start_time, "container", name)
        self._changed(routing=False, hosts=False)
        self._note(f"container {name} of {service} is starting on {host.name}")
        return container

    def _remove(self, name: str, failed: bool, why: str) -> None:
        container = self._containers.pop(name)
        self._roster.remove(container, self._service_index[container.service])
        self._changed(routing=container.state == "running", hosts=False)
        self._note(f"container {name} {'failed' if failed else 'stopped'}: {why}")
        if failed and not (container.replaces and container.replaces in self._containers):
            # a moved copy that fails before running is no lost replica: its original still runs
            self._failures.append(Failure(name, container.service, container.host, container.lineage))
        for drain in list(self._drains.values()):
            if name in drain.pending:
                drain.pending.discard(name)
                if not drain.pending:
                    self._finish_drain(drain)
            elif container.replaces in drain.pending and container.state == "starting":
                self._cancel_drain(drain, f"the copy {name} of {container.replaces} {why}")

    def _finish_drain(self, drain: _Drain) -> None:
        del self._drains[drain.host]
        host = self._host_by_name[drain.host]
        gone = isinstance(drain.then, TerminateHost)
        self._halt(host, failed=False, why="was drained", gone=gone)
        self._note(f"host {host.name} drained and {'terminated' if gone else 'stopped'}")

    def _cancel_drain(self, drain: _Drain, why: str) -> None:
        del self._drains[drain.host]
        host = self._host_by_name[drain.host]
        if host.state is HostState.STOPPING:
            host.state = HostState.RUNNING
            self._changed(routing=False)
        self._note(f"drain of {drain.host} cancelled: {why}")

    # --- the actuator ------------------------------------------------------------------------------

    def execute(self, step: Any, at: float) -> Outcome:
        """Carry out one plan step at time ``at`` (``usm.placement.plans``). Refuses, with ``ok=False`` and the
        reason, what cannot be done in this world (an unknown or stopped host, a container that is not there);
        never raises for a step. Capacity is placement's business and is not checked here."""
        try:
            self.advance(at)
        except ValueError as error:
            return Outcome(step, False, str(error))
        handlers: dict[type, Callable[[Any], Outcome]] = {
            PlaceReplica: self._place_replica,
            MoveContainer: self._move_container,
            RestoreContainer: self._restore_container,
            StopContainer: self._stop_container,
            DrainHost: self._drain_host,
            StopHost: self._stop_host,
            TerminateHost: self._terminate_host,
        }
        handler = handlers.get(type(step))
        if handler is None:
            return Outcome(step, False, f"the simulator cannot carry out a {type(step).__name__}")
        return handler(step)

    def _refusal(self, on: HostChoice, launches: int = 0) -> str:
        """Why a container cannot go ``on`` this choice ("" if it can). ``launches``: hosts the same step launches
        before this one."""
        if isinstance(on, LaunchCloudHost):
            allowed = {r.code for r in self.scenario.cloud_regions}
            if on.region not in allowed:
                return f"cloud region {on.region} is not one where hosts may be launched"
            if self.scenario.launch_type is None:
                return "no instance type to launch (the scenario has no instance_types)"
            limit = self.scenario.max_cloud_hosts
            if limit is not None and self._cloud_hosts_up() + launches + 1 > limit:
                return f"the limit of {limit} cloud hosts is reached"
            return ""
        host = self._host_by_name.get(on.host)
        if host is None or host.gone:
            return f"unknown host {on.host}"
        if host.state is HostState.STOPPING:
            return f"host {on.host} is being drained"
        if isinstance(on, UseHost) and host.state is HostState.STOPPED:
            return f"host {on.host} is stopped (a StartHost choice starts it)"
        return ""

    def _cloud_hosts_up(self) -> int:
        return self._host_summary().cloud_up

    def _receiving_host(self, on: HostChoice) -> _Host:
        """The host a container goes on, started or launched as the choice says (checked by ``_refusal``)."""
        if isinstance(on, LaunchCloudHost):
            itype = self.scenario.launch_type
            assert itype is not None
            region = cloud_region(on.region)
            host = self._add_host(self._new_name(on.region), HostKind.CLOUD, region.location, itype.total,
                                  HostState.STOPPED, region.area, region.code, itype.price_per_hour, itype.boot_time)
            self._boot(host)
            self._note(f"cloud host {host.name} ({itype.name}) launched in {region.code}")
            return host
        host = self._host_by_name[on.host]
        if host.state is HostState.STOPPED:
            self._boot(host)
            self._note(f"host {host.name} is starting")
        return host

    def _known_service(self, service: str) -> str:
        return "" if service in self._service_index else f"unknown service {service}"

    def _place_replica(self, step: PlaceReplica) -> Outcome:
        refusal = self._known_service(step.service) or self._refusal(step.on)
        if refusal:
            return Outcome(step, False, refusal)
        host = self._receiving_host(step.on)
        container = self._start_container(step.service, host)
        return Outcome(step, True, f"{container.name} starting on {host.name}")

    def _move_refusal(self, step: MoveContainer, launches: int = 0) -> str:
        container = self._containers.get(step.container)
        if container is None:
            return f"no container {step.container}"
        if container.host != step.source:
            return f"container {step.container} is on {container.host}, not {step.source}"
        if container.service != step.service:
            return f"container {step.container} is of {container.service}, not {step.service}"
        if isinstance(step.on, (UseHost, StartHost)) and step.on.host == step.source:
            return f"container {step.container} cannot move to the host it is on"
        return self._refusal(step.on, launches)

    def _move(self, step: MoveContainer) -> str:
        old = self._containers[step.container]
        host = self._receiving_host(step.on)
        copy = self._start_container(step.service, host, lineage=old.lineage or old.name, replaces=old.name)
        return f"{copy.name} starting on {host.name}; {old.name} stops once it runs"

    def _move_container(self, step: MoveContainer) -> Outcome:
        refusal = self._move_refusal(step)
        if refusal:
            return Outcome(step, False, refusal)
        return Outcome(step, True, self._move(step))

    def _restore_container(self, step: RestoreContainer) -> Outcome:
        refusal = self._known_service(step.service) or self._refusal(step.on)
        if not refusal and step.container in self._containers:
            refusal = f"container {step.container} is still there"
        if refusal:
            return Outcome(step, False, refusal)
        host = self._receiving_host(step.on)
        container = self._start_container(step.service, host, lineage=step.lineage)
        return Outcome(step, True, f"{container.name} starting on {host.name} in place of {step.container}")

    def _stop_container(self, step: StopContainer) -> Outcome:
        container = self._containers.get(step.container)
        if container is None:
            return Outcome(step, False, f"no container {step.container}")
        if container.host != step.host:
            return Outcome(step, False, f"container {step.container} is on {container.host}, not {step.host}")
        self._remove(step.container, failed=False, why="asked to stop")
        return Outcome(step, True, f"{step.container} stopped")

    def _drain_host(self, step: DrainHost) -> Outcome:
        host = self._host_by_name.get(step.host)
        if host is None or host.gone:
            return Outcome(step, False, f"unknown host {step.host}")
        if host.state is not HostState.RUNNING:
            return Outcome(step, False, f"host {step.host} is {host.state.value}, not running")
        if step.then.host != step.host:
            return Outcome(step, False, f"the final step names {step.then.host}, not {step.host}")
        if isinstance(step.then, TerminateHost) and host.kind is not HostKind.CLOUD:
            return Outcome(step, False, f"host {step.host} is an edge host: it cannot be terminated")
        launches = 0
        for move in step.moves:
            refusal = self._move_refusal(move, launches)
            if not refusal and move.source != step.host:
                refusal = f"move of {move.container} is from {move.source}, not {step.host}"
            if refusal:
                return Outcome(step, False, f"move of {move.container}: {refusal}")
            launches += isinstance(move.on, LaunchCloudHost)
        host.state = HostState.STOPPING
        self._changed(routing=False)
        drain = _Drain(step.host, {m.container for m in step.moves}, step.then)
        self._drains[step.host] = drain
        details = [self._move(move) for move in step.moves]
        self._note(f"host {step.host} is being drained")
        if not drain.pending:
            self._finish_drain(drain)
        return Outcome(step, True, "; ".join(details) or f"{step.host} had nothing to move")

    def _stop_host(self, step: StopHost) -> Outcome:
        host = self._host_by_name.get(step.host)
        if host is None or host.gone:
            return Outcome(step, False, f"unknown host {step.host}")
        if host.state is HostState.STOPPED:
            return Outcome(step, True, f"{step.host} was already stopped")
        self._halt(host, failed=False, why="was stopped")
        self._note(f"host {step.host} stopped")
        return Outcome(step, True, f"{step.host} stopped")

    def _terminate_host(self, step: TerminateHost) -> Outcome:
        host = self._host_by_name.get(step.host)
        if host is None or host.gone:
            return Outcome(step, False, f"unknown host {step.host}")
        if host.kind is not HostKind.CLOUD:
            return Outcome(step, False, f"host {step.host} is an edge host: it cannot be terminated")
        self._halt(host, failed=False, why="was terminated", gone=True)
        self._note(f"host {step.host} terminated")
        return Outcome(step, True, f"{step.host} terminated")

    # --- rates and routing -----------------------------------------------------------------------------

    def _tabulate_rates(self) -> NDArray[np.float64]:
        """Every source's rate (noise included) at every tick: ``(sources, ticks)``."""
        scenario = self.scenario
        ticks = scenario.ticks
        times = np.arange(ticks, dtype=np.float64) * scenario.tick
        table = np.zeros((len(self._sources), ticks), dtype=np.float64)
        for i, source in enumerate(self._sources):
            local = times - source.offset
            table[i] = np.where(local >= 0, rate(source.profile, np.maximum(local, 0.0)), 0.0)
        self._noise = noise_factors(self.seed, [s.noise for s in self._sources], ticks)
        self._expected_table = table
        return table * self._noise

    def source_rates(self, at: float, noise: bool = True) -> NDArray[np.float64]:
        """Requests per second of every workload source at ``at`` (scenario order), with the scenario's noise
        or without (the expected rates)."""
        position = at / self.scenario.tick
        index = round(position)
        table = self._rate_table if noise else self._expected_table
        if abs(position - index) < 1e-9 and 0 <= index < table.shape[1]:
            return table[:, index]
        values = np.array([0.0 if at < s.offset else float(rate(s.profile, at - s.offset)) for s in self._sources])
        if not noise or not values.size:
            return values
        return values * self._noise[:, min(max(int(position), 0), self._noise.shape[1] - 1)]

    def _routing(self) -> _Routing:
        """Who serves whom (cached until replicas or hosts change). Places are numbered: sources first, then
        hosts, so that every distance is a look-up in ``_place_km``. A service's part is worked out again only
        when its running replicas or a caller's part changed (``_ServiceRouting``)."""
        if self._routing_cache is not None:
            return self._routing_cache
        roster = self._roster
        service, host = roster.running_service, roster.running_host
        order = np.argsort(service, kind="stable")  # by service, then in running order
        replicas_of = np.split(order, np.cumsum(np.bincount(service, minlength=len(self.scenario.services)))[:-1])
        changed: set[str] = set()
        for name in self.scenario.service_order:
            index = self._service_index[name]
            part = self._service_routing.get(name)
            fresh = part is not None and part.version == roster.versions[index] and part.place_km is self._place_km
            if fresh and changed.isdisjoint(self._callers[name]):
                continue
            points, places, matrix = self._origins(name, host, replicas_of)
            if fresh and part is not None and np.array_equal(points, part.points) \
                    and np.array_equal(matrix, part.origins[1]):
                continue  # its callers changed, but not where they call it from nor how much
            self._service_routing[name] = self._route_service(name, host[replicas_of[index]], points, places, matrix)
            changed.add(name)
        parts = [self._service_routing[s.name] for s in self.scenario.services]
        n, n_sources = service.size, len(self._sources)
        routes, hop_km = np.empty((n, n_sources)), np.empty((n, n_sources))
        routes[order] = np.concatenate([p.routes for p in parts])
        hop_km[order] = np.concatenate([p.hop_km for p in parts])
        first_hop = np.full(n_sources, np.nan)
        for s, part in zip(self.scenario.services, parts, strict=True):
            first_hop[self._sources_of[s.name]] = part.first_hop
        running_hosts = np.array(sorted((h.index for h in self._hosts if not h.gone and h.state in _RUNS),
                                        key=lambda i: self._hosts[i].name), dtype=np.int64)
        running = roster.running_names()
        entity, fields = self._sample_keys.columns(running, [self._hosts[i].name for i in running_hosts.tolist()])
        self._routing_cache = _Routing(running, service, host, routes, hop_km, first_hop,
                                       {s.name: p.origins for s, p in zip(self.scenario.services, parts, strict=True)},
                                       running_hosts, entity, fields, self._placed(service, host, running_hosts))
        return self._routing_cache

    def _origins(self, name: str, host: NDArray[np.int64], replicas_of: list[NDArray[np.int64]]) \
            -> tuple[NDArray[np.int64], list[Coordinates], NDArray[np.float64]]:
        """Where the requests for ``name`` come from: its sources, then the hosts of its callers' replicas (with
        what they serve there, from the callers' parts), as place numbers, places and a ``(places, sources)``
        matrix of requests per request of a source."""
        n_sources = len(self._sources)
        sources = self._sources_of[name]
        if not self._callers[name]:
            return sources, self._source_places[name], self._source_vectors[name]
        on, rows = self._callers_in_running_order(name, host, replicas_of)
        present = np.zeros(len(self._hosts), dtype=np.bool_)
        present[on] = True
        hosts, which = np.flatnonzero(present), (np.cumsum(present) - 1)[on]
        grouping = np.zeros((hosts.size, on.size))
        grouping[which, np.arange(on.size)] = 1.0
        by_host = grouping @ rows
        calling = by_host.any(axis=1)
        hosts, by_host = hosts[calling], by_host[calling]
        places = self._source_places[name] + [self._hosts[h].location for h in hosts.tolist()]
        return np.concatenate([sources, n_sources + hosts]), places, np.concatenate([self._source_vectors[name], by_host])

    def _callers_in_running_order(self, name: str, host: NDArray[np.int64], replicas_of: list[NDArray[np.int64]]) \
            -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The hosts of the running replicas of ``name``'s callers and their rows of the routing, in running order
        (a single caller's part is in that order already)."""
        callers = self._callers[name]
        if len(callers) == 1:
            return host[replicas_of[self._service_index[callers[0]]]], self._service_routing[callers[0]].routes
        positions = np.concatenate([replicas_of[self._service_index[c]] for c in callers])
        order = np.argsort(positions)
        return host[positions[order]], np.concatenate([self._service_routing[c].routes for c in callers])[order]

    def _route_service(self, name: str, on: NDArray[np.int64], points: NDArray[np.int64], places: list[Coordinates],
                       matrix: NDArray[np.float64]) -> _ServiceRouting:
        """Which of the service's replicas (on these hosts, in running order) serves the requests of each of its
        origins: the closest, ties sharing evenly."""
        n_sources, sources = len(self._sources), self._sources_of[name]
        version = self._roster.versions[self._service_index[name]]
        if not on.size or not places:
            return _ServiceRouting(version, self._place_km, points, (places, matrix), np.zeros((on.size, n_sources)),
                                   np.zeros((on.size, n_sources)), np.full(sources.size, np.nan))
        km = self._place_km[points][:, on]
        hop = km.min(axis=1)
        closest = km <= hop[:, None] + TIE_KM
        assignment = closest / closest.sum(axis=1, keepdims=True)  # ties share evenly
        return _ServiceRouting(version, self._place_km, points, (places, matrix), assignment.T @ matrix,
                               assignment.T @ (matrix * hop[:, None]), hop[: sources.size])

    def _placed(self, s: NDArray[np.int64], h: NDArray[np.int64], hosts: NDArray[np.int64]) -> _Placed:
        """What running containers (of services ``s`` on hosts ``h``) and the running ``hosts`` take whatever the
        rates."""
        n_hosts = len(self._hosts)
        runs = np.zeros(n_hosts)
        runs[hosts] = 1.0
        memory = self._memory[s]
        host_ram = (np.bincount(h, weights=memory, minlength=n_hosts) + HOST_BASE.ram) * runs
        host_disk = (np.bincount(h, weights=self._disk[s], minlength=n_hosts) + HOST_BASE.disk) * runs
        return _Placed(
            cpu_per_request=self._cpu_per_request[s], rx_per_request=self._rx_per_request[s],
            tx_per_request=self._tx_per_request[s], cores=self._host_cores[h], memory=memory,
            memory_percent=100.0 * memory / self._host_ram_total[h], runs=runs, host_ram=host_ram, host_disk=host_disk,
            running_cores=self._host_cores[hosts], running_ram=host_ram[hosts],
            running_ram_percent=100.0 * host_ram[hosts] / self._host_ram_total[hosts],
            running_disk_available=np.maximum(self._host_disk_total[hosts] - host_disk[hosts], 0.0),
        )

    def _load(self) -> _Load:
        """The load at the current time (cached until time or state changes)."""
        if self._load_cache is not None and self._load_cache.at == self.now:
            return self._load_cache
        routing = self._routing()
        placed = routing.placed
        rates, expected_rates = self.source_rates(self.now), self.source_rates(self.now, noise=False)
        served = routing.routes @ rates
        h = routing.host
        n_hosts = len(self._hosts)
        demand = served * placed.cpu_per_request
        expected_demand = (routing.routes @ expected_rates) * placed.cpu_per_request
        host_demand = np.bincount(h, weights=demand, minlength=n_hosts)
        room = self._host_room
        scale = np.where(host_demand > room, room / np.maximum(host_demand, _EPSILON), 1.0)
        cpu = demand * scale[h]
        overloaded = demand > cpu * (1.0 + 1e-9) + _EPSILON
        pressure = (host_demand + HOST_BASE.cpu) / self._host_cores
        penalty = QUEUE_PENALTY_MS * np.maximum(pressure - 1.0, 0.0)
        hop = routing.hop_km @ rates
        mean_km = np.divide(hop, served, out=np.zeros_like(hop), where=served > 0)
        latency = 2.0 * mean_km / 100.0 + 5.0 + penalty[h]
        rx = served * placed.rx_per_request
        tx = served * placed.tx_per_request
        self._load_cache = _Load(
            at=self.now, rates=rates, expected_rates=expected_rates, served=served, demand=demand,
            expected_demand=expected_demand, cpu=cpu, latency=latency, overloaded=overloaded,
            host_cpu=(np.bincount(h, weights=cpu, minlength=n_hosts) + HOST_BASE.cpu) * placed.runs,
            host_ram=placed.host_ram, host_disk=placed.host_disk,
            host_rx=np.bincount(h, weights=rx, minlength=n_hosts),
            host_tx=np.bincount(h, weights=tx, minlength=n_hosts),
            rx=rx, tx=tx,
        )
        return self._load_cache

    # --- the collector ---------------------------------------------------------------------------------

    def observe(self, at: float) -> Observation:
        """The world at ``at`` (the clock is advanced there first): inventory, cluster, this cycle's samples,
        request locations over the request window, service specs, and the failures since the last call."""
        self.advance(at)
        load = self._load()
        inventory = self.inventory()
        samples = self.samples()
        active = tuple(t.metric for t in self.scenario.simulated_metrics if t.active_at(at))
        if active:
            policy = Policy(Settings(period=self.scenario.tick, seed=self.seed), simulated_metrics=active)
            samples = apply_simulated_metrics(policy, inventory, at, samples)
        failures, self._failures = tuple(self._failures), []
        routing = self._routing()
        return Observation(inventory=inventory, placement=self.cluster, samples=samples,
                           requests=_Lazy(self.scenario.service_order, lambda name: self._requests(routing, load, name)), services=self._service_specs(load),
                           failures=failures, options=self.placement_options())

    def samples(self) -> pl.DataFrame:
        """One sample per running container and host and field, at the current time."""
        routing, load = self._routing(), self._load()
        placed, hosts = routing.placed, routing.running_hosts
        host_cpu = load.host_cpu[hosts]
        values = np.concatenate([
            load.cpu, 100.0 * load.cpu / placed.cores,
            placed.memory, placed.memory_percent,
            load.rx, load.tx, load.served, load.latency,
            host_cpu, 100.0 * host_cpu / placed.running_cores,
            placed.running_ram, placed.running_ram_percent, placed.running_disk_available,
            load.host_rx[hosts], load.host_tx[hosts],
        ])
        return pl.DataFrame([  # columns of SAMPLE_SCHEMA, made as such (several times faster than casting to it)
            pl.Series("ts", np.full(values.size, self.now, dtype=np.float64)),
            routing.entity,
            routing.field,
            pl.Series("value", values.astype(np.float64, copy=False)),
        ])

    def inventory(self) -> Inventory:
        """The engine's view: hosts that run or start, apps, services, and containers running or starting."""
        minimums = self.min_replicas()
        if self._inventory_cache is None or minimums != self._inventory_minimums:
            self._inventory_minimums = minimums
            hosts = tuple(h.view for h in sorted(self._hosts, key=_name)
                          if not h.gone and h.state is not HostState.STOPPED)
            apps = tuple(App(a.name, a.services) for a in self.scenario.apps)
            services = tuple(Service(s.name, low, s.max_replicas)
                             for s, low in zip(self.scenario.services, minimums, strict=True))
            containers = tuple(map(_view, self._roster.containers))
            self._inventory_cache = Inventory(hosts, apps, services, containers)
        return self._inventory_cache

    def cluster(self) -> Cluster:
        """Placement's view: every host that exists (running, starting, being drained or stopped) with its
        measured use, and every container with its demand (starting ones marked). Objects whose numbers moved
        by less than ``DEMAND_TOLERANCE`` are reused, and so is the whole cluster when nothing moved."""
        load, layout, roster = self._load(), self._host_layout(), self._roster
        expected = self._expected_cpu(load)
        per_service = np.array([expected[s.name] for s in self.scenario.services])
        position = roster.running_positions()
        demand = np.append(load.expected_demand, 0.0)[position]  # position -1 (starting) reads the 0 appended
        want = np.where(position >= 0, demand, per_service[roster.service]) if position.size else np.zeros(0)
        moved = np.flatnonzero(~_close(roster.told_cpu, want))
        _tell(roster, moved, want[moved], *self._footprint)
        roster.told_cpu[moved] = want[moved]
        rebuilt = moved.size > 0
        index = layout.host_index
        used = np.stack([load.host_cpu[index], load.host_ram[index], load.host_disk[index]], axis=-1) \
            if index.size else np.zeros((0, 3))
        for i in np.flatnonzero(~_close(layout.host_published, used).all(axis=1)).tolist():
            h = layout.hosts[i]
            amount = Resources(*map(float, used[i])) if h.state in _RUNS else NOTHING
            layout.capacities[i] = self._capacities[h.name] = HostCapacity(
                h.name, h.location, h.total, amount, h.kind, h.state, h.region, h.cloud_region)
            layout.host_published[i] = used[i]
            rebuilt = True
        if rebuilt or self._cluster_cache is None:
            self._cluster_cache = Cluster(tuple(layout.capacities), tuple(roster.told), self.scenario.cloud_regions)
        return self._cluster_cache

    def _host_layout(self) -> _HostLayout:
        """Hosts in the cluster's order, with the objects last published for them (rebuilt when hosts change; a
        published object whose state differs is marked for rebuilding). The containers' side is kept by the
        roster."""
        if self._layout_cache is not None:
            return self._layout_cache
        hosts = sorted((h for h in self._hosts if not h.gone), key=lambda h: h.name)
        capacities, host_published = [], []
        for h in hosts:
            capacity = self._capacities.get(h.name)
            fresh = capacity is not None and capacity.state is h.state
            capacities.append(capacity)
            host_published.append([capacity.used.cpu, capacity.used.ram, capacity.used.disk]
                                  if fresh and capacity is not None else [math.nan] * 3)
        self._layout_cache = _HostLayout(
            hosts=hosts,
            host_index=np.array([h.index for h in hosts], dtype=np.int64),
            capacities=capacities,
            host_published=np.array(host_published, dtype=np.float64).reshape(len(hosts), 3),
        )
        return self._layout_cache

    def _expected_cpu(self, load: _Load) -> dict[str, float]:
        """Per service, the cpu a new replica is expected to use: the mean demand of its running replicas, or,
        with none running, what all its callers ask for."""
        if load.expected_cpu is not None:
            return load.expected_cpu
        routing = self._routing()
        n = len(self.scenario.services)
        total = np.bincount(routing.service, weights=load.expected_demand, minlength=n)
        count = np.bincount(routing.service, minlength=n)
        result = {}
        for name, i in self._service_index.items():
            if count[i]:
                result[name] = float(total[i] / count[i])
            else:
                asked = float((routing.origins[name][1] @ load.expected_rates).sum()) if name in routing.origins \
                    else 0.0
                result[name] = asked * float(self._cpu_per_request[i])
        load.expected_cpu = result
        return result

    def _service_specs(self, load: _Load) -> tuple[ServiceSpec, ...]:
        expected = self._expected_cpu(load)
        return tuple(ServiceSpec(s.name, Resources(expected[s.name], s.memory, s.disk), 0 if s.name in self.held else low)
                     for s, low in zip(self.scenario.services, self.min_replicas(), strict=True))

    def min_replicas(self) -> tuple[int, ...]:
        """Each service's minimum replicas now, in scenario order (see the module's documentation)."""
        if not self._windows:
            return self._own_minimums
        return tuple(effective_min_replicas(s.min_replicas, self._windows.get(s.name, ()), self.now, s.start_time)
                     for s in self.scenario.services)

    def _requests(self, routing: _Routing, load: _Load, name: str) -> tuple[tuple[Coordinates, float], ...]:
        """Where the service's requests came from over the request window, at ``load``'s rates."""
        places, matrix = routing.origins[name]
        counts = (matrix @ load.rates) * self.request_window if len(places) else np.zeros(0)
        return tuple((p, float(c)) for p, c in zip(places, counts.tolist(), strict=True) if c > 0)

    # --- app launches: the usm.manager.launcher.LaunchActuator --------------------------------------------

    def start_replica(self, step: PlaceReplica, at: float) -> Started:
        """Start one replica as ``step`` says (as ``execute`` does) and name it."""
        try:
            self.advance(at)
        except ValueError as error:
            return Started(False, detail=str(error))
        refusal = self._known_service(step.service) or self._refusal(step.on)
        if refusal:
            return Started(False, detail=refusal)
        host = self._receiving_host(step.on)
        container = self._start_container(step.service, host)
        return Started(True, container.name, host.name, f"{container.name} starting on {host.name}")

    def replica_state(self, container: str, at: float) -> ReplicaState:
        """A running container is ready (a request reaches it as soon as it runs); one not there is gone."""
        self.advance(at)
        found = self._containers.get(container)
        if found is None:
            return ReplicaState.GONE
        return ReplicaState.READY if found.state == "running" else ReplicaState.STARTING

    def stop_replica(self, container: str, at: float) -> Outcome:
        found = self._containers.get(container)
        return self.execute(StopContainer(container, found.host if found else ""), at)

    # --- for reports and tests ------------------------------------------------------------------------------

    def kpis(self, at: float) -> dict[str, float | int]:
        """Key numbers at ``at`` (the clock is advanced there): hosts and containers by state, cost, the
        request rate, the request-weighted client-to-replica distance (mean and 95th percentile, first hop
        only) and the containers that want more cpu than they get."""
        self.advance(at)
        load, routing, hosts = self._load(), self._routing(), self._host_summary()
        distances, order = routing.first_hop_order
        weights = np.where(routing.served, load.rates, 0.0)
        total = float(weights.sum())
        return {
            "at": self.now,
            "hosts_running": hosts.running,
            "cloud_hosts_running": hosts.cloud_running,
            "edge_hosts_running": hosts.edge_running,
            "containers_running": len(routing.running),
            "containers_starting": len(self._roster.containers) - len(self._roster.running),
            "cost_per_hour_usd": hosts.cost_per_hour,
            "cost_usd": self.cost_usd,
            "requests_per_sec": float(load.rates.sum()),
            "unserved_requests_per_sec": float(load.rates.sum()) - total,
            "mean_distance_km": float(weights @ distances / total) if total > 0 else math.nan,
            "p95_distance_km": weighted_quantile(distances, weights, 0.95, order),
            "overloaded_containers": int(load.overloaded.sum()),
        }

    def placement_options(self, base: PlacementOptions = DEFAULT_OPTIONS) -> PlacementOptions:
        """``base`` adjusted to this world now: a launched host has the launch instance type's capacity, and no
        host can be launched without an instance type or once ``max_cloud_hosts`` run or start."""
        launch = self.scenario.launch_type
        limit = self.scenario.max_cloud_hosts
        can_launch = base.can_launch_hosts and launch is not None and (limit is None or self._cloud_hosts_up() < limit)
        return replace(base, can_launch_hosts=can_launch,
                       new_host_capacity=launch.total if launch is not None else base.new_host_capacity)

    def replicas(self) -> dict[str, int]:
        """Service -> its containers, running or starting (every service, 0 included)."""
        return dict(zip((s.name for s in self.scenario.services), self._roster.replicas, strict=True))

    def snapshot(self) -> dict[str, Any]:
        """The world now, as plain data for a report's map: ``hosts`` (not terminated), ``containers`` (running
        or starting) and workload ``sources`` with their current rate."""
        rates = self.source_rates(self.now)
        return {
            "at": self.now,
            "hosts": [
                {"name": h.name, "kind": h.kind.value, "state": h.state.value, "latitude": h.location.latitude,
                 "longitude": h.location.longitude, "region": h.region, "cloud_region": h.cloud_region}
                for h in sorted(self._hosts, key=lambda h: h.name) if not h.gone
            ],
            "containers": [
                {"name": c.name, "service": c.service, "host": c.host, "state": c.state}
                for c in sorted(self._containers.values(), key=lambda c: c.name)
            ],
            "sources": [
                {"name": w.name, "service": w.service, "latitude": w.location.latitude,
                 "longitude": w.location.longitude, "rate": float(r)}
                for w, r in zip(self._sources, rates.tolist(), strict=True)
            ],
        }


_name = attrgetter("name")
_view = attrgetter("view")
_service = attrgetter("service")
_host = attrgetter("host")
_lineage = attrgetter("lineage")


def _tell(roster: Roster[_Container], moved: NDArray[np.int64], cpu: NDArray[np.float64],
          memory: tuple[float, ...], disk: tuple[float, ...]) -> None:
    """What placement is told of the containers at the roster's positions ``moved``, made anew with their cpu
    demands ``cpu`` and their services' ``memory`` and ``disk`` (per service number). Hundreds move in a
    planning cycle: the objects are made in C loops (``map``), with a Python call each only for their __init__."""
    at = moved.tolist()
    picked = [roster.containers[i] for i in at]
    services = roster.service[moved].tolist()
    amounts = map(Resources, cpu.tolist(), map(memory.__getitem__, services), map(disk.__getitem__, services))
    made = map(ContainerDemand, map(_name, picked), map(_service, picked), map(_host, picked), amounts,
               (~roster.is_running[moved]).tolist(), repeat(False), map(_lineage, picked))
    for i, told in zip(at, made, strict=True):
        roster.told[i] = told


class _SampleKeys:
    """The entity and field columns of ``World.samples``: every container field over the containers in order,
    then every host field over the hosts. Made by concatenating slices of long runs of each name, which is several
    times cheaper than gathering them."""

    def __init__(self) -> None:
        self._runs: dict[str, pl.Series] = {}

    def columns(self, containers: list[str], hosts: list[str]) -> tuple[pl.Series, pl.Series]:
        n, m = len(containers), len(hosts)
        entity = pl.concat([pl.Series("entity", containers, pl.String)] * len(CONTAINER_FIELDS)
                           + [pl.Series("entity", hosts, pl.String)] * len(HOST_FIELDS), rechunk=True)
        fields = pl.concat([self._run(f, n) for f in CONTAINER_FIELDS] + [self._run(f, m) for f in HOST_FIELDS],
                           rechunk=True)
        return entity, fields

    def _run(self, field_name: str, length: int) -> pl.Series:
        """``field_name`` repeated ``length`` times (a slice of a run kept and lengthened as needed)."""
        run = self._runs.get(field_name)
        if run is None or run.len() < length:
            run = self._runs[field_name] = pl.Series("field", [field_name] * max(2 * length, 1024), pl.String)
        return run.slice(0, length)


class _Lazy(Mapping[str, Any]):
    """A mapping whose values are made on first use: the request locations of an observation, which only cycles
    that plan read, and those only for the services they place."""

    def __init__(self, keys: tuple[str, ...], make: Callable[[str], Any]) -> None:
        self._keys = keys
        self._known = frozenset(keys)
        self._make = make
        self._made: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._made:
            if key not in self._known:
                raise KeyError(key)
            self._made[key] = self._make(key)
        return self._made[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return repr(dict(self))


def weighted_quantile(values: NDArray[np.float64], weights: NDArray[np.float64], q: float,
                      order: NDArray[np.int64] | None = None) -> float:
    """The smallest value at or below which at least ``q`` of the total weight lies; nan for no weight. ``order``:
    the values' stable ascending order (``np.argsort(values, kind="stable")``), when known already."""
    total = float(weights.sum())
    if total <= 0:
        return math.nan
    order = np.argsort(values, kind="stable") if order is None else order
    cumulative = np.cumsum(weights[order])
    position = int(np.searchsorted(cumulative, q * total - 1e-12 * total, side="left"))
    return float(values[order][min(position, order.size - 1)])


def _close(published: NDArray[np.float64], wanted: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Where a published number is still good enough (within ``DEMAND_TOLERANCE``; never where it is nan)."""
    return np.abs(wanted - published) <= DEMAND_TOLERANCE * np.abs(published) + 1e-6


__all__ = [
    "CONTAINER_FIELDS",
    "DEMAND_TOLERANCE",
    "HOST_BASE",
    "HOST_FIELDS",
    "QUEUE_PENALTY_MS",
    "REQUEST_WINDOW",
    "TIE_KM",
    "World",
    "weighted_quantile",
]

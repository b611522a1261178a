"""The live collector: the world as Prometheus, the Docker hosts and the location monitors show it.

It implements the control loop's ``Collector`` port over the site file and the real collectors, so
``usm run`` drives the very loop the simulator drives. Every source is read with a timeout, and
what could not be read is reported in ``Observation.problems``, never turned into zeros:

* host metrics (Prometheus) and container stats (Docker) come as samples; a host or container
  that did not answer simply has no samples this cycle (its terms are missing);
* the managed containers of each host are listed by label, hosts side by side. A host whose
  listing fails keeps the containers it had at its last answer, so a network blip does not look
  like lost replicas, which placement would replace (duplicates once the host answers again);
* a managed container found exited or dead, that usm did not stop, is reported once as a failure,
  for placement to restore;
* with the background syncs of EC2 and the swarm (``usm.manager.syncs``), each host's state is the one they
  last saw (``usm.manager.hoststates``): a stopped cloud host is STOPPED and its containers are not listed, a
  terminated one leaves the inventory, a drained or paused swarm node's host receives nothing. A sync's failures
  are problems of the next cycle; instances and nodes the site does not list are logged once, never invented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import polars as pl

from usm.collectors.batch import Batch, Problem
from usm.collectors.history import SAMPLE_SCHEMA
from usm.engine.inventory import Container, Inventory
from usm.geo.regions import CloudRegion
from usm.manager.hoststates import host_states, unknown_instances, unknown_nodes
from usm.manager.ports import Failure, Observation, RequestLocations
from usm.manager.site import Site
from usm.manager.syncs import CloudView, SyncProblem
from usm.placement.model import (
    Cluster,
    ContainerDemand,
    HostCapacity,
    HostState,
    Resources,
    ServiceSpec,
)

FAILED_STATES = frozenset({"exited", "dead"})
LISTED_STATES = frozenset({HostState.RUNNING, HostState.STARTING, HostState.STOPPING})
"""Hosts whose containers are listed: a stopped host runs none, and a gone one is not asked."""

log = logging.getLogger("usm.run")
T_co = TypeVar("T_co", covariant=True)


class SampleSource(Protocol):
    def collect(self, at: float) -> Batch: ...


class ContainerLister(Protocol):
    def list(self, host: str, service: str | None = None) -> Sequence[Any]:
        """The managed containers of ``host``: objects with name, service, host, status and lineage."""


class LocationSource(Protocol):
    def locations(self, interval: float) -> RequestLocations: ...


class SyncedSource(Protocol, Generic[T_co]):
    """A background sync's snapshot (``usm.manager.syncs.PeriodicSync``)."""

    def latest(self) -> T_co | None: ...

    def take_problems(self) -> list[SyncProblem]: ...

    def wait_first(self, timeout: float) -> bool: ...


@dataclass
class _Listing:
    containers: tuple[Any, ...] = ()
    running: Future[Sequence[Any]] | None = None


@dataclass
class LiveCollector:
    site: Site
    hosts: SampleSource | None  # Prometheus (node exporters)
    containers: SampleSource  # Docker stats
    lister: ContainerLister
    locations: LocationSource | None = None
    timeout: float = 10.0
    _listings: dict[str, _Listing] = field(default_factory=dict, init=False)
    _reported: set[str] = field(default_factory=set, init=False)  # failed containers already reported
    _pool: ThreadPoolExecutor | None = field(default=None, init=False)
    stopped_by_usm: Callable[[str], bool] = lambda name: False  # the actuator's word on a container it stopped
    cloud: SyncedSource[CloudView] | None = None  # the EC2 sync, when the site has a cloud section
    swarm: SyncedSource[Sequence[Any]] | None = None  # the swarm's nodes (SwarmNode), when it has a swarm section
    cloud_regions: tuple[CloudRegion, ...] = ()  # where placement may launch cloud hosts (none without cloud)
    _unknown: set[str] = field(default_factory=set, init=False)  # instances and nodes logged as not in the site
    _waited: bool = field(default=False, init=False)  # for the syncs' first answers (once)

    def observe(self, at: float) -> Observation:
        problems: list[Problem] = []
        states = self._host_states(problems)
        batches = [self.containers.collect(at)]
        if self.hosts is not None:
            batches.append(self.hosts.collect(at))
        for batch in batches:
            problems.extend(batch.problems)
        samples = pl.concat([b.samples for b in batches]) if batches else pl.DataFrame(schema=SAMPLE_SCHEMA)
        listed = self._list_containers(problems, states)
        running = [c for c in listed if c.status in ("running", "created", "restarting")]
        failures = self._failures(listed)
        requests: RequestLocations = {}
        if self.locations is not None:
            try:
                requests = self.locations.locations(self.site.request_window)
            except Exception as error:  # noqa: BLE001 - any failure of the monitor is reported, not fatal
                problems.append(Problem("location-monitor", str(error)))
        hosts, apps, services = self.site.inventory_parts()
        hosts = tuple(h for h in hosts if h.name in states)  # a terminated cloud host is gone
        inventory = Inventory(hosts, apps, services,
                              tuple(Container(c.name, c.service, c.host) for c in sorted(running, key=_name)))
        return Observation(
            inventory=inventory, placement=self._cluster(samples, running, states), samples=samples,
            requests=requests,
            services=tuple(ServiceSpec(s.name, s.demand, s.min_replicas) for s in self.site.services),
            failures=failures, problems=tuple(problems))

    # --- host states (the syncs) ----------------------------------------------------------------

    def _host_states(self, problems: list[Problem]) -> dict[str, HostState]:
        """Site host -> its state by the syncs' latest snapshots (gone hosts left out); their failures since the
        last cycle go to ``problems``. The first cycle waits (up to ``timeout``) for each sync's first answer;
        later ones never wait."""
        snapshots: dict[str, Any] = {}
        for name, sync in (("ec2", self.cloud), ("swarm", self.swarm)):
            if sync is None:
                continue
            if not sync.wait_first(0.0 if self._waited else self.timeout):
                problems.append(Problem(name, f"no answer yet from its first sync after {self.timeout:g} s"))
            problems.extend(Problem(p.source, p.reason) for p in sync.take_problems())
            snapshots[name] = sync.latest()
        self._waited = True
        cloud, nodes = snapshots.get("ec2"), snapshots.get("swarm")
        self._log_unknown(cloud, nodes)
        return host_states(self.site.hosts, cloud, nodes)

    def _log_unknown(self, cloud: CloudView | None, nodes: Sequence[Any] | None) -> None:
        """Log each instance or node the site does not list, once while it stays."""
        seen = {}
        for i in unknown_instances(self.site.hosts, cloud):
            seen[f"instance {i.instance_id}"] = (
                f"EC2 instance {i.instance_id} ({i.host}, {i.state}) in {i.region} is usm's but not a host of the "
                f"site: usm leaves it alone; add it under hosts (kind: cloud, cloud_region: {i.region}, with its "
                "Docker endpoint) for usm to place containers on it, or terminate it")
        for n in unknown_nodes(self.site.hosts, nodes):
            seen[f"node {n.id}"] = (
                f"swarm node {n.id} at {n.address or 'an unknown address'} ("
                + (f"labelled {n.host}" if n.host else "not joined by usm") + ") is not a host of the site; "
                "usm leaves it alone")
        for key in sorted(seen.keys() - self._unknown):
            log.warning("%s", seen[key])
        self._unknown = set(seen)

    # --- containers ------------------------------------------------------------------------------

    def _list_containers(self, problems: list[Problem], states: Mapping[str, HostState] | None = None) -> list[Any]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max(1, len(self.site.hosts)), thread_name_prefix="usm-list")
        asked = []
        for host in self.site.hosts:
            listing = self._listings.setdefault(host.name, _Listing())
            if states is not None and states.get(host.name) not in LISTED_STATES:
                listing.containers = ()  # stopped or gone: it runs nothing, and is not asked
                continue
            if listing.running is not None and not listing.running.done():
                problems.append(Problem(host.name, "still listing containers from an earlier cycle"))
                continue
            listing.running = self._pool.submit(self.lister.list, host.name)
            asked.append(host.name)
        wait([self._listings[h].running for h in asked], timeout=self.timeout)  # type: ignore[misc]
        result: list[Any] = []
        for host in self.site.hosts:
            listing = self._listings[host.name]
            if host.name not in asked:
                result.extend(listing.containers)
                continue
            future = listing.running
            if host.name in asked and future is not None and future.done() and future.exception() is None:
                listing.containers = tuple(future.result())
            elif host.name in asked:
                reason = "no answer" if future is None or not future.done() else str(future.exception())
                problems.append(Problem(host.name, f"could not list its containers ({reason}); "
                                                   "keeping the last known ones"))
            result.extend(listing.containers)
        return result

    def _failures(self, listed: list[Any]) -> tuple[Failure, ...]:
        failures = []
        for c in sorted(listed, key=_name):
            if c.status in FAILED_STATES and c.name not in self._reported and not self.stopped_by_usm(c.name):
                self._reported.add(c.name)
                failures.append(Failure(c.name, c.service, c.host, getattr(c, "lineage", "")))
        return tuple(failures)

    # --- placement's view ------------------------------------------------------------------------

    def _cluster(self, samples: pl.DataFrame, running: list[Any],
                 states: Mapping[str, HostState] | None = None) -> Cluster:
        values = _latest(samples)
        capacities = []
        for h in self.site.hosts:
            state = HostState.RUNNING if states is None else states.get(h.name)
            if state is None:
                continue  # gone
            own = values.get(h.name, {})
            used = Resources(
                own.get("cpu", 0.0),
                own.get("ram", 0.0),
                max(h.total.disk - own["filesystem_available"], 0.0) if "filesystem_available" in own else 0.0)
            capacities.append(HostCapacity(h.name, h.location, h.total, used, h.kind, state, h.region,
                                           h.cloud_region))
        specs = {s.name: s for s in self.site.services}
        demands = []
        for c in sorted(running, key=_name):
            spec = specs.get(c.service)
            expected = spec.demand if spec is not None else Resources()
            cpu = values.get(c.name, {}).get("cpu", expected.cpu)
            demands.append(ContainerDemand(c.name, c.service, c.host, Resources(cpu, expected.ram, expected.disk),
                                           starting=c.status != "running", lineage=getattr(c, "lineage", "")))
        return Cluster(tuple(capacities), tuple(demands), self.cloud_regions)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _name(container: Any) -> str:
    return container.name


def _latest(samples: pl.DataFrame) -> Mapping[str, dict[str, float]]:
    """entity -> field -> value of this cycle's samples."""
    result: dict[str, dict[str, float]] = {}
    for entity, name, value in samples.select("entity", "field", "value").iter_rows():
        result.setdefault(entity, {})[name] = value
    return result

"""Splitting the world by region: what one manager of a federation sees and may act on.

A federation divides the work by region. Each region is held by one manager (its worker, or the master while no
worker holds it), which judges the region's hosts and the services that belong to the region, with all their
containers, and places and moves containers on the region's hosts only.

Why the split is exact. The engine decides per entity: a host's decision reads that host's terms, a container's
its own terms; what couples decisions is the choice of one action per (kind, target) and a service's replica
bounds (``usm.engine.engine._select``), both within one host or one service. Simulated metrics are drawn per
entity (a hash, not a stream), and the history's terms of an entity come from that entity's samples. So when
every service belongs to exactly one region, the regions' engines judge disjoint sets of entities and of
(kind, target) groups, and the union of their evaluations, actions and states is what one engine judging the
whole world gets, cycle by cycle (the test of ``usm.manager.federation.simulation`` checks it at 10 regions).
Placement is where the regions stay apart by design: a region's manager plans on its own hosts, where one node
could place a region's replica on another region's host when that one is closer or has room.

A service spanning regions is not split: it belongs to one region (its ``region`` in the site file, else the
master's), whose manager judges all its containers and places its replicas on that region's hosts. To run an app in
two regions, declare its services once per region (``shop-eu``, ``shop-us``), as the per-region registration
servers and load balancers expect anyway. Cutting one service's bounds and candidates between regions would make
each region's manager decide on a part of the replicas, which no single engine does.

Everything here is pure: the filters run on the observation the collector made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from usm.engine.inventory import App, Inventory
from usm.geo.sphere import Coordinates, distance_m
from usm.manager.ports import Actuator, Collector, Observation, Outcome
from usm.placement.model import Cluster
from usm.placement.plans import (
    DrainHost,
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    RestoreContainer,
    StopContainer,
    StopHost,
    TerminateHost,
)


@dataclass(frozen=True)
class Regions:
    """Which region each host and service belongs to. A host not named in ``hosts`` (a cloud host launched since)
    belongs to the region whose ``centres`` point is closest; a service not named in ``services`` to ``default``."""

    hosts: Mapping[str, str]
    services: Mapping[str, str]
    default: str
    centres: Mapping[str, Coordinates] = field(default_factory=dict)

    def of_host(self, name: str, location: Coordinates | None = None) -> str:
        known = self.hosts.get(name)
        if known is not None:
            return known
        if location is None or not self.centres:
            return self.default
        return nearest(location, self.centres)

    def of_service(self, name: str) -> str:
        return self.services.get(name, self.default)


def nearest(point: Coordinates, centres: Mapping[str, Coordinates]) -> str:
    """The name of the centre closest to ``point`` (ties: the first name)."""
    return min(sorted(centres), key=lambda name: distance_m(point, centres[name]))


@dataclass(frozen=True)
class Scope:
    """What a manager holds: its regions, and the hosts and services in them (names)."""

    regions: frozenset[str]
    hosts: frozenset[str]
    services: frozenset[str]


def scope_of(held: Iterable[str], inventory: Inventory, regions: Regions) -> Scope:
    """The hosts and services of ``inventory`` that lie in the regions ``held``."""
    held = frozenset(held)
    hosts = frozenset(h.name for h in inventory.hosts
                      if regions.of_host(h.name, Coordinates(h.latitude, h.longitude)) in held)
    services = frozenset(name for name in inventory.service_by_name if regions.of_service(name) in held)
    return Scope(held, hosts, services)


def regional_inventory(inventory: Inventory, scope: Scope) -> Inventory:
    """The hosts of the scope, its services with all their containers, and the apps with their services in it."""
    apps = tuple(App(a.name, kept) for a in inventory.apps if (kept := tuple(s for s in a.services
                                                                            if s in scope.services)))
    return Inventory(
        hosts=tuple(h for h in inventory.hosts if h.name in scope.hosts),
        apps=apps,
        services=tuple(s for s in inventory.services if s.name in scope.services),
        containers=tuple(c for c in inventory.containers if c.service in scope.services),
    )


def regional_cluster(cluster: Cluster, scope: Scope, regions: Regions) -> Cluster:
    """Placement's view of the scope: its hosts (any state), the containers of its services or on its hosts, and
    the cloud regions whose hosts would belong to the scope's regions (a launch stays in the manager's regions)."""
    hosts = tuple(h for h in cluster.hosts if regions.of_host(h.name, h.location) in scope.regions)
    names = {h.name for h in hosts}
    containers = tuple(c for c in cluster.containers if c.service in scope.services or c.host in names)
    clouds = tuple(r for r in cluster.cloud_regions if regions.of_host("", r.location) in scope.regions)
    return Cluster(hosts, containers, clouds)


def regional_observation(observation: Observation, scope: Scope, regions: Regions,
                         inventory: Inventory | None = None,
                         on_cluster: Any = None) -> Observation:
    """``observation`` as the holder of ``scope`` sees it. ``inventory`` is the scope's inventory when the caller
    has it already (it is rebuilt only when the world's changes); ``on_cluster(cluster)`` is told the placement
    view when it is made."""
    inventory = inventory if inventory is not None else regional_inventory(observation.inventory, scope)
    entities = [h.name for h in inventory.hosts] + [c.name for c in inventory.containers]
    samples = observation.samples.filter(pl.col("entity").is_in(entities))

    def placement() -> Cluster:
        cluster = regional_cluster(observation.cluster, scope, regions)
        if on_cluster is not None:
            on_cluster(cluster)
        return cluster

    return Observation(
        inventory=inventory,
        placement=placement,
        samples=samples,
        requests={s: located for s, located in observation.requests.items() if s in scope.services},
        services=tuple(s for s in observation.services if s.name in scope.services),
        failures=tuple(f for f in observation.failures if f.service in scope.services),
        options=observation.options,
        problems=observation.problems,
    )


class RegionalView:
    """A collector that shows one manager its part of another collector's observation; the regions it holds may
    change between cycles (``held``). The scope's inventory is kept while the world's inventory object is the same
    one, so the engine's own cache of it holds too. ``hosts`` and ``cloud_regions`` are what the manager may act
    on after its last observation: its hosts in any state, and where it may launch one."""

    def __init__(self, source: Collector, regions: Regions, held: Iterable[str] = ()) -> None:
        self.source = source
        self.regions = regions
        self.held = frozenset(held)
        self.hosts: frozenset[str] = frozenset()
        self.cloud_regions: frozenset[str] = frozenset()
        self._memo: tuple[Inventory, frozenset[str], Scope, Inventory] | None = None

    def scope(self, inventory: Inventory) -> tuple[Scope, Inventory]:
        memo = self._memo
        if memo is not None and memo[0] is inventory and memo[1] == self.held:
            return memo[2], memo[3]
        scope = scope_of(self.held, inventory, self.regions)
        mine = regional_inventory(inventory, scope)
        self._memo = (inventory, self.held, scope, mine)
        return scope, mine

    def observe(self, at: float) -> Observation:
        observation = self.source.observe(at)
        scope, inventory = self.scope(observation.inventory)
        self.hosts, self.cloud_regions = scope.hosts, frozenset()
        return regional_observation(observation, scope, self.regions, inventory, self._seen)

    def _seen(self, cluster: Cluster) -> None:
        self.hosts = self.hosts | {h.name for h in cluster.hosts}
        self.cloud_regions = frozenset(r.code for r in cluster.cloud_regions)


def step_hosts(step: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hosts a plan step acts on, and the cloud regions it launches a host in."""
    source: tuple[str, ...] = ()
    match step:
        case PlaceReplica() | RestoreContainer():
            pass
        case MoveContainer():
            source = (step.source,)
        case StopContainer() | StopHost() | TerminateHost():
            return (step.host,), ()
        case DrainHost():
            found = [step_hosts(move) for move in step.moves]
            return ((step.host, *(h for hs, _ in found for h in hs)), tuple(c for _, cs in found for c in cs))
        case _:
            return (), ()
    if isinstance(step.on, LaunchCloudHost):
        return source, (step.on.region,)
    return (*source, step.on.host), ()


class ScopedActuator:
    """Carries out only the steps on the hosts (and cloud regions) its view holds: a manager never acts outside
    its regions, whatever its planner says."""

    def __init__(self, inner: Actuator, view: RegionalView) -> None:
        self.inner = inner
        self.view = view

    def execute(self, step: Any, at: float) -> Outcome:
        hosts, clouds = step_hosts(step)
        outside = sorted(set(hosts) - self.view.hosts) + sorted(set(clouds) - self.view.cloud_regions)
        if outside:
            return Outcome(step, False, f"not carried out: {', '.join(outside)} lies outside the regions this manager "
                                        f"holds ({', '.join(sorted(self.view.held)) or 'none'})")
        return self.inner.execute(step, at)


__all__ = ["RegionalView", "Regions", "Scope", "ScopedActuator", "nearest", "regional_cluster",
           "regional_inventory", "regional_observation", "scope_of", "step_hosts"]

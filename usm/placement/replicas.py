"""Replicas: where a new one goes, where a migrating one goes, which one stops, and keeping the minimum.

Fixes against the original (§3.7, §3.12, §4.3, §13 items 8, 16, 19):

* the migration target keeps every request location (the original skipped any with latitude or longitude 0);
* the replica to stop is chosen by an explicit order, not "the last one" (bug 8);
* minimum replicas are planned for every service on every cycle, including a service with no container left,
  not only when some container of the service happened to produce a decision (bug 16).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from usm.geo.sphere import Coordinates, centroid, distance_m, weighted_centroid
from usm.placement.hosts import choose_host
from usm.placement.model import (
    DEFAULT_OPTIONS,
    Cluster,
    ContainerDemand,
    HostState,
    PlacementOptions,
    Resources,
    ServiceSpec,
)
from usm.placement.plans import (
    HostChoice,
    LaunchCloudHost,
    MoveContainer,
    NoPlan,
    PlaceReplica,
    StartHost,
    StopContainer,
)


def migration_target(requests: Iterable[tuple[Coordinates, float]], fallback: Coordinates) -> Coordinates:
    """Where a service's callers are: the spherical centroid of request locations weighted by their counts.

    ``requests`` holds ``(location, count)`` pairs over whatever window the caller aggregated (the history answers
    that). Falls back to ``fallback`` (usually the container's host) when there is no request or the weights
    cancel out (callers evenly spread around the globe).
    """
    return weighted_centroid(requests) or fallback


def reserve(cluster: Cluster, on: HostChoice, service: str, demand: Resources, tag: str) -> Cluster:
    """The cluster as it will be once a container planned ``on`` a host exists, so that later plans of the same
    cycle count it: a starting container on that host (and a started host now ``STARTING``). A launched host is
    not in the cluster yet, so nothing is reserved for it: several launches in one batch stay separate hosts."""
    if isinstance(on, LaunchCloudHost):
        return cluster
    if isinstance(on, StartHost):
        cluster = cluster.with_host_state(on.host, HostState.STARTING)
    planned = ContainerDemand(f"{tag}@{on.host}#{len(cluster.containers)}", service, on.host, demand, starting=True)
    return cluster.with_container(planned)


def plan_replica(
    cluster: Cluster,
    service: str,
    demand: Resources,
    near: Coordinates,
    options: PlacementOptions = DEFAULT_OPTIONS,
    exclude: frozenset[str] = frozenset(),
) -> PlaceReplica | NoPlan:
    """One more replica of ``service``, on the best host for callers around ``near`` (see ``choose_host``)."""
    on = choose_host(cluster, demand, near, options, exclude)
    if isinstance(on, NoPlan):
        return NoPlan(f"replica of {service}: {on.reason}")
    return PlaceReplica(service, near, on)


def plan_migration(
    cluster: Cluster,
    container: str,
    near: Coordinates,
    options: PlacementOptions = DEFAULT_OPTIONS,
) -> MoveContainer | NoPlan:
    """Move ``container`` to the best host for callers around ``near`` (see ``migration_target``), never its
    current host."""
    moving = cluster.container(container)
    on = choose_host(cluster.without_container(container), moving.demand, near, options, frozenset({moving.host}))
    if isinstance(on, NoPlan):
        return NoPlan(f"migration of {container}: {on.reason}")
    return MoveContainer(moving.name, moving.service, moving.host, near, on)


def _host_pressure(cluster: Cluster, host: str) -> float:
    """The highest share (cpu, ram or disk) of its capacity the host carries; 0 for a host not in the cluster."""
    if not cluster.has_host(host):
        return 0.0
    total, load = cluster.host(host).total, cluster.load(host)
    pairs = ((load.cpu, total.cpu), (load.ram, total.ram), (load.disk, total.disk))
    return max((used / cap for used, cap in pairs if cap > 0), default=0.0)


def choose_replica_to_stop(cluster: Cluster, service: str, near: Coordinates | None = None) -> ContainerDemand | None:
    """The replica of ``service`` to stop when it has one too many, or ``None`` when it has no stoppable one.

    Explicit order (the original took "the last one", bug 8): the replica farthest from ``near`` (the callers'
    centroid; skipped when unknown or when its host is unknown), then the one on the most loaded host (highest
    cpu/ram/disk share), then by name. System containers are never chosen.
    """

    def key(c: ContainerDemand) -> tuple[float, float, str]:
        far = 0.0
        if near is not None and cluster.has_host(c.host):
            far = distance_m(cluster.host(c.host).location, near)
        return (-far, -_host_pressure(cluster, c.host), c.name)

    candidates = sorted((c for c in cluster.replicas(service) if not c.system), key=key)
    return candidates[0] if candidates else None


def plan_stop(cluster: Cluster, service: str, near: Coordinates | None = None) -> StopContainer | NoPlan:
    """Stop one replica of ``service``, chosen by ``choose_replica_to_stop``. Bounds (minimum replicas) are the
    engine's business: this only chooses."""
    chosen = choose_replica_to_stop(cluster, service, near)
    if chosen is None:
        return NoPlan(f"stop of a {service} replica: it has none")
    return StopContainer(chosen.name, chosen.host)


def replica_location(
    cluster: Cluster,
    service: str,
    callers: Coordinates | None = None,
    fallback: Coordinates | None = None,
) -> Coordinates | None:
    """Where a new replica of ``service`` should be near: its callers' centroid if known, else the centroid of the
    hosts its replicas are on, else ``fallback`` (``None`` when nothing is known)."""
    if callers is not None:
        return callers
    hosts = [cluster.host(c.host).location for c in cluster.replicas(service) if cluster.has_host(c.host)]
    return centroid(hosts) or fallback


def plan_minimum_replicas(
    cluster: Cluster,
    services: Iterable[ServiceSpec],
    options: PlacementOptions = DEFAULT_OPTIONS,
    callers: Mapping[str, Coordinates] | None = None,
    fallback: Coordinates | None = None,
    skip: frozenset[str] = frozenset(),
) -> tuple[PlaceReplica | NoPlan, ...]:
    """The replicas to add so that every service has at least its ``min_replicas`` (starting ones count).

    Runs every cycle, for every service (services in ``skip`` are left alone, e.g. those whose recovery gave up).
    Services are handled by name; each planned replica is reserved in the cluster before the next is placed, so
    two replicas never count on the same room. ``callers`` maps a service to its callers' centroid; see
    ``replica_location`` for the rest. One ``NoPlan`` per replica that could not be placed.
    """
    callers = {} if callers is None else callers  # `or` would work out every lazy centroid (len)
    plans: list[PlaceReplica | NoPlan] = []
    for spec in sorted(services, key=lambda s: s.name):
        if spec.name in skip:
            continue
        missing = spec.min_replicas - cluster.replica_count(spec.name)
        if missing <= 0:
            continue
        near = replica_location(cluster, spec.name, callers.get(spec.name), fallback)
        for _ in range(missing):
            if near is None:
                plans.append(NoPlan(f"replica of {spec.name}: no location known (no callers, replicas or fallback)"))
                continue
            plan = plan_replica(cluster, spec.name, spec.demand, near, options)
            plans.append(plan)
            if isinstance(plan, PlaceReplica):
                cluster = reserve(cluster, plan.on, spec.name, spec.demand, spec.name)
    return tuple(plans)


__all__ = [
    "choose_replica_to_stop",
    "migration_target",
    "plan_migration",
    "plan_minimum_replicas",
    "plan_replica",
    "plan_stop",
    "replica_location",
    "reserve",
]

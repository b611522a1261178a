"""The store as the engine and placement see it: ``Inventory``, ``Cluster`` and the services' ``ServiceSpec``s.

The store knows what exists and what was declared; it does not measure. What hosts use now and what containers
are expected to use come from the collectors and are passed in; a container with no measured demand is expected
to use its service's ``expected_memory`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from usm.engine import inventory as engine
from usm.geo.regions import USABLE_CLOUD_REGIONS, CloudRegion
from usm.geo.sphere import Coordinates
from usm.manager.store.catalog import App, AppService, EventPrediction, Service, ServiceKind, Window, min_replicas_at
from usm.manager.store.containers import LIVE_STATES, Container, ContainerState
from usm.manager.store.errors import Invalid
from usm.manager.store.hosts import CloudHost, Host, Region
from usm.placement.model import (
    NOTHING,
    RECEIVING_STATES,
    Cluster,
    ContainerDemand,
    HostCapacity,
    Resources,
    ServiceSpec,
)


def inventory(session: Session, at: datetime) -> engine.Inventory:
    """The engine's view at ``at``: hosts that run or start, apps with their services in launch order, services
    with the minimum replicas their event predictions give at ``at``, and containers that run or start."""
    _require_zone(at)
    hosts = session.execute(select(_HOSTS.c.name, _REGIONS.c.name, _HOSTS.c.latitude, _HOSTS.c.longitude)
                            .select_from(_HOSTS.join(_REGIONS)).where(_HOSTS.c.state.in_(RECEIVING_STATES))
                            .order_by(_HOSTS.c.name))
    members = session.execute(select(_APPS.c.name, _SERVICES.c.name).select_from(_APPS.join(_MEMBERS).join(_SERVICES))
                              .order_by(_APPS.c.name, _MEMBERS.c.launch_order))
    services: dict[str, list[str]] = {name: [] for name in session.scalars(select(_APPS.c.name))}
    for app, service in members:
        services[app].append(service)
    minimum = _min_replicas(session, at)
    return engine.Inventory(
        hosts=tuple(engine.Host(*row) for row in hosts),
        apps=tuple(engine.App(app, tuple(services[app])) for app in sorted(services)),
        services=tuple(engine.Service(name, minimum[name], most) for name, most in session.execute(
            select(_SERVICES.c.name, _SERVICES.c.max_replicas).order_by(_SERVICES.c.name))),
        containers=tuple(engine.Container(name, service, host) for name, service, host, *_ in _live(session)),
    )


def cluster(session: Session, used: Mapping[str, Resources] | None = None,
            demands: Mapping[str, Resources] | None = None,
            cloud_regions: tuple[CloudRegion, ...] = USABLE_CLOUD_REGIONS) -> Cluster:
    """Placement's view: every host (any state) with its capacity and ``used[host]`` (measured; nothing when not
    given), and every container that runs or starts with ``demands[container]`` or its service's expected
    memory. Containers of system services are marked so placement leaves them where they are."""
    used = used or {}
    demands = demands or {}
    rows = session.execute(
        select(_HOSTS.c.name, _HOSTS.c.latitude, _HOSTS.c.longitude, _HOSTS.c.cpu, _HOSTS.c.ram, _HOSTS.c.disk,
               _HOSTS.c.kind, _HOSTS.c.state, _REGIONS.c.name, _CLOUD.c.cloud_region)
        .select_from(_HOSTS.join(_REGIONS).outerjoin(_CLOUD)).order_by(_HOSTS.c.name))
    hosts = tuple(HostCapacity(name, Coordinates(lat, lon), Resources(cpu, float(ram), float(disk)),
                               used.get(name, NOTHING), kind, state, region, cloud_region or "")
                  for name, lat, lon, cpu, ram, disk, kind, state, region, cloud_region in rows)
    expected: dict[int, Resources] = {}  # one per distinct expected memory, shared by the containers
    containers = tuple(
        ContainerDemand(name, service, host,
                        demands.get(name) or expected.get(memory) or expected.setdefault(memory, _memory(memory)),
                        state is ContainerState.STARTING, kind is ServiceKind.SYSTEM)
        for name, service, host, state, memory, kind in _live(session))
    return Cluster(hosts, containers, cloud_regions)


def _memory(amount: int) -> Resources:
    return Resources(ram=float(amount))


def service_specs(session: Session, at: datetime) -> tuple[ServiceSpec, ...]:
    """What a new replica of each service needs (its expected memory) and its minimum replicas at ``at``."""
    _require_zone(at)
    minimum = _min_replicas(session, at)
    rows = session.execute(select(_SERVICES.c.name, _SERVICES.c.expected_memory).order_by(_SERVICES.c.name))
    return tuple(ServiceSpec(name, _memory(memory), minimum[name]) for name, memory in rows)


# Column queries, not ORM objects: building an object per row costs ~40 µs, ten times a row's tuple, and the
# control loop reads every container every cycle.

_HOSTS, _CLOUD, _REGIONS = Host.__table__, CloudHost.__table__, Region.__table__
_APPS, _MEMBERS, _SERVICES = App.__table__, AppService.__table__, Service.__table__
_CONTAINERS, _PREDICTIONS = Container.__table__, EventPrediction.__table__


def _live(session: Session) -> Iterable[tuple[str, str, str, ContainerState, int, ServiceKind]]:
    """Containers that run or start: name, service, host, state, the service's expected memory and kind."""
    query = (select(_CONTAINERS.c.name, _SERVICES.c.name, _HOSTS.c.name, _CONTAINERS.c.state,
                    _SERVICES.c.expected_memory, _SERVICES.c.kind)
             .select_from(_CONTAINERS.join(_SERVICES).join(_HOSTS))
             .where(_CONTAINERS.c.state.in_(LIVE_STATES)).order_by(_CONTAINERS.c.name))
    return session.execute(query).all()  # rows unpack as tuples


def _min_replicas(session: Session, at: datetime) -> dict[str, int]:
    """Service name -> its minimum replicas at ``at`` (``min_replicas_at``)."""
    windows: dict[str, list[Window]] = {}
    predictions = session.execute(
        select(_SERVICES.c.name, _PREDICTIONS.c.starts_at, _PREDICTIONS.c.ends_at, _PREDICTIONS.c.weekly,
               _PREDICTIONS.c.min_replicas).select_from(_PREDICTIONS.join(_SERVICES))
        .where(_PREDICTIONS.c.starts_at <= at))
    for service, *window in predictions:
        windows.setdefault(service, []).append(tuple(window))
    own = session.execute(select(_SERVICES.c.name, _SERVICES.c.min_replicas))
    return {name: min_replicas_at(replicas, windows.get(name, ()), at) for name, replicas in own}


def _require_zone(at: datetime) -> None:
    if at.tzinfo is None:
        raise Invalid(f"{at.isoformat()} has no time zone; pass an aware time (e.g. datetime.now(timezone.utc))")


__all__ = ["cluster", "inventory", "service_specs"]

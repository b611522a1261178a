"""The store as the engine and placement see it: ``Inventory``, ``Cluster`` and the services' ``ServiceSpec``s.

The store knows what exists and what was declared; it does not measure. What hosts use now and what containers
are expected to use come from the collectors and are passed in; a container with no measured demand is expected
to use its service's ``expected_memory`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from usm.engine import inventory as engine
from usm.geo.regions import USABLE_CLOUD_REGIONS, CloudRegion
from usm.manager.store.catalog import (
    App,
    AppService,
    Service,
    ServiceKind,
    min_replicas_at,
)
from usm.manager.store.containers import LIVE_STATES, Container, ContainerState
from usm.manager.store.errors import Invalid
from usm.manager.store.hosts import CloudHost, Host
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
    hosts = tuple(engine.Host(h.name, h.region.name, h.latitude, h.longitude)
                  for h in _hosts(session) if h.state in RECEIVING_STATES)
    apps = tuple(engine.App(a.name, tuple(s.name for s in a.services)) for a in _apps(session))
    services = tuple(engine.Service(s.name, min_replicas_at(s, at), s.max_replicas) for s in _services(session))
    containers = tuple(engine.Container(c.name, c.service.name, c.host.name) for c in _live_containers(session))
    return engine.Inventory(hosts, apps, services, containers)


def cluster(session: Session, used: Mapping[str, Resources] | None = None,
            demands: Mapping[str, Resources] | None = None,
            cloud_regions: tuple[CloudRegion, ...] = USABLE_CLOUD_REGIONS) -> Cluster:
    """Placement's view: every host (any state) with its capacity and ``used[host]`` (measured; nothing when not
    given), and every container that runs or starts with ``demands[container]`` or its service's expected
    memory. Containers of system services are marked so placement leaves them where they are."""
    used = used or {}
    demands = demands or {}
    hosts = tuple(
        HostCapacity(h.name, h.location, Resources(h.cpu, float(h.ram), float(h.disk)), used.get(h.name, NOTHING),
                     h.kind, h.state, h.region.name, h.cloud_region if isinstance(h, CloudHost) else "")
        for h in _hosts(session))
    containers = tuple(
        ContainerDemand(c.name, c.service.name, c.host.name, demands.get(c.name) or _expected(c.service),
                        starting=c.state is ContainerState.STARTING, system=c.service.kind is ServiceKind.SYSTEM)
        for c in _live_containers(session))
    return Cluster(hosts, containers, cloud_regions)


def service_specs(session: Session, at: datetime) -> tuple[ServiceSpec, ...]:
    """What a new replica of each service needs (its expected memory) and its minimum replicas at ``at``."""
    _require_zone(at)
    return tuple(ServiceSpec(s.name, _expected(s), min_replicas_at(s, at)) for s in _services(session))


def _expected(service: Service) -> Resources:
    return Resources(ram=float(service.expected_memory))


def _hosts(session: Session) -> list[Host]:
    return list(session.scalars(select(Host).options(selectinload(Host.region)).order_by(Host.name)))


def _apps(session: Session) -> list[App]:
    query = select(App).options(selectinload(App.members).selectinload(AppService.service)).order_by(App.name)
    return list(session.scalars(query))


def _services(session: Session) -> list[Service]:
    query = select(Service).options(selectinload(Service.predictions)).order_by(Service.name)
    return list(session.scalars(query))


def _live_containers(session: Session) -> list[Container]:
    query = (select(Container).where(Container.state.in_(LIVE_STATES))
             .options(selectinload(Container.service), selectinload(Container.host)).order_by(Container.name))
    return list(session.scalars(query))


def _require_zone(at: datetime) -> None:
    if at.tzinfo is None:
        raise Invalid(f"{at.isoformat()} has no time zone; pass an aware time (e.g. datetime.now(timezone.utc))")


__all__ = ["cluster", "inventory", "service_specs"]

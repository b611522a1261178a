"""The dashboard's world map, drawn on the server as SVG: countries from the vendored Natural Earth polygons (the
same data and loader as the simulation report's map), hosts, their containers and their swarm nodes from the
store. No map tiles and no map library: the page works without a network beyond the hub, and without
JavaScript (``static/hub.js`` only adds zoom, picking a place and the 15 s refresh).

The projection is equirectangular: a point is drawn at ``x = longitude``, ``y = -latitude`` in the SVG's own
units, so the page's script turns a click back into a place with the SVG's screen matrix alone. The map shows
latitudes 84° N to 60° S (no host is expected on Antarctica).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from usm.manager.store import Container, ContainerState, Host, Node, Region, Service

NORTH, SOUTH = 84.0, -60.0
VIEW_BOX = f"-180 {-NORTH:g} 360 {NORTH - SOUTH:g}"
SIMPLIFY_DEGREES = 0.1
"""Outline points closer than this to the simplified line are dropped (the map is 360 units wide)."""
NAMES_SHOWN = 8
"""A host's tooltip names at most this many of its services."""


@dataclass(frozen=True)
class Country:
    name: str
    outline: str  # an SVG path


@dataclass
class HostMark:
    """One host on the map, with what runs on it."""

    name: str
    kind: str
    state: str
    region: str
    latitude: float
    longitude: float
    addresses: tuple[str, ...]
    containers: Counter[str] = field(default_factory=Counter)  # state -> how many
    services: Counter[str] = field(default_factory=Counter)  # service -> running or starting replicas
    node: tuple[str, str, str, str] | None = None  # swarm id, role, availability, state

    @property
    def x(self) -> float:
        return round(self.longitude, 3)

    @property
    def y(self) -> float:
        return round(-self.latitude, 3)

    @property
    def live(self) -> int:
        return self.containers["running"] + self.containers["starting"]

    @property
    def radius(self) -> float:
        """The radius of the disc standing for its containers: its area grows with their number."""
        return round(1.6 + 1.1 * math.sqrt(self.live), 2) if self.live else 0.0

    @property
    def description(self) -> str:
        """What the marker's tooltip and accessible name say."""
        parts = [f"{self.name}: {self.kind} host, {self.state}, region {self.region}"]
        if self.addresses:
            parts.append("addresses " + ", ".join(self.addresses))
        if self.containers:
            parts.append("containers " + ", ".join(f"{n} {s}" for s, n in sorted(self.containers.items())))
        if self.services:
            shown = [f"{name} ×{n}" if n > 1 else name for name, n in sorted(self.services.items())[:NAMES_SHOWN]]
            more = len(self.services) - NAMES_SHOWN
            parts.append("services " + ", ".join(shown) + (f" and {more} more" if more > 0 else ""))
        if self.node is not None:
            swarm_id, role, availability, state = self.node
            parts.append(f"swarm node {swarm_id} ({role}, {availability}, {state})")
        return "; ".join(parts)


@dataclass(frozen=True)
class MapView:
    hosts: tuple[HostMark, ...]

    @property
    def summary(self) -> str:
        running = sum(1 for h in self.hosts if h.state == "running")
        containers = sum(h.live for h in self.hosts)
        nodes = sum(1 for h in self.hosts if h.node is not None)
        return (f"{len(self.hosts)} hosts ({running} running), {containers} containers running or starting, "
                f"{nodes} swarm nodes")


def ring(points: Iterable[tuple[float, float]]) -> str:
    """One closed ring of (longitude, latitude) points as SVG path commands."""
    coordinates = [f"{round(x, 2) + 0.0:g},{round(-y, 2) + 0.0:g}" for x, y in points]
    return "M" + "L".join(coordinates[:-1]) + "Z" if len(coordinates) > 3 else ""


@lru_cache(maxsize=1)
def countries() -> tuple[Country, ...]:
    """The countries' outlines (read and simplified once per process: the first call reads the shapefile)."""
    import shapely

    from usm.simulator.report import world_countries

    world = world_countries()
    found = []
    for name, geometry in zip(world["name"], shapely.simplify(world.geometry.values, SIMPLIFY_DEGREES),
                              strict=True):
        polygons = list(getattr(geometry, "geoms", [geometry]))
        outline = "".join(ring(r.coords) for p in polygons for r in (p.exterior, *p.interiors))
        if outline:
            found.append(Country(str(name), outline))
    return tuple(found)


def map_view(session: Session) -> MapView:
    """Every stored host with its containers and swarm node: four column queries, the containers counted by the
    database (a page for 10,000 containers would otherwise turn each of their rows into Python objects)."""
    hosts: dict[str, HostMark] = {}
    rows = session.execute(select(Host.name, Host.kind, Host.state, Region.name, Host.latitude, Host.longitude,
                                  Host.public_ip, Host.private_ip, Host.public_dns_name)
                           .join(Region, Host.region_id == Region.id).order_by(Host.name))
    for name, kind, state, region, latitude, longitude, *addresses in rows:
        hosts[name] = HostMark(name, kind.value, state.value, region, latitude, longitude,
                               tuple(a for a in addresses if a))
    counted = (select(Host.name, Container.state, func.count()).select_from(Container)
               .join(Host, Container.host_id == Host.id))
    for host, state, count in session.execute(counted.group_by(Host.name, Container.state)):
        if host in hosts:
            hosts[host].containers[state.value] += count
    live = (select(Host.name, Service.name, func.count()).select_from(Container)
            .join(Host, Container.host_id == Host.id)
            .join(Service, Container.service_id == Service.id)
            .where(Container.state.in_((ContainerState.RUNNING, ContainerState.STARTING))))
    for host, service, count in session.execute(live.group_by(Host.name, Service.name)):
        if host in hosts:
            hosts[host].services[service] += count
    for swarm_id, role, availability, state, host in session.execute(
            select(Node.swarm_id, Node.role, Node.availability, Node.state, Host.name)
            .join(Host, Node.host_id == Host.id)):
        if host in hosts:
            hosts[host].node = (swarm_id, role.value, availability.value, state.value)
    return MapView(tuple(hosts.values()))


def legend() -> list[dict[str, Any]]:
    return [{"label": "cloud host", "shape": "square"}, {"label": "edge host", "shape": "triangle"},
            {"label": "containers (area by count)", "shape": "disc"}, {"label": "swarm node", "shape": "ring"}]


__all__ = ["VIEW_BOX", "Country", "HostMark", "MapView", "countries", "legend", "map_view", "ring"]

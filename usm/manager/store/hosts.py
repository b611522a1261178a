"""Where things run: regions, cloud and edge hosts, the swarm nodes on them, and the regions' elastic IPs
(original-system §1.5).

Cloud and edge hosts share one ``hosts`` table (joined inheritance): host names are unique across both kinds,
containers, nodes and assignments point at any host with one foreign key, and placement's ``HostCapacity`` reads
the shared columns. What only one kind has lives in ``cloud_hosts`` or ``edge_hosts``.
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from usm.geo.regions import CLOUD_REGIONS
from usm.geo.sphere import Coordinates, distance_m
from usm.manager.store.base import NAME_LENGTH, Base, enum_type
from usm.placement.model import HostKind, HostState

if TYPE_CHECKING:
    from usm.manager.store.containers import Container, LoadBalancer, RegistrationServer
    from usm.manager.store.federation import HostAssignment, Worker

_CLOUD_REGION_CODES = frozenset(r.code for r in CLOUD_REGIONS)


class Region(Base):
    """A world area (``europe``, ...) that groups hosts for per-region components and regional workers."""

    __tablename__ = "regions"
    blocking = ("hosts", "workers", "elastic_ip", "load_balancers", "registration_servers")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    latitude: Mapped[float]
    longitude: Mapped[float]

    hosts: Mapped[list[Host]] = relationship(back_populates="region", order_by="Host.name")
    workers: Mapped[list[Worker]] = relationship(back_populates="region", order_by="Worker.name")
    elastic_ip: Mapped[ElasticIp | None] = relationship(back_populates="region")
    load_balancers: Mapped[list[LoadBalancer]] = relationship(back_populates="region")
    registration_servers: Mapped[list[RegistrationServer]] = relationship(back_populates="region")

    def problems(self) -> list[str]:
        return _location_problems(self.latitude, self.longitude)


class Host(Base):
    """A machine that runs containers: its place, its capacity (cpu cores, ram and disk bytes) and its state.

    ``region`` may be left out: the host then belongs to the stored region closest to it.
    """

    __tablename__ = "hosts"
    __table_args__ = (
        CheckConstraint("cpu > 0", name="cpu"),
        CheckConstraint("ram > 0", name="ram"),
        CheckConstraint("disk > 0", name="disk"),
    )
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_on": "kind", "polymorphic_abstract": True}
    refs: ClassVar[dict[str, str]] = {"region": "Region"}
    blocking = ("containers", "node", "elastic_ip")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    kind: Mapped[HostKind] = mapped_column(enum_type(HostKind, "host_kind"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    latitude: Mapped[float]
    longitude: Mapped[float]
    cpu: Mapped[float]
    ram: Mapped[int] = mapped_column(BigInteger)
    disk: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[HostState] = mapped_column(enum_type(HostState, "host_state"), default=HostState.RUNNING,
                                             index=True)
    public_ip: Mapped[str | None] = mapped_column(String(45))
    private_ip: Mapped[str | None] = mapped_column(String(45))
    public_dns_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))

    region: Mapped[Region] = relationship(back_populates="hosts")
    containers: Mapped[list[Container]] = relationship(back_populates="host", order_by="Container.name")
    node: Mapped[Node | None] = relationship(back_populates="host")
    elastic_ip: Mapped[ElasticIp | None] = relationship(back_populates="host")
    assignment: Mapped[HostAssignment | None] = relationship(back_populates="host", cascade="all, delete-orphan")

    @property
    def location(self) -> Coordinates:
        return Coordinates(self.latitude, self.longitude)

    def prepare(self, session: Session) -> None:
        if self.region is None and not _location_problems(self.latitude, self.longitude):
            self.region = nearest_region(session, self.location)

    def problems(self) -> list[str]:
        found = _location_problems(self.latitude, self.longitude)
        if self.region is None and not found:
            found.append("there is no region to put the host in; create one, or give the host's region")
        for field in ("cpu", "ram", "disk"):
            if getattr(self, field) <= 0:
                found.append(f"{field} is {getattr(self, field)}; a host's capacity must be more than 0 "
                             "(cpu in cores, ram and disk in bytes)")
        for field in ("public_ip", "private_ip"):
            if (address := getattr(self, field)) is not None:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    found.append(f"{field} {address!r} is not an IPv4 or IPv6 address")
        return found


class CloudHost(Host):
    """An instance of a cloud provider (EC2): launched, started, stopped and terminated through its API."""

    __tablename__ = "cloud_hosts"
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": HostKind.CLOUD, "polymorphic_load": "inline"}

    id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64), unique=True)
    instance_type: Mapped[str] = mapped_column(String(64))
    image_id: Mapped[str | None] = mapped_column(String(64))
    cloud_region: Mapped[str] = mapped_column(String(32), index=True)

    def problems(self) -> list[str]:
        found = super().problems()
        if self.cloud_region not in _CLOUD_REGION_CODES:
            found.append(f"cloud_region {self.cloud_region!r} is unknown; use a code such as eu-west-2 "
                         "(usm.geo.regions.CLOUD_REGIONS lists them)")
        return found


class EdgeHost(Host):
    """A machine the operator owns, reached over SSH as ``username`` on ``ssh_port``: started and stopped,
    never created or destroyed. ``local`` marks one on the manager's own network."""

    __tablename__ = "edge_hosts"
    __table_args__ = (CheckConstraint("ssh_port BETWEEN 1 AND 65535", name="ssh_port"),)
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": HostKind.EDGE, "polymorphic_load": "inline"}

    id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ssh_port: Mapped[int] = mapped_column(default=22)
    local: Mapped[bool] = mapped_column(default=False)

    def problems(self) -> list[str]:
        found = super().problems()
        if not 1 <= self.ssh_port <= 65535:
            found.append(f"ssh_port is {self.ssh_port}; a port is between 1 and 65535")
        if self.public_ip is None and self.public_dns_name is None:
            found.append("an edge host needs public_ip or public_dns_name to be reached over SSH")
        return found


class NodeRole(str, Enum):
    MANAGER = "manager"
    WORKER = "worker"


class NodeAvailability(str, Enum):
    ACTIVE = "active"
    PAUSE = "pause"
    DRAIN = "drain"


class NodeState(str, Enum):
    UNKNOWN = "unknown"
    DOWN = "down"
    READY = "ready"
    DISCONNECTED = "disconnected"


class Node(Base):
    """A host's membership of a Docker swarm, as the swarm reports it; ``worker`` is the regional manager whose
    swarm it is (none: the master's)."""

    __tablename__ = "nodes"
    key = "swarm_id"
    refs: ClassVar[dict[str, str]] = {"host": "Host", "worker": "Worker"}

    id: Mapped[int] = mapped_column(primary_key=True)
    swarm_id: Mapped[str] = mapped_column(String(64), unique=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), unique=True)
    role: Mapped[NodeRole] = mapped_column(enum_type(NodeRole, "node_role"), default=NodeRole.WORKER)
    availability: Mapped[NodeAvailability] = mapped_column(enum_type(NodeAvailability, "node_availability"),
                                                           default=NodeAvailability.ACTIVE)
    state: Mapped[NodeState] = mapped_column(enum_type(NodeState, "node_state"), default=NodeState.READY)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"), index=True)

    host: Mapped[Host] = relationship(back_populates="node")
    worker: Mapped[Worker | None] = relationship(back_populates="nodes")


class ElasticIp(Base):
    """A region's public address (one per region), held in its ``cloud_region`` and associated with a cloud host
    that runs the region's shared components."""

    __tablename__ = "elastic_ips"
    key = "allocation_id"
    refs: ClassVar[dict[str, str]] = {"region": "Region", "host": "Host"}

    id: Mapped[int] = mapped_column(primary_key=True)
    allocation_id: Mapped[str] = mapped_column(String(64), unique=True)
    public_ip: Mapped[str] = mapped_column(String(45), unique=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), unique=True)
    cloud_region: Mapped[str] = mapped_column(String(32))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), unique=True)
    association_id: Mapped[str | None] = mapped_column(String(64))

    region: Mapped[Region] = relationship(back_populates="elastic_ip")
    host: Mapped[Host | None] = relationship(back_populates="elastic_ip")

    def problems(self) -> list[str]:
        found = []
        try:
            ipaddress.ip_address(self.public_ip)
        except ValueError:
            found.append(f"public_ip {self.public_ip!r} is not an IPv4 or IPv6 address")
        if self.cloud_region not in _CLOUD_REGION_CODES:
            found.append(f"cloud_region {self.cloud_region!r} is unknown; use a code such as eu-west-2")
        if self.host is not None and self.host.kind is not HostKind.CLOUD:
            found.append(f"host {self.host.name!r} is an edge host; an elastic IP is associated with a cloud host")
        if (self.host is None) != (self.association_id is None):
            found.append("host and association_id go together: give both (associated) or neither")
        return found


def nearest_region(session: Session, point: Coordinates) -> Region | None:
    """The stored region closest to ``point`` (ties: by name); ``None`` when there is none."""
    regions = session.scalars(select(Region)).all()
    return min(regions, key=lambda r: (distance_m(point, Coordinates(r.latitude, r.longitude)), r.name),
               default=None)


def _location_problems(latitude: float, longitude: float) -> list[str]:
    try:
        Coordinates(latitude, longitude)
    except (TypeError, ValueError) as wrong:
        return [str(wrong)]
    return []


__all__ = ["CloudHost", "EdgeHost", "ElasticIp", "Host", "Node", "NodeAvailability", "NodeRole", "NodeState",
           "Region", "nearest_region"]

"""What runs: containers of services on hosts, and the per-region support components that are containers with a
role, load balancers and registration servers (original-system §1.4, §1.5).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from usm.manager.store.base import NAME_LENGTH, Base, enum_type

if TYPE_CHECKING:
    from usm.manager.store.catalog import Service
    from usm.manager.store.hosts import Host, Region


class ContainerState(str, Enum):
    STARTING = "starting"  # asked for, not running yet: placement counts its demand on its host
    RUNNING = "running"
    DOWN = "down"  # stopped without being asked to; kept until recovery has dealt with it


LIVE_STATES = frozenset({ContainerState.STARTING, ContainerState.RUNNING})


class Container(Base):
    """A replica of a service on a host. ``name`` is usm's own; ``docker_id`` the engine's, once it exists;
    ``port`` the host port it is published on, if any."""

    __tablename__ = "containers"
    __table_args__ = (CheckConstraint("port BETWEEN 1 AND 65535", name="port"),)
    refs: ClassVar[dict[str, str]] = {"service": "Service", "host": "Host"}
    blocking = ("load_balancer", "registration_server")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    docker_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), index=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    state: Mapped[ContainerState] = mapped_column(enum_type(ContainerState, "container_state"),
                                                  default=ContainerState.STARTING, index=True)
    port: Mapped[int | None]

    service: Mapped[Service] = relationship(back_populates="containers")
    host: Mapped[Host] = relationship(back_populates="containers")
    load_balancer: Mapped[LoadBalancer | None] = relationship(back_populates="container")
    registration_server: Mapped[RegistrationServer | None] = relationship(back_populates="container")

    def problems(self) -> list[str]:
        if self.port is not None and not 1 <= self.port <= 65535:
            return [f"port is {self.port}; a port is between 1 and 65535"]
        return []


class _RegionalComponent:
    """A support component of a region that runs as one container; named by that container."""

    key = "container"
    refs: ClassVar[dict[str, str]] = {"container": "Container", "region": "Region"}

    id: Mapped[int] = mapped_column(primary_key=True)

    @declared_attr
    def container_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey("containers.id"), unique=True)

    @declared_attr
    def region_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey("regions.id"), index=True)


class LoadBalancer(_RegionalComponent, Base):
    """The region's nginx load balancer in front of its frontend services."""

    __tablename__ = "load_balancers"

    container: Mapped[Container] = relationship(back_populates="load_balancer")
    region: Mapped[Region] = relationship(back_populates="load_balancers")


class RegistrationServer(_RegionalComponent, Base):
    """The region's service registry, where replicas register and find the closest instance of a dependency."""

    __tablename__ = "registration_servers"

    container: Mapped[Container] = relationship(back_populates="registration_server")
    region: Mapped[Region] = relationship(back_populates="registration_servers")


__all__ = ["LIVE_STATES", "Container", "ContainerState", "LoadBalancer", "RegistrationServer"]

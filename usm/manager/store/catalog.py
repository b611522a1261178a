"""What is deployed: apps, their services (with dependencies and replica bounds) and the event predictions that
raise a service's minimum replicas for a while (original-system §1.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from usm.manager.store.base import NAME_LENGTH, Base, UtcDateTime, enum_type

if TYPE_CHECKING:
    from usm.manager.store.containers import Container

WEEK = timedelta(days=7)


class ServiceKind(str, Enum):
    FRONTEND = "frontend"  # reached by users, through the region's load balancer
    BACKEND = "backend"
    DATABASE = "database"  # not launched with its app (original-system §1.3)
    SYSTEM = "system"  # a support component (proxy, monitor, registry): never moved or stopped by placement


service_dependencies = Table(
    "service_dependencies",
    Base.metadata,
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
    Column("dependency_id", ForeignKey("services.id", ondelete="RESTRICT"), primary_key=True, index=True),
    CheckConstraint("service_id <> dependency_id", name="not_itself"),
)
"""``service_id`` depends on ``dependency_id``."""


class App(Base):
    """A named group of services launched together, in their order in ``services``."""

    __tablename__ = "apps"
    refs: ClassVar[dict[str, str]] = {"services": "Service"}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(String(1024), default="")
    members: Mapped[list[AppService]] = relationship(
        back_populates="app", cascade="all, delete-orphan", order_by="AppService.launch_order")

    @property
    def services(self) -> list[Service]:
        """The app's services in launch order."""
        return [m.service for m in self.members]

    @services.setter
    def services(self, services: Iterable[Service]) -> None:
        # Memberships of services that stay are kept (re-adding one would insert the same key it deletes).
        kept = {m.service.name: m for m in self.members}
        members = [kept.get(s.name) or AppService(service=s) for s in services]
        for order, member in enumerate(members):
            member.launch_order = order
        self.members = members

    def problems(self) -> list[str]:
        return _twice("services", [m.service.name for m in self.members])


class AppService(Base):
    """A service's membership of an app, with its place in the app's launch order."""

    __tablename__ = "app_services"

    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="RESTRICT"), primary_key=True,
                                            index=True)
    launch_order: Mapped[int] = mapped_column(default=0)
    app: Mapped[App] = relationship(back_populates="members")
    service: Mapped[Service] = relationship()


class Service(Base):
    """A deployable service: its image, ports, kind, replica bounds, expected memory and dependencies."""

    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint("min_replicas >= 0", name="min_replicas"),
        CheckConstraint("max_replicas = 0 OR max_replicas >= min_replicas", name="max_replicas"),
        CheckConstraint("expected_memory >= 0", name="expected_memory"),
        CheckConstraint("internal_port BETWEEN 1 AND 65535", name="internal_port"),
        CheckConstraint("external_port BETWEEN 1 AND 65535", name="external_port"),
    )
    refs: ClassVar[dict[str, str]] = {"dependencies": "Service"}
    blocking = ("containers", "dependents", "apps")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    image: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[ServiceKind] = mapped_column(enum_type(ServiceKind, "service_kind"), default=ServiceKind.BACKEND)
    internal_port: Mapped[int | None]
    external_port: Mapped[int | None]
    min_replicas: Mapped[int] = mapped_column(default=1)
    max_replicas: Mapped[int] = mapped_column(default=0)  # 0: unlimited
    expected_memory: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes a replica is expected to use

    dependencies: Mapped[list[Service]] = relationship(
        secondary=service_dependencies, primaryjoin=id == service_dependencies.c.service_id,
        secondaryjoin=id == service_dependencies.c.dependency_id, back_populates="dependents",
        order_by="Service.name")
    dependents: Mapped[list[Service]] = relationship(
        secondary=service_dependencies, primaryjoin=id == service_dependencies.c.dependency_id,
        secondaryjoin=id == service_dependencies.c.service_id, back_populates="dependencies",
        order_by="Service.name")
    apps: Mapped[list[App]] = relationship(secondary="app_services", viewonly=True, order_by="App.name")
    predictions: Mapped[list[EventPrediction]] = relationship(
        back_populates="service", cascade="all, delete-orphan", order_by="EventPrediction.name")
    containers: Mapped[list[Container]] = relationship(back_populates="service", order_by="Container.name")

    def problems(self) -> list[str]:
        found = []
        if self.min_replicas < 0:
            found.append(f"min_replicas is {self.min_replicas}; it must be 0 or more")
        if self.max_replicas < 0:
            found.append(f"max_replicas is {self.max_replicas}; it must be 0 (unlimited) or more")
        elif 0 < self.max_replicas < self.min_replicas:
            found.append(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas}); "
                         "raise it, or set it to 0 for no limit")
        if self.expected_memory < 0:
            found.append(f"expected_memory is {self.expected_memory}; it must be 0 or more bytes")
        for field in ("internal_port", "external_port"):
            port = getattr(self, field)
            if port is not None and not 1 <= port <= 65535:
                found.append(f"{field} is {port}; a port is between 1 and 65535")
        names = [d.name for d in self.dependencies]
        found += _twice("dependencies", names)
        if self.name in names:
            found.append(f"service {self.name!r} cannot depend on itself")
        elif (cycle := dependency_cycle(self)) is not None:
            found.append(f"the dependencies would form a cycle: {' -> '.join(cycle)}; a service cannot need "
                         "itself, even through others")
        return found


class EventPrediction(Base):
    """A window in which a service needs at least ``min_replicas`` (an expected event: a sale, a match).

    The window runs from ``starts_at`` (included) to ``ends_at`` (excluded); a ``weekly`` one repeats every seven
    days from ``starts_at`` on, and so lasts less than a week. While windows are active, the largest of their
    ``min_replicas`` replaces the service's own (``min_replicas_at``).
    """

    __tablename__ = "event_predictions"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="window"),
        CheckConstraint("min_replicas >= 0", name="min_replicas"),
    )
    refs: ClassVar[dict[str, str]] = {"service": "Service"}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(1024), default="")
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    weekly: Mapped[bool] = mapped_column(default=False)
    min_replicas: Mapped[int]
    service: Mapped[Service] = relationship(back_populates="predictions")

    @property
    def window(self) -> Window:
        return (self.starts_at, self.ends_at, self.weekly, self.min_replicas)

    def problems(self) -> list[str]:
        found = []
        for field in ("starts_at", "ends_at"):
            if getattr(self, field).tzinfo is None:
                found.append(f"{field} has no time zone; give one (e.g. 2026-12-24T18:00:00+00:00)")
        if found:
            return found
        if self.ends_at <= self.starts_at:
            found.append(f"ends_at ({self.ends_at.isoformat()}) is not after starts_at "
                         f"({self.starts_at.isoformat()})")
        elif self.weekly and self.ends_at - self.starts_at >= WEEK:
            found.append("a weekly window must last less than a week (it would always be active); "
                         "shorten it or make it not weekly")
        if self.min_replicas < 0:
            found.append(f"min_replicas is {self.min_replicas}; it must be 0 or more")
        return found


def window_active(starts_at: datetime, ends_at: datetime, weekly: bool, at: datetime) -> bool:
    """Whether ``at`` falls in the window ``[starts_at, ends_at)``, repeated every week from ``starts_at`` on when
    ``weekly`` (weeks of exactly seven days: a weekly window follows UTC, not a local clock's daylight saving)."""
    if at < starts_at:
        return False
    if not weekly:
        return at < ends_at
    return (at - starts_at) % WEEK < ends_at - starts_at


Window = tuple[datetime, datetime, bool, int]
"""An event prediction as the replica rule reads it: starts_at, ends_at, weekly, min_replicas."""


def min_replicas_at(own: int, windows: Iterable[Window], at: datetime) -> int:
    """A service's minimum replicas at ``at``: the largest ``min_replicas`` of its windows active then (so
    overlapping events each get what they asked for), else its own. The original took the most recently edited
    prediction and ignored the times of day (bug 11)."""
    active = [replicas for starts_at, ends_at, weekly, replicas in windows
              if window_active(starts_at, ends_at, weekly, at)]
    return max(active) if active else own


def dependency_cycle(service: Service) -> list[str] | None:
    """A path of service names from ``service`` back to itself through dependencies, or ``None``."""
    path: list[str] = [service.name]
    seen: set[str] = set()

    def visit(current: Service) -> bool:
        for dependency in current.dependencies:
            if dependency.name == service.name:
                path.append(service.name)
                return True
            if dependency.name in seen:
                continue
            seen.add(dependency.name)
            path.append(dependency.name)
            if visit(dependency):
                return True
            path.pop()
        return False

    return path if visit(service) else None


def _twice(field: str, names: list[str]) -> list[str]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    return [f"{field} lists {', '.join(map(repr, repeated))} more than once"] if repeated else []


__all__ = [
    "App",
    "AppService",
    "EventPrediction",
    "Service",
    "ServiceKind",
    "Window",
    "dependency_cycle",
    "min_replicas_at",
    "service_dependencies",
    "window_active",
]

"""Who manages what: regional workers (usm managers run for a region, alive while their heartbeats arrive) and
the assignment of hosts to them. A host with no assignment is the master's (original-system §1.5, §5.2).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import CheckConstraint, ForeignKey, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from usm.manager.store.base import NAME_LENGTH, Base, UtcDateTime, enum_type
from usm.manager.store.errors import Invalid

if TYPE_CHECKING:
    from usm.manager.store.hosts import Host, Node, Region


class WorkerState(str, Enum):
    READY = "ready"
    DOWN = "down"  # its heartbeats stopped


class Worker(Base):
    """A regional manager: where it answers (``address``, ``port``), the region it was given, and when it was
    last heard from."""

    __tablename__ = "workers"
    __table_args__ = (CheckConstraint("port BETWEEN 1 AND 65535", name="port"),)
    refs: ClassVar[dict[str, str]] = {"region": "Region"}
    blocking = ("assignments", "nodes")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), index=True)
    address: Mapped[str] = mapped_column(String(NAME_LENGTH))
    port: Mapped[int]
    state: Mapped[WorkerState] = mapped_column(enum_type(WorkerState, "worker_state"), default=WorkerState.READY)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)

    region: Mapped[Region | None] = relationship(back_populates="workers")
    assignments: Mapped[list[HostAssignment]] = relationship(back_populates="worker")
    nodes: Mapped[list[Node]] = relationship(back_populates="worker")

    def problems(self) -> list[str]:
        found = []
        if not 1 <= self.port <= 65535:
            found.append(f"port is {self.port}; a port is between 1 and 65535")
        if self.heartbeat_at is not None and self.heartbeat_at.tzinfo is None:
            found.append("heartbeat_at has no time zone; give one (e.g. UTC)")
        return found


class HostAssignment(Base):
    """The worker that manages a host (at most one per host)."""

    __tablename__ = "host_assignments"
    key = "host"
    refs: ClassVar[dict[str, str]] = {"host": "Host", "worker": "Worker"}

    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"), index=True)

    host: Mapped[Host] = relationship(back_populates="assignment")
    worker: Mapped[Worker] = relationship(back_populates="assignments")


def heartbeat(session: Session, worker: str, at: datetime) -> bool:
    """Record that ``worker`` was heard from at ``at`` (it is ready again); ``False`` if no such worker."""
    if at.tzinfo is None:
        raise Invalid(f"heartbeat time {at.isoformat()} has no time zone; pass an aware time")
    changed = session.execute(
        update(Worker).where(Worker.name == worker).values(heartbeat_at=at, state=WorkerState.READY))
    return changed.rowcount == 1


def silent_workers(session: Session, since: datetime) -> list[Worker]:
    """The ready workers not heard from since ``since`` (never heard from counts as silent), by name: the caller
    marks them down and hands their hosts over."""
    heard = Worker.heartbeat_at
    query = (select(Worker).where(Worker.state == WorkerState.READY, heard.is_(None) | (heard < since))
             .order_by(Worker.name))
    return list(session.scalars(query))


__all__ = ["HostAssignment", "Worker", "WorkerState", "heartbeat", "silent_workers"]

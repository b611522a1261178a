"""Who manages what: regional workers (usm managers run for a region, alive while their heartbeats arrive), the
lease that says which manager holds each region, the assignment of hosts to workers, and stop requests. A host
with no assignment, and a region whose lease names no worker, are the master's (original-system §1.5, §5.2).

The database is the only channel between the master and its workers (the original's Kafka topics and REST calls,
§5): a worker writes its heartbeats and reads its lease, assignments and stop requests; the master reads the
heartbeats and moves leases. A lease carries an ``epoch`` that grows at every change of hands. A manager acts on
a region only inside a transaction that first locks the region's lease row and finds its own epoch there
(:func:`lock_held`), so two managers never act on one region at the same moment, and a manager that lost a region
and got it back cannot carry out what it decided in its former tenure (the epoch is a fencing token).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import ClassVar

from sqlalchemy import CheckConstraint, ForeignKey, String, delete, select, tuple_, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from usm.manager.store.base import NAME_LENGTH, Base, UtcDateTime, enum_type
from usm.manager.store.errors import Invalid, NotFound
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


class RegionLease(Base):
    """Which manager holds a region: its worker, or the master when ``worker`` is empty. ``epoch`` grows by one at
    every change of hands; ``since`` is when the holder got it."""

    __tablename__ = "region_leases"
    key = "region"
    refs: ClassVar[dict[str, str]] = {"region": "Region", "worker": "Worker"}

    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"), index=True)
    epoch: Mapped[int] = mapped_column(default=0)
    since: Mapped[datetime] = mapped_column(UtcDateTime)

    region: Mapped[Region] = relationship()
    worker: Mapped[Worker | None] = relationship()


class StopRequest(Base):
    """A request that a worker (``worker`` empty: every worker) carry out its shutdown sequence and exit; the
    master writes one when it stops, and workers look for one between cycles."""

    __tablename__ = "stop_requests"
    key = "id"
    refs: ClassVar[dict[str, str]] = {"worker": "Worker"}

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")

    worker: Mapped[Worker | None] = relationship()


@dataclass(frozen=True)
class Lease:
    """A region's lease as read: its holder's name (``None``: the master) and epoch."""

    region: str
    holder: str | None
    epoch: int


# --- workers and heartbeats ----------------------------------------------------------------------------------


def register_worker(session: Session, name: str, region: str, address: str, port: int, at: datetime) -> Worker:
    """Create or update the worker ``name`` for ``region``, heard from at ``at`` (a worker that starts again
    under its name keeps its row, so the master sees it return)."""
    _require_zone(at)
    place = _region(session, region)
    worker = session.scalars(select(Worker).where(Worker.name == name)).one_or_none()
    if worker is None:
        worker = Worker(name=name)
        session.add(worker)
    elif worker.region_id not in (None, place.id):
        raise Invalid(f"worker {name!r} is registered for region {worker.region.name!r}, not {region!r}; give "
                      "this worker another name, or stop the other one and delete its row")
    worker.region, worker.address, worker.port = place, address, port
    worker.state, worker.heartbeat_at = WorkerState.READY, at
    problems = worker.problems()
    if problems:
        raise Invalid(f"worker {name!r}: {'; '.join(problems)}", tuple(problems))
    session.flush()
    return worker


def heartbeat(session: Session, worker: str, at: datetime) -> bool:
    """Record that ``worker`` was heard from at ``at`` (it is ready again); ``False`` if no such worker."""
    _require_zone(at)
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


def mark_down(session: Session, workers: Iterable[str]) -> None:
    session.execute(update(Worker).where(Worker.name.in_(list(workers))).values(state=WorkerState.DOWN))


def unregister_worker(session: Session, worker: str) -> None:
    """Remove a worker that stopped: its assignments and stop requests go, its region's lease passes to the master
    (with a new epoch)."""
    row = session.scalars(select(Worker).where(Worker.name == worker)).one_or_none()
    if row is None:
        return
    for lease in session.scalars(select(RegionLease).where(RegionLease.worker_id == row.id).with_for_update()):
        lease.worker_id, lease.epoch = None, lease.epoch + 1
    session.execute(delete(HostAssignment).where(HostAssignment.worker_id == row.id))
    session.execute(delete(StopRequest).where(StopRequest.worker_id == row.id))
    session.delete(row)
    session.flush()


# --- leases and assignments ------------------------------------------------------------------------------------


def ensure_leases(session: Session, regions: Iterable[str], at: datetime) -> None:
    """Give each of ``regions`` a lease if it has none yet, held by the master."""
    _require_zone(at)
    wanted = set(regions)
    found = {name: id_ for id_, name in session.execute(select(_REGIONS.c.id, _REGIONS.c.name)
                                                         .where(_REGIONS.c.name.in_(wanted)))}
    missing = sorted(wanted - set(found))
    if missing:
        raise NotFound(f"no region {', '.join(map(repr, missing))} in the store; regions are world areas such as "
                       "europe (usm.geo.regions.AREAS) or rows added through the hub")
    leased = set(session.scalars(select(RegionLease.region_id).where(RegionLease.region_id.in_(found.values()))))
    for name, id_ in sorted(found.items()):
        if id_ not in leased:
            session.add(RegionLease(region_id=id_, worker_id=None, epoch=0, since=at))
    session.flush()


def leases(session: Session) -> dict[str, Lease]:
    """Every region's lease by region name."""
    rows = session.execute(select(_REGIONS.c.name, _WORKERS.c.name, _LEASES.c.epoch)
                           .select_from(_LEASES.join(_REGIONS).outerjoin(_WORKERS, _WORKERS.c.id == _LEASES.c.worker_id)))
    return {region: Lease(region, holder, epoch) for region, holder, epoch in rows}


def hand_over(session: Session, region: str, worker: str | None, at: datetime) -> Lease:
    """Give ``region`` to ``worker`` (``None``: to the master), with a new epoch, and assign the region's stored
    hosts to its new holder. The lease row is locked first: a step its former holder is carrying out under the
    lock ends before the region changes hands."""
    _require_zone(at)
    place = _region(session, region)
    lease = session.scalars(select(RegionLease).where(RegionLease.region_id == place.id)
                            .with_for_update()).one_or_none()
    if lease is None:
        raise NotFound(f"region {region!r} has no lease yet; the master gives every region one when it starts")
    holder = _worker(session, worker) if worker is not None else None
    if holder is not None and holder.region_id != place.id:
        raise Invalid(f"worker {worker!r} runs for region {holder.region.name if holder.region else 'none'!r}, "
                      f"not {region!r}")
    lease.worker_id, lease.epoch, lease.since = (holder.id if holder else None), lease.epoch + 1, at
    hosts = select(_HOSTS.c.id).where(_HOSTS.c.region_id == place.id)
    session.execute(delete(HostAssignment).where(HostAssignment.host_id.in_(hosts)))
    if holder is not None:
        for host in assignable(session, holder.name):
            session.add(HostAssignment(host_id=host.id, worker_id=holder.id))
    session.flush()
    return Lease(region, worker, lease.epoch)


def assignable(session: Session, worker: str) -> list[Host]:
    """The hosts that may be assigned to ``worker``: the stored hosts of its region that no other worker manages,
    by name. The hub offers these; :func:`hand_over` assigns them all when the region comes to the worker."""
    row = _worker(session, worker)
    if row.region_id is None:
        raise Invalid(f"worker {worker!r} has no region; register it for one (usm worker --region NAME)")
    others = select(HostAssignment.host_id).where(HostAssignment.worker_id != row.id)
    query = (select(Host).where(Host.region_id == row.region_id, Host.id.not_in(others)).order_by(Host.name))
    return list(session.scalars(query))


def assigned_hosts(session: Session, worker: str | None) -> list[str]:
    """The names of the stored hosts ``worker`` manages (``None``: the master's, those assigned to no worker)."""
    assigned = select(_ASSIGNMENTS.c.host_id)
    if worker is None:
        query = select(_HOSTS.c.name).where(_HOSTS.c.id.not_in(assigned))
    else:
        holders = _HOSTS.join(_ASSIGNMENTS).join(_WORKERS, _WORKERS.c.id == _ASSIGNMENTS.c.worker_id)
        query = select(_HOSTS.c.name).select_from(holders).where(_WORKERS.c.name == worker)
    return list(session.scalars(query.order_by(_HOSTS.c.name)))


def lock_held(session: Session, held: Mapping[str, int]) -> list[str]:
    """Lock the leases of the regions in ``held`` (region name -> the epoch its caller holds it at) until the
    transaction ends, and return those no longer held at that epoch (empty: the caller may act on them all).

    The lock is a no-op update of the lease rows: a row lock on PostgreSQL (held by a concurrent
    :func:`hand_over`'s ``SELECT ... FOR UPDATE`` until it commits, and holding it off until this transaction
    does), the database's write lock on SQLite. Both backends support it alike, which ``FOR UPDATE`` alone
    does not (SQLite ignores it)."""
    if not held:
        return []
    ids = dict(session.execute(select(_REGIONS.c.name, _REGIONS.c.id).where(_REGIONS.c.name.in_(list(held)))).all())
    pairs = [(ids[name], epoch) for name, epoch in held.items() if name in ids]
    locked = session.execute(
        update(RegionLease).where(tuple_(RegionLease.region_id, RegionLease.epoch).in_(pairs))
        .values(epoch=RegionLease.epoch).returning(RegionLease.region_id)).scalars().all()
    names = {id_: name for name, id_ in ids.items()}
    still = {names[id_] for id_ in locked}
    return sorted(name for name in held if name not in still)


# --- stop requests and cleaning up ------------------------------------------------------------------------------


def request_stop(session: Session, at: datetime, worker: str | None = None, reason: str = "") -> None:
    """Ask ``worker`` (``None``: every worker) to stop."""
    _require_zone(at)
    target = _worker(session, worker).id if worker is not None else None
    session.add(StopRequest(worker_id=target, requested_at=at, reason=reason))
    session.flush()


def stop_requested(session: Session, worker: str) -> str | None:
    """The reason of a stop request that concerns ``worker`` (``None``: there is none)."""
    mine = select(_WORKERS.c.id).where(_WORKERS.c.name == worker).scalar_subquery()
    query = (select(StopRequest.reason).where(StopRequest.worker_id.is_(None) | (StopRequest.worker_id == mine))
             .order_by(StopRequest.id).limit(1))
    return session.scalars(query).first()


def clear_runtime(session: Session) -> None:
    """Forget every worker, lease, assignment and stop request: what the master leaves when it stops (the next
    master starts from regions held by no one but itself)."""
    for model in (StopRequest, HostAssignment, RegionLease):
        session.execute(delete(model))
    session.execute(update(_NODES).values(worker_id=None))
    session.execute(delete(Worker))
    session.flush()


def clear_stop_requests(session: Session) -> None:
    session.execute(delete(StopRequest))


# --- helpers ----------------------------------------------------------------------------------------------------


def _region(session: Session, name: str) -> Region:
    row = session.scalars(select(Region).where(Region.name == name)).one_or_none()
    if row is None:
        known = ", ".join(session.scalars(select(Region.name).order_by(Region.name)))
        raise NotFound(f"there is no region {name!r} in the store (there are: {known or 'none'})")
    return row


def _worker(session: Session, name: str) -> Worker:
    row = session.scalars(select(Worker).where(Worker.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"there is no worker {name!r}; it registers itself when `usm worker` starts")
    return row


def _require_zone(at: datetime) -> None:
    if at.tzinfo is None:
        raise Invalid(f"time {at.isoformat()} has no time zone; pass an aware time")


_REGIONS, _HOSTS, _NODES = Region.__table__, Host.__table__, Node.__table__
_WORKERS, _ASSIGNMENTS, _LEASES = Worker.__table__, HostAssignment.__table__, RegionLease.__table__


__all__ = ["HostAssignment", "Lease", "RegionLease", "StopRequest", "Worker", "WorkerState", "assignable",
           "assigned_hosts", "clear_runtime", "clear_stop_requests", "ensure_leases", "hand_over", "heartbeat",
           "leases", "lock_held", "mark_down", "register_worker", "request_stop", "silent_workers",
           "stop_requested", "unregister_worker"]

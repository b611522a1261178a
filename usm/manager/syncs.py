"""Background syncs: the swarm's nodes every 10 s and usm's EC2 instances every 45 s, each on a thread of its own.

A cycle must not wait for AWS, whose regions answer in seconds, nor read it every cycle (the original synced
cloud hosts every 45 s and nodes every 10 s, §5.3-5.4). So each source gets a :class:`PeriodicSync`: it fetches
on its own thread at a fixed period (the control loop's :class:`~usm.manager.scheduler.Scheduler`, so a slow
fetch skips its overrun periods instead of stacking them) and keeps the latest snapshot, which the live collector
reads at every cycle without waiting.

What a fetch could not read is never a fresh empty answer: a failed fetch keeps the previous snapshot, and a
partial one (an EC2 region that did not answer) says which parts it kept (``Fetched.problems``). Each failure is
queued once for the collector to report as a cycle problem. An actuator that changed a source (stopped an
instance) amends the snapshot at once, so the next cycle does not act on what it just changed; the amendment
also survives a fetch that was already under way when it was made.

Time is injected (``clock`` and ``wait``, as for the scheduler), so tests drive the threads on a virtual clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Generic, TypeVar

from usm.manager.scheduler import Overrun, Scheduler

if TYPE_CHECKING:  # the adapters below take these; importing boto3 or docker is the caller's choice
    from usm.actuators.ec2 import CloudInstance, CloudSync, Ec2
    from usm.actuators.swarm import Swarm, SwarmNode

log = logging.getLogger("usm.sync")

V = TypeVar("V")


@dataclass(frozen=True)
class Fetched(Generic[V]):
    """One fetch: the new snapshot, and the parts of the source it could not read (kept from the previous one)."""

    value: V
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncProblem:
    """A fetch that failed, in whole or in part: which source, why, and when (the sync's clock)."""

    source: str
    reason: str
    at: float


class PeriodicSync(Generic[V]):
    """Fetches ``fetch(previous)`` every ``interval`` seconds of ``clock`` on a thread, keeping the latest value."""

    def __init__(self, name: str, fetch: Callable[[V | None], Fetched[V]], interval: float,
                 clock: Callable[[], float] = time.monotonic, wait: Callable[[float], bool] | None = None) -> None:
        self.name = name
        self.fetch = fetch
        self.scheduler = Scheduler(interval, clock, wait)
        self._lock = threading.Lock()
        self._value: V | None = None
        self._taken: float | None = None
        self._problems: list[SyncProblem] = []
        self._fetching = False
        self._late: list[Callable[[V], V]] = []  # amendments made while a fetch was under way
        self._first = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self.scheduler.period

    # --- what the collector reads ------------------------------------------------------------------------

    def latest(self) -> V | None:
        """The latest snapshot (``None`` until a fetch succeeded)."""
        with self._lock:
            return self._value

    @property
    def taken_at(self) -> float | None:
        """When the latest snapshot was fetched, on the sync's clock."""
        with self._lock:
            return self._taken

    def take_problems(self) -> list[SyncProblem]:
        """The failures since the last call, each given out once."""
        with self._lock:
            problems, self._problems = self._problems, []
        return problems

    def wait_first(self, timeout: float) -> bool:
        """Wait until the first fetch ended (well or not), at most ``timeout`` seconds; whether it did."""
        return self._first.wait(timeout)

    # --- what an actuator does ---------------------------------------------------------------------------

    def amend(self, change: Callable[[V], V]) -> None:
        """Apply ``change`` to the snapshot now, and again to the result of a fetch already under way."""
        with self._lock:
            if self._value is not None:
                self._value = change(self._value)
            if self._fetching:
                self._late.append(change)

    # --- running -----------------------------------------------------------------------------------------

    def sync_once(self, _due: float | None = None) -> None:
        """One fetch, now, on the calling thread (the thread's loop calls this at every due time). The snapshot
        and the problems carry the clock's time when the fetch began."""
        began = self.scheduler.clock()
        with self._lock:
            previous, self._fetching, self._late = self._value, True, []
        try:
            fetched = self.fetch(previous)
        except Exception as error:  # noqa: BLE001 - any failure of a source is reported, and the loop goes on
            with self._lock:
                self._fetching = False
                self._problems.append(SyncProblem(self.name, _one_line(error), began))
        else:
            with self._lock:
                value = fetched.value
                for change in self._late:
                    value = change(value)
                self._value, self._taken, self._fetching = value, began, False
                self._problems.extend(SyncProblem(self.name, p, began) for p in fetched.problems)
        finally:
            self._first.set()

    def run(self, rounds: int | None = None) -> int:
        """Fetch at every due time until stopped (or ``rounds`` fetches); how many ran."""
        return self.scheduler.run(self.sync_once, self._overrun, rounds)

    def start(self) -> PeriodicSync[V]:
        """Run on a daemon thread of its own (the first fetch at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name=f"usm-sync-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the fetch under way (at once while waiting) and wait for the thread to end."""
        self.scheduler.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _overrun(self, overrun: Overrun) -> None:
        log.warning("the %s sync due at %.3f took until %.3f: %d sync(s) skipped", self.name, overrun.started,
                    overrun.finished, overrun.skipped)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --- the EC2 source ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudView:
    """usm's live EC2 instances as last seen, and the regions read at least once: a host missing from a region
    that was read is gone, one from a region never read is merely unknown."""

    instances: tuple[CloudInstance, ...] = ()
    regions: frozenset[str] = field(default_factory=frozenset)

    @cached_property
    def _by_host(self) -> dict[str, CloudInstance]:
        """Host name -> its instance: the oldest, as ``Ec2.named`` picks, if a name was launched twice."""
        by_host: dict[str, CloudInstance] = {}
        for i in sorted(self.instances, key=lambda i: i.launched_at, reverse=True):
            by_host[i.host] = i
        return by_host

    def instance(self, host: str) -> CloudInstance | None:
        return self._by_host.get(host)

    def with_instance(self, changed: CloudInstance) -> CloudView:
        """This view with ``changed`` as an actuator just saw it (a terminated instance leaves it)."""
        kept = tuple(i for i in self.instances if i.instance_id != changed.instance_id)
        if changed.state != "terminated":
            kept = tuple(sorted((*kept, changed), key=lambda i: (i.region, i.host, i.instance_id)))
        return replace(self, instances=kept)


def merge_cloud(previous: CloudView | None, sync: CloudSync, asked: Iterable[str]) -> Fetched[CloudView]:
    """The view after ``sync`` of the regions ``asked``: each region that answered as it is now, each region that
    failed as it was (and named in ``problems``)."""
    failed = frozenset(sync.failed)
    before = previous or CloudView()
    kept = tuple(i for i in before.instances if i.region in failed)
    instances = tuple(sorted((*kept, *sync.instances), key=lambda i: (i.region, i.host, i.instance_id)))
    problems = tuple(f"region {region} not read, its hosts kept as last seen: {error}"
                     for region, error in sorted(sync.failed.items()))
    return Fetched(CloudView(instances, before.regions | (frozenset(asked) - failed)), problems)


def cloud_fetch(ec2: Ec2) -> Callable[[CloudView | None], Fetched[CloudView]]:
    """The EC2 source: every live usm instance of the configured regions (``Ec2.sync``), merged."""

    def fetch(previous: CloudView | None) -> Fetched[CloudView]:
        return merge_cloud(previous, ec2.sync(), ec2.settings.regions)

    return fetch


# --- the swarm source ----------------------------------------------------------------------------------------


def swarm_fetch(swarm: Swarm) -> Callable[[Sequence[SwarmNode] | None], Fetched[tuple[SwarmNode, ...]]]:
    """The swarm source: its nodes, as the manager host's engine lists them."""

    def fetch(previous: Sequence[SwarmNode] | None) -> Fetched[tuple[SwarmNode, ...]]:
        return Fetched(swarm.nodes())

    return fetch


__all__ = ["CloudView", "Fetched", "PeriodicSync", "SyncProblem", "cloud_fetch", "merge_cloud", "swarm_fetch"]

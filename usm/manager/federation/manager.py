"""The federated runner: ``usm run``'s live loop (``LiveRunner``: scheduler, hot reload, metrics) with what a master
or a worker adds between cycles:

1. a worker asked to stop (a stop request in the store) stops its loop;
2. the regions the manager holds are read from the store; when they changed, its collectors are made again for
   their hosts, its view shows their hosts and services, and its actuator acts under their leases at the new
   epochs; a manager that holds no region skips the cycle;
3. the newest stored policy version is compared with the one in force, as the hot reload compares files, and a
   new one is loaded before the cycle: a policy applied on the master is in force at every worker's next cycle.

Beside the loop, a pulse thread beats (worker) or supervises (master) every heartbeat interval, so a slow cycle
never delays a heartbeat into a false take-over. The decision log records, with every record, the manager's name
and the version of the policy the cycle ran under.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy.exc import SQLAlchemyError

from usm.collectors.history import History
from usm.engine import Engine, InvalidSource, Policy, load_policy
from usm.manager.decisionlog import DecisionLog
from usm.manager.federation.coordinator import Coordinator, LeasedActuator
from usm.manager.federation.partition import RegionalView, Regions, ScopedActuator
from usm.manager.loop import ControlLoop, CycleReport
from usm.manager.metrics import ManagerMetrics
from usm.manager.ports import Actuator, Collector
from usm.manager.reload import Rejected, Reloaded
from usm.manager.runner import LiveRunner
from usm.manager.scheduler import Scheduler
from usm.manager.store.configs import ConfigKind, ConfigVersion, file_bytes

log = logging.getLogger("usm.federation")


class StoredPolicy:
    """Hot reload from the store (``usm.manager.reload.PolicyWatcher``'s interface): the newest stored version is
    written out under ``directory/v<N>`` and loaded from there, so its digest is computed from the very bytes the
    master stored. ``versions`` maps each digest loaded to its version number."""

    def __init__(self, coordinator: Coordinator, directory: Path) -> None:
        self.coordinator = coordinator
        self.directory = Path(directory)
        self.versions: dict[str, int] = {}
        self.seen = 0

    def load(self) -> Policy:
        row = self.coordinator.version(ConfigKind.POLICY)
        if row is None:
            raise LookupError("the store holds no policy yet: apply one on the master (usm policy apply DIR)")
        return self._load(row)

    def _load(self, row: ConfigVersion) -> Policy:
        self.seen = row.version
        target = self.directory / f"v{row.version}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name, content in file_bytes(row).items():
            (target / Path(name).name).write_bytes(content)
        policy = load_policy(target)
        self.versions[policy.digest] = row.version
        return policy

    def poll(self) -> Reloaded | Rejected | None:
        try:
            if self.coordinator.newest(ConfigKind.POLICY) == self.seen:
                return None
            row = self.coordinator.version(ConfigKind.POLICY)
        except SQLAlchemyError as error:  # read again next cycle; the policy in force stays
            log.error("the stored policy version cannot be read (%s)", getattr(error, "orig", None) or error)
            return None
        if row is None:
            return None
        try:
            return Reloaded(self._load(row))
        except InvalidSource as invalid:
            return Rejected(tuple(str(p) for p in invalid.problems))


class FederatedLog(DecisionLog):
    """The decision log with the manager's name and the policy version in force on every record."""

    def __init__(self, stream: IO[str], manager: str, version: Callable[[], int | None]) -> None:
        super().__init__(stream)
        self.manager = manager
        self.version = version

    def write(self, records: Iterator[dict[str, Any]]) -> None:
        version = self.version()
        super().write({**r, "manager": self.manager, "policy_version": version} for r in records)


@dataclass
class FederatedRunner(LiveRunner):
    """``LiveRunner`` with a check before every cycle (``prepare``: ``False`` skips the cycle)."""

    prepare: Callable[[float], bool] = field(default=lambda at: True)

    def cycle(self, at: float) -> CycleReport | None:
        try:
            ready = self.prepare(at)
        except SQLAlchemyError as error:  # the store is away: without its leases nothing may be done
            log.error("the cycle at %.3f is skipped: the store cannot be read (%s)", at,
                      getattr(error, "orig", None) or error)
            self.metrics.cycles.labels(result="error").inc()
            return None
        if not ready:
            return None
        return super().cycle(at)


@dataclass
class Member:
    """One manager of a federation, assembled: its runner, and what changes when the regions it holds change
    (``retarget(regions)``: the live collectors are made again for their hosts)."""

    coordinator: Coordinator
    view: RegionalView
    leased: LeasedActuator
    retarget: Callable[[Iterable[str]], None] = field(default=lambda held: None)
    runner: FederatedRunner | None = None
    held: dict[str, int] = field(default_factory=dict)
    stopped_by: str | None = None  # the reason of the stop request obeyed
    _idle_noted: bool = False

    def prepare(self, at: float) -> bool:
        reason = self.coordinator.stop_requested()
        if reason is not None:
            self.stopped_by = reason
            log.warning("%s: stop requested (%s)", self.coordinator.name, reason or "no reason given")
            assert self.runner is not None
            self.runner.scheduler.stop()
            return False
        held = self.coordinator.held()
        if held != self.held:
            gained, lost = sorted(set(held) - set(self.held)), sorted(set(self.held) - set(held))
            log.warning("%s now holds %s%s%s", self.coordinator.name, ", ".join(sorted(held)) or "no region",
                        f" (gained {', '.join(gained)})" if gained else "", f" (lost {', '.join(lost)})" if lost else "")
            self.held = held
            self.view.held = frozenset(held)
            self.leased.held = dict(held)
            self.retarget(held)
            self._idle_noted = False
        if not held:
            if not self._idle_noted:
                log.info("%s holds no region: waiting for one", self.coordinator.name)
                self._idle_noted = True
            return False
        return True


def federated_loop(coordinator: Coordinator, source: Collector, actuator: Actuator, regions: Regions, data: Path,
                   stack: ExitStack, retarget: Callable[[Iterable[str]], None] | None = None,
                   clock: Callable[[], float] = time.time) -> Member:
    """A manager's loop over its regions' part of what ``source`` observes, acting through ``actuator`` scoped to
    its regions and under their leases, with the stored policy, a history and a decision log in ``data``."""
    data.mkdir(parents=True, exist_ok=True)
    view = RegionalView(source, regions)
    leased = LeasedActuator(ScopedActuator(actuator, view), coordinator, regions)
    watcher = StoredPolicy(coordinator, data / "policy")
    engine = Engine(watcher.load())
    history = stack.enter_context(History(str(data / "history.duckdb")))
    stream = stack.enter_context((data / "decisions.jsonl").open("a", encoding="utf-8"))
    decisions = FederatedLog(stream, coordinator.name, lambda: watcher.versions.get(engine.policy.digest))
    loop = ControlLoop(engine, history, view, leased, decisions)
    member = Member(coordinator, view, leased, retarget or (lambda held: None))
    member.runner = FederatedRunner(loop, watcher, Scheduler(engine.policy.settings.period, clock=clock),
                                    ManagerMetrics(), timer=time.perf_counter, prepare=member.prepare)
    return member


class Pulse:
    """A thread that beats (worker) or supervises (master) every heartbeat interval, on the wall clock; a failed
    beat (the store unreachable) is logged and the next one is tried."""

    def __init__(self, action: Callable[[float], object], interval: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.scheduler = Scheduler(interval, clock=clock)
        self.action = action
        self.thread = threading.Thread(target=self._run, name="usm-pulse", daemon=True)

    def _run(self) -> None:
        self.scheduler.run(self._once)

    def _once(self, at: float) -> None:
        try:
            self.action(at)
        except Exception:  # the store may be away for a while; the next beat tries again
            log.exception("the heartbeat/supervision at %.3f failed", at)

    def start(self) -> Pulse:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.scheduler.stop()
        self.thread.join(timeout=30)


__all__ = ["FederatedLog", "FederatedRunner", "Member", "Pulse", "StoredPolicy", "federated_loop"]

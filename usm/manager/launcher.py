"""Launching an app: each service's minimum replicas, wave by wave (``usm.placement.launch``), near a place or on
chosen hosts, a wave starting only once the replicas of the waves before it are ready.

``AppLaunch`` is one launch as a state machine on the caller's clock: ``advance(at)`` does what is due at ``at``
and sets ``next_at``, when it wants to look again (``None`` once it is over). ``launch_app`` drives it on a
:class:`~usm.actuators.clock.Clock` (the wall clock live, a virtual one in tests and benchmarks); the simulator
drives it between its own events. It acts through a :class:`LaunchActuator`: start one replica as a placement step
says, tell whether a replica is starting, ready (it runs and is reachable) or gone, stop one.

Each service gets ``max(1, min_replicas)`` replicas: a service with none could not serve its dependents. Replicas
it has already count, so launching an app again only adds what is missing. A wave is ready once each of its
services has that many ready replicas.

A start fails when the actuator refuses it, when no host can take the replica, when a replica disappears before
it is ready, or when a wave is not ready within ``timeout``. Nothing more starts then, and ``on_failure`` decides
what happens to what did:

* ``report`` (the default): it stays; the report says exactly which replicas run, which still start, which
  failed and why, and which services were never started, so an operator can fix the cause and launch again (the
  running replicas count then);
* ``rollback``: every replica this launch started is stopped, latest first; replicas that ran before it stay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from usm.actuators.clock import Clock
from usm.geo.sphere import Coordinates
from usm.manager.ports import Outcome
from usm.placement.launch import LaunchPlan, LaunchRefused
from usm.placement.model import DEFAULT_OPTIONS, Cluster, HostState, PlacementOptions, ServiceSpec
from usm.placement.plans import HostChoice, NoPlan, PlaceReplica, StartHost, UseHost
from usm.placement.replicas import plan_replica, reserve

DEFAULT_POLL = 1.0
"""Seconds between two looks at a wave's replicas."""

DEFAULT_TIMEOUT = 600.0
"""Seconds a wave may take to be ready before the launch counts as failed."""


class ReplicaState(str, Enum):
    STARTING = "starting"
    READY = "ready"  # runs and is reachable
    GONE = "gone"  # not there: it failed, or was stopped


@dataclass(frozen=True)
class Started:
    """What became of a request to start a replica: its container name and host, or why it did not start."""

    ok: bool
    container: str = ""
    host: str = ""
    detail: str = ""


class LaunchActuator(Protocol):
    def start_replica(self, step: PlaceReplica, at: float) -> Started:
        """Start one replica as ``step`` says; never raise for a start that fails: say so."""

    def replica_state(self, container: str, at: float) -> ReplicaState:
        """Whether ``container`` is starting, ready (runs and is reachable) or gone."""

    def stop_replica(self, container: str, at: float) -> Outcome:
        """Stop ``container``; never raise: say so in the outcome."""


class OnFailure(str, Enum):
    REPORT = "report"  # keep what was started and say precisely what runs and what does not
    ROLLBACK = "rollback"  # stop what this launch started


@dataclass(frozen=True)
class ServiceStatus:
    """One service at the end of a launch. ``state`` is ``ready``, ``starting``, ``failed``, ``not started`` or
    ``rolled back``; ``failures`` say why, naming the container when there was one."""

    service: str
    wave: int
    state: str
    ready: tuple[str, ...] = ()
    starting: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchReport:
    """How a launch went: ``ok``, its times, when each wave was ready, every service's status, and on a failure
    what failed and what was stopped again (``rolled_back``, ``stop_failures``)."""

    app: str
    ok: bool
    started_at: float
    finished_at: float
    waves: tuple[tuple[str, ...], ...]
    wave_ready_at: tuple[float, ...]
    services: tuple[ServiceStatus, ...]
    failure: str = ""
    rolled_back: tuple[str, ...] = ()
    stop_failures: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at

    def status(self, service: str) -> ServiceStatus:
        for status in self.services:
            if status.service == service:
                return status
        raise KeyError(f"service {service!r} is not part of the launch of {self.app!r}")

    def in_state(self, state: str) -> tuple[str, ...]:
        """The services in ``state`` (see ``ServiceStatus``), in launch order."""
        return tuple(s.service for s in self.services if s.state == state)

    def summary(self) -> str:
        """The report in a few lines of words."""
        if self.ok:
            return (f"app {self.app} launched in {self.duration:g}s: {len(self.services)} services in "
                    f"{len(self.waves)} waves")
        lines = [f"app {self.app} failed to launch after {self.duration:g}s: {self.failure}"]
        for state in ("ready", "starting", "failed", "not started", "rolled back"):
            services = self.in_state(state)
            if services:
                lines.append(f"  {state}: {', '.join(services)}")
        if self.rolled_back:
            lines.append(f"  stopped again: {', '.join(self.rolled_back)}")
        lines.extend(f"  could not stop: {failure}" for failure in self.stop_failures)
        return "\n".join(lines)


@dataclass
class _Tracked:
    """A service's replicas the launch counts: the ones it had, then the ones started for it."""

    wanted: int
    containers: list[str] = field(default_factory=list)
    ours: list[str] = field(default_factory=list)
    ready: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)


class AppLaunch:
    """One launch of ``plan``: see the module's documentation.

    ``specs`` gives each service's demand and minimum replicas; ``cluster(at)`` the cluster as it is at ``at`` (read
    when a wave starts); ``where`` is a place to start replicas near (placement chooses the hosts, as for any new
    replica) or a list of host names used in turn.
    """

    def __init__(self, plan: LaunchPlan, specs: Mapping[str, ServiceSpec], actuator: LaunchActuator,
                 cluster: Callable[[float], Cluster], where: Coordinates | Sequence[str], at: float, *,
                 on_failure: OnFailure = OnFailure.REPORT, options: PlacementOptions = DEFAULT_OPTIONS,
                 poll: float = DEFAULT_POLL, timeout: float = DEFAULT_TIMEOUT) -> None:
        missing = [s for s in plan.services if s not in specs]
        if missing:
            raise LaunchRefused(f"app {plan.app!r} cannot be launched: no spec (demand, minimum replicas) for "
                                f"{', '.join(missing)}")
        if not isinstance(where, Coordinates) and not where:
            raise LaunchRefused(f"app {plan.app!r} cannot be launched: give a place or at least one host")
        if poll <= 0 or timeout <= 0:
            raise ValueError("poll and timeout must be longer than 0 seconds")
        self.plan = plan
        self.specs = specs
        self.actuator = actuator
        self.cluster = cluster
        self.where = where
        self.on_failure = on_failure
        self.options = options
        self.poll = poll
        self.timeout = timeout
        self.started_at = at
        self.next_at: float | None = at
        self._wave = -1
        self._deadline = at
        self._turn = 0  # the next of the chosen hosts
        self._tracked: dict[str, _Tracked] = {}
        self._wave_ready_at: list[float] = []
        self._failure = ""
        self._rolled_back: list[str] = []
        self._stop_failures: list[str] = []
        self._finished_at = at

    @property
    def done(self) -> bool:
        return self.next_at is None

    def advance(self, at: float) -> None:
        """Do what is due at ``at``: look at the current wave's replicas, start the next wave when it is ready,
        give up on a failure. Calling earlier than ``next_at`` does nothing."""
        if self.next_at is None or at < self.next_at:
            return
        if self._wave >= 0 and not self._wave_ready(at):
            return
        self._start_next_wave(at)

    def report(self) -> LaunchReport:
        """The launch so far (final once ``done``)."""
        statuses = []
        for index, wave in enumerate(self.plan.waves):
            for service in wave:
                statuses.append(self._status(service, index))
        return LaunchReport(
            app=self.plan.app, ok=self.done and not self._failure, started_at=self.started_at,
            finished_at=self._finished_at, waves=self.plan.waves, wave_ready_at=tuple(self._wave_ready_at),
            services=tuple(statuses), failure=self._failure, rolled_back=tuple(self._rolled_back),
            stop_failures=tuple(self._stop_failures))

    # --- the waves ---------------------------------------------------------------------------------------

    def _wave_ready(self, at: float) -> bool:
        """Whether the current wave is ready; on the way, record which replicas are, and fail on a lost one or
        at the deadline."""
        short = []
        for service in self.plan.waves[self._wave]:
            tracked = self._tracked[service]
            for container in tracked.containers:
                if container in tracked.ready:
                    continue
                state = self.actuator.replica_state(container, at)
                if state is ReplicaState.READY:
                    tracked.ready.add(container)
                elif state is ReplicaState.GONE:
                    tracked.lost.add(container)
                    tracked.failures.append(f"{container} stopped before it was ready")
                    self._fail(at, f"replica {container} of {service} stopped before it was ready")
                    return False
            if len(tracked.ready) < tracked.wanted:
                short.append(f"{service} has {len(tracked.ready)} of {tracked.wanted} ready")
        if not short:
            self._wave_ready_at.append(at)
            return True
        if at >= self._deadline:
            for service in self.plan.waves[self._wave]:
                tracked = self._tracked[service]
                if len(tracked.ready) < tracked.wanted:
                    tracked.failures.append(f"not ready within {self.timeout:g}s")
            self._fail(at, f"wave {self._wave + 1} was not ready within {self.timeout:g}s ({'; '.join(short)})")
            return False
        self.next_at = at + self.poll
        return False

    def _start_next_wave(self, at: float) -> None:
        self._wave += 1
        if self._wave == len(self.plan.waves):
            self._finish(at)
            return
        cluster = self.cluster(at)
        for service in self.plan.waves[self._wave]:
            spec = self.specs[service]
            existing = [c.name for c in cluster.replicas(service)]
            tracked = self._tracked[service] = _Tracked(max(1, spec.min_replicas), list(existing))
            for _ in range(tracked.wanted - len(existing)):
                step = self._step(cluster, spec)
                if isinstance(step, str):
                    tracked.failures.append(step)
                    self._fail(at, f"no replica of {service} could start: {step}")
                    return
                started = self.actuator.start_replica(step, at)
                if not started.ok:
                    tracked.failures.append(started.detail)
                    self._fail(at, f"a replica of {service} did not start: {started.detail}")
                    return
                tracked.containers.append(started.container)
                tracked.ours.append(started.container)
                cluster = reserve(cluster, step.on, service, spec.demand, started.container)
        self._deadline = at + self.timeout
        self.next_at = at  # look at once: replicas that ran already make a wave ready without waiting

    def _step(self, cluster: Cluster, spec: ServiceSpec) -> PlaceReplica | str:
        """The step that starts one replica of ``spec`` where the launch says, or why there is none."""
        if isinstance(self.where, Coordinates):
            step = plan_replica(cluster, spec.name, spec.demand, self.where, self.options)
            return step.reason if isinstance(step, NoPlan) else step
        host = self.where[self._turn % len(self.where)]
        self._turn += 1
        if not cluster.has_host(host):
            return f"there is no host {host}"
        capacity = cluster.host(host)
        if capacity.state is HostState.STOPPING:
            return f"host {host} is being drained"
        on: HostChoice = StartHost(host, 0.0) if capacity.state is HostState.STOPPED else UseHost(host, 0.0)
        return PlaceReplica(spec.name, capacity.location, on)

    # --- the end -----------------------------------------------------------------------------------------

    def _finish(self, at: float) -> None:
        self.next_at = None
        self._finished_at = at

    def _fail(self, at: float, why: str) -> None:
        self._failure = why
        if self.on_failure is OnFailure.ROLLBACK:
            ours = [c for wave in self.plan.waves[: self._wave + 1] for s in wave if s in self._tracked
                    for c in self._tracked[s].ours]
            for container in reversed(ours):
                outcome = self.actuator.stop_replica(container, at)
                if outcome.ok:
                    self._rolled_back.append(container)
                else:
                    self._stop_failures.append(f"{container}: {outcome.detail}")
        self._finish(at)

    def _status(self, service: str, wave: int) -> ServiceStatus:
        tracked = self._tracked.get(service)
        if tracked is None:
            return ServiceStatus(service, wave, "not started")
        ready = tuple(c for c in tracked.containers if c in tracked.ready and c not in self._rolled_back)
        starting = tuple(c for c in tracked.containers
                         if c not in tracked.ready and c not in tracked.lost and c not in self._rolled_back)
        if tracked.ours and all(c in self._rolled_back for c in tracked.ours):
            state = "rolled back"
        elif tracked.failures:
            state = "failed"
        elif len(ready) >= tracked.wanted:
            state = "ready"
        else:
            state = "starting"
        return ServiceStatus(service, wave, state, ready, starting, tuple(tracked.failures))


def launch_app(plan: LaunchPlan, specs: Mapping[str, ServiceSpec], actuator: LaunchActuator,
               cluster: Callable[[float], Cluster], where: Coordinates | Sequence[str], clock: Clock, *,
               on_failure: OnFailure = OnFailure.REPORT, options: PlacementOptions = DEFAULT_OPTIONS,
               poll: float = DEFAULT_POLL, timeout: float = DEFAULT_TIMEOUT) -> LaunchReport:
    """Launch ``plan`` from ``clock.now()`` on, sleeping on ``clock`` between looks, and return the report once
    the launch is over (see ``AppLaunch``)."""
    launch = AppLaunch(plan, specs, actuator, cluster, where, clock.now(), on_failure=on_failure, options=options,
                       poll=poll, timeout=timeout)
    while launch.next_at is not None:
        wait = launch.next_at - clock.now()
        if wait > 0:
            clock.sleep(wait)
        launch.advance(max(clock.now(), launch.next_at))
    return launch.report()


def stop_app(plan: LaunchPlan, cluster: Cluster, actuator: LaunchActuator, at: float) -> tuple[Outcome, ...]:
    """Stop every replica of the app's services, dependents first (``plan.stop_order()``); system containers
    stay. One outcome per replica."""
    outcomes = []
    for wave in plan.stop_order():
        for service in wave:
            for container in cluster.replicas(service):
                if not container.system:
                    outcomes.append(actuator.stop_replica(container.name, at))
    return tuple(outcomes)


__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_TIMEOUT",
    "AppLaunch",
    "LaunchActuator",
    "LaunchReport",
    "OnFailure",
    "ReplicaState",
    "ServiceStatus",
    "Started",
    "launch_app",
    "stop_app",
]

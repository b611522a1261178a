"""The hub's actions on the simulator's world (``usm.simulator.world.World``): what ``usm serve`` wires, so the
API's actions do something a newcomer can watch.

World time follows the hub's clock from the moment the hub starts. Each action first lets the world catch up
(containers finish starting, hosts finish booting), carries out the plan step the action stands for, and then
mirrors the world into the store (``usm.manager.seed.mirror_world``). What the simulated world does not model
(swarm nodes, shells, files) is recorded in the store or answered as simulated, and said so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from usm.geo.sphere import Coordinates
from usm.manager.launcher import LaunchReport, OnFailure, launch_app, stop_app
from usm.manager.seed import mirror_world
from usm.manager.store import Node, crud
from usm.placement.hosts import choose_host
from usm.placement.launch import LaunchPlan
from usm.placement.model import HostState, Resources
from usm.placement.plans import NoPlan, PlaceReplica, StartHost, StopHost, TerminateHost, UseHost
from usm.simulator.launches import WorldClock, launch_specs
from usm.simulator.world import World
from usm.web.actions import ActionRefused, CommandOutput, Done, Operation, Sync


class SimulatedActions:
    """``usm.web.actions.Actions`` over a simulated world; one action at a time (the world is not thread-safe)."""

    def __init__(self, world: World, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.world = world
        self.sessions = sessions
        self.clock = clock
        self.started = clock()
        self._known: set[str] = set()  # every host the world has shown: the store rows it may change
        self._lock = threading.Lock()

    def _now(self) -> float:
        return max(self.world.now, (self.clock() - self.started).total_seconds())

    def _mirror(self) -> tuple[str, ...]:
        snapshot = self.world.snapshot()
        self._known |= {h["name"] for h in snapshot["hosts"]}
        with self.sessions.begin() as session:
            return tuple(mirror_world(session, snapshot, self.world.scenario, self._known))

    def _execute(self, step: object) -> Done:
        outcome = self.world.execute(step, self._now())
        if not outcome.ok:
            raise ActionRefused(outcome.detail)
        return Done(outcome.detail, self._mirror())

    def launch(self, service: str, host: str | None, near: Coordinates | None) -> Done:
        with self._lock:
            self.world.advance(self._now())
            definition = self.world.scenario.service_by_name.get(service)
            if definition is None:
                raise ActionRefused(f"the simulated world has no service {service!r} (only the scenario's)")
            cluster = self.world.cluster()
            if host is not None:
                if not cluster.has_host(host):
                    raise ActionRefused(f"the simulated world has no host {host!r}")
                place = cluster.host(host)
                choice = StartHost(host, 0.0) if place.state is HostState.STOPPED else UseHost(host, 0.0)
                near = place.location
            else:
                assert near is not None
                demand = Resources(ram=definition.memory, disk=definition.disk)
                choice = choose_host(cluster, demand, near, self.world.placement_options())
                if isinstance(choice, NoPlan):
                    raise ActionRefused(choice.reason)
            return self._execute(PlaceReplica(service, near, choice))

    def launch_app(self, plan: LaunchPlan, where: Coordinates | tuple[str, ...], on_failure: OnFailure) -> LaunchReport:
        """The simulator's launcher (as in ``usm.simulator.launches``) on the world's clock: world time runs on
        while the waves start, so the launch is over when this returns."""
        with self._lock:
            self.world.advance(self._now())
            self._refuse_unknown(plan)
            world = self.world
            report = launch_app(plan, launch_specs(world), world, lambda _: world.cluster(), where, WorldClock(world),
                                on_failure=on_failure)
            self._mirror()
            return report

    def stop_app(self, plan: LaunchPlan) -> Done:
        with self._lock:
            self.world.advance(self._now())
            self._refuse_unknown(plan)
            outcomes = stop_app(plan, self.world.cluster(), self.world, self.world.now)
            changed = self._mirror()
        failed = [o.detail for o in outcomes if not o.ok]
        if failed:
            raise ActionRefused(f"app {plan.app}: {len(failed)} of {len(outcomes)} replicas did not stop: "
                                + "; ".join(failed))
        return Done(f"app {plan.app}: {len(outcomes)} replicas stopped, dependents first", changed)

    def _refuse_unknown(self, plan: LaunchPlan) -> None:
        unknown = [s for s in plan.services if s not in self.world.scenario.service_by_name]
        if unknown:
            raise ActionRefused(f"the simulated world has no service {', '.join(unknown)} (only the scenario's)")

    def host(self, host: str, operation: Operation) -> Done:
        with self._lock:
            if operation == "start":
                raise ActionRefused("the simulated world starts a host when a container is placed on it: launch a "
                                    f"container with host {host!r}")
            return self._execute(StopHost(host) if operation == "stop" else TerminateHost(host))

    def node(self, node: str, availability: str | None, role: str | None) -> Done:
        changes = {k: v for k, v in (("availability", availability), ("role", role)) if v is not None}
        with self._lock, self.sessions.begin() as session:
            crud.update(session, Node, node, **changes)
        return Done(f"simulated world: node {node} recorded as {', '.join(changes.values())}", (node,))

    def ssh(self, host: str, command: str, timeout: float) -> CommandOutput:
        return CommandOutput(0, "", f"simulated world: {host} has no shell; the command was not run\n")

    def sftp(self, host: str, path: str, content: bytes, mode: int) -> Done:
        return Done(f"simulated world: {host} has no file system; {len(content)} bytes for {path} were not written")

    def sync(self, what: Sync) -> Done:
        with self._lock:
            self.world.advance(self._now())
            changed = self._mirror()
        return Done(f"the store matches the simulated world at {self.world.now:.0f} s ({len(changed)} changes)",
                    changed)


__all__ = ["SimulatedActions"]

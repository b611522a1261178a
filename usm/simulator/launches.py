"""App launches in a simulation: live mode's launcher (``usm.manager.launcher``) on the world's virtual clock.

The world is the launcher's ``LaunchActuator``; ``WorldClock`` is its clock (sleeping advances the world, so the
replicas' start-up times pass as they would). ``ScheduledLaunches`` runs a scenario's ``launches`` between the
control loop's cycles: each launch advances at its own times (every ``poll`` seconds while a wave starts), so its
duration does not depend on the tick. Until its app is launched, a service is ``held`` by the world: the loop does
not keep its minimum replicas, which would start the app's services all at once, in no order.
"""

from __future__ import annotations

from usm.manager.launcher import DEFAULT_POLL, AppLaunch, LaunchReport, OnFailure
from usm.placement.launch import LaunchPlan, LaunchRefused, plan_launch
from usm.placement.model import Resources, ServiceSpec
from usm.simulator.scenario import AppLaunchDefinition, Scenario
from usm.simulator.world import World


class WorldClock:
    """The :class:`~usm.actuators.clock.Clock` of a world: its time, and sleeping advances it."""

    def __init__(self, world: World) -> None:
        self.world = world

    def now(self) -> float:
        return self.world.now

    def sleep(self, seconds: float) -> None:
        self.world.advance(self.world.now + max(0.0, seconds))


def launch_plan(scenario: Scenario, app: str, running: set[str]) -> LaunchPlan:
    """The launch plan of a scenario's ``app``; services in ``running`` may be depended on from outside it."""
    members = next(a.services for a in scenario.apps if a.name == app)
    by_name = scenario.service_by_name
    return plan_launch(app, {s: by_name[s].dependencies for s in members}, running)


def launch_specs(world: World) -> dict[str, ServiceSpec]:
    """What a launch starts of each service: its memory and disk, and its minimum replicas now."""
    return {s.name: ServiceSpec(s.name, Resources(0.0, s.memory, s.disk), low)
            for s, low in zip(world.scenario.services, world.min_replicas(), strict=True)}


class ScheduledLaunches:
    """The launches of ``world``'s scenario, carried out as the simulation reaches their times."""

    def __init__(self, world: World, poll: float = DEFAULT_POLL) -> None:
        self.world = world
        self.poll = poll
        self._waiting = list(world.scenario.launches)  # by time
        self._running: list[tuple[AppLaunchDefinition, AppLaunch]] = []
        self._reports: list[LaunchReport] = []
        for definition in self._waiting:
            world.held |= set(self._members(definition.app))

    def run_until(self, at: float) -> None:
        """Start and advance every launch due by ``at``, in time order, advancing the world as they go."""
        while True:
            due = [(launch.next_at, 1, i) for i, (_, launch) in enumerate(self._running) if launch.next_at is not None]
            if self._waiting:
                due.append((self._waiting[0].at, 0, -1))
            if not due:
                return
            when, _, index = min(due)
            if when > at:
                return
            self.world.advance(when)
            if index < 0:
                self._start(self._waiting.pop(0), when)
            else:
                definition, launch = self._running[index]
                launch.advance(when)
                if launch.done:
                    self._end(definition, launch.report())
                    del self._running[index]

    def reports(self) -> tuple[LaunchReport, ...]:
        """The launches that are over, in the order they ended."""
        return tuple(self._reports)

    def _members(self, app: str) -> tuple[str, ...]:
        return next(a.services for a in self.world.scenario.apps if a.name == app)

    def _start(self, definition: AppLaunchDefinition, at: float) -> None:
        world = self.world
        running = {service for service, count in world.replicas().items() if count}
        try:
            plan = launch_plan(world.scenario, definition.app, running)
        except LaunchRefused as refused:
            self._end(definition, LaunchReport(definition.app, False, at, at, (), (), (), failure=str(refused)))
            return
        if definition.one_by_one:
            plan = plan.one_by_one()
        where = definition.near if definition.near is not None else definition.hosts
        launch = AppLaunch(plan, launch_specs(world), world, lambda _: world.cluster(), where, at,
                           on_failure=OnFailure(definition.on_failure), poll=self.poll)
        self._running.append((definition, launch))
        launch.advance(at)
        if launch.done:
            self._end(definition, launch.report())
            self._running.pop()

    def _end(self, definition: AppLaunchDefinition, report: LaunchReport) -> None:
        self._reports.append(report)
        self.world.log.append((self.world.now, report.summary().splitlines()[0]))
        if report.ok:
            self.world.held -= set(self._members(definition.app))


__all__ = ["ScheduledLaunches", "WorldClock", "launch_plan", "launch_specs"]

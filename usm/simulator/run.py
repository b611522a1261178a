"""Running a scenario: the simulated world, the real control loop, a virtual clock.

``simulate`` advances the world tick by tick and runs one control-loop cycle per tick, with the
world as the loop's collector and actuator. The engine, the history, placement and the decision
log are exactly those of live mode; only the world is simulated. The scenario's app launches run
between the cycles, with live mode's launcher (``usm.simulator.launches``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from usm.collectors.history import History
from usm.engine import Engine, Policy
from usm.manager.decisionlog import DecisionLog
from usm.manager.launcher import LaunchReport
from usm.manager.loop import ControlLoop
from usm.manager.support import RegionSupportLifecycle
from usm.simulator.launches import ScheduledLaunches
from usm.simulator.scenario import Scenario
from usm.simulator.world import World

ACTION_SCHEMA = {"at": pl.Float64, "action": pl.String, "target": pl.String, "container": pl.String,
                 "rule": pl.String}


@dataclass(frozen=True)
class Simulation:
    scenario: Scenario
    policy: Policy
    seed: int
    timeline: pl.DataFrame  # one row per tick: the world's KPIs
    replicas: pl.DataFrame  # at, service, replicas
    actions: pl.DataFrame  # at, action, target, container, rule
    steps: int  # plan steps executed
    decisions: Path | None  # the decision log, when written
    initial: dict[str, Any]
    final: dict[str, Any]
    launches: tuple[LaunchReport, ...] = ()  # the scenario's app launches that ended

    @property
    def ticks(self) -> int:
        return self.timeline.height


SUPPORT_COMPONENTS = ("registry", "load-balancer", "worker")
"""What runs in each region that has containers (started in this order, stopped in the reverse)."""


@dataclass
class SimulatedSupport:
    """The per-region support components of the simulated world: which run where."""

    running: dict[str, set[str]] = field(default_factory=dict)  # region -> components running there

    def components(self) -> list[_Component]:
        return [_Component(name, self.running) for name in SUPPORT_COMPONENTS]

    def count(self) -> int:
        return sum(len(names) for names in self.running.values())


@dataclass
class _Component:
    name: str
    running: dict[str, set[str]]

    def start(self, region: str) -> None:
        self.running.setdefault(region, set()).add(self.name)

    def stop(self, region: str) -> None:
        self.running.get(region, set()).discard(self.name)


@contextmanager
def fewer_collections(young: int = 10_000) -> Iterator[None]:
    """Run with the cyclic garbage collector's youngest generation ``young`` objects large and the objects that
    exist now (the policy, the world, the history) frozen out of its scans; both undone after.

    A simulation makes millions of short-lived objects and few cycles: with CPython's defaults the collector
    ran hundreds of times a second and rescanned the long-lived objects, about 0.7 ms of a 10 ms tick on the
    1,000-container benchmark world (7% of the run). Reference counting still frees nearly everything at once."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def simulate(scenario: Scenario, policy: Policy, seed: int | None = None, out: Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> Simulation:
    """Run ``scenario`` under ``policy``. With ``out``, the decision log goes to
    ``out/decisions.jsonl``. ``progress(done, total)`` is called after every tick."""
    seed = scenario.seed if seed is None else seed
    world = World(scenario, seed=seed)
    launches = ScheduledLaunches(world)
    engine = Engine(policy)
    ticks = scenario.ticks
    kpis: list[dict[str, Any]] = []
    replica_rows: list[tuple[float, str, int]] = []
    action_rows: list[tuple[Any, ...]] = []
    steps = 0
    initial = world.snapshot()
    with ExitStack() as stack:
        stack.enter_context(fewer_collections())
        history = stack.enter_context(History())
        log = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            log = DecisionLog(stack.enter_context((out / "decisions.jsonl").open("w", encoding="utf-8")))
        support = SimulatedSupport()
        loop = ControlLoop(engine, history, world, world, log, support=RegionSupportLifecycle(support.components()))
        for index in range(ticks):
            at = index * scenario.tick
            launches.run_until(at)
            world.advance(at)
            report = loop.run_cycle(at)
            steps += sum(1 for o in report.outcomes if o is not None and o.ok)
            action_rows.extend((a.at, a.action.value, a.target, a.container, a.rule) for a in report.cycle.actions)
            kpis.append({**world.kpis(at), "support_components": support.count()})
            replica_rows.extend((at, service, count) for service, count in sorted(world.replicas().items()))
            if progress:
                progress(index + 1, ticks)
    return Simulation(
        scenario=scenario, policy=policy, seed=seed,
        timeline=pl.DataFrame(kpis),
        replicas=pl.DataFrame(replica_rows, schema={"at": pl.Float64, "service": pl.String, "replicas": pl.Int64},
                              orient="row"),
        actions=pl.DataFrame(action_rows, schema=ACTION_SCHEMA, orient="row"),
        steps=steps, decisions=(out / "decisions.jsonl") if out is not None else None,
        initial=initial, final=world.snapshot(), launches=launches.reports(),
    )

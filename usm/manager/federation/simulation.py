"""The simulator's world run by a federation: one regional manager per owner, each with its own engine, history
and planner, seeing its regions only (``partition``) and acting through a scoped actuator, against the same world
one node would manage alone. Every cycle both give a :class:`CycleRecord` (the engine's actions and state, and
the plan steps), so the split can be checked against one node cycle for cycle.

Each cycle, every manager decides on the same observation of the world (taken once per cycle time, as the world's
observation hands its failures out once) and then carries out its steps, as one node would decide on the whole
observation and then act. The scenario's app launches run between cycles in both, on the world itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import polars as pl

from usm.collectors.history import History
from usm.engine import Action, Engine, Policy
from usm.manager.federation.partition import RegionalView, Regions, ScopedActuator
from usm.manager.loop import ControlLoop, CycleReport
from usm.manager.ports import Observation
from usm.simulator.launches import ScheduledLaunches
from usm.simulator.scenario import Scenario
from usm.simulator.world import World


@dataclass(frozen=True)
class CycleRecord:
    """What was decided at one cycle time: actions in the engine's order, the engine's state (streaks by entity,
    cooldowns), and the plan steps (sorted by their text: managers plan side by side)."""

    at: float
    actions: tuple[Action, ...]
    streaks: pl.DataFrame
    cooldowns: dict[tuple[str, str, str], float]
    steps: tuple[str, ...]
    executed: int  # steps carried out successfully


def record(at: float, reports: Iterable[CycleReport]) -> CycleRecord:
    reports = list(reports)
    actions = sorted((a for r in reports for a in r.cycle.actions), key=lambda a: (a.container is None, a.target))
    streaks = pl.concat([r.cycle.state.streaks for r in reports]).sort("entity") if reports else pl.DataFrame()
    cooldowns = {k: v for r in reports for k, v in r.cycle.state.cooldowns.items()}
    steps = sorted(repr(p.step) for r in reports for p in r.planned)
    executed = sum(1 for r in reports for o in r.outcomes if o is not None and o.ok)
    return CycleRecord(at, tuple(actions), streaks, cooldowns, tuple(steps), executed)


class OncePerCycle:
    """The world observed once per cycle time, however many managers look."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._last: tuple[float, Observation] | None = None

    def observe(self, at: float) -> Observation:
        if self._last is None or self._last[0] != at:
            self._last = (at, self.world.observe(at))
        return self._last[1]


def run_one_node(scenario: Scenario, policy: Policy, ticks: int | None = None) -> tuple[list[CycleRecord], World]:
    """The scenario managed by one node (as ``usm simulate`` does)."""
    world = World(scenario)
    launches = ScheduledLaunches(world)
    records = []
    with History() as history:
        loop = ControlLoop(Engine(policy), history, world, world)
        for at in _times(scenario, ticks):
            launches.run_until(at)
            world.advance(at)
            records.append(record(at, [loop.run_cycle(at)]))
    return records, world


def run_federated(scenario: Scenario, policy: Policy, owners: Mapping[str, Iterable[str]], regions: Regions,
                  ticks: int | None = None) -> tuple[list[CycleRecord], World]:
    """The scenario managed by one regional manager per owner (owner name -> the regions it holds)."""
    held = {name: frozenset(r) for name, r in owners.items()}
    overlap = [r for r in set().union(*held.values()) if sum(r in h for h in held.values()) > 1]
    if overlap:
        raise ValueError(f"a region has one holder; {', '.join(sorted(overlap))} is held twice")
    world = World(scenario)
    launches = ScheduledLaunches(world)
    shared = OncePerCycle(world)
    records = []
    with ExitStack() as stack:
        loops: list[ControlLoop] = []
        for name in sorted(held):
            view = RegionalView(shared, regions, held[name])
            history = stack.enter_context(History())
            loops.append(ControlLoop(Engine(policy), history, view, ScopedActuator(world, view)))
        for at in _times(scenario, ticks):
            launches.run_until(at)
            world.advance(at)
            records.append(record(at, [loop.run_cycle(at) for loop in loops]))
    return records, world


def _times(scenario: Scenario, ticks: int | None) -> Iterable[float]:
    return (index * scenario.tick for index in range(scenario.ticks if ticks is None else ticks))


def differences(one: list[CycleRecord], split: list[CycleRecord]) -> list[str]:
    """Where the federation decided otherwise than one node, cycle by cycle (empty: the same everywhere)."""
    found: list[str] = []
    for a, b in zip(one, split, strict=True):
        for what, x, y in (("actions", a.actions, b.actions), ("steps", a.steps, b.steps),
                           ("cooldowns", a.cooldowns, b.cooldowns)):
            if x != y:
                found.append(f"{a.at:g}s: {what} differ: {_show(x)} != {_show(y)}")
        if not a.streaks.equals(b.streaks):
            found.append(f"{a.at:g}s: streaks differ")
    return found


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 400 else text[:400] + "..."


__all__ = ["CycleRecord", "OncePerCycle", "differences", "record", "run_federated", "run_one_node"]

"""The control loop: one cycle at a time, collectors -> history -> engine -> placement -> actuators.

Each cycle also steps the per-region support components (registry, load balancer, worker), when the loop
has them: they start in a region that has containers and stop five minutes after it has none.

The simulator drives it on a virtual clock with its world as collector and actuator; live mode
drives it on the wall clock with real collectors and actuators, or with a recording actuator
in a dry run. The loop itself never reads a clock: the driver passes the cycle time.
"""

from __future__ import annotations

from dataclasses import dataclass

from usm.collectors.history import History
from usm.engine import Cycle, Engine
from usm.engine.inventory import Inventory
from usm.manager.decisionlog import DecisionLog, cycle_records, inventory_record
from usm.manager.ports import Actuator, Collector, Observation, Outcome
from usm.manager.support import RegionSupportLifecycle, SupportOutcome
from usm.placement.model import DEFAULT_OPTIONS, PlacementOptions
from usm.placement.planner import FailedContainer, Planned, PlannerState, nothing_to_plan, plan_cycle
from usm.placement.plans import NoPlan
from usm.placement.recovery import GiveUpRecovery


@dataclass(frozen=True)
class CycleReport:
    at: float
    observation: Observation
    cycle: Cycle
    planned: tuple[Planned, ...]
    outcomes: tuple[Outcome | None, ...]  # None where nothing was executed (no plan, gave up)
    support: tuple[SupportOutcome, ...] = ()  # per-region support components started or stopped


def containers_by_region(inventory: Inventory) -> dict[str, int]:
    """Region -> application containers on its hosts (the inventory holds no support component)."""
    region = {h.name: h.region for h in inventory.hosts}
    counts: dict[str, int] = {}
    for c in inventory.containers:
        if region.get(c.host):
            counts[region[c.host]] = counts.get(region[c.host], 0) + 1
    return counts


class ControlLoop:
    def __init__(self, engine: Engine, history: History, collector: Collector, actuator: Actuator,
                 log: DecisionLog | None = None, options: PlacementOptions = DEFAULT_OPTIONS,
                 support: RegionSupportLifecycle | None = None) -> None:
        self.engine = engine
        self.history = history
        self.collector = collector
        self.actuator = actuator
        self.log = log
        self.options = options
        self.planner = PlannerState()
        self.support = support
        self.last_pruned = 0.0
        self._logged_inventory: Inventory | None = None  # as the decision log last recorded it
        self._regions: tuple[Inventory, dict[str, int]] | None = None  # an inventory and its containers by region

    def run_cycle(self, at: float) -> CycleReport:
        observation = self.collector.observe(at)
        settings = self.engine.policy.settings
        samples = self.engine.simulate(at, observation.inventory, observation.samples)
        self.history.append(samples)
        terms = self.history.terms(at, settings.period, self.engine.compiled.terms, settings.retention)
        cycle = self.engine.cycle(at, observation.inventory, terms)
        failures = [FailedContainer(f.container, f.service, f.host, f.lineage) for f in observation.failures]
        if nothing_to_plan(cycle.actions, failures, observation.services, observation.inventory.replicas):
            planned, self.planner = (), PlannerState(self.planner.recovery.pruned(at))
        else:
            planned, self.planner = plan_cycle(at, cycle.actions, observation.cluster, observation.services,
                                               observation.requests, failures, self.planner,
                                               observation.options or self.options)
        outcomes = tuple(self._execute(item, at) for item in planned)
        support = () if self.support is None else \
            tuple(self.support.step(self._containers_by_region(observation.inventory), at))
        if self.log is not None:
            change = inventory_record(self._logged_inventory, observation.inventory, at)
            self._logged_inventory = observation.inventory
            self.log.write(cycle_records(cycle, planned, outcomes, change, support))
        self._housekeeping(at, settings.retention)
        return CycleReport(at, observation, cycle, planned, outcomes, support)

    def _containers_by_region(self, inventory: Inventory) -> dict[str, int]:
        """``containers_by_region`` of ``inventory``, counted again only when the collector hands a new inventory
        (an inventory is frozen, and a collector whose world did not change hands the same one)."""
        if self._regions is None or self._regions[0] is not inventory:
            self._regions = (inventory, containers_by_region(inventory))
        return dict(self._regions[1])

    def _execute(self, item: Planned, at: float) -> Outcome | None:
        if isinstance(item.step, (NoPlan, GiveUpRecovery)):
            return None
        return self.actuator.execute(item.step, at)

    def _housekeeping(self, at: float, retention: float) -> None:
        """Drop the samples no term can read any more (older than the retention and than the longest
        window), at most once per tenth of that horizon."""
        horizon = max([retention] + [t.window for t in self.engine.compiled.terms if t.window])
        if at - self.last_pruned >= horizon / 10:
            self.history.prune(at - horizon)
            self.last_pruned = at


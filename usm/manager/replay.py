"""Recorded cycles played back through the control loop: a dry run over samples already taken.

A ``ReplayCollector`` answers the loop's ``observe(at)`` from recorded cycles (an inventory and
the samples taken at that time) instead of the world, so the loop, the history, the engine and
placement run exactly as in ``usm run --dry-run``; with the recording actuator nothing is touched.
Placement sees each host at its coordinates with ``HOST_CAPACITY`` (the records hold no capacity).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from usm.engine.inventory import Inventory
from usm.geo.regions import nearest_area
from usm.geo.sphere import Coordinates
from usm.manager.ports import Observation
from usm.placement.model import Cluster, ContainerDemand, HostCapacity, HostKind, HostState, Resources
from usm.policytest.runner import samples_at
from usm.policytest.testfile import TestFile

HOST_CAPACITY = Resources(64.0, 256 * 2**30, 2 * 2**40)


@dataclass(frozen=True)
class RecordedCycle:
    at: float
    inventory: Inventory
    samples: pl.DataFrame  # ts, entity, field, value


class ReplayCollector:
    def __init__(self, cycles: Iterable[RecordedCycle]) -> None:
        self.cycles = {c.at: c for c in cycles}

    def observe(self, at: float) -> Observation:
        try:
            recorded = self.cycles[at]
        except KeyError:
            raise KeyError(f"no recorded cycle at {at:g}") from None
        return Observation(recorded.inventory, cluster_of(recorded.inventory), recorded.samples, {})


def cluster_of(inventory: Inventory) -> Cluster:
    hosts = []
    for h in inventory.hosts:
        location = Coordinates(h.latitude, h.longitude)
        hosts.append(HostCapacity(h.name, location, HOST_CAPACITY, Resources(), HostKind.EDGE, HostState.RUNNING,
                                  h.region or nearest_area(location).name, ""))
    containers = tuple(ContainerDemand(c.name, c.service, c.host, Resources()) for c in inventory.containers)
    return Cluster(tuple(hosts), containers, ())


def policy_test_cycles(test: TestFile) -> list[RecordedCycle]:
    """The cycles of a policy test file, as ``usm policy test`` runs them."""
    count = round(test.last_cycle / test.interval) + 1
    return [RecordedCycle(i * test.interval, test.inventory, samples_at(test, i)) for i in range(count)]

"""The control loop over the simulator's world: per-region support components follow the containers the
collector's inventory shows, whether it hands a new inventory or the same one again."""

from __future__ import annotations

import pytest

from usm.collectors.history import History
from usm.engine import Engine
from usm.engine.policy import Policy
from usm.geo.sphere import Coordinates
from usm.manager.loop import ControlLoop
from usm.manager.support import RegionSupportLifecycle
from usm.placement.model import HostKind, HostState, Resources
from usm.placement.plans import PlaceReplica, StopContainer, UseHost
from usm.simulator.run import SimulatedSupport
from usm.simulator.scenario import HostDefinition, InitialContainer, Scenario, ServiceDefinition, WorkloadSource
from usm.simulator.workload import Constant
from usm.simulator.world import World

LISBON, NEW_YORK = Coordinates(38.72, -9.14), Coordinates(40.71, -74.01)
GiB = 2.0**30


def world() -> World:
    """web in Lisbon (europe) and New York (america), at least one replica; no rule: the loop only observes."""
    hosts = tuple(HostDefinition(name, HostKind.EDGE, at, Resources(4, 8 * GiB, 64 * GiB), HostState.RUNNING, region)
                  for name, at, region in (("lisbon", LISBON, "europe"), ("new-york", NEW_YORK, "america")))
    return World(Scenario(
        "regions", 3600.0, 15.0, hosts,
        (ServiceDefinition("web", "demo/web", 2**28, 0.01, start_time=10.0, min_replicas=1),),
        (WorkloadSource("users", "web", LISBON, Constant(5)),),
        containers=(InitialContainer("web-1", "web", "lisbon"), InitialContainer("web-2", "web", "new-york"))))


def test_support_follows_the_containers_of_each_inventory():
    simulated, support = world(), SimulatedSupport()
    with History() as history:
        loop = ControlLoop(Engine(Policy()), history, simulated, simulated,
                           support=RegionSupportLifecycle(support.components()))
        first = loop.run_cycle(0.0)
        assert first.support  # both regions started
        assert support.running == {"europe": {"registry", "load-balancer", "worker"},
                                    "america": {"registry", "load-balancer", "worker"}}
        assert loop.run_cycle(15.0).observation.inventory is first.observation.inventory  # nothing changed
        assert simulated.execute(StopContainer("web-2", "new-york"), 15.0).ok
        for k in range(2, 23):  # the first cycle to see America empty (at 30 s) arms a stop five minutes later
            report = loop.run_cycle(k * 15.0)
            assert report.observation.inventory is not first.observation.inventory
            assert support.count() == (6 if k * 15.0 < 30.0 + 300.0 else 3)
        assert support.running["america"] == set()
        assert simulated.execute(PlaceReplica("web", NEW_YORK, UseHost("new-york", 0)), 345.0).ok
        loop.run_cycle(345.0)  # starting containers count: the region is wanted again
        assert support.count() == 6


def test_a_simulation_collects_garbage_less_often_and_puts_the_collector_back():
    import gc

    from usm.simulator.run import fewer_collections

    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    with fewer_collections(young=12_345):
        assert gc.get_threshold()[0] == 12_345 and gc.get_threshold()[1:] == thresholds[1:]
        assert gc.get_freeze_count() > frozen  # what existed before the run is left out of the scans
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a failed run")
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0

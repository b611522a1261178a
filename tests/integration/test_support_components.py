"""Per-region support components in live mode: a real etcd and a real `usm lb-api` + nginx per region, started and
stopped by the control loop as the region gains and loses containers (usm.manager.regional).

The loop runs on the simulator's world (its collector and actuator) and a virtual clock for the stop delay;
containers are started and stopped in the world by plan steps, as placement would. Only the components' own
processes are real, and the test waits only for them to come up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, need, port_open
from usm.collectors.history import History
from usm.engine import Engine, load_policy
from usm.geo.sphere import Coordinates
from usm.manager.loop import ControlLoop
from usm.manager.regional import LocalComponent, support_lifecycle
from usm.manager.sitesupport import SiteSupport
from usm.manager.support import RecordingComponent, RegionSupportLifecycle
from usm.placement.model import HostKind, HostState, Resources
from usm.placement.plans import PlaceReplica, StopContainer, UseHost
from usm.placement.support import ArmSupportStop, CancelSupportStop, StartSupport, StopSupport
from usm.simulator.scenario import HostDefinition, InitialContainer, Scenario, ServiceDefinition
from usm.simulator.world import World

ROOT = Path(__file__).resolve().parents[2]
LISBON, TOKYO = Coordinates(38.72, -9.14), Coordinates(35.68, 139.69)
GiB = 2.0**30
DELAY = 60.0


def world() -> World:
    hosts = (HostDefinition("lisbon", HostKind.EDGE, LISBON, Resources(4, 8 * GiB, 64 * GiB), HostState.RUNNING,
                            "europe"),
             HostDefinition("tokyo", HostKind.EDGE, TOKYO, Resources(4, 8 * GiB, 64 * GiB), HostState.RUNNING, "asia"))
    web = ServiceDefinition("web", "demo/web", 2**28, 0.01, min_replicas=0)  # nothing but the test places replicas
    return World(Scenario("support", 3600.0, 15.0, hosts, (web,), (),
                          containers=(InitialContainer("web-1", "web", "lisbon"),)))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    need("etcd")
    need("nginx")
    yield tmp_path
    settings = SiteSupport(stop_delay=DELAY)  # stop whatever the test left running, by its recorded PID
    for component in support_lifecycle(settings, tmp_path, dry_run=False).components:
        if isinstance(component, LocalComponent):
            for region in component.regions():
                component.stop(region)


def lifecycle(data: Path, base_port: int) -> RegionSupportLifecycle:
    return support_lifecycle(SiteSupport(stop_delay=DELAY, base_port=base_port), data, dry_run=False)


def loop_of(simulated: World, support: RegionSupportLifecycle) -> ControlLoop:
    policy = load_policy(ROOT / "policies" / "00-settings.yaml")  # settings only: no rule moves a container
    return ControlLoop(Engine(policy), History(), simulated, simulated, support=support)


def components(support: RegionSupportLifecycle) -> dict[str, LocalComponent]:
    return {c.name: c for c in support.components if isinstance(c, LocalComponent)}


def processes(support: RegionSupportLifecycle, region: str) -> dict[str, int | None]:
    """Component -> PID of its running process in ``region`` (None: not running)."""
    return {name: (record.pid if (record := c.record(region)) else None) for name, c in components(support).items()}


def ports(support: RegionSupportLifecycle, region: str) -> dict[str, tuple[int, ...]]:
    return {name: c.book.ports(name, region, 2) for name, c in components(support).items()}


def answering(support: RegionSupportLifecycle, region: str) -> bool:
    """Whether the region's etcd serves its v3 gateway and its load balancer's API and nginx answer."""
    (client, _), (balancer, api) = ports(support, region)["etcd"], ports(support, region)["load-balancer"]
    read = httpx.post(f"http://127.0.0.1:{client}/v3/kv/range", json={"key": "dXNt"}, timeout=2)
    lb = httpx.get(f"http://127.0.0.1:{api}/api/servers", timeout=2)
    return read.status_code == 200 and lb.status_code == 200 and port_open(balancer)


def events(report) -> list:
    assert all(o.ok for o in report.support), [o.detail for o in report.support]
    return [o.event for o in report.support]


def test_a_region_with_containers_gets_its_components_and_loses_them_after_the_delay(state: Path) -> None:
    simulated, base = world(), free_port()
    support = lifecycle(state, base)
    loop = loop_of(simulated, support)
    worker = next(c for c in support.components if c.name == "worker")
    assert isinstance(worker, RecordingComponent)  # no worker_store: the worker is decided, not started

    assert events(loop.run_cycle(0.0)) == [StartSupport("europe")]
    assert answering(support, "europe")
    assert processes(support, "asia") == {"etcd": None, "load-balancer": None}
    europe = processes(support, "europe")
    assert worker.calls == [("start", "europe")]

    assert simulated.execute(PlaceReplica("web", TOKYO, UseHost("tokyo", 0.0)), 15.0).ok
    assert simulated.execute(StopContainer("web-1", "lisbon"), 15.0).ok
    assert events(loop.run_cycle(15.0)) == [StartSupport("asia"), ArmSupportStop("europe", 15.0 + DELAY)]
    assert answering(support, "asia") and answering(support, "europe")
    assert ports(support, "asia") != ports(support, "europe")

    # The manager restarts: a new lifecycle over the same records adopts what runs, starting nothing twice.
    asia = processes(support, "asia")
    support = lifecycle(state, base)
    loop = loop_of(simulated, support)
    assert set(support.state.regions) == {"asia", "europe"}
    assert events(loop.run_cycle(30.0)) == [ArmSupportStop("europe", 30.0 + DELAY)]
    assert processes(support, "asia") == asia and processes(support, "europe") == europe
    assert events(loop.run_cycle(45.0)) == []

    # Containers come back before the delay: the stop is cancelled and the same processes go on.
    placed = simulated.execute(PlaceReplica("web", LISBON, UseHost("lisbon", 0.0)), 60.0)
    assert events(loop.run_cycle(60.0)) == [CancelSupportStop("europe")]
    assert events(loop.run_cycle(60.0 + DELAY)) == []
    assert processes(support, "europe") == europe and answering(support, "europe")

    # Empty again: after the delay (and not before) its processes are gone; asia's run on.
    returned = placed.detail.split()[0]
    assert simulated.execute(StopContainer(returned, "lisbon"), 135.0).ok
    assert events(loop.run_cycle(135.0)) == [ArmSupportStop("europe", 135.0 + DELAY)]
    assert events(loop.run_cycle(135.0 + DELAY - 1)) == []
    assert processes(support, "europe") == europe
    assert events(loop.run_cycle(135.0 + DELAY)) == [StopSupport("europe")]
    assert processes(support, "europe") == {"etcd": None, "load-balancer": None}
    assert not any(port_open(p) for group in ports(support, "europe").values() for p in group)
    assert processes(support, "asia") == asia and answering(support, "asia")


def test_a_restarted_manager_stops_an_empty_regions_components_it_did_not_start(state: Path) -> None:
    simulated, base = world(), free_port()
    first = lifecycle(state, base)
    assert events(loop_of(simulated, first).run_cycle(0.0)) == [StartSupport("europe")]
    europe = processes(first, "europe")
    assert simulated.execute(StopContainer("web-1", "lisbon"), 10.0).ok

    second = lifecycle(state, base)  # the first manager is gone; its components are not
    loop = loop_of(simulated, second)
    assert events(loop.run_cycle(15.0)) == [ArmSupportStop("europe", 15.0 + DELAY)]
    assert processes(second, "europe") == europe
    assert events(loop.run_cycle(15.0 + DELAY)) == [StopSupport("europe")]
    assert processes(second, "europe") == {"etcd": None, "load-balancer": None}
    assert all(not c.record_file("europe").exists() for c in components(second).values())

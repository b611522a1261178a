"""What one regional manager sees of an observation: its hosts, its services with all their containers, their
samples, requests and failures, and a placement view that stays inside its regions."""

from __future__ import annotations

import polars as pl

from usm.engine.inventory import App, Container, Host, Inventory, Service
from usm.geo.regions import cloud_region
from usm.geo.sphere import Coordinates
from usm.manager.federation.partition import (
    RegionalView,
    Regions,
    ScopedActuator,
    regional_cluster,
    regional_inventory,
    regional_observation,
    scope_of,
    step_hosts,
)
from usm.manager.ports import Failure, Observation, Outcome
from usm.placement.model import Cluster, ContainerDemand, HostCapacity, Resources
from usm.placement.plans import (
    DrainHost,
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    StopContainer,
    StopHost,
    UseHost,
)

LISBON, PORTLAND = Coordinates(38.72, -9.14), Coordinates(45.52, -122.68)
CENTRES = {"europe": Coordinates(49.5, 9.9), "north_america": Coordinates(39.8, -99.8)}
REGIONS = Regions(hosts={"lisbon": "europe", "portland": "north_america"},
                  services={"shop-eu": "europe", "shop-us": "north_america"}, default="europe", centres=CENTRES)
INVENTORY = Inventory(
    hosts=(Host("lisbon", "europe", 38.72, -9.14), Host("portland", "north_america", 45.52, -122.68),
           Host("cloud-1", "", 50.1, 8.6)),
    apps=(App("shop", ("shop-eu", "shop-us")), App("tools", ("probe",))),
    services=(Service("shop-eu", 1, 4), Service("shop-us", 2), Service("probe")),
    containers=(Container("eu-1", "shop-eu", "lisbon"), Container("eu-2", "shop-eu", "portland"),
                Container("us-1", "shop-us", "portland"), Container("probe-1", "probe", "lisbon")),
)


def samples() -> pl.DataFrame:
    entities = ["lisbon", "portland", "cloud-1", "eu-1", "eu-2", "us-1", "probe-1"]
    return pl.DataFrame({"ts": [0.0] * 7, "entity": entities, "field": ["cpu"] * 7, "value": [1.0] * 7})


def test_a_host_belongs_to_its_named_region_else_to_the_closest_centre():
    assert REGIONS.of_host("lisbon") == "europe"
    assert REGIONS.of_host("cloud-1", Coordinates(50.1, 8.6)) == "europe"
    assert REGIONS.of_host("cloud-2", Coordinates(40.0, -100.0)) == "north_america"
    assert REGIONS.of_host("nowhere") == "europe"  # no location: the default region
    assert REGIONS.of_service("probe") == "europe"


def test_a_region_holds_its_hosts_and_its_services_with_every_container():
    scope = scope_of(["europe"], INVENTORY, REGIONS)
    assert scope.hosts == {"lisbon", "cloud-1"} and scope.services == {"shop-eu", "probe"}
    mine = regional_inventory(INVENTORY, scope)
    assert [h.name for h in mine.hosts] == ["lisbon", "cloud-1"]
    assert mine.apps == (App("shop", ("shop-eu",)), App("tools", ("probe",)))
    assert [c.name for c in mine.containers] == ["eu-1", "eu-2", "probe-1"]  # eu-2 runs in America, still counts
    assert mine.replicas == {"shop-eu": 2, "probe": 1}
    theirs = regional_inventory(INVENTORY, scope_of(["north_america"], INVENTORY, REGIONS))
    assert [c.name for c in theirs.containers] == ["us-1"] and theirs.apps == (App("shop", ("shop-us",)),)


def test_placement_stays_on_the_region_hosts_and_launches_in_its_cloud_regions():
    cluster = Cluster(
        hosts=(HostCapacity("lisbon", LISBON, Resources(4, 8e9, 1e11), region="europe"),
               HostCapacity("portland", PORTLAND, Resources(4, 8e9, 1e11), region="north_america")),
        containers=(ContainerDemand("eu-1", "shop-eu", "lisbon"), ContainerDemand("eu-2", "shop-eu", "portland"),
                    ContainerDemand("us-1", "shop-us", "portland")),
        cloud_regions=(cloud_region("eu-west-3"), cloud_region("us-east-1")),
    )
    scope = scope_of(["europe"], INVENTORY, REGIONS)
    mine = regional_cluster(cluster, scope, REGIONS)
    assert [h.name for h in mine.hosts] == ["lisbon"]
    assert [c.name for c in mine.containers] == ["eu-1", "eu-2"]
    assert [r.code for r in mine.cloud_regions] == ["eu-west-3"]


def test_an_observation_keeps_only_what_the_region_holds():
    observation = Observation(
        inventory=INVENTORY, placement=Cluster(), samples=samples(),
        requests={"shop-eu": ((LISBON, 10.0),), "shop-us": ((PORTLAND, 5.0),)},
        failures=(Failure("eu-0", "shop-eu", "lisbon"), Failure("us-0", "shop-us", "portland")))
    scope = scope_of(["north_america"], INVENTORY, REGIONS)
    seen = regional_observation(observation, scope, REGIONS)
    assert sorted(seen.samples["entity"]) == ["portland", "us-1"]
    assert list(seen.requests) == ["shop-us"]
    assert [f.container for f in seen.failures] == ["us-0"]


class Source:
    def __init__(self) -> None:
        self.inventory = INVENTORY

    def observe(self, at: float) -> Observation:
        return Observation(inventory=self.inventory, placement=Cluster(), samples=samples(), requests={})


def test_the_view_follows_the_regions_held_and_keeps_its_inventory_while_the_world_does():
    source = Source()
    view = RegionalView(source, REGIONS, held=["europe"])
    first = view.observe(0.0).inventory
    assert view.observe(1.0).inventory is first
    view.held = frozenset({"europe", "north_america"})
    both = view.observe(2.0).inventory
    assert {c.name for c in both.containers} == {"eu-1", "eu-2", "us-1", "probe-1"}
    view.held = frozenset()
    assert view.observe(3.0).inventory == Inventory()


def test_steps_name_the_hosts_and_cloud_regions_they_act_on():
    use, launch = UseHost("lisbon", 0.0), LaunchCloudHost("eu-west-3", 0.0)
    move = MoveContainer("eu-2", "shop-eu", "portland", LISBON, use)
    assert step_hosts(PlaceReplica("shop-eu", LISBON, use)) == (("lisbon",), ())
    assert step_hosts(PlaceReplica("shop-eu", LISBON, launch)) == ((), ("eu-west-3",))
    assert step_hosts(move) == (("portland", "lisbon"), ())
    assert step_hosts(DrainHost("portland", (move,), StopHost("portland"))) == (("portland", "portland", "lisbon"), ())
    assert step_hosts(StopContainer("eu-1", "lisbon")) == (("lisbon",), ())


class Recording:
    def __init__(self) -> None:
        self.steps: list[object] = []

    def execute(self, step: object, at: float) -> Outcome:
        self.steps.append(step)
        return Outcome(step, True, "done")


def test_a_manager_acts_only_on_the_hosts_of_its_regions():
    source, inner = Source(), Recording()
    view = RegionalView(source, REGIONS, held=["europe"])
    view.observe(0.0)
    actuator = ScopedActuator(inner, view)
    assert actuator.execute(StopContainer("eu-1", "lisbon"), 0.0).ok
    refused = actuator.execute(StopContainer("us-1", "portland"), 0.0)
    assert not refused.ok and refused.detail == ("not carried out: portland lies outside the regions this manager "
                                                 "holds (europe)")
    assert not actuator.execute(PlaceReplica("shop-eu", LISBON, LaunchCloudHost("eu-west-3", 0.0)), 0.0).ok
    assert inner.steps == [StopContainer("eu-1", "lisbon")]

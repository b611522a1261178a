"""The simulated world: routing to the closest replica, load propagation, metrics, delays, faults, every plan step,
determinism and key numbers, on small worlds whose numbers can be worked out by hand."""

from __future__ import annotations

import math
from dataclasses import replace
from types import MappingProxyType
from unittest.mock import patch

import polars as pl
import pytest

from usm.engine.policy import Scope, SimulatedMetric
from usm.geo.sphere import Coordinates, distance_m
from usm.placement.model import HostKind, HostState, Resources
from usm.placement.plans import (
    DrainHost,
    LaunchCloudHost,
    MoveContainer,
    NoPlan,
    PlaceReplica,
    RestoreContainer,
    StartHost,
    StopContainer,
    StopHost,
    TerminateHost,
    UseHost,
)
from usm.simulator.scenario import (
    Fault,
    FaultKind,
    HostDefinition,
    InitialContainer,
    InstanceType,
    Scenario,
    ServiceDefinition,
    TimedMetric,
    WorkloadSource,
    load_scenario,
)
from usm.simulator.workload import Constant
from usm.simulator.world import HOST_BASE, QUEUE_PENALTY_MS, World, weighted_quantile

MiB, GiB = 2.0**20, 2.0**30
LISBON, MADRID, PARIS = Coordinates(38.72, -9.14), Coordinates(40.42, -3.70), Coordinates(48.86, 2.35)
PORTO, BARCELONA = Coordinates(41.15, -8.61), Coordinates(41.39, 2.17)
SMALL = InstanceType("t3.small", Resources(2, 2 * GiB, 20 * GiB), price_per_hour=0.36, boot_time=90.0)
KM = 1000.0


def edge(name: str, at: Coordinates, cpu: float = 4, state: HostState = HostState.RUNNING) -> HostDefinition:
    return HostDefinition(name, HostKind.EDGE, at, Resources(cpu, 8 * GiB, 64 * GiB), state, "europe",
                          boot_time=30.0)


def cloud(name: str, code: str, location: Coordinates, state: HostState = HostState.RUNNING) -> HostDefinition:
    return HostDefinition(name, HostKind.CLOUD, location, SMALL.total, state, "europe", code, SMALL.name,
                          SMALL.price_per_hour, SMALL.boot_time)


def service(name: str, *dependencies: str, cpu: float = 0.01, start: float = 10.0) -> ServiceDefinition:
    return ServiceDefinition(name, f"demo/{name}", 256 * MiB, cpu, bytes_per_request=1_000,
                             bytes_per_response=10_000, dependencies=dependencies, start_time=start)


def source(name: str, at: Coordinates, rate: float, service_name: str = "web") -> WorkloadSource:
    return WorkloadSource(name, service_name, at, Constant(rate))


def world_of(hosts, services, containers, workloads, **settings) -> World:
    defaults = {"regions": ("eu-west-3", "eu-west-2"), "launch_instance_type": SMALL.name,
                "instance_types": MappingProxyType({SMALL.name: SMALL})}
    defaults.update(settings)
    scenario = Scenario("test", 3600.0, 15.0, tuple(hosts), tuple(services), tuple(workloads),
                        containers=tuple(InitialContainer(*c) for c in containers), **defaults)
    return World(scenario)


def value(samples: pl.DataFrame, entity: str, field: str) -> float:
    row = samples.filter((pl.col("entity") == entity) & (pl.col("field") == field))
    assert row.height == 1, f"{entity}.{field}: {row.height} samples"
    return row["value"][0]


@pytest.fixture
def two_replicas() -> World:
    """web-1 in Lisbon and web-2 in Madrid; 10 req/s from Porto and 20 req/s from Barcelona."""
    return world_of(
        [edge("lisbon", LISBON), edge("madrid", MADRID), edge("paris", PARIS, state=HostState.STOPPED)],
        [service("web")],
        [("web-1", "web", "lisbon"), ("web-2", "web", "madrid")],
        [source("porto", PORTO, 10), source("barcelona", BARCELONA, 20)],
    )


class TestRouting:
    def test_each_source_goes_to_its_closest_replica(self, two_replicas):
        # Porto: Lisbon 274 km, Madrid 421 km. Barcelona: Madrid 505 km, Lisbon 1,006 km.
        samples = two_replicas.observe(0.0).samples
        assert value(samples, "web-1", "requests_per_sec") == 10
        assert value(samples, "web-2", "requests_per_sec") == 20

    def test_latency_is_twice_the_distance_over_100_plus_5(self, two_replicas):
        samples = two_replicas.observe(0.0).samples
        assert value(samples, "web-1", "latency") == pytest.approx(2 * 273.954 / 100 + 5, abs=1e-3)
        assert value(samples, "web-2", "latency") == pytest.approx(2 * 504.863 / 100 + 5, abs=1e-3)

    def test_distances_by_hand(self, two_replicas):
        kpis = two_replicas.kpis(0.0)
        # (10 * 273.954 + 20 * 504.863) / 30
        assert kpis["mean_distance_km"] == pytest.approx(427.894, abs=1e-3)
        assert kpis["mean_distance_km"] == pytest.approx(
            (10 * distance_m(PORTO, LISBON) + 20 * distance_m(BARCELONA, MADRID)) / 30 / KM)
        # weights 10 (274 km) and 20 (505 km): 95 % of 30 is only reached with the second
        assert kpis["p95_distance_km"] == pytest.approx(504.863, abs=1e-3)
        assert kpis["requests_per_sec"] == 30 and kpis["unserved_requests_per_sec"] == 0

    def test_replicas_on_one_host_share_evenly(self):
        world = world_of([edge("lisbon", LISBON), edge("madrid", MADRID)], [service("web")],
                         [("web-b", "web", "lisbon"), ("web-a", "web", "lisbon"), ("web-c", "web", "madrid")],
                         [source("porto", PORTO, 10)])
        samples = world.observe(0.0).samples
        assert value(samples, "web-a", "requests_per_sec") == 5
        assert value(samples, "web-b", "requests_per_sec") == 5
        assert value(samples, "web-c", "requests_per_sec") == 0
        assert world.kpis(0.0)["mean_distance_km"] == pytest.approx(273.954, abs=1e-3)

    def test_requests_without_a_running_replica_are_lost_but_located(self):
        world = world_of([edge("lisbon", LISBON)], [service("web"), service("api")], [("web-1", "web", "lisbon")],
                         [source("porto", PORTO, 10, "api")])
        observation = world.observe(0.0)
        kpis = world.kpis(0.0)
        assert kpis["unserved_requests_per_sec"] == 10 and math.isnan(kpis["mean_distance_km"])
        assert observation.requests["api"] == ((PORTO, 600.0),)

    def test_request_locations_count_the_window(self, two_replicas):
        requests = two_replicas.observe(0.0).requests
        assert requests["web"] == ((PORTO, 600.0), (BARCELONA, 1200.0))

    def test_request_locations_are_made_per_service_when_read(self, two_replicas):
        """Every service is a key (callers first); each one's locations are made when first read, and once."""
        requests = two_replicas.observe(0.0).requests
        assert list(requests) == list(two_replicas.scenario.service_order) and len(requests) == 1
        with patch.object(World, "_requests", side_effect=AssertionError("made now")), \
                pytest.raises(AssertionError, match="made now"):
            requests["web"]
        assert requests["web"] == ((PORTO, 600.0), (BARCELONA, 1200.0))
        with patch.object(World, "_requests", side_effect=AssertionError("made again")):
            assert requests["web"] == ((PORTO, 600.0), (BARCELONA, 1200.0))
        with pytest.raises(KeyError):
            requests["nothing"]


class TestDependencies:
    @pytest.fixture
    def world(self) -> World:
        """web in Lisbon and Madrid calls db, which runs in Lisbon and Paris (Madrid is closer to Lisbon)."""
        return world_of(
            [edge("lisbon", LISBON), edge("madrid", MADRID), edge("paris", PARIS)],
            [service("web", "db"), service("db", cpu=0.002)],
            [("web-1", "web", "lisbon"), ("web-2", "web", "madrid"), ("db-1", "db", "lisbon"),
             ("db-2", "db", "paris")],
            [source("porto", PORTO, 10), source("barcelona", BARCELONA, 20)],
        )

    def test_each_replica_forwards_what_it_serves_to_the_closest_dependency(self, world):
        samples = world.observe(0.0).samples
        assert value(samples, "db-1", "requests_per_sec") == 30  # 10 from Lisbon (0 km) + 20 from Madrid (503 km)
        assert value(samples, "db-2", "requests_per_sec") == 0
        assert value(samples, "db-1", "latency") == pytest.approx(2 * (20 * 503.031 / 30) / 100 + 5, abs=1e-3)

    def test_callers_are_located_at_their_hosts(self, world):
        assert world.observe(0.0).requests["db"] == ((LISBON, 600.0), (MADRID, 1200.0))

    def test_cpu_and_traffic_follow_the_load(self, world):
        samples = world.observe(0.0).samples
        assert value(samples, "db-1", "cpu") == pytest.approx(30 * 0.002)
        assert value(samples, "lisbon", "cpu") == pytest.approx(HOST_BASE.cpu + 10 * 0.01 + 30 * 0.002)
        assert value(samples, "lisbon", "cpu_percent") == pytest.approx(100 * (0.05 + 0.1 + 0.06) / 4)
        # web receives its requests and db's responses; it sends its responses and its calls to db
        assert value(samples, "web-1", "rx_bytes_per_sec") == 10 * (1_000 + 10_000)
        assert value(samples, "web-1", "tx_bytes_per_sec") == 10 * (10_000 + 1_000)
        assert value(samples, "lisbon", "rx_bytes_per_sec") == 10 * 11_000 + 30 * 1_000
        assert value(samples, "web-1", "ram") == 256 * MiB
        assert value(samples, "lisbon", "ram") == HOST_BASE.ram + 2 * 256 * MiB
        assert value(samples, "lisbon", "filesystem_available") == 64 * GiB - HOST_BASE.disk

    def test_a_diamond_adds_up(self):
        world = world_of([edge("lisbon", LISBON)], [service("a", "b", "c"), service("b", "c"), service("c")],
                         [("a-1", "a", "lisbon"), ("b-1", "b", "lisbon"), ("c-1", "c", "lisbon")],
                         [source("porto", PORTO, 7, "a")])
        samples = world.observe(0.0).samples
        assert value(samples, "b-1", "requests_per_sec") == 7
        assert value(samples, "c-1", "requests_per_sec") == 14  # from a, and from b


def test_an_overloaded_host_shares_its_cpu_and_queues():
    world = world_of([edge("tiny", LISBON, cpu=1)], [service("web", cpu=0.1)], [("web-1", "web", "tiny")],
                     [source("porto", PORTO, 20)])
    samples = world.observe(0.0).samples
    assert value(samples, "web-1", "cpu") == pytest.approx(1 - HOST_BASE.cpu)  # wants 2 cores
    assert value(samples, "tiny", "cpu_percent") == pytest.approx(100)
    pressure = (2 + HOST_BASE.cpu) / 1
    assert value(samples, "web-1", "latency") == pytest.approx(
        2 * 273.954 / 100 + 5 + QUEUE_PENALTY_MS * (pressure - 1), abs=1e-3)
    assert world.kpis(0.0)["overloaded_containers"] == 1
    (demand,) = world.cluster().containers
    assert demand.demand.cpu == pytest.approx(2.0)  # placement is told what it would use


class TestSamples:
    def test_columns_and_one_row_per_entity_and_field(self, two_replicas):
        samples = two_replicas.observe(30.0).samples
        assert samples.schema == pl.Schema({"ts": pl.Float64, "entity": pl.String, "field": pl.String,
                                            "value": pl.Float64})
        assert samples.height == 2 * 8 + 2 * 7  # two containers, two running hosts
        assert samples["ts"].unique().to_list() == [30.0]
        assert samples.select("entity", "field").is_unique().all()
        assert "paris" not in samples["entity"].to_list()  # stopped

    def test_scenario_simulated_metrics_apply_in_their_window(self):
        metric = SimulatedMetric("hot", Scope.CONTAINER, ("web-1",), "cpu_percent", 95, 95, override=True)
        world = world_of([edge("lisbon", LISBON)], [service("web")], [("web-1", "web", "lisbon")],
                         [source("porto", PORTO, 10)], simulated_metrics=(TimedMetric(metric, 0.0, 60.0),))
        assert value(world.observe(30.0).samples, "web-1", "cpu_percent") == 95
        assert value(world.observe(60.0).samples, "web-1", "cpu_percent") == pytest.approx(100 * 0.1 / 4)


class TestViews:
    def test_inventory(self, two_replicas):
        inventory = two_replicas.observe(0.0).inventory
        assert [h.name for h in inventory.hosts] == ["lisbon", "madrid"]  # paris is stopped
        assert [(c.name, c.host) for c in inventory.containers] == [("web-1", "lisbon"), ("web-2", "madrid")]
        assert inventory.hosts[0].region == "europe" and inventory.hosts[0].latitude == LISBON.latitude

    def test_cluster(self, two_replicas):
        cluster = two_replicas.observe(0.0).cluster
        assert [(h.name, h.state) for h in cluster.hosts] == [
            ("lisbon", HostState.RUNNING), ("madrid", HostState.RUNNING), ("paris", HostState.STOPPED)]
        lisbon = cluster.host("lisbon")
        assert lisbon.used.cpu == pytest.approx(HOST_BASE.cpu + 0.1)
        assert lisbon.used.ram == HOST_BASE.ram + 256 * MiB
        assert cluster.host("paris").used == Resources()
        assert cluster.container("web-2").demand == Resources(0.2, 256 * MiB, 0)
        assert [r.code for r in cluster.cloud_regions] == ["eu-west-3", "eu-west-2"]

    def test_services(self, two_replicas):
        (spec,) = two_replicas.observe(0.0).services
        assert (spec.name, spec.min_replicas) == ("web", 1)
        assert spec.demand == Resources(pytest.approx(0.15), 256 * MiB, 0)  # the mean of 0.1 and 0.2

    def test_snapshot_and_replicas(self, two_replicas):
        snapshot = two_replicas.snapshot()
        assert [h["name"] for h in snapshot["hosts"]] == ["lisbon", "madrid", "paris"]
        assert snapshot["containers"][0] == {"name": "web-1", "service": "web", "host": "lisbon", "state": "running"}
        assert snapshot["sources"][1] == {"name": "barcelona", "service": "web", "latitude": 41.39,
                                          "longitude": 2.17, "rate": 20.0}
        assert snapshot["hosts"][2]["state"] == "stopped" and snapshot["hosts"][0]["latitude"] == 38.72
        assert two_replicas.replicas() == {"web": 2}


class TestDelays:
    def test_a_new_replica_is_starting_until_its_start_time(self, two_replicas):
        outcome = two_replicas.execute(PlaceReplica("web", BARCELONA, UseHost("madrid", 0.0)), 0.0)
        assert outcome.ok and "web-3" in outcome.detail
        early = two_replicas.observe(9.0)
        assert early.cluster.container("web-3").starting
        assert "web-3" in [c.name for c in early.inventory.containers]
        assert "web-3" not in early.samples["entity"].to_list()
        late = two_replicas.observe(10.0)
        assert not late.cluster.container("web-3").starting
        assert value(late.samples, "web-3", "requests_per_sec") == 10  # shares Barcelona's 20 with web-2
        assert two_replicas.kpis(10.0)["containers_running"] == 3

    def test_a_launched_host_boots_then_its_container_starts(self, two_replicas):
        outcome = two_replicas.execute(PlaceReplica("web", PARIS, LaunchCloudHost("eu-west-3", 0.0)), 100.0)
        assert outcome.ok and "eu-west-3-1" in outcome.detail
        host = two_replicas.observe(100.0).cluster.host("eu-west-3-1")
        assert (host.state, host.kind, host.cloud_region, host.total) == \
            (HostState.STARTING, HostKind.CLOUD, "eu-west-3", SMALL.total)
        assert two_replicas.observe(189.0).cluster.host("eu-west-3-1").state is HostState.STARTING
        assert two_replicas.observe(190.0).cluster.host("eu-west-3-1").state is HostState.RUNNING
        assert two_replicas.observe(199.0).cluster.container("web-3").starting  # 90 s boot + 10 s start
        assert not two_replicas.observe(200.0).cluster.container("web-3").starting
        # it costs from its launch on
        assert two_replicas.kpis(100.0 + 3600.0)["cost_usd"] == pytest.approx(0.36)

    def test_a_stopped_host_is_started_first(self, two_replicas):
        assert two_replicas.execute(PlaceReplica("web", PARIS, StartHost("paris", 0.0)), 0.0).ok
        assert two_replicas.observe(29.0).cluster.host("paris").state is HostState.STARTING
        assert two_replicas.observe(39.0).cluster.container("web-3").starting  # 30 s boot + 10 s start
        assert not two_replicas.observe(40.0).cluster.container("web-3").starting


class TestFaults:
    def test_a_crash_is_one_failure_at_the_next_observation(self):
        world = world_of([edge("lisbon", LISBON)], [service("web")], [("web-1", "web", "lisbon")],
                         [source("porto", PORTO, 10)],
                         faults=(Fault(100.0, FaultKind.CONTAINER_CRASH, container="web-1"),))
        assert world.observe(90.0).failures == ()
        after = world.observe(105.0)
        assert [(f.container, f.service, f.host) for f in after.failures] == [("web-1", "web", "lisbon")]
        assert after.inventory.containers == () and world.kpis(105.0)["unserved_requests_per_sec"] == 10
        assert world.observe(120.0).failures == ()

    def test_a_crashed_container_is_restored_with_its_lineage(self):
        world = world_of([edge("lisbon", LISBON)], [service("web")], [("web-1", "web", "lisbon")],
                         [source("porto", PORTO, 10)],
                         faults=(Fault(100.0, FaultKind.CONTAINER_CRASH, service="web"),))
        (failure,) = world.observe(105.0).failures
        step = RestoreContainer(failure.container, failure.service, failure.container, LISBON, UseHost("lisbon", 0))
        assert world.execute(step, 105.0).ok
        restored = world.observe(115.0).cluster.container("web-2")
        assert (restored.lineage, restored.starting) == ("web-1", False)
        assert world.kpis(115.0)["unserved_requests_per_sec"] == 0

    def test_a_host_down_fails_its_containers_and_comes_back_empty(self, two_replicas):
        two_replicas = World(replace(two_replicas.scenario, faults=(
            Fault(50.0, FaultKind.HOST_DOWN, host="lisbon"), Fault(200.0, FaultKind.HOST_UP, host="lisbon"))))
        down = two_replicas.observe(60.0)
        assert [f.container for f in down.failures] == ["web-1"]
        assert down.cluster.host("lisbon").state is HostState.STOPPED
        assert value(down.samples, "web-2", "requests_per_sec") == 30  # Porto now goes to Madrid
        assert two_replicas.observe(210.0).cluster.host("lisbon").state is HostState.STARTING
        back = two_replicas.observe(230.0)
        assert back.cluster.host("lisbon").state is HostState.RUNNING and back.cluster.containers_on("lisbon") == ()


# Steps the world refuses, each with the words of its reason.
REFUSED = [
    pytest.param(PlaceReplica("web", PORTO, UseHost("nowhere", 0)), "unknown host nowhere", id="unknown-host"),
    pytest.param(PlaceReplica("web", PORTO, UseHost("paris", 0)), "is stopped", id="stopped-host"),
    pytest.param(PlaceReplica("nope", PORTO, UseHost("lisbon", 0)), "unknown service", id="unknown-service"),
    pytest.param(PlaceReplica("web", PORTO, LaunchCloudHost("us-east-1", 0)), "not one where",
                 id="region-not-allowed"),
    pytest.param(TerminateHost("lisbon"), "edge host", id="terminate-an-edge-host"),
    pytest.param(StopContainer("web-1", "madrid"), "is on lisbon", id="stop-on-the-wrong-host"),
    pytest.param(StopContainer("web-9", "lisbon"), "no container", id="stop-a-missing-container"),
    pytest.param(MoveContainer("web-1", "web", "lisbon", PORTO, UseHost("lisbon", 0)), "host it is on",
                 id="move-onto-its-own-host"),
    pytest.param(RestoreContainer("web-1", "web", "web-1", PORTO, UseHost("lisbon", 0)), "still there",
                 id="restore-a-running-container"),
    pytest.param(DrainHost("lisbon", (), TerminateHost("lisbon")), "edge host", id="drain-edge-then-terminate"),
    pytest.param(NoPlan("nothing fits"), "cannot carry out", id="not-a-step"),
]


class TestSteps:
    @pytest.fixture
    def world(self) -> World:
        """web-1 in Lisbon; db-1 on a London cloud host; Paris stopped."""
        return world_of(
            [edge("lisbon", LISBON), edge("madrid", MADRID), edge("paris", PARIS, state=HostState.STOPPED),
             cloud("london", "eu-west-2", Coordinates(51.52, -0.13))],
            [service("web", "db"), service("db")],
            [("web-1", "web", "lisbon"), ("db-1", "db", "london")],
            [source("porto", PORTO, 10)],
            max_cloud_hosts=2,
        )

    def test_a_moved_container_stops_once_its_copy_runs(self, world):
        outcome = world.execute(MoveContainer("web-1", "web", "lisbon", PORTO, UseHost("madrid", 0)), 0.0)
        assert outcome.ok
        assert sorted(world.replicas().items()) == [("db", 1), ("web", 2)]
        assert world.observe(9.0).cluster.container("web-1").host == "lisbon"
        after = world.observe(10.0)
        assert [(c.name, c.host, c.lineage) for c in after.cluster.replicas("web")] == [("web-2", "madrid", "web-1")]
        assert after.failures == ()

    def test_a_drained_cloud_host_is_terminated_once_emptied(self, world):
        move = MoveContainer("db-1", "db", "london", LISBON, UseHost("lisbon", 0))
        assert world.execute(DrainHost("london", (move,), TerminateHost("london")), 0.0).ok
        assert world.observe(5.0).cluster.host("london").state is HostState.STOPPING
        world.observe(10.0)
        assert not world.observe(10.0).cluster.has_host("london")
        assert world.kpis(3600.0)["cost_usd"] == pytest.approx(0.36 * 10 / 3600)

    def test_an_empty_drain_stops_at_once(self, world):
        assert world.execute(DrainHost("madrid", (), StopHost("madrid")), 0.0).ok
        assert world.observe(0.0).cluster.host("madrid").state is HostState.STOPPED

    def test_stop_container_and_stop_host(self, world):
        assert world.execute(StopContainer("web-1", "lisbon"), 0.0).ok
        assert world.execute(StopHost("madrid"), 0.0).ok
        observation = world.observe(0.0)
        assert observation.failures == ()  # asked for: no failure
        assert observation.cluster.host("madrid").state is HostState.STOPPED
        assert world.replicas() == {"web": 0, "db": 1}

    def test_cost_follows_running_cloud_hosts(self, world):
        assert world.kpis(1800.0)["cost_usd"] == pytest.approx(0.18)
        assert world.execute(StopHost("london"), 1800.0).ok
        assert world.kpis(3600.0)["cost_usd"] == pytest.approx(0.18)
        assert world.kpis(3600.0)["cost_per_hour_usd"] == 0

    @pytest.mark.parametrize(("step", "reason"), REFUSED)
    def test_refused_steps_say_why_and_change_nothing(self, world, step, reason):
        before = world.snapshot()
        outcome = world.execute(step, 0.0)
        assert not outcome.ok and reason in outcome.detail and outcome.step is step
        assert world.snapshot() == before

    def test_the_cloud_host_limit_is_kept(self, world):
        launch = PlaceReplica("web", PARIS, LaunchCloudHost("eu-west-3", 0))
        assert world.execute(launch, 0.0).ok  # london + 1 = the limit of 2
        outcome = world.execute(launch, 0.0)
        assert not outcome.ok and "limit of 2" in outcome.detail

    def test_placement_options_follow_the_limit(self, world):
        options = world.placement_options()
        assert options.can_launch_hosts and options.new_host_capacity == SMALL.total
        world.execute(PlaceReplica("web", PARIS, LaunchCloudHost("eu-west-3", 0)), 0.0)
        assert not world.placement_options().can_launch_hosts

    def test_time_cannot_go_back(self, world):
        world.observe(100.0)
        assert not world.execute(StopHost("madrid"), 50.0).ok
        with pytest.raises(ValueError):
            world.observe(50.0)


def run(world: World, ticks: int) -> list[pl.DataFrame]:
    """Observe every tick; place a replica next to the crowd once, and restore whatever fails."""
    frames = []
    for k in range(ticks):
        at = k * world.scenario.tick
        observation = world.observe(at)
        frames.append(observation.samples)
        for failure in observation.failures:
            world.execute(RestoreContainer(failure.container, failure.service, failure.container, LISBON,
                                           UseHost("madrid", 0)), at)
        if k == 100:
            world.execute(PlaceReplica("live-scores", PARIS, StartHost("helsinki", 0)), at)
    return frames


def test_same_scenario_and_steps_give_identical_samples():
    scenario = load_scenario("edge-flash-crowd")
    scenario = replace(scenario, faults=(Fault(600.0, FaultKind.CONTAINER_CRASH, container="live-scores-feed-1"),))
    first, second = World(scenario), World(scenario)
    frames_a, frames_b = run(first, 240), run(second, 240)
    assert all(a.equals(b) for a, b in zip(frames_a, frames_b, strict=True))
    assert first.log == second.log and first.kpis(3600.0) == second.kpis(3600.0)
    other = run(World(replace(scenario, seed=scenario.seed + 1)), 240)
    assert not all(a.equals(b) for a, b in zip(frames_a, other))  # the seed drives the noise


def test_the_seed_argument_replaces_the_scenario_seed():
    scenario = load_scenario("edge-flash-crowd")
    assert World(scenario, seed=scenario.seed).source_rates(60.0).tolist() == \
        World(scenario).source_rates(60.0).tolist()
    assert World(scenario, seed=scenario.seed + 1).source_rates(60.0).tolist() != \
        World(scenario).source_rates(60.0).tolist()
    assert World(scenario, seed=5).source_rates(60.0, noise=False).tolist() == [4.0, 0.0]


def test_a_replica_near_the_crowd_brings_the_distance_down():
    world = World(load_scenario("edge-flash-crowd"))
    before = world.kpis(1800.0)["mean_distance_km"]
    world.execute(PlaceReplica("live-scores", Coordinates(60.17, 24.94), StartHost("helsinki", 0)), 1800.0)
    world.execute(PlaceReplica("live-scores-feed", Coordinates(60.17, 24.94), UseHost("helsinki", 0)), 1800.0)
    after = world.kpis(1900.0)
    assert before > 3000 and after["mean_distance_km"] < before / 5
    assert after["edge_hosts_running"] == 5


@pytest.mark.parametrize(("values", "weights", "q", "expected"), [
    pytest.param([1, 2, 3, 4], [1, 1, 1, 1], 0.5, 2, id="median-of-four"),
    pytest.param([10, 20], [1, 19], 0.95, 20, id="heavy-second"),
    pytest.param([10, 20], [19, 1], 0.95, 10, id="heavy-first"),
    pytest.param([5, 1], [0, 1], 0.95, 1, id="zero-weight-ignored"),
])
def test_weighted_quantile(values, weights, q, expected):
    import numpy as np
    assert weighted_quantile(np.array(values, float), np.array(weights, float), q) == expected


def test_weighted_quantile_with_the_order_known():
    import numpy as np
    values, weights = np.array([3.0, 1.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0, 4.0])
    order = np.argsort(values, kind="stable")
    assert weighted_quantile(values, weights, 0.6, order) == weighted_quantile(values, weights, 0.6) == 1.0
    assert weighted_quantile(values, weights, 0.7, order) == weighted_quantile(values, weights, 0.7) == 2.0


def fresh_copy(world: World) -> World:
    """A world built directly in ``world``'s present state (every container running): nothing kept from before."""
    snapshot = world.snapshot()
    assert all(c["state"] == "running" for c in snapshot["containers"])
    states = {h["name"]: HostState(h["state"]) for h in snapshot["hosts"]}
    scenario = world.scenario
    return World(replace(scenario, hosts=tuple(replace(h, state=states[h.name]) for h in scenario.hosts),
                         containers=tuple(InitialContainer(c["name"], c["service"], c["host"])
                                          for c in snapshot["containers"])), seed=world.seed)


def assert_observes_as_fresh(world: World, at: float) -> None:
    """What ``world`` (with its kept routing, roster and published objects) observes at ``at`` is what a world
    built in the same state observes, to the bit; placement's demands are within the tolerance."""
    world.advance(at)
    fresh = fresh_copy(world)
    kept, new = world.observe(at), fresh.observe(at)
    assert kept.samples.equals(new.samples)
    assert kept.inventory == new.inventory
    assert dict(kept.requests) == dict(new.requests)
    assert kept.services == new.services
    assert world.replicas() == fresh.replicas()
    assert {k: v for k, v in world.kpis(at).items() if k != "cost_usd"} == \
        pytest.approx({k: v for k, v in fresh.kpis(at).items() if k != "cost_usd"}, abs=0, rel=0, nan_ok=True)
    assert [(h.name, h.state) for h in kept.cluster.hosts] == [(h.name, h.state) for h in new.cluster.hosts]
    assert [(c.name, c.host, c.starting) for c in kept.cluster.containers] == \
        [(c.name, c.host, c.starting) for c in new.cluster.containers]
    for told, exact in zip(kept.cluster.containers, new.cluster.containers, strict=True):
        assert told.demand.cpu == pytest.approx(exact.demand.cpu, rel=0.021, abs=1e-6)


class TestKeptViews:
    """The world keeps its routing (per service), its containers in order and what it told placement from one
    observation to the next; whatever changes, it observes exactly as a world built afresh in the same state."""

    @pytest.fixture
    def world(self) -> World:
        """web calls api, which calls db, on four hosts; callers in Porto and Barcelona."""
        return world_of(
            [edge("lisbon", LISBON), edge("madrid", MADRID), edge("paris", PARIS),
             edge("barcelona", BARCELONA, state=HostState.STOPPED)],
            [service("web", "api"), service("api", "db"), service("db", cpu=0.002)],
            [("web-1", "web", "lisbon"), ("web-2", "web", "madrid"), ("api-1", "api", "lisbon"),
             ("db-1", "db", "paris")],
            [source("porto", PORTO, 10), source("barcelona-users", BARCELONA, 20)],
        )

    def test_a_container_starts(self, world):
        assert_observes_as_fresh(world, 0.0)
        assert world.execute(PlaceReplica("api", MADRID, UseHost("madrid", 0)), 0.0).ok
        world.observe(5.0)  # still starting
        assert_observes_as_fresh(world, 15.0)
        assert world.observe(15.0).cluster.container("api-2").starting is False

    def test_a_replica_nobody_calls_leaves_its_dependencies_as_they_were(self, world):
        assert_observes_as_fresh(world, 0.0)
        assert world.execute(PlaceReplica("web", PARIS, UseHost("paris", 0)), 0.0).ok  # farther than Madrid
        assert_observes_as_fresh(world, 15.0)
        assert value(world.observe(30.0).samples, "web-3", "requests_per_sec") == 0

    def test_a_container_stops(self, world):
        assert_observes_as_fresh(world, 0.0)
        assert world.execute(StopContainer("web-2", "madrid"), 15.0).ok
        assert_observes_as_fresh(world, 15.0)
        assert value(world.observe(30.0).samples, "web-1", "requests_per_sec") == 30

    def test_a_container_moves(self, world):
        assert_observes_as_fresh(world, 0.0)
        assert world.execute(MoveContainer("api-1", "api", "lisbon", LISBON, UseHost("madrid", 0)), 0.0).ok
        assert_observes_as_fresh(world, 15.0)  # the copy runs, the original is gone
        assert world.replicas() == {"web": 2, "api": 1, "db": 1}

    def test_a_container_that_goes_while_nothing_moves_leaves_the_next_cluster(self):
        """Sixty replicas on one host: when one stops, the others' demands and the host's use move by less than
        the tolerance, so no published object changes, yet the cluster must not be the one made before."""
        big = HostDefinition("lisbon", HostKind.EDGE, LISBON, Resources(64, 64 * GiB, 64 * GiB), HostState.RUNNING,
                             "europe")
        world = world_of([big], [service("web")], [(f"web-{i}", "web", "lisbon") for i in range(60)],
                         [source("porto", PORTO, 600)])
        before = world.observe(0.0).cluster
        assert world.execute(StopContainer("web-7", "lisbon"), 0.0).ok
        after = world.observe(0.0).cluster
        assert len(after.containers) == 59 and not any(c.name == "web-7" for c in after.containers)
        assert after.host("lisbon") is before.host("lisbon")  # the host's published object was kept
        assert_observes_as_fresh(world, 0.0)

    def test_a_host_stops_and_one_starts(self, world):
        assert_observes_as_fresh(world, 0.0)
        assert world.execute(StopHost("lisbon"), 15.0).ok  # web-1 and api-1 go with it
        assert_observes_as_fresh(world, 15.0)
        assert world.execute(PlaceReplica("api", BARCELONA, StartHost("barcelona", 0)), 15.0).ok
        assert_observes_as_fresh(world, 60.0)  # booted (30 s), then started (10 s)
        kpis = world.kpis(60.0)
        assert kpis["hosts_running"] == 3 and kpis["edge_hosts_running"] == 3

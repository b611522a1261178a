"""Placement: capacity, host choice, replicas, overwork, underwork, recovery, support components."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import FrozenInstanceError, fields, replace
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from usm.geo import Coordinates, cloud_region, distance_m
from usm.geo.arrays import distances_to
from usm.placement import (
    NOTHING,
    ArmSupportStop,
    CancelSupportStop,
    Cluster,
    ContainerDemand,
    DrainHost,
    GiveUpRecovery,
    HostCapacity,
    HostKind,
    HostState,
    LaunchCloudHost,
    MoveContainer,
    NoPlan,
    PlacementOptions,
    PlaceReplica,
    RecoveryTracker,
    Resources,
    RestoreContainer,
    ServiceSpec,
    StartHost,
    StartSupport,
    StopContainer,
    StopHost,
    StopSupport,
    SupportState,
    TerminateHost,
    UseHost,
    choose_host,
    choose_replica_to_stop,
    containers_by_region,
    fits,
    has_room,
    migration_target,
    overwork_order,
    plan_migration,
    plan_minimum_replicas,
    plan_overwork,
    plan_recovery,
    plan_replica,
    plan_stop,
    plan_underwork,
    step_support,
)

GiB = 2**30

LISBON = Coordinates(38.7223, -9.1393)
MADRID = Coordinates(40.4168, -3.7038)  # ~503 km from Lisbon
PARIS = Coordinates(48.8566, 2.3522)  # ~1,453 km from Lisbon
LONDON = Coordinates(51.5074, -0.1278)  # ~1,585 km from Lisbon
SYDNEY = Coordinates(-33.8688, 151.2093)
NEW_YORK = Coordinates(40.7128, -74.0060)

SMALL = Resources(cpu=1.0, ram=1 * GiB, disk=1 * GiB)
BIG_HOST = Resources(cpu=4.0, ram=8 * GiB, disk=100 * GiB)


def host(
    name: str,
    at: Coordinates,
    *,
    total: Resources = BIG_HOST,
    used: Resources = NOTHING,
    kind: HostKind = HostKind.EDGE,
    state: HostState = HostState.RUNNING,
    region: str = "europe",
    cloud_region: str = "",
) -> HostCapacity:
    return HostCapacity(name, at, total, used, kind, state, region, cloud_region)


def container(name: str, on: str, demand: Resources = SMALL, service: str = "", **kw) -> ContainerDemand:
    return ContainerDemand(name, service or name.rstrip("0123456789"), on, demand, **kw)


def full(at: Coordinates, name: str) -> HostCapacity:
    """A running host with no room left."""
    return host(name, at, used=Resources(4.0, 8 * GiB, 100 * GiB))


# --- capacity --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "load", "demand", "expected"),
    [
        pytest.param(Resources(10, 10, 10), Resources(8, 0, 0), Resources(1, 0, 0), True, id="cpu-exactly-90pct"),
        pytest.param(Resources(10, 10, 10), Resources(8, 0, 0), Resources(1.001, 0, 0), False, id="cpu-just-over"),
        pytest.param(Resources(2, 10, 10), Resources(1.5, 0, 0), Resources(0.3, 0, 0), True, id="cpu-90pct-float"),
        pytest.param(
            Resources(4, 10 * GiB, 10), Resources(0, 8 * GiB, 0), Resources(0, 1 * GiB, 0), True, id="ram-exactly-90pct"
        ),
        pytest.param(
            Resources(4, 10 * GiB, 10), Resources(0, 8 * GiB, 0), Resources(0, GiB + 1, 0), False, id="ram-1-byte-over"
        ),
        pytest.param(
            Resources(4, 8, 100 * GiB), Resources(0, 0, 90 * GiB), Resources(0, 0, 10 * GiB), True, id="disk-full"
        ),
        pytest.param(
            Resources(4, 8, 100 * GiB), Resources(0, 0, 90 * GiB), Resources(0, 0, 10 * GiB + 1), False, id="disk-over"
        ),
        pytest.param(Resources(0, 8, 8), Resources(), Resources(0.1, 0, 0), False, id="no-cpu-at-all"),
        pytest.param(Resources(4, 8, 8), Resources(), Resources(), True, id="nothing-fits-anywhere"),
    ],
)
def test_has_room(total, load, demand, expected) -> None:
    assert has_room(total, load, demand, PlacementOptions()) is expected


def test_configurable_limits() -> None:
    total, load, demand = Resources(4, 8, 8), Resources(1, 0, 0), Resources(1, 0, 0)
    assert has_room(total, load, demand, PlacementOptions(max_cpu_percent=50))
    assert not has_room(total, load, demand, PlacementOptions(max_cpu_percent=49))
    assert not has_room(Resources(4, 8, 8), Resources(), Resources(0, 0, 8), PlacementOptions(max_disk_percent=90))


@pytest.mark.parametrize(
    ("containers", "demand", "expected"),
    [
        pytest.param((), Resources(1.6, 0, 0), True, id="no-starting-container"),
        pytest.param(
            (container("s1", "h", Resources(1.5, 0, 0), starting=True),), Resources(0.1, 0, 0), True, id="starting-fits"
        ),
        pytest.param(
            (container("s1", "h", Resources(1.5, 0, 0), starting=True),),
            Resources(0.2, 0, 0),
            False,
            id="starting-full",
        ),
        pytest.param(
            (container("r1", "h", Resources(1.5, 0, 0)),), Resources(1.6, 0, 0), True, id="running-is-in-measured-use"
        ),
    ],
)
def test_fits_counts_starting_containers(containers, demand, expected) -> None:
    # 4 cores, 2 used: the limit is 3.6 cores
    cluster = Cluster((host("h", LISBON, used=Resources(2.0, 0, 0)),), containers)
    assert fits(cluster, "h", demand) is expected


def test_a_stopped_host_ignores_its_stale_use() -> None:
    cluster = Cluster((host("h", LISBON, used=BIG_HOST, state=HostState.STOPPED),))
    assert cluster.load("h") == Resources()
    assert fits(cluster, "h", SMALL)


def test_cluster_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="duplicate host names: a"):
        Cluster((host("a", LISBON), host("a", PARIS)))
    with pytest.raises(ValueError, match="duplicate container names: c"):
        Cluster((host("a", LISBON),), (container("c", "a"), container("c", "a")))


# --- choosing a host -------------------------------------------------------------------------------------------


def test_closest_running_host_that_fits() -> None:
    cluster = Cluster((full(LISBON, "lisbon"), host("paris", PARIS), host("madrid", MADRID)))
    choice = choose_host(cluster, SMALL, LISBON)
    assert choice == UseHost("madrid", pytest.approx(503_000, abs=2_000))


@pytest.mark.parametrize(
    "names",
    [pytest.param(("a", "b"), id="a-then-b"), pytest.param(("b", "a"), id="b-then-a")],
)
def test_equal_distances_break_ties_by_name(names) -> None:
    cluster = Cluster(tuple(host(n, PARIS) for n in names))
    assert choose_host(cluster, SMALL, LISBON).host == "a"


def test_excluded_and_stopping_hosts_are_never_chosen_but_starting_ones_are() -> None:
    cluster = Cluster(
        (
            host("madrid", MADRID),
            host("lisbon", LISBON, state=HostState.STOPPING),
            host("paris", PARIS, state=HostState.STARTING),
            host("london", LONDON),
        )
    )
    assert choose_host(cluster, SMALL, LISBON, exclude=frozenset({"madrid"})).host == "paris"


def test_a_stopped_edge_host_is_started_when_no_running_host_fits() -> None:
    """Bug 13: the original never chose a stopped edge host unless a stopped cloud host also existed."""
    cluster = Cluster(
        (
            full(MADRID, "madrid"),
            host("lisbon-small", LISBON, total=Resources(0.5, GiB, GiB), state=HostState.STOPPED),
            host("paris-edge", PARIS, state=HostState.STOPPED),
            host("london-edge", LONDON, state=HostState.STOPPED),
        ),
        cloud_regions=(),
    )
    choice = choose_host(cluster, SMALL, LISBON)
    assert isinstance(choice, StartHost)
    assert choice.host == "paris-edge"  # lisbon-small is closer but too small


def test_a_stopped_cloud_host_is_started_only_in_the_launch_region() -> None:
    """Bug 14: the original woke any stopped instance, anywhere. Lisbon's nearest region is eu-west-3 (Paris)."""
    far = host("nyc-vm", NEW_YORK, kind=HostKind.CLOUD, state=HostState.STOPPED, cloud_region="us-east-1")
    near = host("paris-vm", PARIS, kind=HostKind.CLOUD, state=HostState.STOPPED, cloud_region="eu-west-3")
    assert isinstance(choose_host(Cluster((far,)), SMALL, LISBON), LaunchCloudHost)
    assert choose_host(Cluster((far, near)), SMALL, LISBON) == StartHost("paris-vm", pytest.approx(1_453_000, abs=2e3))
    # with no cloud region to launch in, any stopped cloud host may be started
    assert choose_host(Cluster((far,), cloud_regions=()), SMALL, LISBON).host == "nyc-vm"


def test_a_cloud_host_is_launched_in_the_nearest_region() -> None:
    choice = choose_host(Cluster((full(LISBON, "lisbon"),)), SMALL, LISBON)
    expected = distance_m(LISBON, cloud_region("eu-west-3").location)
    assert choice == LaunchCloudHost("eu-west-3", pytest.approx(expected))


@pytest.mark.parametrize(
    ("options", "cloud", "reason"),
    [
        pytest.param(PlacementOptions(can_launch_hosts=False), True, "launching hosts is not allowed", id="no-launch"),
        pytest.param(PlacementOptions(), False, "no running host has room", id="no-cloud-region"),
        pytest.param(PlacementOptions(new_host_capacity=Resources(0.5, GiB, 8 * GiB)), True, "no host", id="too-big"),
    ],
)
def test_no_host_at_all(options, cloud, reason) -> None:
    cluster = Cluster(
        (full(LISBON, "lisbon"), host("e", PARIS, state=HostState.STOPPED, total=Resources(0.5, GiB, GiB))),
        cloud_regions=Cluster().cloud_regions if cloud else (),
    )
    choice = choose_host(cluster, SMALL, LISBON, options)
    assert isinstance(choice, NoPlan)
    assert reason in choice.reason


def test_starting_hosts_can_be_forbidden() -> None:
    cluster = Cluster((host("e", PARIS, state=HostState.STOPPED),))
    assert isinstance(choose_host(cluster, SMALL, LISBON, PlacementOptions(can_start_hosts=False)), LaunchCloudHost)


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        pytest.param(None, UseHost, id="no-factor-any-running-host"),
        pytest.param(1.5, LaunchCloudHost, id="factor-1.5-sydney-too-far"),
        pytest.param(1000.0, UseHost, id="factor-1000-sydney-acceptable"),
    ],
)
def test_closer_host_factor(factor, expected) -> None:
    cluster = Cluster((host("sydney", SYDNEY),))
    assert isinstance(choose_host(cluster, SMALL, LISBON, PlacementOptions(closer_host_factor=factor)), expected)


def test_closer_host_factor_prefers_a_close_stopped_host_over_a_far_running_one() -> None:
    cluster = Cluster((host("sydney", SYDNEY), host("madrid", MADRID, state=HostState.STOPPED)))
    assert choose_host(cluster, SMALL, LISBON, PlacementOptions(closer_host_factor=1.25)).host == "madrid"


# --- replicas --------------------------------------------------------------------------------------------------


def test_plan_replica() -> None:
    cluster = Cluster((host("madrid", MADRID), host("paris", PARIS)))
    plan = plan_replica(cluster, "catalogue", SMALL, LISBON)
    assert isinstance(plan, PlaceReplica)
    assert (plan.service, plan.host, plan.near) == ("catalogue", "madrid", LISBON)
    launched = plan_replica(Cluster(), "catalogue", SMALL, LISBON)
    assert isinstance(launched.on, LaunchCloudHost) and launched.host is None
    assert isinstance(plan_replica(Cluster(cloud_regions=()), "catalogue", SMALL, LISBON), NoPlan)


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        pytest.param([((10, 10), 1), ((30, 30), 2)], (23.66, 22.78), id="weighted-1:2"),
        pytest.param([((10, 10), 4), ((30, 30), 4)], (20.28, 19.35), id="equal-counts"),
        pytest.param([((0, 10), 1), ((0, 30), 1)], (0.0, 20.0), id="latitude-0-is-not-skipped"),
        pytest.param([((10, 0), 1), ((30, 0), 1)], (20.0, 0.0), id="longitude-0-is-not-skipped"),
        pytest.param([], (38.72, -9.14), id="no-requests-falls-back"),
        pytest.param([((0, 0), 3), ((0, 180), 3)], (38.72, -9.14), id="cancelling-requests-fall-back"),
    ],
)
def test_migration_target(requests, expected) -> None:
    target = migration_target([(Coordinates(lat, lon), n) for (lat, lon), n in requests], fallback=LISBON)
    assert target.latitude == pytest.approx(expected[0], abs=0.01)
    assert target.longitude == pytest.approx(expected[1], abs=0.01)


def test_plan_migration_never_targets_the_current_host() -> None:
    cluster = Cluster((host("lisbon", LISBON), host("london", LONDON)), (container("web1", "lisbon"),))
    plan = plan_migration(cluster, "web1", LISBON)
    assert plan == MoveContainer("web1", "web", "lisbon", LISBON, UseHost("london", pytest.approx(1_585_000, abs=2e3)))
    no_cloud = replace(cluster, hosts=(host("lisbon", LISBON),), cloud_regions=())
    assert isinstance(plan_migration(no_cloud, "web1", LISBON), NoPlan)


def test_choose_replica_to_stop_farthest_from_callers_first() -> None:
    cluster = Cluster(
        (host("lisbon", LISBON), host("london", LONDON), host("sydney", SYDNEY)),
        (
            container("web1", "lisbon"),
            container("web2", "sydney"),
            container("web3", "london"),
            container("lb1", "sydney", service="web", system=True),
        ),
    )
    assert choose_replica_to_stop(cluster, "web", near=LISBON).name == "web2"
    assert choose_replica_to_stop(cluster, "web", near=SYDNEY).name == "web1"
    assert plan_stop(cluster, "web", near=SYDNEY) == StopContainer("web1", "lisbon")
    assert isinstance(plan_stop(cluster, "nothing"), NoPlan)


def test_choose_replica_to_stop_then_busiest_host_then_name() -> None:
    quiet, busy = host("quiet", PARIS), host("busy", PARIS, used=Resources(3.0, 0, 0))
    containers = (container("web1", "quiet"), container("web2", "busy"), container("web3", "busy"))
    cluster = Cluster((quiet, busy), containers)
    assert choose_replica_to_stop(cluster, "web").name == "web2"  # busy host; web2 before web3 by name
    assert choose_replica_to_stop(cluster, "web", near=LISBON).name == "web2"  # equal distances


def test_minimum_replicas_reserve_room_between_placements() -> None:
    """Two replicas of 1 core; Madrid has room for one (2.6 of 4 cores used, limit 3.6), Paris takes the next."""
    cluster = Cluster((host("madrid", MADRID, used=Resources(2.6, 0, 0)), host("paris", PARIS)))
    plans = plan_minimum_replicas(
        cluster, [ServiceSpec("cart", SMALL, min_replicas=2)], callers={"cart": LISBON}, fallback=None
    )
    assert [p.host for p in plans] == ["madrid", "paris"]
    assert all(p.near == LISBON for p in plans)


def test_minimum_replicas_count_starting_replicas_and_skip_given_up_services() -> None:
    cluster = Cluster(
        (host("madrid", MADRID), host("paris", PARIS)),
        (container("cart1", "madrid", starting=True), container("shop1", "paris")),
    )
    specs = [ServiceSpec("shop", SMALL, 3), ServiceSpec("cart", SMALL, 2), ServiceSpec("idle", SMALL, 0)]
    plans = plan_minimum_replicas(cluster, specs, skip=frozenset({"shop"}))
    assert [(p.service, p.host) for p in plans] == [("cart", "madrid")]  # near its replica's host
    plans = plan_minimum_replicas(cluster, specs)
    assert [(p.service, p.host) for p in plans] == [("cart", "madrid"), ("shop", "paris"), ("shop", "paris")]


def test_minimum_replicas_of_a_service_with_nothing_known() -> None:
    """Bug 16: a service with no container at all is revived (near the fallback), or reported."""
    cluster = Cluster((host("madrid", MADRID),))
    assert plan_minimum_replicas(cluster, [ServiceSpec("cart", SMALL)], fallback=LISBON)[0].host == "madrid"
    (plan,) = plan_minimum_replicas(cluster, [ServiceSpec("cart", SMALL)])
    assert isinstance(plan, NoPlan) and "no location" in plan.reason


def test_minimum_replicas_started_host_takes_the_next_replica() -> None:
    cluster = Cluster((host("edge", MADRID, state=HostState.STOPPED),), cloud_regions=())
    plans = plan_minimum_replicas(cluster, [ServiceSpec("cart", SMALL, 2)], fallback=LISBON)
    assert plans[0].on == StartHost("edge", pytest.approx(503_000, abs=2e3))
    assert plans[1].on == UseHost("edge", pytest.approx(503_000, abs=2e3))


# --- overwork --------------------------------------------------------------------------------------------------


def overworked(*containers: ContainerDemand, used_cpu: float) -> Cluster:
    """``hot`` in Lisbon (4 cores, limit 3.6), plus a roomy host in Madrid and one in London."""
    return Cluster(
        (
            host("hot", LISBON, used=Resources(used_cpu, 0, 0)),
            host("london", LONDON),
            host("madrid", MADRID),
        ),
        containers,
    )


def cpu(cores: float) -> Resources:
    return Resources(cores, 0, 0)


def test_overwork_moves_the_smallest_container_that_relieves_the_host() -> None:
    # 3.8 used: removing 0.2 (-> 3.6, exactly the limit), 0.3 or 1.0 each relieves it; 0.2 is the smallest move
    cluster = overworked(
        container("a1", "hot", cpu(0.3)),
        container("b1", "hot", cpu(1.0)),
        container("c1", "hot", cpu(0.2)),
        used_cpu=3.8,
    )
    assert [c.name for c in overwork_order(cluster, "hot")] == ["c1", "a1", "b1"]
    plan = plan_overwork(cluster, "hot")
    assert plan == MoveContainer("c1", "c", "hot", LISBON, UseHost("madrid", pytest.approx(503_000, abs=2e3)))


def test_overwork_moves_the_heaviest_when_no_single_move_is_enough() -> None:
    # 4.0 used: no container alone brings it to 3.6; the heaviest goes first
    cluster = overworked(
        container("a1", "hot", cpu(0.1)),
        container("b1", "hot", cpu(0.3)),
        container("c1", "hot", cpu(0.2)),
        used_cpu=4.0,
    )
    assert [c.name for c in overwork_order(cluster, "hot")] == ["b1", "c1", "a1"]
    assert plan_overwork(cluster, "hot").container == "b1"


def test_overwork_never_moves_system_or_starting_containers() -> None:
    cluster = overworked(
        container("prom1", "hot", cpu(0.5), system=True),
        container("new1", "hot", cpu(0.5), starting=True),
        used_cpu=3.8,
    )
    plan = plan_overwork(cluster, "hot")
    assert isinstance(plan, NoPlan) and "no movable container" in plan.reason


def test_overwork_skips_a_candidate_that_cannot_go_anywhere() -> None:
    huge = Resources(3.0, 0, 0)
    cluster = Cluster(
        (host("hot", LISBON, used=cpu(4.0)), host("madrid", MADRID, total=Resources(2, 8 * GiB, 100 * GiB))),
        (container("big1", "hot", huge), container("small1", "hot", cpu(0.5))),
        cloud_regions=(),
    )
    plan = plan_overwork(cluster, "hot")
    assert (plan.container, plan.host) == ("small1", "madrid")


def test_overwork_never_lands_on_the_overworked_host_and_may_launch() -> None:
    cluster = Cluster((host("hot", LISBON, used=cpu(3.8)),), (container("a1", "hot", cpu(0.5)),))
    plan = plan_overwork(cluster, "hot")
    assert plan.on == LaunchCloudHost(
        "eu-west-3", pytest.approx(distance_m(LISBON, cloud_region("eu-west-3").location))
    )


def test_overwork_moves_towards_the_callers_when_known() -> None:
    cluster = overworked(container("a1", "hot", cpu(0.5)), used_cpu=3.8)
    assert plan_overwork(cluster, "hot", callers={"a": LONDON}).host == "london"


# --- underwork -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "then"),
    [
        pytest.param(HostKind.EDGE, StopHost, id="edge-is-stopped"),
        pytest.param(HostKind.CLOUD, TerminateHost, id="cloud-is-terminated"),
    ],
)
def test_underwork_drains_then_stops_or_terminates(kind, then) -> None:
    # madrid has room for one 1-core container (2.6 used), paris for the rest; biggest container first
    cluster = Cluster(
        (
            host("idle", LISBON, kind=kind, used=cpu(1.5)),
            host("madrid", MADRID, used=cpu(2.6)),
            host("paris", PARIS),
        ),
        (container("a1", "idle", cpu(0.5)), container("b1", "idle", cpu(1.0)), container("p1", "idle", system=True)),
    )
    plan = plan_underwork(cluster, "idle")
    assert isinstance(plan, DrainHost)
    assert [(m.container, m.host) for m in plan.moves] == [("b1", "madrid"), ("a1", "paris")]
    assert plan.then == then("idle")


def test_underwork_never_moves_back_onto_the_drained_host() -> None:
    """Bug 15: the original could pick the host being removed as the closest capable one."""
    cluster = Cluster(
        (host("idle", LISBON), host("paris", PARIS)),
        (container("a1", "idle"),),
    )
    plan = plan_underwork(cluster, "idle")
    assert [m.host for m in plan.moves] == ["paris"]


def test_underwork_is_refused_when_a_container_has_nowhere_to_go() -> None:
    cluster = Cluster(
        (
            host("idle", LISBON),
            host("tiny", MADRID, total=Resources(1, 8 * GiB, 100 * GiB)),
            host("stopped", PARIS, state=HostState.STOPPED),
        ),
        (container("a1", "idle", cpu(0.5)), container("b1", "idle", cpu(0.5))),
    )
    plan = plan_underwork(cluster, "idle")  # tiny takes a1 (0.5 <= 0.9) but not b1 too; no start, no launch
    assert isinstance(plan, NoPlan) and "b1 has nowhere to go" in plan.reason


@pytest.mark.parametrize(
    ("states", "minimum", "reason"),
    [
        pytest.param((HostState.RUNNING, HostState.STOPPED), 1, "only 1 running host", id="last-running-host"),
        pytest.param((HostState.RUNNING, HostState.RUNNING), 2, "minimum 2", id="minimum-hosts"),
        pytest.param((HostState.STOPPING, HostState.RUNNING), 1, "it is stopping", id="already-stopping"),
    ],
)
def test_underwork_refusals(states, minimum, reason) -> None:
    cluster = Cluster((host("idle", LISBON, state=states[0]), host("other", PARIS, state=states[1])))
    plan = plan_underwork(cluster, "idle", min_running_hosts=minimum)
    assert isinstance(plan, NoPlan) and reason in plan.reason


def test_underwork_avoids_excluded_hosts_and_drains_an_empty_host() -> None:
    cluster = Cluster((host("idle", LISBON), host("madrid", MADRID), host("paris", PARIS)), (container("a1", "idle"),))
    assert plan_underwork(cluster, "idle", exclude=frozenset({"madrid"})).moves[0].host == "paris"
    assert plan_underwork(cluster, "paris") == DrainHost("paris", (), StopHost("paris"))


# --- recovery --------------------------------------------------------------------------------------------------


def recovery_cluster() -> Cluster:
    return Cluster((host("lisbon", LISBON), host("madrid", MADRID)), (container("web1", "lisbon", starting=True),))


def test_a_failed_container_is_restored_near_its_previous_host() -> None:
    tracker, plan = plan_recovery(recovery_cluster(), RecoveryTracker(), container("web1", "lisbon"), at=0.0)
    assert plan == RestoreContainer("web1", "web", "web1", LISBON, UseHost("lisbon", 0.0))
    assert tracker.recent("web1", 0.0) == (0.0,)


def test_restore_avoids_a_host_that_is_gone_or_stopped() -> None:
    cluster = recovery_cluster().with_host_state("lisbon", HostState.STOPPED)
    _, plan = plan_recovery(
        cluster, RecoveryTracker(), container("web1", "lisbon"), 0.0, PlacementOptions(can_start_hosts=False)
    )
    assert plan.host == "madrid"
    _, plan = plan_recovery(Cluster((host("madrid", MADRID),)), RecoveryTracker(), container("web1", "gone"), 0.0)
    assert isinstance(plan, NoPlan) and "unknown" in plan.reason
    _, plan = plan_recovery(
        Cluster((host("madrid", MADRID),)), RecoveryTracker(), container("web1", "gone"), 0.0, near=LISBON
    )
    assert plan.host == "madrid"


@pytest.mark.parametrize(
    ("times", "outcomes"),
    [
        pytest.param([0, 60, 120], "RRG", id="3-failures-in-2-minutes-give-up"),
        pytest.param([0, 300, 599], "RRG", id="3rd-at-9m59s-gives-up"),
        pytest.param([0, 300, 600], "RRR", id="first-failure-aged-out-at-10m"),
        pytest.param([0, 60, 120, 180], "RRGG", id="stays-given-up"),
        pytest.param([0, 60, 120, 720], "RRGR", id="reset-10-minutes-after-the-last"),
        pytest.param([0, 60, 120, 600], "RRGG", id="not-yet-reset-at-10m-after-the-first"),
    ],
)
def test_recovery_gives_up_after_3_failures_in_10_minutes(times, outcomes) -> None:
    cluster, tracker, got = recovery_cluster(), RecoveryTracker(), ""
    for t in times:
        tracker, plan = plan_recovery(cluster, tracker, container("web1", "lisbon"), at=float(t))
        got += {RestoreContainer: "R", GiveUpRecovery: "G"}[type(plan)]
    assert got == outcomes


def test_a_restored_container_fails_with_its_lineage() -> None:
    cluster, tracker = recovery_cluster(), RecoveryTracker()
    tracker, first = plan_recovery(cluster, tracker, container("web1", "lisbon"), 0.0)
    tracker, second = plan_recovery(cluster, tracker, container("web7", "lisbon", lineage=first.lineage), 10.0)
    tracker, third = plan_recovery(cluster, tracker, container("web9", "lisbon", lineage="web1"), 20.0)
    assert (second.lineage, third) == ("web1", GiveUpRecovery("web9", "web", "web1", 3))
    assert tracker.services_given_up(20.0) == frozenset({"web"})
    assert tracker.services_given_up(620.0) == frozenset()
    assert tracker.pruned(620.0).history == {}
    assert set(tracker.pruned(605.0).history) == {"web1"}


def test_recovery_tracker_is_immutable_and_validated() -> None:
    tracker = RecoveryTracker()
    tracker.record_failure("x", "s", 1.0)
    assert tracker.history == {}
    with pytest.raises(ValueError):
        RecoveryTracker(max_failures=0)
    with pytest.raises(ValueError):
        RecoveryTracker(window_s=0)


# --- support components ----------------------------------------------------------------------------------------


def run_support(steps: list[tuple[float, dict[str, int]]], delay: float = 300.0) -> list[tuple[float, tuple]]:
    state, out = SupportState(stop_delay_s=delay), []
    for at, counts in steps:
        state, events = step_support(state, counts, at)
        out.append((at, events))
    return out


def test_support_starts_when_a_region_has_containers_and_stops_5_minutes_after_it_has_none() -> None:
    assert run_support([(0, {"europe": 2}), (60, {"europe": 1}), (120, {}), (419, {}), (420, {}), (480, {})]) == [
        (0, (StartSupport("europe"),)),
        (60, ()),
        (120, (ArmSupportStop("europe", 420.0),)),
        (419, ()),
        (420, (StopSupport("europe"),)),
        (480, ()),
    ]


def test_support_stop_is_cancelled_when_containers_return() -> None:
    assert run_support(
        [(0, {"asia": 1}), (100, {"asia": 0}), (200, {"asia": 3}), (500, {"asia": 3}), (600, {}), (900, {})]
    ) == [
        (0, (StartSupport("asia"),)),
        (100, (ArmSupportStop("asia", 400.0),)),
        (200, (CancelSupportStop("asia"),)),
        (500, ()),  # the cancelled stop is not due any more
        (600, (ArmSupportStop("asia", 900.0),)),  # re-armed from the new empty time
        (900, (StopSupport("asia"),)),
    ]


def test_support_regions_are_independent_and_in_name_order() -> None:
    out = run_support([(0, {"oceania": 1, "africa": 1}), (10, {"oceania": 1}), (310, {"oceania": 1})])
    assert out == [
        (0, (StartSupport("africa"), StartSupport("oceania"))),
        (10, (ArmSupportStop("africa", 310.0),)),
        (310, (StopSupport("africa"),)),
    ]


def test_support_with_no_delay_stops_at_once() -> None:
    assert run_support([(0, {"europe": 1}), (5, {})], delay=0.0)[1] == (5, (StopSupport("europe"),))


def test_containers_by_region_counts_application_containers_only() -> None:
    """Bug 20: the original counted the support components' own containers, so a region was never empty."""
    cluster = Cluster(
        (host("lisbon", LISBON), host("sydney", SYDNEY, region="oceania"), host("nowhere", PARIS, region="")),
        (
            container("web1", "lisbon"),
            container("lb1", "sydney", system=True),
            container("web2", "nowhere"),
            container("web3", "vanished"),
            container("web4", "lisbon", starting=True),
        ),
    )
    assert containers_by_region(cluster) == {"europe": 2}


# --- properties ------------------------------------------------------------------------------------------------

hosts_strategy = st.lists(
    st.builds(
        lambda lat, lon, used, state: (lat, lon, used, state),
        st.floats(-60, 60),
        st.floats(-180, 180),
        st.floats(0, 4),
        st.sampled_from(list(HostState)),
    ),
    max_size=8,
)


def build_cluster(specs) -> Cluster:
    return Cluster(
        tuple(
            host(f"h{i}", Coordinates(lat, lon), used=cpu(used), state=state)
            for i, (lat, lon, used, state) in enumerate(specs)
        )
    )


@given(hosts_strategy, st.floats(0, 4), st.floats(-60, 60), st.floats(-180, 180))
def test_a_chosen_running_host_fits_and_none_closer_does(specs, demand_cpu, lat, lon) -> None:
    cluster, near, demand = build_cluster(specs), Coordinates(lat, lon), cpu(demand_cpu)
    choice = choose_host(cluster, demand, near)
    if isinstance(choice, UseHost):
        assert fits(cluster, choice.host, demand)
        assert cluster.host(choice.host).state in (HostState.RUNNING, HostState.STARTING)
        for h in cluster.hosts:
            if h.state in (HostState.RUNNING, HostState.STARTING) and fits(cluster, h.name, demand):
                assert (distance_m(h.location, near), h.name) >= (choice.distance_m, choice.host)
    elif isinstance(choice, StartHost):
        assert cluster.host(choice.host).state is HostState.STOPPED
        assert not any(
            h.state in (HostState.RUNNING, HostState.STARTING) and fits(cluster, h.name, demand) for h in cluster.hosts
        )


@given(hosts_strategy, st.lists(st.floats(0.1, 2), max_size=6))
def test_a_drain_never_overfills_a_host_nor_uses_the_drained_one(specs, demands) -> None:
    cluster = build_cluster([(0.0, 0.0, 0.0, HostState.RUNNING), *specs])
    cluster = replace(cluster, containers=tuple(container(f"c{i}", "h0", cpu(d)) for i, d in enumerate(demands)))
    plan = plan_underwork(cluster, "h0")
    if isinstance(plan, DrainHost):
        added: dict[str, float] = {}
        for move in plan.moves:
            assert move.host != "h0"
            assert cluster.host(move.host).state in (HostState.RUNNING, HostState.STARTING)
            added[move.host] = added.get(move.host, 0.0) + cluster.container(move.container).demand.cpu
        for name, extra in added.items():
            assert has_room(cluster.host(name).total, cluster.load(name), cpu(extra), PlacementOptions())


# --- the data ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("made", "keywords"),
    [
        (Resources(), {}),
        (Resources(1.5, 2.0), {"cpu": 1.5, "ram": 2.0}),
        (ContainerDemand("web0", "web", "a"), {"name": "web0", "service": "web", "host": "a"}),
        (
            ContainerDemand("web0", "web", "a", Resources(1.0, 2.0, 3.0), True, True, "web9"),
            {"name": "web0", "service": "web", "host": "a", "demand": Resources(disk=3.0, ram=2.0, cpu=1.0),
             "starting": True, "system": True, "lineage": "web9"},
        ),
    ],
)
def test_hand_written_initialisers_make_what_the_dataclass_describes(made, keywords) -> None:
    """Resources and ContainerDemand set their fields by hand (cheaper): positional and keyword arguments, the
    declared defaults, equality, hashing, repr, pickling, ``replace`` and immutability are a frozen dataclass's."""
    again = type(made)(**keywords)
    assert again == made and hash(again) == hash(made) and repr(again) == repr(made)
    assert {f.name: getattr(made, f.name) for f in fields(made)} == {
        f.name: keywords.get(f.name, f.default) for f in fields(made)
    }
    assert pickle.loads(pickle.dumps(made)) == made
    first = fields(made)[0].name
    assert getattr(replace(made, **{first: getattr(made, first)}), first) == getattr(made, first)
    with pytest.raises(FrozenInstanceError):
        setattr(made, first, None)


# --- indexed cluster -------------------------------------------------------------------------------------------

PLACES = [LISBON, MADRID, PARIS, Coordinates(LISBON.latitude + 1e-7, LISBON.longitude), SYDNEY]
HOST_NAMES = ["a", "b", "c", "d", "e"]
CHANGES = st.one_of(
    st.tuples(
        st.just("add"),
        st.sampled_from(["x", "y", "z", "web0", "web1"]),  # "web0", "web1" are already in the cluster
        st.sampled_from([*HOST_NAMES, "gone"]),
        st.sampled_from(["web", "db"]),
        st.floats(0, 2),
        st.booleans(),
    ),
    st.tuples(st.just("remove"), st.sampled_from(["x", "y", "web0", "web1", "db0", "nothing"])),
    st.tuples(st.just("state"), st.sampled_from([*HOST_NAMES, "gone"]), st.sampled_from(list(HostState))),
)


def fresh_cluster(states: list[HostState]) -> Cluster:
    return Cluster(
        tuple(host(n, PLACES[i], used=cpu(0.5), state=s) for i, (n, s) in enumerate(zip(HOST_NAMES, states))),
        (
            container("web1", "a", cpu(1.0), starting=True),
            container("web0", "b", cpu(0.5)),
            container("db0", "a", cpu(0.25), starting=True),
            container("db1", "gone", cpu(0.5), starting=True),
        ),
    )


QUERIES = ("containers_on", "starting_on", "load", "replicas", "replica_count", "hosts_in", "container")


def assert_answers_like_a_fresh_copy(cluster: Cluster, queries: Iterable[str] = QUERIES) -> None:
    """``cluster`` answers ``queries`` (each building the index it reads) as the same cluster built afresh."""
    fresh = Cluster(cluster.hosts, cluster.containers, cluster.cloud_regions)
    assert cluster == fresh
    for query in queries:
        if query in ("containers_on", "starting_on", "load"):
            for name in [*HOST_NAMES, "gone"]:
                assert cluster.has_host(name) == fresh.has_host(name)
                if query != "load":
                    assert getattr(cluster, query)(name) == getattr(fresh, query)(name)
                elif fresh.has_host(name):
                    assert repr(cluster.load(name)) == repr(fresh.load(name))  # bit for bit
        elif query in ("replicas", "replica_count"):
            for service in ["web", "db", "none"]:
                assert getattr(cluster, query)(service) == getattr(fresh, query)(service)
                assert fresh.replica_count(service) == len(fresh.replicas(service))
        elif query == "hosts_in":
            for state in HostState:
                assert cluster.hosts_in(state) == fresh.hosts_in(state)
        else:
            for c in fresh.containers:
                assert cluster.container(c.name) == c
            with pytest.raises(KeyError):
                cluster.container("nothing")


@given(
    st.lists(st.sampled_from(list(HostState)), min_size=5, max_size=5),
    st.lists(st.tuples(CHANGES, st.sets(st.sampled_from(QUERIES))), max_size=12),
)
def test_derived_clusters_answer_like_freshly_built_ones(states, changes) -> None:
    """After any sequence of with_container / without_container / with_host_state, each made with any of its
    parent's indexes built (by the queries asked before it), the derived cluster answers every query exactly like
    the same cluster built afresh."""
    cluster = fresh_cluster(states)
    for change, asked_first in changes:
        assert_answers_like_a_fresh_copy(cluster, sorted(asked_first))  # builds the indexes the change derives from
        if change[0] == "add":
            _, name, on, service, demand, starting = change
            added = ContainerDemand(name, service, on, cpu(demand), starting=starting)
            if any(c.name == name for c in cluster.containers):
                with pytest.raises(ValueError, match=f"duplicate container names: {name}"):
                    cluster.with_container(added)
                continue
            cluster = cluster.with_container(added)
        elif change[0] == "remove":
            cluster = cluster.without_container(change[1])
        else:
            cluster = cluster.with_host_state(change[1], change[2])
    assert_answers_like_a_fresh_copy(cluster)


@given(
    st.lists(
        st.tuples(st.sampled_from(PLACES), st.floats(-1e-4, 1e-4), st.floats(-60, 60), st.floats(-180, 180)),
        max_size=10,
    ),
    st.one_of(st.sampled_from(PLACES), st.builds(Coordinates, st.floats(-90, 90), st.floats(-180, 180))),
    st.sets(st.integers(0, 9)),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_closest_host_is_the_closest_wanted_host_by_distance_then_name(spots, near, wanted, anywhere, seed) -> None:
    """``Cluster.closest_host`` ranks hosts by numpy's distances but answers with ``distance_m``'s: the same host
    and distance as a plain minimum, among hosts metres apart or at the very same place, even when the ranking's
    distances are off by several metres (numpy's sines may differ from ``math``'s in the last bit)."""
    hosts = tuple(
        host(
            f"h{len(spots) - i}",
            Coordinates(lat, lon) if anywhere else Coordinates(place.latitude + nudge, place.longitude),
        )
        for i, (place, nudge, lat, lon) in enumerate(spots)
    )
    noise = np.random.default_rng(seed).uniform(-5.0, 5.0, len(hosts))
    expected = min(((distance_m(h.location, near), h.name) for h in hosts if int(h.name[1:]) in wanted), default=None)
    for ranking in (distances_to, lambda lat, lon, target: distances_to(lat, lon, target) + noise):
        with patch("usm.placement.model.distances_to", ranking):
            best = Cluster(hosts).closest_host(near, lambda h: int(h.name[1:]) in wanted)
        assert (None if best is None else (best[1], best[0].name)) == expected

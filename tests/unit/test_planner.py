"""One cycle of planning: recovery, the engine's actions, then minimum replicas."""

from __future__ import annotations

from usm.engine.policy import Decision
from usm.engine.results import Action
from usm.geo.sphere import Coordinates, weighted_centroid
from usm.placement.model import Cluster, ContainerDemand, HostCapacity, Resources, ServiceSpec
from usm.placement.planner import FailedContainer, PlannerState, _Centroids, plan_cycle
from usm.placement.plans import DrainHost, NoPlan, PlaceReplica, RestoreContainer, StopContainer
from usm.placement.recovery import GiveUpRecovery

BIG = Resources(4, 8 * 2**30, 100 * 2**30)
SMALL = Resources(0.5, 2**28, 2**30)
LISBON, MADRID, PARIS = Coordinates(38.72, -9.14), Coordinates(40.42, -3.70), Coordinates(48.86, 2.35)


def cluster(*containers: ContainerDemand) -> Cluster:
    hosts = (HostCapacity("lisbon", LISBON, BIG), HostCapacity("madrid", MADRID, BIG),
             HostCapacity("paris", PARIS, BIG))
    return Cluster(hosts, containers, cloud_regions=())


def test_two_hosts_drained_in_one_cycle_never_swap_their_containers():
    world = cluster(ContainerDemand("a-1", "a", "lisbon", SMALL), ContainerDemand("b-1", "b", "madrid", SMALL))
    actions = [Action(0.0, Decision.UNDERWORK, "lisbon", "idle"), Action(0.0, Decision.UNDERWORK, "madrid", "idle")]
    planned, _ = plan_cycle(0.0, actions, world, (), {})
    first, second = (p.step for p in planned)
    assert isinstance(first, DrainHost) and first.moves[0].host == "madrid"
    assert isinstance(second, NoPlan) and "receives containers" in second.reason


def test_replicas_go_near_the_callers_and_minimums_count_what_was_just_planned():
    world = cluster(ContainerDemand("a-1", "a", "lisbon", SMALL))
    actions = [Action(0.0, Decision.REPLICATE, "a", "busy", "a-1")]
    specs = (ServiceSpec("a", SMALL, min_replicas=2), ServiceSpec("b", SMALL, min_replicas=1))
    planned, _ = plan_cycle(0.0, actions, world, specs, {"a": [(PARIS, 10.0)]})
    steps = [p.step for p in planned]
    assert [type(s) for s in steps] == [PlaceReplica, PlaceReplica]  # a reaches its minimum by the replicate
    assert steps[0].service == "a" and steps[0].host == "paris"
    assert steps[1].service == "b" and [p.why for p in planned][1] == "minimum replicas of b"


def test_stop_stops_the_container_whose_decision_won():
    world = cluster(ContainerDemand("a-1", "a", "lisbon", SMALL), ContainerDemand("a-2", "a", "paris", SMALL))
    planned, _ = plan_cycle(0.0, [Action(0.0, Decision.STOP, "a", "idle", "a-2")], world,
                            (ServiceSpec("a", SMALL, 1),), {})
    assert planned[0].step == StopContainer("a-2", "paris")


def test_recovery_restores_near_the_old_host_and_gives_up_on_the_third_failure_in_ten_minutes():
    world = cluster()
    state = PlannerState()
    failed = FailedContainer("a-1", "a", "madrid")
    steps = []
    for at in (0.0, 60.0, 120.0):
        planned, state = plan_cycle(at, [], world, (ServiceSpec("a", SMALL, 0),), {}, [failed], state)
        steps.append(planned[0].step)
    assert isinstance(steps[0], RestoreContainer) and steps[0].host == "madrid"
    assert isinstance(steps[2], GiveUpRecovery)
    planned, _ = plan_cycle(180.0, [], world, (ServiceSpec("a", SMALL, 1),), {}, [], state)
    assert planned == ()  # a service whose recovery gave up is left alone by the minimum


def test_two_replicas_for_one_host_in_one_cycle_are_two_distinct_steps():
    """The journal and the actuators know a step by its content and cycle time: two equal steps would be one."""
    from usm.actuators.containersteps import step_name
    from usm.actuators.journal import step_id

    world = Cluster((HostCapacity("lisbon", LISBON, BIG),), (), cloud_regions=())
    planned, _ = plan_cycle(30.0, [], world, (ServiceSpec("a", SMALL, min_replicas=3),), {"a": [(LISBON, 1.0)]})
    steps = [p.step for p in planned]
    assert [type(s) for s in steps] == [PlaceReplica] * 3 and {s.host for s in steps} == {"lisbon"}
    assert [s.ordinal for s in steps] == [0, 1, 2]
    assert len({step_id(s, 30.0) for s in steps}) == len({step_name("a", s, 30.0) for s in steps}) == 3


def test_callers_centroids_are_worked_out_when_asked_and_as_a_whole_would_be() -> None:
    """The planner's callers' centroids, made on first use, are the weighted centroids of the services with any,
    and leave out those with none (no request, zero weights, or weights that cancel out); a service no one asked
    about is never worked out."""
    requests = {
        "web": ((LISBON, 3.0), (MADRID, 1.0)),
        "db": (),
        "idle": ((LISBON, 0.0),),
        "split": ((Coordinates(0.0, 0.0), 1.0), (Coordinates(0.0, 180.0), 1.0)),
        "never": (("not a place", 1.0),),  # weighted_centroid would fail on it
    }
    asked = dict(requests)
    del asked["never"]
    callers = _Centroids(requests)
    assert callers.get("web") == weighted_centroid(requests["web"])
    assert [callers.get(s) for s in ("db", "idle", "split", "missing")] == [None] * 4
    assert "web" in callers and "db" not in callers
    assert dict(_Centroids(asked)) == {"web": weighted_centroid(requests["web"])}

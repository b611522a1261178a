"""One cycle of planning: from the engine's actions and the world's state to plan steps.

Pure, like the rest of placement. The order is fixed and each planned step is reserved in the
cluster before the next one is planned, so two steps never count on the same room:

1. recovery of the containers that failed since the last cycle (given up after 3 failures in
   10 minutes, see ``usm.placement.recovery``);
2. the engine's actions, in the order the engine gives them;
3. minimum replicas, every cycle, for every service (the original only enforced them as a side
   effect of some other decision, bug 16); a service with no replica and no caller goes near the
   centre of the running hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from usm.engine.policy import Decision
from usm.engine.results import Action
from usm.geo.sphere import Coordinates, centroid, weighted_centroid
from usm.placement.model import (
    DEFAULT_OPTIONS,
    NOTHING,
    RECEIVING_STATES,
    Cluster,
    ContainerDemand,
    PlacementOptions,
    Resources,
    ServiceSpec,
)
from usm.placement.plans import (
    DrainHost,
    MoveContainer,
    NoPlan,
    PlaceReplica,
    RestoreContainer,
    StopContainer,
    StopHost,
    TerminateHost,
)
from usm.placement.rebalance import plan_overwork, plan_underwork
from usm.placement.recovery import GiveUpRecovery, RecoveryTracker, plan_recovery
from usm.placement.replicas import plan_migration, plan_minimum_replicas, plan_replica, reserve

Step = PlaceReplica | MoveContainer | RestoreContainer | StopContainer | DrainHost | StopHost | TerminateHost


@dataclass(frozen=True)
class Planned:
    """A plan step (or the reason there is none), and why it was planned."""

    why: str
    step: Step | NoPlan | GiveUpRecovery


@dataclass(frozen=True)
class FailedContainer:
    container: str
    service: str
    host: str
    lineage: str = ""


@dataclass(frozen=True)
class PlannerState:
    recovery: RecoveryTracker = field(default_factory=RecoveryTracker)


class _Centroids(Mapping[str, Coordinates]):
    """Service -> the request-weighted spherical centroid of its callers (services without callers left out),
    each worked out when first asked for: a cycle asks for the services it acts on and those below their
    minimum, a few of the dozens there are."""

    def __init__(self, requests: Mapping[str, Sequence[tuple[Coordinates, float]]]) -> None:
        self._requests = requests
        self._known: dict[str, Coordinates | None] = {}

    def __getitem__(self, service: str) -> Coordinates:
        if service in self._known:
            centre = self._known[service]
        else:
            centre = self._known[service] = weighted_centroid(self._requests[service])
        if centre is None:
            raise KeyError(service)
        return centre

    def __iter__(self) -> Iterator[str]:
        return (service for service in self._requests if service in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def nothing_to_plan(actions: Sequence[Action], failures: Sequence[FailedContainer], services: Sequence[ServiceSpec],
                    replicas: Mapping[str, int]) -> bool:
    """Whether ``plan_cycle`` would plan nothing: no action, no failure, and every service at its minimum
    (``replicas``: running and starting containers by service). Most cycles are such, and the caller can then
    skip building the cluster."""
    return not actions and not failures and all(replicas.get(s.name, 0) >= s.min_replicas for s in services)


def plan_cycle(
    at: float,
    actions: Iterable[Action],
    cluster: Cluster,
    services: Sequence[ServiceSpec],
    requests: Mapping[str, Sequence[tuple[Coordinates, float]]],
    failures: Iterable[FailedContainer] = (),
    state: PlannerState = PlannerState(),
    options: PlacementOptions = DEFAULT_OPTIONS,
) -> tuple[tuple[Planned, ...], PlannerState]:
    callers = _Centroids(requests)
    demand = {s.name: s.demand for s in services}
    planned: list[Planned] = []
    tracker = state.recovery.pruned(at)

    for failed in failures:
        lost = ContainerDemand(failed.container, failed.service, failed.host, demand.get(failed.service, NOTHING),
                               lineage=failed.lineage)
        tracker, step = plan_recovery(cluster, tracker, lost, at, options)
        planned.append(Planned(f"recovery of {failed.container} ({failed.service})", step))
        cluster = _after(cluster, step, demand)

    draining: frozenset[str] = frozenset()
    for action in actions:
        step = _plan_action(action, cluster, callers, demand, options, draining)
        if isinstance(step, DrainHost):
            draining |= {step.host}
        why = f"{action.action.value} {action.target}" + \
            (f" (container {action.container}, rule {action.rule})" if action.container else f" (rule {action.rule})")
        planned.append(Planned(why, step))
        cluster = _after(cluster, step, demand)

    skip = tracker.services_given_up(at)
    anywhere = centroid([h.location for h in cluster.hosts if h.state in RECEIVING_STATES])
    for step in plan_minimum_replicas(cluster, services, options, callers, anywhere, skip):
        planned.append(Planned("minimum replicas" + (f" of {step.service}" if isinstance(step, PlaceReplica) else ""),
                               step))
        cluster = _after(cluster, step, demand)
    return tuple(_distinct(planned)), PlannerState(tracker)


def _distinct(planned: list[Planned]) -> list[Planned]:
    """The plan with equal replica placements numbered: two replicas of one service for one host are two steps,
    which actuators and the journal (knowing a step by its content) must not take for one."""
    seen: dict[PlaceReplica, int] = {}
    result = []
    for item in planned:
        if isinstance(item.step, PlaceReplica):
            count = seen.get(item.step, 0)
            seen[item.step] = count + 1
            if count:
                item = replace(item, step=replace(item.step, ordinal=count))
        result.append(item)
    return result


def _plan_action(action: Action, cluster: Cluster, callers: Mapping[str, Coordinates],
                 demand: Mapping[str, Resources], options: PlacementOptions, draining: frozenset[str]) -> Step | NoPlan:
    """``draining``: hosts that earlier steps of this cycle drain; nothing moves onto them, and a
    host that receives containers in this cycle is not drained."""
    if action.action is Decision.OVERWORK:
        return plan_overwork(cluster, action.target, options, callers)
    if action.action is Decision.UNDERWORK:
        if cluster.starting_on(action.target):
            return NoPlan(f"underwork of {action.target}: it receives containers in this cycle")
        return plan_underwork(cluster, action.target, options, callers, exclude=draining)
    try:
        container = cluster.container(action.container or "")
    except KeyError:
        return NoPlan(f"{action.action.value} of {action.container}: the container is gone")
    fallback = cluster.host(container.host).location if cluster.has_host(container.host) else None
    near = callers.get(action.target, fallback)
    if action.action is Decision.STOP:
        return StopContainer(container.name, container.host)
    if near is None:
        return NoPlan(f"{action.action.value} of {container.name}: no location known")
    if action.action is Decision.REPLICATE:
        return plan_replica(cluster, action.target, demand.get(action.target, container.demand), near, options)
    return plan_migration(cluster, container.name, near, options)


def _after(cluster: Cluster, step: object, demand: Mapping[str, Resources]) -> Cluster:
    """The cluster as later steps of the same cycle must see it."""
    if isinstance(step, (PlaceReplica, RestoreContainer)):
        return reserve(cluster, step.on, step.service, demand.get(step.service, NOTHING), step.service)
    if isinstance(step, MoveContainer):
        return reserve(cluster, step.on, step.service, demand.get(step.service, NOTHING), step.container)
    if isinstance(step, StopContainer):
        return cluster.without_container(step.container)
    if isinstance(step, DrainHost):
        for move in step.moves:
            cluster = _after(cluster, move, demand)
        return cluster
    return cluster

"""Host-level actions: relieve an overworked host, drain an underworked one.

Fixes against the original (§3.8, §13 items 8 and 15):

* overwork moved a **random** container (TODO in the code); here the choice is explicit: the container whose
  removal brings the host under its limits with the smallest move, else the heaviest one;
* underwork could move containers back onto the host being removed; here the drained host is excluded, each
  move is reserved before the next is planned, and the drain is refused as a whole when some container has
  nowhere to go (a half-drained host is never stopped);
* the drained host is then stopped (edge) or terminated (cloud); the original left cloud hosts running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from usm.geo.sphere import Coordinates
from usm.placement.hosts import choose_host, has_room
from usm.placement.model import (
    DEFAULT_OPTIONS,
    NOTHING,
    RECEIVING_STATES,
    Cluster,
    ContainerDemand,
    HostCapacity,
    HostKind,
    HostState,
    PlacementOptions,
)
from usm.placement.plans import DrainHost, MoveContainer, NoPlan, StopHost, TerminateHost
from usm.placement.replicas import reserve


def footprint(container: ContainerDemand, host: HostCapacity) -> float:
    """How big a container is on its host: its cpu share plus its ram share of the host's capacity.

    Both terms are fractions, so they add up meaningfully (the original summed bytes and percentages, bug 8).
    Disk is left out: it decides whether a container fits, not how much it weighs on a busy host.
    """
    cpu = container.demand.cpu / host.total.cpu if host.total.cpu > 0 else 0.0
    ram = container.demand.ram / host.total.ram if host.total.ram > 0 else 0.0
    return cpu + ram


def overwork_order(cluster: Cluster, host: str, options: PlacementOptions = DEFAULT_OPTIONS) -> list[ContainerDemand]:
    """The movable containers of an overworked host, best candidate first.

    First those whose removal alone brings the host's load within the limits, smallest footprint first (the
    least disruptive move that solves the problem); then the others, largest footprint first (the most relief
    one move can give). Ties by name. System and starting containers are not movable.
    """
    h = cluster.host(host)
    load = cluster.load(host)
    movable = [c for c in cluster.containers_on(host) if not c.system and not c.starting]
    relieving: list[ContainerDemand] = []
    others: list[ContainerDemand] = []
    for c in movable:
        (relieving if has_room(h.total, load - c.demand, NOTHING, options) else others).append(c)
    relieving.sort(key=lambda c: (footprint(c, h), c.name))
    others.sort(key=lambda c: (-footprint(c, h), c.name))
    return relieving + others


def plan_overwork(
    cluster: Cluster,
    host: str,
    options: PlacementOptions = DEFAULT_OPTIONS,
    callers: Mapping[str, Coordinates] | None = None,
) -> MoveContainer | NoPlan:
    """Move one container off an overworked host.

    Candidates in ``overwork_order``; the first one that can go somewhere moves to ``choose_host`` near its
    service's callers (``callers``, if known) or else near the overworked host, never onto that host. Starting a
    stopped host or launching a cloud host is allowed (as the options permit): that is how overwork grows the
    cluster.
    """
    callers = {} if callers is None else callers  # `or` would work out every lazy centroid (len)
    origin = cluster.host(host)
    reasons: list[str] = []
    for c in overwork_order(cluster, host, options):
        near = callers.get(c.service, origin.location)
        on = choose_host(cluster.without_container(c.name), c.demand, near, options, frozenset({host}))
        if isinstance(on, NoPlan):
            reasons.append(f"{c.name}: {on.reason}")
            continue
        return MoveContainer(c.name, c.service, host, near, on)
    if not reasons:
        return NoPlan(f"overwork of {host}: no movable container on it")
    return NoPlan(f"overwork of {host}: no container can move ({'; '.join(reasons)})")


def plan_underwork(
    cluster: Cluster,
    host: str,
    options: PlacementOptions = DEFAULT_OPTIONS,
    callers: Mapping[str, Coordinates] | None = None,
    min_running_hosts: int = 1,
    exclude: frozenset[str] = frozenset(),
) -> DrainHost | NoPlan:
    """Drain an underworked host, then stop it (edge) or terminate it (cloud).

    Refused when the host is not running or receiving, or when only ``min_running_hosts`` hosts would remain. Each
    movable (non-system) container, largest footprint first, goes to the closest running host that fits near its
    service's callers (or near the drained host): never the drained host, nor hosts in ``exclude`` (e.g. others
    being drained in the same cycle), and never a host that would have to be started or launched for it. Each
    move is reserved before the next is planned. If one container has nowhere to go, there is no plan at all.
    """
    callers = {} if callers is None else callers  # `or` would work out every lazy centroid (len)
    drained = cluster.host(host)
    if drained.state not in RECEIVING_STATES:
        return NoPlan(f"underwork of {host}: it is {drained.state.value}")
    running = sum(1 for h in cluster.hosts if h.state in RECEIVING_STATES)
    if running <= min_running_hosts:
        return NoPlan(f"underwork of {host}: only {running} running host(s), minimum {min_running_hosts}")

    drain_options = replace(options, can_start_hosts=False, can_launch_hosts=False)
    work = cluster.with_host_state(host, HostState.STOPPING)
    forbidden = exclude | {host}
    movable = sorted(
        (c for c in cluster.containers_on(host) if not c.system), key=lambda c: (-footprint(c, drained), c.name)
    )
    moves: list[MoveContainer] = []
    for c in movable:
        near = callers.get(c.service, drained.location)
        on = choose_host(work, c.demand, near, drain_options, forbidden)
        if isinstance(on, NoPlan):
            return NoPlan(f"underwork of {host}: {c.name} has nowhere to go ({on.reason})")
        moves.append(MoveContainer(c.name, c.service, host, near, on))
        work = reserve(work, on, c.service, c.demand, c.name)
    then = TerminateHost(host) if drained.kind is HostKind.CLOUD else StopHost(host)
    return DrainHost(host, tuple(moves), then)


__all__ = ["footprint", "overwork_order", "plan_overwork", "plan_underwork"]

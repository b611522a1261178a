"""A host's state for placement, from what EC2 and the swarm last said about it.

Pure functions over the syncs' snapshots (``usm.manager.syncs``): no call leaves the process.

* A cloud host is whatever its EC2 instance is: ``pending`` -> STARTING, ``running`` -> RUNNING,
  ``stopping`` and ``shutting-down`` -> STOPPING, ``stopped`` -> STOPPED. ``terminated``, or no live instance of
  that name in a region that was read, means the host is gone: it leaves the cluster and the inventory. A host
  whose region was never read keeps the site file's word (running) until it is.
* A swarm node whose availability is ``drain`` or ``pause`` makes its host receive nothing: a RUNNING or STARTING
  host becomes STOPPING (``drain`` moves its swarm tasks away; usm's own containers stay until placement moves
  them). A STOPPED host stays STOPPED.
* An instance or a node that names no host of the site is not made into a host: it is listed by
  :func:`unknown_instances` and :func:`unknown_nodes` for the operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from usm.placement.model import RECEIVING_STATES, HostKind, HostState

if TYPE_CHECKING:
    from usm.actuators.ec2 import CloudInstance
    from usm.actuators.swarm import SwarmNode
    from usm.manager.site import SiteHost
    from usm.manager.syncs import CloudView

EC2_HOST_STATES: Mapping[str, HostState] = {
    "pending": HostState.STARTING,
    "running": HostState.RUNNING,
    "stopping": HostState.STOPPING,
    "shutting-down": HostState.STOPPING,
    "stopped": HostState.STOPPED,
}
"""EC2 instance state -> host state; a state not listed (``terminated``) means the host is gone."""

HOLDING_AVAILABILITIES = frozenset({"drain", "pause"})
"""Swarm node availabilities under which the node's host receives nothing."""


def cloud_state(instance_state: str) -> HostState | None:
    """The host state of an instance in ``instance_state``; ``None``: the host is gone."""
    return EC2_HOST_STATES.get(instance_state)


def cloud_host_state(host: SiteHost, cloud: CloudView | None) -> HostState | None:
    """A cloud host's state by EC2 (``None``: gone); RUNNING while its region has not been read."""
    if cloud is None:
        return HostState.RUNNING
    instance = cloud.instance(host.name)
    if instance is not None:
        return cloud_state(instance.state)
    return None if host.cloud_region in cloud.regions else HostState.RUNNING


def nodes_by_host(nodes: Iterable[SwarmNode]) -> dict[str, SwarmNode]:
    """Host name -> its swarm node: its ready one if an old, down one is still listed beside it."""
    by_host: dict[str, SwarmNode] = {}
    for n in sorted(nodes, key=lambda n: (not n.ready, n.id), reverse=True):
        by_host[n.host] = n
    return by_host


def held_by_swarm(state: HostState, node: SwarmNode | None) -> HostState:
    """``state`` once the swarm has its say: a receiving host whose node is drained or paused is STOPPING."""
    if node is not None and node.availability in HOLDING_AVAILABILITIES and state in RECEIVING_STATES:
        return HostState.STOPPING
    return state


def host_states(hosts: Sequence[SiteHost], cloud: CloudView | None,
                nodes: Sequence[SwarmNode] | None) -> dict[str, HostState]:
    """Site host name -> its state now; a host that is gone is left out. ``cloud``/``nodes``: ``None`` when that
    source is not configured or has not answered yet."""
    states: dict[str, HostState] = {}
    node = nodes_by_host(nodes or ())
    for host in hosts:
        state = cloud_host_state(host, cloud) if host.kind is HostKind.CLOUD else HostState.RUNNING
        if state is None:
            continue
        states[host.name] = held_by_swarm(state, node.get(host.name))
    return states


def unknown_instances(hosts: Sequence[SiteHost], cloud: CloudView | None) -> tuple[CloudInstance, ...]:
    """usm's instances whose host the site does not list (launched and waiting for their place in it, say)."""
    known = {h.name for h in hosts}
    return tuple(i for i in (cloud.instances if cloud else ()) if i.host not in known)


def unknown_nodes(hosts: Sequence[SiteHost], nodes: Sequence[SwarmNode] | None) -> tuple[SwarmNode, ...]:
    """Swarm nodes that name no host of the site (``usm.host`` missing or not a site host)."""
    known = {h.name for h in hosts}
    return tuple(n for n in nodes or () if n.host not in known)


__all__ = ["EC2_HOST_STATES", "HOLDING_AVAILABILITIES", "cloud_host_state", "cloud_state", "held_by_swarm",
           "host_states", "nodes_by_host", "unknown_instances", "unknown_nodes"]

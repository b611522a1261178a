"""Swarm nodes: hosts join and leave usm's Docker swarm, and usm sets their availability, role and labels (§3.10).

The swarm is run from one manager host. Each host's node carries the label ``usm.host=<host name>``, set when it
joins, and is found by it: several hosts may share a hostname (or, in tests, a machine), so the node of a host is
never guessed from its hostname or address. A node's id comes from the host's own engine when it joins.

Fixes against the original: a host that leaves is removed from the node list (the original left it listed as
Down, §13 item 15); a host in some other swarm is refused with a message instead of being pulled out of it.

:meth:`Swarm.sync` returns the nodes and usm's containers on every ready node (original §5.3: every 10 s, an
interval here set by :class:`SwarmSettings`; :class:`SwarmSync` calls it when due).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import docker
import docker.errors
import requests.exceptions
from docker.models.nodes import Node

from usm.actuators.clock import WALL_CLOCK, Clock
from usm.actuators.docker import DockerContainers, ManagedContainer
from usm.actuators.dockerhosts import AccessError, DockerClients

LABEL_HOST = "usm.host"
AVAILABILITIES = ("active", "pause", "drain")
ROLES = ("manager", "worker")


class SwarmError(Exception):
    """A swarm action could not be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class SwarmSettings:
    listen_port: int = 2377  # the swarm port of every host (Docker's default)
    sync_interval: float = 10.0  # seconds between two syncs (original §5.3)


@dataclass(frozen=True)
class SwarmNode:
    id: str
    host: str  # the usm host (label usm.host); "" for a node usm did not join
    role: str  # manager | worker
    availability: str  # active | pause | drain
    state: str  # ready | down | unknown | disconnected
    address: str
    leader: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "ready"


@dataclass(frozen=True)
class SwarmState:
    """One sync: the swarm's nodes, and usm's containers on the ready ones."""

    nodes: tuple[SwarmNode, ...]
    containers: tuple[ManagedContainer, ...]
    unreachable: Mapping[str, str] = field(default_factory=dict)  # host -> why its containers could not be listed


def swarm_node(node: Node) -> SwarmNode:
    attrs = node.attrs
    spec, status, manager = attrs["Spec"], attrs.get("Status", {}), attrs.get("ManagerStatus") or {}
    labels = dict(spec.get("Labels") or {})
    return SwarmNode(id=attrs["ID"], host=labels.get(LABEL_HOST, ""), role=spec.get("Role", ""),
                     availability=spec.get("Availability", ""), state=status.get("State", "unknown"),
                     address=status.get("Addr", ""), leader=bool(manager.get("Leader")), labels=labels)


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise SwarmError(f"{value!r} is not a node {what}; choose one of {', '.join(allowed)}")
    return value


def with_labels(spec: Mapping, labels: Mapping[str, str | None]) -> dict:
    """``spec`` with ``labels`` set (a ``None`` value removes that label)."""
    merged = dict(spec.get("Labels") or {})
    for key, value in labels.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return {**spec, "Labels": merged}


class Swarm:
    """usm's swarm, run from the host ``manager``; ``containers`` lists usm's containers for :meth:`sync`."""

    def __init__(self, hosts: DockerClients, manager: str, containers: DockerContainers | None = None,
                 settings: SwarmSettings = SwarmSettings()):
        self.hosts = hosts
        self.manager = manager
        self.containers = containers or DockerContainers(hosts)
        self.settings = settings

    @property
    def _manager(self) -> docker.DockerClient:
        return self.hosts.client(self.manager)

    # -- membership ------------------------------------------------------------------------------------------

    def init(self, address: str, listen_address: str | None = None, port: int | None = None,
             labels: Mapping[str, str] | None = None) -> SwarmNode:
        """Make the manager host a single-node swarm advertised on ``address``:``port`` (the settings' port by
        default). Idempotent: a manager host that already manages a swarm is reported."""
        client = self._manager
        info = client.info()["Swarm"]
        if info.get("LocalNodeState") == "active":
            if not info.get("ControlAvailable"):
                raise SwarmError(f"host {self.manager} is a worker of another swarm; run `docker swarm leave` on "
                                 "it first if it should manage usm's swarm")
        else:
            port = port or self.settings.listen_port
            client.swarm.init(advertise_addr=f"{address}:{port}", listen_addr=f"{listen_address or address}:{port}")
        return self._label(client.info()["Swarm"]["NodeID"], self.manager, labels or {})

    def join(self, host: str, address: str, role: str = "worker", listen_address: str | None = None,
             port: int | None = None, labels: Mapping[str, str] | None = None) -> SwarmNode:
        """Join ``host`` to the swarm as ``role``, reached on ``address``:``port``. Idempotent: a host already in
        the swarm is labelled and reported. Stale nodes of the same host (down, from an earlier join) are removed."""
        _choice(role, ROLES, "role")
        manager = self._manager
        joining = self.hosts.client(host)
        info = joining.info()["Swarm"]
        known = {node.id for node in manager.nodes.list()}
        if info.get("LocalNodeState") == "active":
            if info.get("NodeID") not in known:
                raise SwarmError(f"host {host} is in another swarm; run `docker swarm leave` on it first if it "
                                 "should join usm's")
            node = self._label(info["NodeID"], host, labels or {})
            return self.set_role(host, role) if node.role != role else node
        manager.swarm.reload()
        token = manager.swarm.attrs["JoinTokens"]["Manager" if role == "manager" else "Worker"]
        remotes = [m["Addr"] for m in manager.info()["Swarm"].get("RemoteManagers") or []]
        if not remotes:
            raise SwarmError(f"host {self.manager} manages no swarm: call init first")
        port = port or self.settings.listen_port
        joining.swarm.join(remote_addrs=remotes, join_token=token, listen_addr=f"{listen_address or address}:{port}",
                           advertise_addr=f"{address}:{port}")
        node_id = joining.info()["Swarm"]["NodeID"]
        for stale in self._nodes_of(host):
            if stale.id != node_id and stale.attrs.get("Status", {}).get("State") == "down":
                stale.remove(force=True)
        return self._label(node_id, host, labels or {})

    def remove(self, host: str) -> bool:
        """Take ``host`` out of the swarm: demote it if it is a manager, let it leave, and remove its node from
        the list. ``False`` if it was not in the swarm. An unreachable host's node is removed all the same."""
        if host == self.manager:
            raise SwarmError(f"host {host} runs usm's swarm; it cannot be removed from it")
        nodes = self._nodes_of(host)
        if not nodes:
            return False
        for node in nodes:
            if node.attrs["Spec"].get("Role") == "manager":
                self._update(node, lambda spec: {**spec, "Role": "worker"})
        try:
            self.hosts.client(host).swarm.leave()
        except docker.errors.APIError as error:
            raise SwarmError(f"host {host} did not leave the swarm: {error.explanation or error}") from None
        except (AccessError, requests.exceptions.RequestException, OSError):
            pass  # gone or unreachable: removing its node below is what is left to do
        for node in nodes:
            try:
                node.remove(force=True)
            except docker.errors.NotFound:
                pass
        return True

    # -- node settings ---------------------------------------------------------------------------------------

    def set_availability(self, host: str, availability: str) -> SwarmNode:
        """``active``, ``pause`` (no new tasks) or ``drain`` (tasks move away)."""
        _choice(availability, AVAILABILITIES, "availability")
        return self._update(self._node(host), lambda spec: {**spec, "Availability": availability})

    def set_role(self, host: str, role: str) -> SwarmNode:
        """Promote to ``manager`` or demote to ``worker`` (Docker refuses to demote the last manager)."""
        _choice(role, ROLES, "role")
        return self._update(self._node(host), lambda spec: {**spec, "Role": role})

    def set_labels(self, host: str, labels: Mapping[str, str | None]) -> SwarmNode:
        """Set labels on ``host``'s node; a ``None`` value removes that label. ``usm.host`` cannot be changed."""
        if LABEL_HOST in labels:
            raise SwarmError(f"the label {LABEL_HOST} names the node's host and is set by join; it cannot be changed")
        return self._update(self._node(host), lambda spec: with_labels(spec, labels))

    # -- reading ---------------------------------------------------------------------------------------------

    def nodes(self) -> tuple[SwarmNode, ...]:
        return tuple(sorted((swarm_node(n) for n in self._manager.nodes.list()), key=lambda n: (n.host, n.id)))

    def node(self, host: str) -> SwarmNode | None:
        """``host``'s node (the live one if an old one is still listed), or ``None``."""
        nodes = sorted(self._nodes_of(host), key=lambda n: n.attrs.get("Status", {}).get("State") != "ready")
        return swarm_node(nodes[0]) if nodes else None

    def sync(self) -> SwarmState:
        """The nodes, and usm's containers on every ready node that usm joined."""
        nodes = self.nodes()
        containers: list[ManagedContainer] = []
        unreachable: dict[str, str] = {}
        for node in nodes:
            if node.host and node.ready:
                try:
                    containers.extend(self.containers.list(node.host))
                except (AccessError, docker.errors.DockerException) as error:
                    unreachable[node.host] = str(error)
        return SwarmState(nodes, tuple(containers), unreachable)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _nodes_of(self, host: str) -> list[Node]:
        return [n for n in self._manager.nodes.list() if (n.attrs["Spec"].get("Labels") or {}).get(LABEL_HOST) == host]

    def _node(self, host: str) -> Node:
        nodes = sorted(self._nodes_of(host), key=lambda n: n.attrs.get("Status", {}).get("State") != "ready")
        if not nodes:
            raise SwarmError(f"host {host} has no node in the swarm (no node labelled {LABEL_HOST}={host}); "
                             "join it first")
        return nodes[0]

    def _label(self, node_id: str, host: str, labels: Mapping[str, str]) -> SwarmNode:
        node = self._manager.nodes.get(node_id)
        return self._update(node, lambda spec: with_labels(spec, {**labels, LABEL_HOST: host}))

    def _update(self, node: Node, change: Callable[[dict], dict]) -> SwarmNode:
        node.reload()  # the update must name the node's current version
        try:
            node.update(change(dict(node.attrs["Spec"])))
        except docker.errors.APIError as error:
            raise SwarmError(f"cannot update swarm node {node.id}: {error.explanation or error}") from None
        node.reload()
        return swarm_node(node)


class SwarmSync:
    """Calls :meth:`Swarm.sync` once every ``interval`` seconds of ``clock``, whenever it is polled."""

    def __init__(self, swarm: Swarm, clock: Clock = WALL_CLOCK, interval: float | None = None):
        self.swarm = swarm
        self.clock = clock
        self.interval = swarm.settings.sync_interval if interval is None else interval
        self.last: float | None = None

    def due(self) -> bool:
        return self.last is None or self.clock.now() - self.last >= self.interval

    def poll(self) -> SwarmState | None:
        """A fresh sync if one is due, else ``None``."""
        if not self.due():
            return None
        self.last = self.clock.now()
        return self.swarm.sync()


__all__ = [
    "AVAILABILITIES",
    "LABEL_HOST",
    "ROLES",
    "Swarm",
    "SwarmError",
    "SwarmNode",
    "SwarmSettings",
    "SwarmState",
    "SwarmSync",
    "swarm_node",
    "with_labels",
]

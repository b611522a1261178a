"""The launcher's actuator on real Docker hosts: ``usm.manager.launcher.LaunchActuator`` over
:class:`~usm.actuators.docker.DockerContainers`.

A replica is ready when its container runs and, if its service declares a port, something accepts a TCP
connection on that port at its host's address: a container that runs but does not listen yet cannot serve its
dependents, and the next wave must not start before it can. A replica that is absent or has exited is ``gone``.

Only steps that name a running host (``UseHost``) are carried out: starting a stopped host or launching a cloud
host is the host actuators' business, and a launch that needs one is refused with the reason, not half done.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

import docker.errors
import paramiko
import requests

from usm.actuators.docker import ContainerError, ContainerSpec, DockerContainers, new_name
from usm.actuators.dockerhosts import AccessError
from usm.manager.launcher import ReplicaState, Started
from usm.manager.ports import Outcome
from usm.placement.model import Cluster, ContainerDemand, HostCapacity
from usm.placement.plans import PlaceReplica, UseHost

CONNECT_TIMEOUT = 1.0
"""Seconds a readiness probe waits for a TCP connection."""

_FAILURES = (ContainerError, AccessError, docker.errors.DockerException, requests.exceptions.RequestException,
             paramiko.SSHException, OSError)


def answers(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether something accepts a TCP connection on ``address:port`` within ``timeout`` seconds."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


class DockerLaunchActuator:
    """Starts, probes and stops an app's replicas on Docker hosts.

    ``specs`` says what each service runs, ``ports`` the TCP port a service answers on (a service without one is
    ready once its container runs), ``addresses`` each host's address for the probe.
    """

    def __init__(self, containers: DockerContainers, specs: Mapping[str, ContainerSpec],
                 addresses: Mapping[str, str], ports: Mapping[str, int] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.containers = containers
        self.specs = dict(specs)
        self.addresses = dict(addresses)
        self.ports = dict(ports or {})
        self.connect_timeout = connect_timeout
        self._where: dict[str, str] = {}  # container -> host, for the ones found or started

    def start_replica(self, step: PlaceReplica, at: float) -> Started:
        if not isinstance(step.on, UseHost):
            return Started(False, detail=f"a replica of {step.service} would need {type(step.on).__name__} "
                                         f"({step.host or 'a new cloud host'}): start or launch that host first, "
                                         "or launch the app on running hosts")
        spec = self.specs.get(step.service)
        if spec is None:
            return Started(False, detail=f"no container spec for service {step.service} (its image and command): "
                                         "add one")
        host = step.on.host
        try:
            launched = self.containers.launch(host, spec, new_name(step.service))
        except _FAILURES as error:
            return Started(False, host=host, detail=f"on host {host}: {error}")
        self._where[launched.container.name] = host
        return Started(True, launched.container.name, host)

    def replica_state(self, container: str, at: float) -> ReplicaState:
        try:
            host = self._host_of(container)
            found = None if host is None else self.containers.find(host, container)
        except _FAILURES:
            return ReplicaState.STARTING  # the host did not answer this time: look again (the wave times out)
        if found is None or found.status in ("exited", "dead"):
            return ReplicaState.GONE
        if not found.running:
            return ReplicaState.STARTING
        port = self.ports.get(found.service)
        if port is None:
            return ReplicaState.READY
        address = self.addresses.get(host or "")
        if address is None:
            return ReplicaState.STARTING
        return ReplicaState.READY if answers(address, port, self.connect_timeout) else ReplicaState.STARTING

    def stop_replica(self, container: str, at: float) -> Outcome:
        try:
            host = self._host_of(container)
            if host is None:
                return Outcome(container, True, f"{container} was already gone")
            stopped = self.containers.stop(host, container)
        except _FAILURES as error:
            return Outcome(container, False, f"cannot stop {container}: {error}")
        self._where.pop(container, None)
        return Outcome(container, True, f"{container} on {host} " + ("stopped" if stopped else "was already gone"))

    def _host_of(self, container: str) -> str | None:
        """The host of ``container``: remembered, or searched for on every host (a replica started before)."""
        if container in self._where:
            return self._where[container]
        for host in self.containers.hosts.names():
            if self.containers.find(host, container) is not None:
                self._where[container] = host
                return host
        return None

    def cluster(self, hosts: Sequence[HostCapacity]) -> Cluster:
        """``hosts`` with usm's running and starting containers on them, as their engines report them: what a
        launch counts as a service's existing replicas, and what ``stop_app`` stops."""
        found = []
        for host in hosts:
            for container in self.containers.list(host.name):
                if container.status in ("exited", "dead"):
                    continue
                self._where[container.name] = host.name
                found.append(ContainerDemand(container.name, container.service, host.name,
                                             starting=not container.running))
        return Cluster(tuple(hosts), tuple(found))


__all__ = ["CONNECT_TIMEOUT", "DockerLaunchActuator", "answers"]

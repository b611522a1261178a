"""Placement's container steps (``usm.placement.plans``) carried out on Docker hosts.

A thin adapter from plan steps to :class:`~usm.actuators.docker.DockerContainers`: it implements the loop's
``Actuator`` port for ``PlaceReplica``, ``MoveContainer``, ``RestoreContainer`` and ``StopContainer``, and reports
every failure in the outcome instead of raising.

The usm name of a container a step starts is derived from the step and its cycle time, so carrying out the same
step again (a retry, or a restart replaying its journal) finds the container it started the first time instead of
starting a second one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import docker.errors
import paramiko
import requests

from usm.actuators.docker import (
    ContainerError,
    ContainerSpec,
    DockerContainers,
    check_name,
)
from usm.actuators.dockerhosts import AccessError, HostUnreachable
from usm.manager.ports import Outcome
from usm.placement.plans import (
    HostChoice,
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    RestoreContainer,
    StopContainer,
)


def step_name(service: str, step: Any, at: float) -> str:
    """The usm name of the container ``step`` starts at cycle time ``at``: the same for the same step and time."""
    digest = hashlib.blake2b(f"{step!r}@{at!r}".encode(), digest_size=5).hexdigest()
    return check_name(f"{service}-{digest}")


def _unplaced(on: HostChoice) -> str:
    assert isinstance(on, LaunchCloudHost)
    return (f"the receiving host is a cloud host still to be launched in {on.region}; it must run before "
            "containers go on it")


class ContainerSteps:
    """Carries out container plan steps with ``containers``; ``specs`` says what each service runs."""

    def __init__(self, containers: DockerContainers, specs: Mapping[str, ContainerSpec]):
        self.containers = containers
        self.specs = dict(specs)
        self._handlers: dict[type, Callable[[Any, float], Outcome]] = {
            PlaceReplica: self._place,
            MoveContainer: self._move,
            RestoreContainer: self._restore,
            StopContainer: self._stop,
        }

    def execute(self, step: Any, at: float) -> Outcome:
        handler = self._handlers.get(type(step))
        if handler is None:
            return Outcome(step, False, f"the Docker actuator does not carry out a {type(step).__name__}")
        try:
            return handler(step, at)
        except (ContainerError, AccessError) as error:
            return Outcome(step, False, str(error), transient=isinstance(error, HostUnreachable))
        except docker.errors.APIError as error:  # a 5xx is the engine's trouble, which may pass
            return Outcome(step, False, f"Docker: {error}", transient=error.is_server_error())
        except docker.errors.DockerException as error:
            return Outcome(step, False, f"Docker: {error}")
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, paramiko.SSHException) as error:
            return Outcome(step, False, f"the Docker host did not answer: {error}", transient=True)

    def _spec(self, service: str) -> ContainerSpec:
        spec = self.specs.get(service)
        if spec is None:
            raise ContainerError(f"no container spec for service {service} (its image and command): add one")
        return spec

    def _place(self, step: PlaceReplica, at: float) -> Outcome:
        if step.host is None:
            return Outcome(step, False, _unplaced(step.on))
        launched = self.containers.launch(step.host, self._spec(step.service), step_name(step.service, step, at))
        verb = "started on" if launched.created else "was already running on"
        return Outcome(step, True, f"{launched.container.name} {verb} {step.host}")

    def _move(self, step: MoveContainer, at: float) -> Outcome:
        if step.host is None:
            return Outcome(step, False, _unplaced(step.on))
        moved = self.containers.migrate(step.container, step.source, step.host, step_name(step.service, step, at))
        stopped = "stopped" if moved.stopped else "was already gone"
        return Outcome(step, True, f"{moved.container.name} runs on {step.host}; {step.container} on {step.source} "
                                   f"{stopped}")

    def _restore(self, step: RestoreContainer, at: float) -> Outcome:
        if step.host is None:
            return Outcome(step, False, _unplaced(step.on))
        launched = self.containers.launch(step.host, self._spec(step.service), step_name(step.service, step, at),
                                          lineage=step.lineage)
        verb = "started on" if launched.created else "was already running on"
        return Outcome(step, True, f"{launched.container.name} {verb} {step.host} in place of {step.container}")

    def _stop(self, step: StopContainer, at: float) -> Outcome:
        stopped = self.containers.stop(step.host, step.container)
        return Outcome(step, True, f"{step.container} on {step.host} " + ("stopped" if stopped else "was already gone"))


__all__ = ["ContainerSteps", "step_name"]

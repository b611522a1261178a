"""Plan steps that need a cloud host started, stopped, terminated or launched: EC2 for the host, Docker for the rest.

Placement names the host part of a plan inside the step (``usm.placement.plans``): a PlaceReplica, MoveContainer
or RestoreContainer goes ``on`` a running host, a stopped host to start (``StartHost``) or a cloud host to launch
(``LaunchCloudHost``); a DrainHost moves containers off a host and then stops or terminates it. This adapter
carries out the host part on EC2 (``usm.actuators.ec2_steps.execute_host_step``) and hands the container part to
the container steps, in that order, so that a container only goes on a host that runs:

* ``StartHost`` of a cloud host: the instance is started (and waited for), then the container placed on it;
* ``StopHost`` / ``TerminateHost`` of a cloud host: the instance is stopped or terminated; an edge host is never
  terminated, and stopping one is not carried out here (the outcome says so);
* ``DrainHost``: its moves one by one, then its final stop or terminate; the first move that fails ends the
  step, and the host is left running with the containers that did not move;
* ``LaunchCloudHost``: the instance is launched, and the container is **not** placed: a new host only gets a
  Docker endpoint from the site file, so the step ends *pending* (not done) with what the operator has to add.
  The launched host is named after its region and the site (``<region>-host-<n>``, the first name the site does
  not list), so the launches of later cycles, or of a restarted manager, find that same instance instead of
  launching one more per cycle.

Every host step's resulting instance is passed to ``seen``, for the EC2 snapshot to show it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from usm.actuators.ec2 import CloudInstance, Ec2, Ec2Error
from usm.actuators.ec2_steps import execute_host_step
from usm.manager.ports import Actuator, Outcome
from usm.placement.model import HostKind
from usm.placement.plans import (
    DrainHost,
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    RestoreContainer,
    StartHost,
    StopHost,
    TerminateHost,
)

PENDING = "pending"
"""The first word of the outcome of a placement whose host was launched and cannot take containers yet."""


def launch_name(region: str, known: Mapping[str, Any]) -> str:
    """The name of the host to launch in ``region``: ``<region>-host-<n>`` for the first ``n`` not in ``known``."""
    n = 1
    while f"{region}-host-{n}" in known:
        n += 1
    return f"{region}-host-{n}"


def pending_reason(instance: CloudInstance, service: str) -> str:
    address = instance.public_ip or instance.private_ip or "ITS-ADDRESS"
    return (f"{PENDING}: cloud host {instance.host} ({instance.instance_id}) was launched in {instance.region} and is "
            f"{instance.state}; the {service} container is not placed: a launched host has no Docker endpoint usm "
            f"can reach until the site file names it. Add it under hosts (name: {instance.host}, kind: cloud, "
            f"cloud_region: {instance.region}, docker: ssh://USER@{address}, with its location and capacity) and "
            "restart usm run; until then later launches in this region find this instance and launch nothing")


class CloudHostSteps:
    """The loop's ``Actuator`` port for steps with a host part, over ``ec2`` and the container steps."""

    def __init__(self, ec2: Ec2, containers: Actuator, kinds: Mapping[str, HostKind],
                 seen: Callable[[CloudInstance], object] = lambda _: None) -> None:
        """``kinds``: every site host's kind (edge or cloud)."""
        self.ec2 = ec2
        self.containers = containers
        self.kinds = dict(kinds)
        self.seen = seen

    def execute(self, step: Any, at: float) -> Outcome:
        if isinstance(step, (StopHost, TerminateHost)):
            return self._host(step)
        if isinstance(step, DrainHost):
            return self._drain(step, at)
        if isinstance(step, (PlaceReplica, MoveContainer, RestoreContainer)):
            if isinstance(step.on, LaunchCloudHost):
                return self._launch(step, step.on)
            if isinstance(step.on, StartHost) and self._is_cloud(step.on.host):
                return self._start_then(step, step.on, at)
        return self.containers.execute(step, at)

    def _is_cloud(self, host: str) -> bool:
        return self.kinds.get(host) is HostKind.CLOUD

    def _host(self, step: StopHost | TerminateHost | StartHost) -> Outcome:
        if not self._is_cloud(step.host):
            what = "is not a host of the site" if step.host not in self.kinds else "is an edge host"
            verb = {StopHost: "stopped", TerminateHost: "terminated", StartHost: "started"}[type(step)]
            return Outcome(step, False, f"{step.host} {what}: only cloud hosts are {verb} here (on EC2)")
        return execute_host_step(self.ec2, step, self.seen)

    def _start_then(self, step: PlaceReplica | MoveContainer | RestoreContainer, start: StartHost,
                    at: float) -> Outcome:
        started = self._host(start)
        if not started.ok:
            return Outcome(step, False, f"{start.host} was not started, so nothing was placed: {started.detail}",
                           started.transient)
        placed = self.containers.execute(step, at)
        return Outcome(step, placed.ok, f"{started.detail}; {placed.detail}", placed.transient)

    def _launch(self, step: PlaceReplica | MoveContainer | RestoreContainer, launch: LaunchCloudHost) -> Outcome:
        try:
            instance = self.ec2.launch(launch.region, host=launch_name(launch.region, self.kinds), wait=False)
        except Ec2Error as error:
            return Outcome(step, False, str(error), error.transient)
        self.seen(instance)
        return Outcome(step, False, pending_reason(instance, step.service))

    def _drain(self, step: DrainHost, at: float) -> Outcome:
        done = []
        for number, move in enumerate(step.moves, 1):
            moved = self.execute(move, at)
            if not moved.ok:
                return Outcome(step, False, f"the drain of {step.host} stopped at move {number} of "
                                            f"{len(step.moves)} ({move.container}): {moved.detail}; {step.host} is "
                                            "left running", moved.transient)
            done.append(moved.detail)
        final = self._host(step.then)
        return Outcome(step, final.ok, "; ".join([*done, final.detail]), final.transient)


__all__ = ["PENDING", "CloudHostSteps", "launch_name", "pending_reason"]

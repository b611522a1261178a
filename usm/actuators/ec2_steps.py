"""The plan steps that concern cloud hosts, carried out on EC2.

Placement (``usm.placement.plans``) names cloud hosts by their usm host name and emits four host steps that EC2
carries out: ``LaunchCloudHost`` (the receiving host of a PlaceReplica, MoveContainer or RestoreContainer, launched
in a region), ``StartHost`` (a stopped host to start), ``StopHost`` and ``TerminateHost`` (a drained host's last
step). The container part of those plans belongs to the Docker actuator, which calls :func:`carry_out` for the
host part first and places the container on the host it returns. ``Ec2`` stays usable on its own; this module is
only the translation.
"""

from __future__ import annotations

from collections.abc import Callable

from usm.actuators.ec2 import CloudInstance, Ec2, Ec2Error
from usm.manager.ports import Outcome
from usm.placement.plans import LaunchCloudHost, StartHost, StopHost, TerminateHost

HostStep = LaunchCloudHost | StartHost | StopHost | TerminateHost

UNKNOWN_HOST = "UnknownHost"


def carry_out(ec2: Ec2, step: HostStep) -> CloudInstance:
    """Carry out one cloud host step, wait for its result and return the instance as it then is (for a launch: the
    new host, whose name the container part of the plan needs). Raises :class:`Ec2Error`."""
    if isinstance(step, LaunchCloudHost):
        return ec2.launch(step.region)
    instance = ec2.named(step.host)
    if instance is None:
        raise Ec2Error(type(step).__name__, ", ".join(ec2.settings.regions), UNKNOWN_HOST,
                       f"no usm-managed EC2 instance is named {step.host} (an edge host is not an EC2 host)", False)
    if isinstance(step, StartHost):
        return ec2.start(instance.region, instance.instance_id)
    if isinstance(step, StopHost):
        return ec2.stop(instance.region, instance.instance_id)
    if isinstance(step, TerminateHost):
        return ec2.terminate(instance.region, instance.instance_id)
    raise TypeError(f"{type(step).__name__} is not a cloud host step")


def execute_host_step(ec2: Ec2, step: HostStep, seen: Callable[[CloudInstance], object] = lambda _: None) -> Outcome:
    """:func:`carry_out` as an actuator's outcome: never raises for a step that fails; the detail then is the
    :class:`Ec2Error`'s text, and ``transient`` its flag, so that the journal retries throttling or an unreachable
    endpoint and gives up at once on a bad image or a missing permission. ``seen`` is given the instance as the
    step left it (the live manager updates its EC2 snapshot with it)."""
    try:
        done = carry_out(ec2, step)
    except Ec2Error as error:
        return Outcome(step, False, str(error), error.transient)
    seen(done)
    return Outcome(step, True, f"cloud host {done.host} ({done.instance_id}) in {done.region} is {done.state}")


__all__ = ["UNKNOWN_HOST", "HostStep", "carry_out", "execute_host_step"]

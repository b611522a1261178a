"""The seam between the hub's action endpoints and whatever carries actions out.

The API checks an action's input (the service, host or node exists; a launch names a host or a place) and
then calls an ``Actions``. ``usm serve`` gives it the simulator's world (``usm.web.simulated``); a live hub
would give one over the actuators (``usm.actuators``: Docker over SSH, EC2, edge hosts over SSH), and SSH and
SFTP there belong to ``usm.actuators.edge.EdgeHosts.run`` and ``.upload``. Without one, every action answers
503. An implementation raises ``ActionRefused`` for what cannot be done now (a stopped host, a node that is not
there), with a message saying why; it never raises for bad input, which the API has refused before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from usm.geo.sphere import Coordinates
from usm.manager.launcher import LaunchReport, OnFailure
from usm.placement.launch import LaunchPlan

Operation = Literal["start", "stop", "terminate"]
Sync = Literal["containers", "hosts", "nodes", "all"]


class ActionRefused(Exception):
    """The action cannot be carried out in the world as it is; the message says why."""


class ActionsUnavailable(ActionRefused):
    """No world is wired to this hub."""


@dataclass(frozen=True)
class Done:
    """What an action did: ``detail`` in words, and the stored rows it created or changed, by name."""

    detail: str
    changed: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class CommandOutput:
    exit_status: int
    stdout: str
    stderr: str


class Actions(Protocol):
    def launch(self, service: str, host: str | None, near: Coordinates | None) -> Done:
        """Start a container of ``service`` on ``host``, or on the best host for callers around ``near``."""

    def launch_app(self, plan: LaunchPlan, where: Coordinates | tuple[str, ...], on_failure: OnFailure) -> LaunchReport:
        """Launch an app as ``plan`` says, wave by wave, near a place or on the hosts named in turn
        (``usm.manager.launcher``); the report says how it went, a failed launch included."""

    def stop_app(self, plan: LaunchPlan) -> Done:
        """Stop every replica of the app's services, dependents first."""

    def host(self, host: str, operation: Operation) -> Done:
        """Start, stop or terminate (cloud hosts only) a host."""

    def node(self, node: str, availability: str | None, role: str | None) -> Done:
        """Change a swarm node's availability (active, pause, drain) or role (manager, worker)."""

    def ssh(self, host: str, command: str, timeout: float) -> CommandOutput:
        """Run ``command`` on ``host`` over SSH, ended after ``timeout`` seconds."""

    def sftp(self, host: str, path: str, content: bytes, mode: int) -> Done:
        """Upload ``content`` to ``path`` on ``host`` (replacing it atomically) with permissions ``mode``."""

    def sync(self, what: Sync) -> Done:
        """Bring the store up to date with the world (containers, hosts, nodes, or all)."""


class NoActions:
    """The ``Actions`` of a hub with no world: it refuses everything, saying what to do."""

    def _refuse(self) -> None:
        raise ActionsUnavailable("this hub has no world to act on; `usm serve` wires the simulated one")

    def launch(self, service: str, host: str | None, near: Coordinates | None) -> Done:
        self._refuse()
        raise AssertionError

    def launch_app(self, plan: LaunchPlan, where: Coordinates | tuple[str, ...], on_failure: OnFailure) -> LaunchReport:
        self._refuse()
        raise AssertionError

    def stop_app(self, plan: LaunchPlan) -> Done:
        self._refuse()
        raise AssertionError

    def host(self, host: str, operation: Operation) -> Done:
        self._refuse()
        raise AssertionError

    def node(self, node: str, availability: str | None, role: str | None) -> Done:
        self._refuse()
        raise AssertionError

    def ssh(self, host: str, command: str, timeout: float) -> CommandOutput:
        self._refuse()
        raise AssertionError

    def sftp(self, host: str, path: str, content: bytes, mode: int) -> Done:
        self._refuse()
        raise AssertionError

    def sync(self, what: Sync) -> Done:
        self._refuse()
        raise AssertionError


__all__ = ["ActionRefused", "Actions", "ActionsUnavailable", "CommandOutput", "Done", "NoActions", "Operation",
           "Sync"]

"""Actions on the world as the hub carries them out, for the REST API and the pages alike: each checks its input
against the store, calls the hub's ``Actions`` (``usm.web.actions``) and records the attempt, with its user and
outcome, in the audit log (SSH commands and uploads always, whatever their outcome: original-system §13 item 23).

Refusals are ``ApiError`` (422 naming the field, 404 for an unknown host or node, 409 for what the world cannot
do now, 503 without a world): the API answers them as JSON, the pages show their message beside the form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select

from usm.geo.sphere import Coordinates
from usm.manager.launcher import LaunchReport, OnFailure
from usm.manager.store import App, CloudHost, Container, Host, Node, Service
from usm.placement.launch import LaunchPlan, LaunchRefused, plan_launch
from usm.web.actions import ActionRefused, ActionsUnavailable, CommandOutput, Done, Operation, Sync
from usm.web.audit import record
from usm.web.errors import ApiError
from usm.web.hub import state, transaction

MAX_UPLOAD = 4 * 2**20
"""The largest file uploaded through the hub."""

T = TypeVar("T")


def exists(model: type, column: Any, value: str) -> bool:
    with transaction() as session:
        return session.scalar(select(model.id).where(column == value)) is not None


def carry_out(action: str, target: str, detail: dict[str, Any], call: Callable[[], T]) -> T:
    """Call the world, answering and auditing its refusal or failure."""
    try:
        result = call()
    except ActionsUnavailable as refused:
        record(action, "refused", target, {**detail, "reason": str(refused)})
        raise ApiError(503, str(refused)) from None
    except ActionRefused as refused:
        record(action, "refused", target, {**detail, "reason": str(refused)})
        raise ApiError(409, str(refused)) from None
    except Exception as failed:
        record(action, "failed", target, {**detail, "error": f"{type(failed).__name__}: {failed}"})
        raise
    record(action, "ok", target, {**detail, **({"detail": result.detail} if isinstance(result, Done) else {})})
    return result


def known_host(name: str) -> None:
    if not exists(Host, Host.name, name):
        raise ApiError(404, f"there is no host named {name!r}")


def launch(service: str, host: str | None, near: Coordinates | None) -> Done:
    """A container of ``service`` on ``host``, or on the best host for callers around ``near``."""
    problems = {}
    if not exists(Service, Service.name, service):
        problems["service"] = [f"there is no service {service!r}"]
    if host is not None and not exists(Host, Host.name, host):
        problems["host"] = [f"there is no host {host!r}"]
    if problems:
        raise ApiError(422, "the launch names what does not exist; see errors", problems)
    detail: dict[str, Any] = {"service": service}
    if host is not None:
        detail["host"] = host
    if near is not None:
        detail["near"] = {"latitude": near.latitude, "longitude": near.longitude}
    return carry_out("launch", service, detail, lambda: state().actions.launch(service, host, near))


def app_plan(name: str) -> LaunchPlan:
    """The launch plan of the stored app ``name``: its services' dependencies in waves. A dependency outside the
    app may be a service that has containers already. A cycle or a missing dependency is a 422, before anything
    starts."""
    with transaction() as session:
        app = session.scalar(select(App).where(App.name == name))
        if app is None:
            raise ApiError(404, f"there is no app named {name!r}")
        dependencies = {s.name: [d.name for d in s.dependencies] for s in app.services}
        running = set(session.scalars(select(Service.name).join(Container, Container.service_id == Service.id)))
    if not dependencies:
        raise ApiError(422, f"app {name!r} has no services to launch; add some to it", {"app": ["no services"]})
    try:
        return plan_launch(name, dependencies, running)
    except LaunchRefused as refused:
        raise ApiError(422, str(refused), {"app": [str(refused)]}) from None


def launch_app(name: str, hosts: tuple[str, ...], near: Coordinates | None, on_failure: OnFailure) -> LaunchReport:
    """Launch app ``name`` wave by wave near a place or on ``hosts`` in turn; the report, a failed launch too."""
    unknown = [h for h in hosts if not exists(Host, Host.name, h)]
    if unknown:
        raise ApiError(422, f"there is no host {', '.join(map(repr, unknown))}",
                       {"hosts": [f"there is no host {h!r}" for h in unknown]})
    plan = app_plan(name)
    detail: dict[str, Any] = {"waves": [list(w) for w in plan.waves], "on_failure": on_failure.value}
    if near is not None:
        detail["near"] = {"latitude": near.latitude, "longitude": near.longitude}
    else:
        detail["hosts"] = list(hosts)
    where: Coordinates | tuple[str, ...] = near if near is not None else hosts
    return carry_out("app.launch", name, detail, lambda: state().actions.launch_app(plan, where, on_failure))


def stop_app(name: str) -> Done:
    """Stop every replica of app ``name``'s services, dependents first."""
    with transaction() as session:
        app = session.scalar(select(App).where(App.name == name))
        if app is None:
            raise ApiError(404, f"there is no app named {name!r}")
        dependencies = {s.name: [d.name for d in s.dependencies if d.name in {m.name for m in app.services}]
                        for s in app.services}
    try:
        plan = plan_launch(name, dependencies)
    except LaunchRefused:  # a cycle: stop in the stored order, last service first
        plan = LaunchPlan(name, tuple((service,) for service in dependencies))
    return carry_out("app.stop", name, {"waves": [list(w) for w in plan.stop_order()]},
                     lambda: state().actions.stop_app(plan))


def host_operation(name: str, operation: Operation) -> Done:
    """Start, stop or terminate (cloud hosts only) a host."""
    known_host(name)
    if operation == "terminate" and not exists(CloudHost, CloudHost.name, name):
        raise ApiError(409, f"{name!r} is an edge host: it can be started and stopped, not terminated")
    return carry_out(f"host.{operation}", name, {}, lambda: state().actions.host(name, operation))


def node_change(node: str, availability: str | None, role: str | None) -> Done:
    if not exists(Node, Node.swarm_id, node):
        raise ApiError(404, f"there is no swarm node {node!r}")
    detail = {k: v for k, v in (("availability", availability), ("role", role)) if v is not None}
    return carry_out("node", node, detail, lambda: state().actions.node(node, availability, role))


def ssh(name: str, command: str, timeout: float) -> CommandOutput:
    """Run ``command`` on host ``name``; audited with the command."""
    known_host(name)
    return carry_out("ssh", name, {"command": command, "timeout": timeout},
                     lambda: state().actions.ssh(name, command, timeout))


def upload(name: str, path: str, content: bytes, mode: int) -> Done:
    """Write ``content`` to ``path`` on host ``name``; audited with its size."""
    if len(content) > MAX_UPLOAD:
        raise ApiError(422, f"the file has {len(content)} bytes; at most {MAX_UPLOAD} are uploaded this way",
                       {"content": [f"at most {MAX_UPLOAD} bytes"]})
    known_host(name)
    return carry_out("sftp", name, {"path": path, "bytes": len(content), "mode": oct(mode)},
                     lambda: state().actions.sftp(name, path, content, mode))


def sync(what: Sync) -> Done:
    return carry_out("sync", what, {}, lambda: state().actions.sync(what))


__all__ = ["MAX_UPLOAD", "app_plan", "carry_out", "exists", "host_operation", "known_host", "launch", "launch_app", "node_change", "ssh",
           "stop_app", "sync", "upload"]

"""Pages that act on the world: launch a container (near a place picked on the map, or on a host), launch or stop
a whole app (wave by wave, near a place), start, stop or terminate a host, change a swarm node, and the SSH/SFTP page. Each form is checked by the API's own model
(``usm.web.api.actions``) and carried out by ``usm.web.operations``, as the API's actions are: the same checks,
the same ``Actions`` seam, the same audit log.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from usm.geo.sphere import Coordinates
from usm.manager.launcher import OnFailure
from usm.manager.store import AuditEntry, Host
from usm.web import operations
from usm.web.actions import CommandOutput
from usm.web.api.actions import Command, Launch, NodeChange, Upload
from usm.web.api.apps import AppLaunch
from usm.web.errors import ApiError
from usm.web.hub import transaction
from usm.web.pages import admin_only, back
from usm.web.security import login_required

HISTORY = 50
"""How many past SSH commands and uploads the shell page lists."""

bp = Blueprint("operate", __name__)


def _checked(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """``values`` as the API's ``model`` takes them; an ``ApiError`` (422) naming each wrong field otherwise."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        found: dict[str, list[str]] = {}
        for item in error.errors(include_url=False):
            found.setdefault(".".join(str(p) for p in item["loc"]) or "body", []).append(item["msg"])
        raise ApiError(422, "; ".join(f"{name}: {', '.join(texts)}" if name != "body" else ", ".join(texts)
                                      for name, texts in found.items()), found) from None


def _refused(error: ApiError) -> None:
    """Flash why an action was not done: the message, and each field's problem when the message refers to them."""
    message = error.message.removesuffix("; see errors")
    if error.errors and not error.message.startswith(tuple(f"{name}:" for name in error.errors)):
        message += ": " + "; ".join(f"{name}: {', '.join(texts)}" for name, texts in error.errors.items())
    flash(message, "error")


@bp.post("/launch")
@login_required
@admin_only
def launch() -> Any:
    """Launch from a form: ``where`` is "near" (``latitude``, ``longitude``: a place on the map) or "host"."""
    form = request.form
    service = form.get("service", "").strip()
    values: dict[str, Any] = {"service": service}
    if form.get("where") == "host":
        values["host"] = form.get("host", "").strip()
    else:
        values["near"] = {"latitude": form.get("latitude", "").strip(), "longitude": form.get("longitude", "").strip()}
    try:
        body = _checked(Launch, values)
        assert isinstance(body, Launch)
        near = Coordinates(body.near.latitude, body.near.longitude) if body.near else None
        done = operations.launch(body.service, body.host, near)
    except ApiError as error:
        _refused(error)
    else:
        flash(f"Launched {service}: {done.detail}", "ok")
    return redirect(back(url_for("dashboard.index")))


@bp.post("/operate/apps/<name>/launch")
@login_required
@admin_only
def launch_app(name: str) -> Any:
    """Launch an app wave by wave near a place (``latitude``, ``longitude``: picked on the map or typed)."""
    return _launch_app(name, url_for("inventory.detail", path="apps", key=name))


@bp.post("/operate/apps/launch")
@login_required
@admin_only
def launch_app_here() -> Any:
    """The dashboard's form: the app named in the form, near the place clicked on the map."""
    return _launch_app(request.form.get("app", "").strip(), url_for("dashboard.index"))


def _launch_app(name: str, fallback: str) -> Any:
    values = {"near": {"latitude": request.form.get("latitude", "").strip(),
                       "longitude": request.form.get("longitude", "").strip()},
              "on_failure": request.form.get("on_failure", "report")}
    try:
        body = _checked(AppLaunch, values)
        assert isinstance(body, AppLaunch) and body.near is not None
        report = operations.launch_app(name, (), Coordinates(body.near.latitude, body.near.longitude),
                                       OnFailure(body.on_failure))
    except ApiError as error:
        _refused(error)
    else:
        flash(f"Launch of {name}: {report.summary}", "ok" if report.ok else "error")
    return redirect(back(fallback))


@bp.post("/operate/apps/<name>/stop")
@login_required
@admin_only
def stop_app(name: str) -> Any:
    try:
        done = operations.stop_app(name)
    except ApiError as error:
        _refused(error)
    else:
        flash(f"Stop of {name}: {done.detail}", "ok")
    return redirect(back(url_for("inventory.detail", path="apps", key=name)))


@bp.post("/operate/hosts/<name>/<any(start, stop, terminate):operation>")
@login_required
@admin_only
def host(name: str, operation: str) -> Any:
    try:
        done = operations.host_operation(name, operation)  # type: ignore[arg-type]
    except ApiError as error:
        _refused(error)
    else:
        flash(f"{operation.capitalize()} {name}: {done.detail}", "ok")
    return redirect(back(url_for("inventory.host", key=name)))


@bp.post("/operate/nodes/<node>")
@login_required
@admin_only
def node(node: str) -> Any:
    values = {k: request.form[k] for k in ("availability", "role") if request.form.get(k)}
    try:
        body = _checked(NodeChange, values)
        assert isinstance(body, NodeChange)
        done = operations.node_change(node, body.availability, body.role)
    except ApiError as error:
        _refused(error)
    else:
        flash(f"Node {node}: {done.detail}", "ok")
    return redirect(back(url_for("inventory.detail", path="nodes", key=node)))


def _shell(host: str, output: CommandOutput | None = None, command: str = "", problem: str = "",
           problems: dict[str, list[str]] | None = None, status: int = 200) -> Any:
    with transaction() as session:
        hosts = session.scalars(select(Host.name).order_by(Host.name)).all()
        query = select(AuditEntry).where(AuditEntry.action.in_(("ssh", "sftp")))
        if host:
            query = query.where(AuditEntry.target == host)
        history = session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(HISTORY)).all()
        history = [{"at": e.at, "user": e.user, "action": e.action, "target": e.target, "outcome": e.outcome,
                    "detail": e.detail} for e in history]
    return render_template("shell.html", hosts=hosts, host=host, output=output, command=command, problem=problem,
                           problems=problems or {}, history=history, max_upload=operations.MAX_UPLOAD), status


@bp.get("/shell")
@login_required
def shell() -> Any:
    """Run a command on a host or upload a file to it; the history of both."""
    return _shell(request.args.get("host", ""))


@bp.post("/shell/ssh")
@login_required
@admin_only
def ssh() -> Any:
    host, command = request.form.get("host", "").strip(), request.form.get("command", "")
    values: dict[str, Any] = {"command": command}
    if request.form.get("timeout", "").strip():
        values["timeout"] = request.form["timeout"].strip()
    try:
        body = _checked(Command, values)
        assert isinstance(body, Command)
        output = operations.ssh(host, body.command, body.timeout)
    except ApiError as error:
        return _shell(host, command=command, problem=error.message, problems=error.errors, status=error.status)
    return _shell(host, output=output, command=command)


@bp.post("/shell/sftp")
@login_required
@admin_only
def sftp() -> Any:
    host, path = request.form.get("host", "").strip(), request.form.get("path", "").strip()
    upload = request.files.get("file")
    try:
        mode = int(request.form.get("mode", "644").strip() or "644", 8)
    except ValueError:
        return _shell(host, problem="the mode is not an octal number such as 644 or 755",
                      problems={"mode": ["write it in octal, e.g. 644"]}, status=422)
    try:
        if upload is None or not upload.filename:
            raise ApiError(422, "choose a file to upload", {"file": ["choose a file"]})
        _checked(Upload, {"path": path, "content": "", "mode": mode})
        content = upload.read(operations.MAX_UPLOAD + 1)
        done = operations.upload(host, path, content, mode)
    except ApiError as error:
        return _shell(host, problem=error.message, problems=error.errors, status=error.status)
    flash(f"Uploaded {upload.filename} to {host}:{path}: {done.detail}", "ok")
    return redirect(url_for("operate.shell", host=host))


__all__ = ["bp"]

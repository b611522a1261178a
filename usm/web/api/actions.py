"""Actions on the world as POST endpoints: launch a container (on a host or near a place), start, stop or
terminate a host, change a swarm node, run an SSH command, upload a file over SFTP, sync the store.

Each one checks its input against the store (422 naming the field, 404 for an unknown host or node in the path),
calls the hub's ``Actions`` (``usm.web.actions``) and records the attempt, with its user and outcome, in the
audit log: SSH commands and uploads always, whatever their outcome (original-system §13 item 23).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field, model_validator
from spectree import Response as Responses
from spectree import SpecTree
from sqlalchemy import select

from usm.geo.sphere import Coordinates
from usm.manager.store import CloudHost, Host, Node, Service
from usm.web.actions import ActionRefused, ActionsUnavailable, Done
from usm.web.api.schemas import STRICT
from usm.web.audit import record
from usm.web.errors import ApiError, ErrorBody
from usm.web.hub import state, transaction

MAX_UPLOAD = 4 * 2**20


class Place(BaseModel):
    model_config = STRICT
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class Launch(BaseModel):
    """A container of ``service``: on ``host``, or on the best host for callers around ``near`` (one of them)."""

    model_config = STRICT
    service: str = Field(min_length=1, max_length=255)
    host: str | None = Field(None, min_length=1, max_length=255)
    near: Place | None = None

    @model_validator(mode="after")
    def _one_place(self) -> Launch:
        if (self.host is None) == (self.near is None):
            raise ValueError("give either host or near (a latitude and longitude), not both or neither")
        return self


class NodeChange(BaseModel):
    model_config = STRICT
    availability: Literal["active", "pause", "drain"] | None = None
    role: Literal["manager", "worker"] | None = None

    @model_validator(mode="after")
    def _something(self) -> NodeChange:
        if self.availability is None and self.role is None:
            raise ValueError("give availability, role or both")
        return self


class Command(BaseModel):
    model_config = STRICT
    command: str = Field(min_length=1, max_length=4096, description="run by the login shell of the host's user")
    timeout: float = Field(30.0, gt=0, le=600, description="seconds before the command is ended")


class Upload(BaseModel):
    model_config = STRICT
    path: str = Field(min_length=2, max_length=1024, pattern=r"^/[^\x00]*[^/]$",
                      description="the absolute path of the file on the host")
    content: str = Field(max_length=MAX_UPLOAD * 2, description="the file's bytes, base64-encoded")
    mode: int = Field(0o644, ge=0, le=0o777, description="the file's permissions (e.g. 420 for 0644)")


class SyncRequest(BaseModel):
    model_config = STRICT
    what: Literal["containers", "hosts", "nodes", "all"] = "all"


class DoneBody(BaseModel):
    detail: str
    changed: list[str]


class CommandBody(BaseModel):
    host: str
    command: str
    exit_status: int
    stdout: str
    stderr: str


def _exists(model: type, column: Any, value: str) -> bool:
    with transaction() as session:
        return session.scalar(select(model.id).where(column == value)) is not None


def _carry_out(action: str, target: str, detail: dict[str, Any], call: Any) -> Any:
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


def _done(result: Done) -> Response:
    return jsonify({"detail": result.detail, "changed": list(result.changed)})


def _host(name: str) -> None:
    if not _exists(Host, Host.name, name):
        raise ApiError(404, f"there is no host named {name!r}")


DONE = Responses(HTTP_200=DoneBody, HTTP_404=ErrorBody, HTTP_409=ErrorBody, HTTP_503=ErrorBody)


def blueprint(spec: SpecTree) -> Blueprint:
    bp = Blueprint("actions", __name__, url_prefix="/actions")

    @bp.post("/launch")
    @spec.validate(json=Launch, resp=DONE, tags=["actions"])
    def launch() -> Response:
        """Launch a container\n\nOn the host named, or on the closest host with room for callers near a place."""
        body: Launch = request.context.json  # type: ignore[attr-defined]
        problems = {}
        if not _exists(Service, Service.name, body.service):
            problems["service"] = [f"there is no service {body.service!r}"]
        if body.host is not None and not _exists(Host, Host.name, body.host):
            problems["host"] = [f"there is no host {body.host!r}"]
        if problems:
            raise ApiError(422, "the launch names what does not exist; see errors", problems)
        near = Coordinates(body.near.latitude, body.near.longitude) if body.near else None
        result = _carry_out("launch", body.service, body.model_dump(exclude_none=True),
                            lambda: state().actions.launch(body.service, body.host, near))
        return _done(result)

    @bp.post("/hosts/<name>/<any(start, stop, terminate):operation>")
    @spec.validate(resp=DONE, tags=["actions"])
    def host(name: str, operation: str) -> Response:
        """Start, stop or terminate a host\n\nOnly cloud hosts can be terminated."""
        _host(name)
        if operation == "terminate" and not _exists(CloudHost, CloudHost.name, name):
            raise ApiError(409, f"{name!r} is an edge host: it can be started and stopped, not terminated")
        result = _carry_out(f"host.{operation}", name, {}, lambda: state().actions.host(name, operation))
        return _done(result)

    @bp.post("/nodes/<node>")
    @spec.validate(json=NodeChange, resp=DONE, tags=["actions"])
    def node(node: str) -> Response:
        """Change a swarm node's availability or role"""
        body: NodeChange = request.context.json  # type: ignore[attr-defined]
        if not _exists(Node, Node.swarm_id, node):
            raise ApiError(404, f"there is no swarm node {node!r}")
        result = _carry_out("node", node, body.model_dump(exclude_none=True),
                            lambda: state().actions.node(node, body.availability, body.role))
        return _done(result)

    @bp.post("/hosts/<name>/ssh")
    @spec.validate(json=Command, resp=Responses(HTTP_200=CommandBody, HTTP_404=ErrorBody, HTTP_409=ErrorBody,
                                                HTTP_503=ErrorBody), tags=["actions"])
    def ssh(name: str) -> Response:
        """Run a command on a host over SSH\n\nAdmins only; every command is recorded in the audit log."""
        body: Command = request.context.json  # type: ignore[attr-defined]
        _host(name)
        output = _carry_out("ssh", name, {"command": body.command, "timeout": body.timeout},
                            lambda: state().actions.ssh(name, body.command, body.timeout))
        return jsonify({"host": name, "command": body.command, **asdict(output)})

    @bp.post("/hosts/<name>/sftp")
    @spec.validate(json=Upload, resp=DONE, tags=["actions"])
    def sftp(name: str) -> Response:
        """Upload a file to a host over SFTP\n\nAdmins only; every upload is recorded in the audit log."""
        body: Upload = request.context.json  # type: ignore[attr-defined]
        try:
            content = base64.b64decode(body.content, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, "content is not base64", {"content": ["must be base64-encoded bytes"]}) from None
        if len(content) > MAX_UPLOAD:
            raise ApiError(422, f"the file has {len(content)} bytes; at most {MAX_UPLOAD} are uploaded this way",
                           {"content": [f"at most {MAX_UPLOAD} bytes"]})
        _host(name)
        result = _carry_out("sftp", name, {"path": body.path, "bytes": len(content), "mode": oct(body.mode)},
                            lambda: state().actions.sftp(name, body.path, content, body.mode))
        return _done(result)

    @bp.post("/sync")
    @spec.validate(json=SyncRequest, resp=DONE, tags=["actions"])
    def sync() -> Response:
        """Bring the store up to date with the world"""
        body: SyncRequest = request.context.json  # type: ignore[attr-defined]
        return _done(_carry_out("sync", body.what, {}, lambda: state().actions.sync(body.what)))

    return bp


__all__ = ["blueprint"]

"""Actions on the world as POST endpoints: launch a container (on a host or near a place), start, stop or
terminate a host, change a swarm node, run an SSH command, upload a file over SFTP, sync the store.

Each one checks its body here and leaves the rest to ``usm.web.operations``, which the hub's pages share: checks
against the store (422 naming the field, 404 for an unknown host or node in the path), the hub's ``Actions``
(``usm.web.actions``) and the audit log, with its user and outcome: SSH commands and uploads always, whatever
their outcome (original-system §13 item 23).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from typing import Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field, model_validator
from spectree import Response as Responses
from spectree import SpecTree

from usm.geo.sphere import Coordinates
from usm.web import operations
from usm.web.actions import Done
from usm.web.api.schemas import STRICT
from usm.web.errors import ApiError, ErrorBody
from usm.web.operations import MAX_UPLOAD


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


def _done(result: Done) -> Response:
    return jsonify({"detail": result.detail, "changed": list(result.changed)})


DONE = Responses(HTTP_200=DoneBody, HTTP_404=ErrorBody, HTTP_409=ErrorBody, HTTP_503=ErrorBody)


def blueprint(spec: SpecTree) -> Blueprint:
    bp = Blueprint("actions", __name__, url_prefix="/actions")

    @bp.post("/launch")
    @spec.validate(json=Launch, resp=DONE, tags=["actions"])
    def launch() -> Response:
        """Launch a container\n\nOn the host named, or on the closest host with room for callers near a place."""
        body: Launch = request.context.json  # type: ignore[attr-defined]
        near = Coordinates(body.near.latitude, body.near.longitude) if body.near else None
        return _done(operations.launch(body.service, body.host, near))

    @bp.post("/hosts/<name>/<any(start, stop, terminate):operation>")
    @spec.validate(resp=DONE, tags=["actions"])
    def host(name: str, operation: str) -> Response:
        """Start, stop or terminate a host\n\nOnly cloud hosts can be terminated."""
        return _done(operations.host_operation(name, operation))  # type: ignore[arg-type]

    @bp.post("/nodes/<node>")
    @spec.validate(json=NodeChange, resp=DONE, tags=["actions"])
    def node(node: str) -> Response:
        """Change a swarm node's availability or role"""
        body: NodeChange = request.context.json  # type: ignore[attr-defined]
        return _done(operations.node_change(node, body.availability, body.role))

    @bp.post("/hosts/<name>/ssh")
    @spec.validate(json=Command, resp=Responses(HTTP_200=CommandBody, HTTP_404=ErrorBody, HTTP_409=ErrorBody,
                                                HTTP_503=ErrorBody), tags=["actions"])
    def ssh(name: str) -> Response:
        """Run a command on a host over SSH\n\nAdmins only; every command is recorded in the audit log."""
        body: Command = request.context.json  # type: ignore[attr-defined]
        output = operations.ssh(name, body.command, body.timeout)
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
        return _done(operations.upload(name, body.path, content, body.mode))

    @bp.post("/sync")
    @spec.validate(json=SyncRequest, resp=DONE, tags=["actions"])
    def sync() -> Response:
        """Bring the store up to date with the world"""
        body: SyncRequest = request.context.json  # type: ignore[attr-defined]
        return _done(operations.sync(body.what))

    return bp


__all__ = ["blueprint"]

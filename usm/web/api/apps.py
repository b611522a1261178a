"""Apps as a unit over the API: launch an app's services wave by wave in dependency order, near a place or on
hosts named in turn, and stop them, dependents first.

The body is checked here; the plan (a dependency cycle or a missing dependency refused with 422 before anything
starts), the world and the audit log are ``usm.web.operations``'s. The answer to a launch is its report: a launch
that failed is still a 200 whose ``ok`` is false and which says what runs, what failed and what was rolled back.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field, model_validator
from spectree import Response as Responses
from spectree import SpecTree

from usm.geo.sphere import Coordinates
from usm.manager.launcher import LaunchReport, OnFailure
from usm.web import operations
from usm.web.api.actions import DONE, Place, _done
from usm.web.api.schemas import STRICT
from usm.web.errors import ErrorBody


class AppLaunch(BaseModel):
    """Where to start the app's replicas: near a place, or on these hosts in turn (one of them)."""

    model_config = STRICT
    near: Place | None = None
    hosts: list[str] | None = Field(None, min_length=1, max_length=100)
    on_failure: Literal["report", "rollback"] = Field(
        "report", description="report: keep what started and say what runs; rollback: stop what this launch started")

    @model_validator(mode="after")
    def _one_place(self) -> AppLaunch:
        if (self.hosts is None) == (self.near is None):
            raise ValueError("give either hosts or near (a latitude and longitude), not both or neither")
        return self


class ServiceStatusBody(BaseModel):
    service: str
    wave: int
    state: str
    ready: list[str]
    starting: list[str]
    failures: list[str]


class LaunchReportBody(BaseModel):
    app: str
    ok: bool
    summary: str
    started_at: float
    finished_at: float
    waves: list[list[str]]
    wave_ready_at: list[float]
    services: list[ServiceStatusBody]
    failure: str
    rolled_back: list[str]
    stop_failures: list[str]


def report_json(report: LaunchReport) -> dict:
    return {**asdict(report), "summary": report.summary()}


def blueprint(spec: SpecTree) -> Blueprint:
    bp = Blueprint("apps", __name__, url_prefix="/apps")

    @bp.post("/<name>/launch")
    @spec.validate(json=AppLaunch, resp=Responses(HTTP_200=LaunchReportBody, HTTP_404=ErrorBody, HTTP_409=ErrorBody,
                                                   HTTP_503=ErrorBody), tags=["actions"])
    def launch(name: str) -> Response:
        """Launch an app\n\nIts services wave by wave, each once what it depends on is ready."""
        body: AppLaunch = request.context.json  # type: ignore[attr-defined]
        near = Coordinates(body.near.latitude, body.near.longitude) if body.near else None
        report = operations.launch_app(name, tuple(body.hosts or ()), near, OnFailure(body.on_failure))
        return jsonify(report_json(report))

    @bp.post("/<name>/stop")
    @spec.validate(resp=DONE, tags=["actions"])
    def stop(name: str) -> Response:
        """Stop an app\n\nEvery replica of its services, dependents first."""
        return _done(operations.stop_app(name))

    return bp


__all__ = ["blueprint"]

"""The REST API under ``/api``: JSON in and out, described by ``/api/openapi.json``.

One blueprint per area (``inventory``, ``decisions``, ``policy``, ``actions``, ``apps``, ``accounts``), declared with
one ``SpecTree``; this module nests them under ``/api`` and puts in front of them what every API call
passes: a body must be well-formed JSON (400 otherwise, naming the line and column), and the caller must be
identified, and an admin to change anything (``usm.web.security.guard_api``).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify, request
from spectree import Response as Responses
from spectree import SpecTree

from usm.web.api import accounts, actions, apps, decisions, inventory, policy
from usm.web.errors import BODY, ApiError
from usm.web.openapi import document, new_spec
from usm.web.security import guard_api, public

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def well_formed_body() -> None:
    """Refuse a body that is not a JSON object, before any view reads it."""
    if request.method not in BODY_METHODS:
        return
    if not request.is_json:
        if request.content_length or request.mimetype:  # (a form body may have been read by the CSRF check)
            raise ApiError(415, f"the body is {request.mimetype or 'of no declared type'}; send JSON with "
                                "Content-Type: application/json")
        return  # no body: the view's model says what is missing
    raw = request.get_data(cache=True)
    if not raw.strip():
        return
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text", {BODY: ["not UTF-8"]}) from None
    except ValueError as error:
        position = f"line {error.lineno}, column {error.colno}" if hasattr(error, "lineno") else ""
        raise ApiError(400, f"the body is not valid JSON ({error.msg if hasattr(error, 'msg') else error}"
                            f"{' at ' + position if position else ''})", {BODY: [str(error)]}) from None
    if not isinstance(value, dict):
        raise ApiError(422, f"the body must be a JSON object, not {type(value).__name__}",
                       {BODY: ["must be a JSON object"]})


def blueprint(spec: SpecTree) -> Blueprint:
    api = Blueprint("api", __name__, url_prefix="/api")
    api.before_request(guard_api)
    api.before_request(well_formed_body)
    for area in (inventory, decisions, policy, actions, apps, accounts):
        api.register_blueprint(area.blueprint(spec))

    @api.get("/openapi.json")
    @public
    def openapi() -> Any:
        """The OpenAPI 3.1 document of this API."""
        return jsonify(document(spec))

    @api.get("/health")
    @public
    @spec.validate(resp=Responses(HTTP_200=None), tags=["hub"], security={})
    def health() -> Response:
        """Whether the hub answers (no sign-in needed)"""
        return jsonify({"status": "ok"})

    return api


@cache
def built(version: str) -> tuple[SpecTree, Blueprint]:
    """The API's spec and blueprint, built once per process and registered on every app: the declarations are
    the same for all, and generating their JSON schemas costs about a second."""
    spec = new_spec(version)
    return spec, blueprint(spec)


__all__ = ["blueprint", "built"]

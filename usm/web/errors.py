"""Errors as the API answers them: always JSON ``{"status", "message", "errors": {field: [messages]}}``.

Malformed JSON is 400, a missing login 401, a missing right or CSRF token 403, an unknown id 404, a conflict
(a duplicate name, a row still in use) 409, a body or query that does not validate 422, too many failed
sign-ins 429. Bad input never ends in a 500: the store's own refusals (``usm.manager.store.errors``) are mapped
here, and a 500 means a bug, logged with its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from flask_wtf.csrf import CSRFError
from pydantic import BaseModel, Field, ValidationError
from werkzeug.exceptions import HTTPException

from usm.manager.store.errors import Duplicate, InUse, Invalid, NotFound, NotMigrated, StoreError

BODY = "body"
"""The ``errors`` key of problems that concern the body as a whole rather than one field."""


class ErrorBody(BaseModel):
    """What every failed API call answers."""

    status: int = Field(description="the HTTP status, repeated")
    message: str = Field(description="what went wrong and how to fix it")
    errors: dict[str, list[str]] = Field(default_factory=dict, description="problems by field")


class ApiError(Exception):
    """An answer other than success, raised anywhere below a view."""

    def __init__(self, status: int, message: str, errors: Mapping[str, Sequence[str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = jsonify(ErrorBody(status=self.status, message=self.message, errors=self.errors).model_dump())
        body.status_code = self.status
        body.headers.update(self.headers)
        return body


def from_store(error: StoreError, fields: Iterable[str] = ()) -> ApiError:
    """The answer to a refusal of the store (nothing was changed)."""
    if isinstance(error, NotFound):
        return ApiError(404, str(error))
    if isinstance(error, Invalid):
        return ApiError(422, str(error), by_field(error.problems, fields))
    if isinstance(error, InUse):
        return ApiError(409, str(error), {kind: [f"{key!r} still uses it" for key in keys]
                                          for kind, keys in error.dependants.items()})
    if isinstance(error, Duplicate):
        return ApiError(409, str(error))
    if isinstance(error, NotMigrated):
        return ApiError(503, str(error))
    return ApiError(422, str(error))


@contextmanager
def refused_as_errors(fields: Iterable[str] = ()) -> Iterator[None]:
    """Turn the store's refusals into API errors whose problems are filed under ``fields``."""
    try:
        yield
    except StoreError as error:
        raise from_store(error, fields) from None


def by_field(problems: Iterable[str], fields: Iterable[str]) -> dict[str, list[str]]:
    """Sentences such as ``"min_replicas is -1; it must be 0 or more"`` filed under the field they start with;
    the others under ``body``."""
    known = set(fields)
    found: dict[str, list[str]] = {}
    for problem in problems:
        first = re.match(r"[a-z_]+", problem)
        field = first.group() if first and first.group() in known else BODY
        found.setdefault(field, []).append(problem)
    return found


def from_validation(error: ValidationError, where: str = "") -> ApiError:
    """The answer to a body or query that does not match its model, field by field."""
    found: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"]) or where or BODY
        found.setdefault(path, []).append(item["msg"])
    fields = ", ".join(sorted(found))
    return ApiError(422, f"the {where or 'request'} has invalid fields: {fields}; see errors", found)


def is_api() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def register(app: Flask) -> None:
    """Answer errors on /api as JSON; pages keep Flask's HTML errors."""

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(StoreError)
    def store_error(error: StoreError) -> Response:
        return from_store(error).response()

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> Any:
        message = f"{error.description} Send the CSRF token (X-CSRFToken header or csrf_token field) of your " \
                  "session, or use an API token instead of the session cookie."
        if is_api():
            return ApiError(403, message).response()
        return message, 403

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if not is_api():
            return error
        allowed = getattr(error, "valid_methods", None)
        return ApiError(error.code or 500, error.description or error.name,
                        headers={"Allow": ", ".join(allowed)} if allowed else None).response()

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        if isinstance(error, HTTPException):
            return http_error(error)
        current_app.logger.exception("unexpected error on %s %s", request.method, request.path)
        if not is_api():
            return "internal error; the hub's log has the details", 500
        return ApiError(500, "internal error; the hub's log has the details").response()


__all__ = ["BODY", "ApiError", "ErrorBody", "by_field", "from_store", "from_validation", "is_api", "refused_as_errors",
           "register"]

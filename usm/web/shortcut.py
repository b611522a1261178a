"""A short way through for the hub's most frequent request: a page of an API listing, asked for with an API token,
that this process already holds.

Once a listing is kept in memory (``usm.web.listings``), Flask's own work is most of a request's cost: the request
context, the session, routing, the hooks and the response object take ~0.3 ms of CPU, as much again as gunicorn
and the page together, and on two busy cores that decides whether 200 clients see answers within 200 ms. This WSGI
middleware, in front of the Flask app, answers such a request itself when everything Flask would decide is known
here at the store's current revisions: a ``GET`` of a listing with ``Authorization: Bearer`` and no cookie,
``Origin`` or ``If-None-Match``, a token this process has seen valid at the current revisions of the users and
tokens (``usm.web.tokens``) and not expired, a query that validates, and the listing kept at the current revisions
of its tables. Anything else goes to Flask, which answers as always and fills the caches.

The answer is the one Flask gives: the same page bytes and entity tag, and the headers Flask gave the last time it
answered the same listing to such a request (the security headers, ``Cache-Control``, ``Vary``), recorded as it
passed; until Flask has answered a listing once, the short way is closed for it. The hub's tests compare the two
answers. A hook added to the Flask app that must see every API request has to be added here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from usm.web.api.inventory import ENTITIES
from usm.web.api.paging import listing_etag, listing_key, listing_revision, query_of
from usm.web.api.resources import Entity
from usm.web.api.schemas import filter_schema
from usm.web.hub import EXTENSION, HubState
from usm.web.tokens import revision_of

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_VARYING = frozenset({"content-length", "etag", "set-cookie", "date"})
"""Headers not recorded: computed for each answer, or never replayed."""

_FOREIGN = ("HTTP_COOKIE", "HTTP_ORIGIN", "HTTP_IF_NONE_MATCH")
"""Request headers that send a request the long way: a session, CORS, or a conditional request."""


class ListingShortcut:
    """The WSGI app to serve: ``app.wsgi_app = ListingShortcut(app)``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.long_way: WsgiApp = app.wsgi_app
        self.entities = {f"/api/{entity.path}": entity for entity in ENTITIES}
        self.headers: dict[str, list[tuple[str, str]]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        entity = self.entities.get(path)
        if entity is None or not _eligible(environ):
            return self.long_way(environ, start_response)
        recorded = self.headers.get(path)
        body, tag = self._page(environ, entity) if recorded is not None else (None, None)
        if body is None:
            return self.long_way(environ, self._recording(path, start_response))
        start_response("200 OK", [*recorded, ("Content-Length", str(len(body))), ("ETag", f'"{tag}"')])
        return [body]

    def _page(self, environ: dict[str, Any], entity: Entity) -> tuple[bytes | None, str | None]:
        """The page and its entity tag, when everything is known here; ``(None, None)`` otherwise."""
        hub: HubState = self.app.extensions[EXTENSION]
        if not hub.tracked:
            return None, None
        current = hub.latest()
        token_revision = revision_of(current)
        token = environ["HTTP_AUTHORIZATION"].partition(" ")[2].strip()
        if token_revision is None or hub.tokens.get(token, token_revision, hub.clock()) is None:
            return None, None
        arguments = _arguments(environ)
        if arguments is None:
            return None, None
        try:
            filters = query_of(filter_schema(entity.model), arguments).model_dump(exclude_none=True)
        except ValidationError:
            return None, None
        limit, offset = filters.pop("limit"), filters.pop("offset")
        key, revision = listing_key(entity, filters), listing_revision(entity, current)
        kept = hub.listings.peek(key, revision) if revision is not None else None
        if kept is None or revision is None:
            return None, None
        return kept.page(limit, offset), listing_etag(entity, key, revision, limit, offset)

    def _recording(self, path: str, start_response: StartResponse) -> StartResponse:
        """``start_response`` that records the headers of a successful answer, for answers the short way."""

        def recording(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            if status.startswith("200 ") and not any(name.lower() == "set-cookie" for name, _ in headers):
                self.headers[path] = [(name, value) for name, value in headers if name.lower() not in _VARYING]
            return start_response(status, headers, *rest)

        return recording


def _arguments(environ: dict[str, Any]) -> MultiDict[str, str] | None:
    """The query's parameters as Flask's ``request.args`` has them; ``None`` for a query that is not UTF-8 (Flask
    keeps such bytes percent-encoded: it answers those)."""
    try:
        text = environ.get("QUERY_STRING", "").encode("latin-1").decode()
        return MultiDict(parse_qsl(text, keep_blank_values=True, errors="strict"))
    except (UnicodeError, ValueError):
        return None


def _eligible(environ: dict[str, Any]) -> bool:
    """A GET with an API token and nothing that Flask would treat differently."""
    if environ.get("REQUEST_METHOD") != "GET" or any(name in environ for name in _FOREIGN):
        return False
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


__all__ = ["ListingShortcut"]

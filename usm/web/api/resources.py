"""Create, list, get, update and delete for one stored entity, over ``usm.manager.store.crud``.

``add_routes`` gives an entity five routes under ``/api/<path>``: ``GET`` (filters and paging), ``POST``,
``GET /<key>``, ``PATCH /<key>`` (only the fields given change) and ``DELETE /<key>``. Rows are named by their
key (a name, a swarm id, an allocation id). The store's refusals become 404, 409 or 422 with the problems filed
by field; nothing is changed by a refused call (its transaction is rolled back).

Listings are answered by ``usm.web.api.paging`` (from memory while the store has not changed, with entity tags);
they validate their query themselves, so that a page served from memory is not parsed and validated again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel, ValidationError
from spectree import Response as Responses
from spectree import SpecTree

from usm.manager.store import crud
from usm.manager.store.base import Base
from usm.manager.store.revisions import tables_near
from usm.web.api import listing as columns
from usm.web.api import schemas
from usm.web.api.paging import listing_page, preload, query_of
from usm.web.errors import ErrorBody, from_validation, refused_as_errors
from usm.web.hub import transaction


@dataclass(frozen=True)
class Extra:
    """A read-only field an entity's items show beside their own (e.g. a service's dependents)."""

    name: str
    kind: Any
    read: Callable[[Any], Any]
    loads: tuple[Callable[[], Any], ...] = ()


@dataclass(frozen=True)
class Entity:
    path: str  # under /api, e.g. "edge-hosts"
    model: type[Base]
    extras: tuple[Extra, ...] = ()
    loads: tuple[Callable[[], Any], ...] = field(default=())
    """Loader options for what items show that is not a plain relationship of the model (an app's services)."""

    @property
    def item(self) -> type[BaseModel]:
        return schemas.item_schema(self.model, tuple((e.name, e.kind) for e in self.extras))

    @property
    def listing(self) -> type[BaseModel]:
        return schemas.listing_schema(self.model, tuple((e.name, e.kind) for e in self.extras))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(crud.fields(self.model))

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables its listing reads (checked by the hub's tests): their revisions date a kept listing."""
        return _tables(self.model)

    @property
    def by_columns(self) -> bool:
        """Whether its listing is read as plain columns (``usm.web.api.listing``) rather than through the ORM."""
        return columns.supported(self.model) and not self.extras and not self.loads

    def show(self, row: Base, labels: Mapping[str, Mapping[Any, str]] | None = None) -> dict[str, Any]:
        shown = schemas.dump(row, labels)
        for extra in self.extras:
            shown[extra.name] = extra.read(row)
        return shown


@cache
def _tables(model: type[Base]) -> tuple[str, ...]:
    return tuple(sorted(tables_near(model)))


def add_routes(bp: Blueprint, spec: SpecTree, entity: Entity) -> None:
    model, noun, tag = entity.model, entity.model.noun(), entity.path
    errors = {"HTTP_404": ErrorBody, "HTTP_409": ErrorBody}
    filters_model = schemas.filter_schema(model)

    def listing() -> Response:
        try:
            query = query_of(filters_model, request.args).model_dump(exclude_none=True)
        except ValidationError as wrong:
            raise from_validation(wrong) from None
        limit, offset = query.pop("limit"), query.pop("offset")
        return listing_page(entity, query, limit, offset)

    def create() -> Any:
        values = request.context.json.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
        with transaction() as session, refused_as_errors(entity.fields):
            row = crud.create(session, model, **values)
            body, key = entity.show(row), crud.label(row)
        return jsonify(body), 201, {"Location": url_for(f".{endpoint}_one", key=key)}

    def one(key: str) -> Response:
        with transaction() as session, refused_as_errors(entity.fields):
            return jsonify(entity.show(crud.get(session, model, key)))

    def change(key: str) -> Response:
        values = request.context.json.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
        with transaction() as session, refused_as_errors(entity.fields):
            row = crud.update(session, model, key, **values)
            return jsonify(entity.show(row))

    def remove(key: str) -> Any:
        with transaction() as session, refused_as_errors(entity.fields):
            crud.delete(session, model, key)
        return "", 204

    endpoint = entity.path.replace("-", "_")
    listing.__doc__ = (f"List {noun}s\n\nEquality filters on their fields, in key order, a page at a time. The "
                       "answer's ETag changes whenever the page may have: send it back as If-None-Match to get 304 "
                       "Not Modified instead of the same page again.")
    create.__doc__ = f"Create a {noun}"
    one.__doc__ = f"Get a {noun} by its {model.key}"
    change.__doc__ = f"Change a {noun}\n\nOnly the fields given change."
    remove.__doc__ = f"Delete a {noun}\n\nRefused (409) while other rows still use it."
    declared = {
        "listing": (listing, "GET", "", {"query": filters_model, "resp": Responses(
            "HTTP_304", HTTP_200=entity.listing), "skip_validation": True}),
        "create": (create, "POST", "", {"json": schemas.create_schema(model), "resp": Responses(
            HTTP_201=entity.item, **errors)}),
        "one": (one, "GET", "/<key>", {"resp": Responses(HTTP_200=entity.item, HTTP_404=ErrorBody)}),
        "change": (change, "PATCH", "/<key>", {"json": schemas.update_schema(model), "resp": Responses(
            HTTP_200=entity.item, **errors)}),
        "remove": (remove, "DELETE", "/<key>", {"resp": Responses("HTTP_204", **errors)}),
    }
    for name, (view, method, suffix, declaration) in declared.items():
        view.__name__ = f"{endpoint}_{name}"
        validated = spec.validate(tags=[tag], operation_id=f"{endpoint}_{name}", **declaration)(view)
        bp.add_url_rule(f"/{entity.path}{suffix}", endpoint=view.__name__, view_func=validated, methods=[method])


__all__ = ["Entity", "Extra", "add_routes", "preload"]

"""Create, list, get, update and delete for one stored entity, over ``usm.manager.store.crud``.

``add_routes`` gives an entity five routes under ``/api/<path>``: ``GET`` (filters and paging), ``POST``,
``GET /<key>``, ``PATCH /<key>`` (only the fields given change) and ``DELETE /<key>``. Rows are named by their
key (a name, a swarm id, an allocation id). The store's refusals become 404, 409 or 422 with the problems filed
by field; nothing is changed by a refused call (its transaction is rolled back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel
from spectree import Response as Responses
from spectree import SpecTree
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, selectinload

from usm.manager.store import crud
from usm.manager.store.base import Base
from usm.manager.store.errors import StoreError
from usm.web.api import schemas
from usm.web.api.listing import page as columns_page
from usm.web.api.listing import supported as listing_supported
from usm.web.errors import ErrorBody, from_store
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

    def show(self, row: Base, labels: Mapping[str, Mapping[Any, str]] | None = None) -> dict[str, Any]:
        shown = schemas.dump(row, labels)
        for extra in self.extras:
            shown[extra.name] = extra.read(row)
        return shown


@contextmanager
def refused_as_errors(entity: Entity) -> Iterator[None]:
    """Turn the store's refusals into API errors whose problems are filed under the entity's fields."""
    try:
        yield
    except StoreError as error:
        raise from_store(error, entity.fields) from None


def preload(session: Session, entity: Entity, rows: list[Base]) -> dict[str, dict[Any, str]]:
    """Load what the items of a page show in a few queries (instead of one per row and field): the keys of the
    rows each single reference names, as ``{reference: {foreign key: key}}`` (plain column queries: no ORM
    object is built for them), and the other relationships the items show."""
    if not rows:
        return {}
    labels = {}
    for name, (foreign_key, target_id, target_key) in schemas.single_references(entity.model).items():
        ids = {getattr(row, foreign_key) for row in rows} - {None}
        query = select(target_id, target_key).where(target_id.in_(ids))
        labels[name] = {id_: key for id_, key in session.execute(query)} if ids else {}
    mapper = inspect(entity.model)
    options = [selectinload(getattr(entity.model, name)) for name in entity.model.refs
               if name in mapper.relationships and name not in labels]
    options += [make() for make in entity.loads] + [make() for extra in entity.extras for make in extra.loads]
    if options:
        key = mapper.primary_key[0]
        ids = [getattr(row, mapper.get_property_by_column(key).key) for row in rows]
        session.execute(select(entity.model).where(key.in_(ids)).options(*options)).unique().all()
    return labels


def add_routes(bp: Blueprint, spec: SpecTree, entity: Entity) -> None:
    model, noun, tag = entity.model, entity.model.noun(), entity.path
    listing_by_columns = listing_supported(model) and not entity.extras and not entity.loads
    errors = {"HTTP_404": ErrorBody, "HTTP_409": ErrorBody}

    def listing() -> Response:
        query = request.context.query.model_dump(exclude_none=True)  # type: ignore[attr-defined]
        limit, offset = query.pop("limit"), query.pop("offset")
        with transaction() as session, refused_as_errors(entity):
            if listing_by_columns:
                items, total = columns_page(session, model, query, limit, offset)
            else:
                found = crud.find(session, model, limit=limit, offset=offset, **query)
                labels = preload(session, entity, found.items)
                items, total = [entity.show(row, labels) for row in found.items], found.total
        return jsonify({"items": items, "total": total, "limit": limit, "offset": offset})

    def create() -> Any:
        values = request.context.json.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
        with transaction() as session, refused_as_errors(entity):
            row = crud.create(session, model, **values)
            body, key = entity.show(row), crud.label(row)
        return jsonify(body), 201, {"Location": url_for(f".{endpoint}_one", key=key)}

    def one(key: str) -> Response:
        with transaction() as session, refused_as_errors(entity):
            return jsonify(entity.show(crud.get(session, model, key)))

    def change(key: str) -> Response:
        values = request.context.json.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
        with transaction() as session, refused_as_errors(entity):
            row = crud.update(session, model, key, **values)
            return jsonify(entity.show(row))

    def remove(key: str) -> Any:
        with transaction() as session, refused_as_errors(entity):
            crud.delete(session, model, key)
        return "", 204

    endpoint = entity.path.replace("-", "_")
    listing.__doc__ = f"List {noun}s\n\nEquality filters on their fields, in key order, a page at a time."
    create.__doc__ = f"Create a {noun}"
    one.__doc__ = f"Get a {noun} by its {model.key}"
    change.__doc__ = f"Change a {noun}\n\nOnly the fields given change."
    remove.__doc__ = f"Delete a {noun}\n\nRefused (409) while other rows still use it."
    declared = {
        "listing": (listing, "GET", "", {"query": schemas.filter_schema(model), "resp": Responses(
            HTTP_200=entity.listing)}),
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


__all__ = ["Entity", "Extra", "add_routes", "preload", "refused_as_errors"]

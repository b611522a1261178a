"""Answering a listing: a page from the listing this process keeps (``usm.web.listings``) while the revisions of
the tables it reads are current, from the store otherwise; with an entity tag made of those revisions, and 304
when the client has the page (``If-None-Match``). Pages read from the store, and listings when they are built,
are validated against the entity's models (pages served from memory were validated once, when built).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import TYPE_CHECKING, Any

from flask import Response, request
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, selectinload
from werkzeug.datastructures import MultiDict

from usm.manager.store import crud
from usm.manager.store.base import Base
from usm.web.api import listing as columns
from usm.web.api import schemas
from usm.web.errors import refused_as_errors
from usm.web.hub import revisions, revisions_in, state, transaction
from usm.web.listings import BUILD_WAIT, Revision, etag, listing_of, page_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from usm.web.api.resources import Entity


def listing_page(entity: Entity, filters: dict[str, Any], limit: int, offset: int) -> Response:
    """One page of an entity's listing, from the kept listing while the revisions of its tables are current,
    from the store otherwise; with an entity tag of those revisions, and 304 when the client has the page."""
    key = listing_key(entity, filters)
    revision = listing_revision(entity, revisions())
    if revision is not None:
        tag = listing_etag(entity, key, revision, limit, offset)
        if request.if_none_match.contains_weak(tag):
            return _answer(b"", tag, 304)
        listings = state().listings
        kept = listings.get(key, revision)
        if kept is None:
            kept = listings.wait(key, revision, BUILD_WAIT)
        if kept is not None:
            return _answer(kept.page(limit, offset), tag)
    with transaction() as session, refused_as_errors(entity.fields):
        revision = listing_revision(entity, revisions_in(session))
        body = _read_page(session, entity, key, revision, filters, limit, offset)
    return _answer(body, listing_etag(entity, key, revision, limit, offset) if revision is not None else None)


def _read_page(session: Session, entity: Entity, key: tuple[Any, ...], revision: Revision | None,
               filters: dict[str, Any], limit: int, offset: int) -> bytes:
    """A page read in ``session``: from the whole listing, built and kept when the cache asks for it, or on its
    own."""
    listings = state().listings
    if revision is not None and listings.claim(key, revision):
        try:
            if _count(session, entity, filters) > listings.largest:
                listings.give_up(key, revision, too_large=True)
            else:
                built = listing_of(_every(session, entity, filters))
                _items_of(entity).validate_json(b"[" + built.body + b"]")
                listings.keep(key, revision, built)
                return built.page(limit, offset)
        except BaseException:
            listings.give_up(key, revision)
            raise
    if entity.by_columns:
        items, total = columns.page(session, entity.model, filters, limit, offset)
    else:
        found = crud.find(session, entity.model, limit=limit, offset=offset, **filters)
        labels = preload(session, entity, found.items)
        items, total = [entity.show(row, labels) for row in found.items], found.total
    body = page_of(items, total, limit, offset)
    entity.listing.model_validate_json(body)
    return body


def _every(session: Session, entity: Entity, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of the listing, in order (read in one transaction, so the pages agree)."""
    if entity.by_columns:
        return columns.every(session, entity.model, filters)
    items: list[dict[str, Any]] = []
    while True:
        found = crud.find(session, entity.model, limit=crud.MAX_LIMIT, offset=len(items), **filters)
        labels = preload(session, entity, found.items)
        items += [entity.show(row, labels) for row in found.items]
        if not found.items or len(items) >= found.total:
            return items


def _count(session: Session, entity: Entity, filters: dict[str, Any]) -> int:
    if entity.by_columns:
        return columns.count(session, entity.model, filters)
    return crud.find(session, entity.model, limit=1, **filters).total


def _answer(body: bytes, tag: str | None, status: int = 200) -> Response:
    answer = Response(body, status=status, mimetype="application/json")
    if tag is not None:
        answer.set_etag(tag)
    return answer


@cache
def _items_of(entity: Entity) -> TypeAdapter[Any]:
    return TypeAdapter(list[entity.item])  # type: ignore[name-defined]


@cache
def _schema_digest(item: type[BaseModel]) -> str:
    """What the items look like: a page's entity tag changes with it, so a client's copy from before a change of
    the API is not taken for current."""
    return hashlib.sha256(json.dumps(item.model_json_schema(), sort_keys=True).encode()).hexdigest()[:16]


def query_of(model: type[BaseModel], args: MultiDict[str, str]) -> BaseModel:
    """A request's query parameters as ``model``, as spectree reads them (a repeated parameter as a list);
    ``pydantic.ValidationError`` when they do not fit."""
    return model.model_validate({name: values[0] if len(values) == 1 else values for name, values in args.lists()})


def listing_key(entity: Entity, filters: Mapping[str, Any]) -> tuple[Any, ...]:
    """What names a listing: the entity and its filters."""
    return entity.path, tuple(sorted(filters.items()))


def listing_revision(entity: Entity, current: Mapping[str, int] | None) -> Revision | None:
    """The revisions of the tables ``entity``'s listing reads; ``None`` when they are not all known."""
    if current is None or any(table not in current for table in entity.tables):
        return None
    return tuple(current[table] for table in entity.tables)


def listing_etag(entity: Entity, key: tuple[Any, ...], revision: Revision, limit: int, offset: int) -> str:
    return etag(key, revision, limit, offset, _schema_digest(entity.item))


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


__all__ = ["listing_etag", "listing_key", "listing_page", "listing_revision", "preload", "query_of"]

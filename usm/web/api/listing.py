"""Pages of a listing read as plain columns, for entities whose items show only their own columns and the keys
of single rows they reference (containers, hosts, nodes, ...): one query for the page, one for the count, no
ORM object built (building one costs ~40 µs, and a page of 50 containers took ~4 ms through the ORM against
~1 ms this way; docs/benchmarks.md, hub API). Entities with lists of references (apps, services) are listed by
``crud.find`` instead. Both give the same items (a test checks it, entity by entity).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, func, inspect, select
from sqlalchemy.orm import Session

from usm.manager.store import crud
from usm.manager.store.base import Base
from usm.manager.store.errors import Invalid
from usm.web.api.schemas import value_columns


@dataclass(frozen=True)
class _Reference:
    name: str
    foreign_key: Any  # the model's attribute holding the foreign key
    target_id: Any  # the target's id column
    target_key: Any  # the target's key column


@cache
def _references(model: type[Base]) -> tuple[_Reference, ...] | None:
    """The model's references, each to one row named by a plain column; ``None`` if it has any other kind."""
    mapper = inspect(model)
    found = []
    for name in model.refs:
        relationship = mapper.relationships.get(name)
        if relationship is None or relationship.uselist or len(relationship.local_columns) != 1:
            return None
        target = relationship.mapper.class_
        if target.key in inspect(target).relationships:
            return None
        column = next(iter(relationship.local_columns))
        found.append(_Reference(name, getattr(model, mapper.get_property_by_column(column).key),
                                inspect(target).primary_key[0], getattr(target, target.key)))
    return tuple(found)


def supported(model: type[Base]) -> bool:
    return _references(model) is not None


def page(session: Session, model: type[Base], filters: dict[str, Any], limit: int, offset: int
         ) -> tuple[list[dict[str, Any]], int]:
    """The items of one page (as ``schemas.dump`` shows them) and how many rows match ``filters``.

    The keys of referenced rows are correlated subqueries, which SQLite evaluates only for the rows of the page
    (a join would be evaluated for every row an OFFSET skips)."""
    references = _references(model)
    assert references is not None, f"{model.__name__} is listed through crud.find"
    if not 1 <= limit <= crud.MAX_LIMIT or offset < 0:
        raise Invalid(f"limit must be between 1 and {crud.MAX_LIMIT} and offset 0 or more")
    mapper = inspect(model)
    identity = getattr(model, mapper.get_property_by_column(mapper.primary_key[0]).key)
    columns = value_columns(model)
    by_name = {r.name: r for r in references}
    conditions = [_equals(model, columns, by_name, name, value) for name, value in filters.items()]
    total = session.scalar(select(func.count(identity)).where(*conditions)) or 0
    key = mapper.get_property(model.key)
    order = [identity] if key.key in mapper.relationships else [getattr(model, model.key), identity]
    shown = [getattr(model, name).label(name) for name in columns] + [
        select(r.target_key).where(r.target_id == r.foreign_key).scalar_subquery().label(r.name) for r in references]
    rows = session.execute(select(*shown).select_from(model).where(*conditions).order_by(*order).limit(limit)
                           .offset(offset)).all()
    return [{name: _plain(value) for name, value in row._mapping.items()} for row in rows], total


def _equals(model: type[Base], columns: dict[str, Any], references: dict[str, _Reference], name: str,
            value: Any) -> ColumnElement[bool]:
    if name in references:
        reference = references[name]
        return reference.foreign_key.in_(select(reference.target_id).where(reference.target_key == value))
    if name not in columns:
        raise Invalid(f"{model.noun()}s cannot be filtered by {name!r}")
    enum: type[Enum] | None = getattr(columns[name].type, "enum_class", None)
    return getattr(model, name) == (enum(value) if enum is not None else value)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


__all__ = ["page", "supported"]

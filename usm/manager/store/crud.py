"""The service layer the hub and the CLI share: create, get, find (filters and paging), update and delete, for
every stored entity.

Input is plain values, as a JSON body or command-line options carry them: other rows are named by their key
(``create(s, Container, name="carts-1", service="carts", host="lisbon")``), enums by their value, times as aware
datetimes or ISO 8601 text. Every refusal is a ``usm.manager.store.errors`` exception whose message says what is
wrong and how to fix it, and it changes nothing: each call runs in a savepoint, so the caller's transaction goes
on as if the call had not been made. The caller owns the transaction (``with sessions.begin() as session:``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Integer,
    String,
    func,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import ColumnProperty, Mapper, RelationshipProperty, Session
from sqlalchemy.sql.schema import Column

from usm.manager.store.base import Base, UtcDateTime, as_enum
from usm.manager.store.errors import Duplicate, InUse, Invalid, NotFound

M = TypeVar("M", bound=Base)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[M]):
    """One page of a listing: ``items`` from ``offset`` on, at most ``limit``, of ``total`` matching rows."""

    items: list[M]
    total: int
    limit: int
    offset: int


def create(session: Session, model: type[M], **values: Any) -> M:
    """A new row of ``model`` from ``values``; every required field must be given."""
    if inspect(model).polymorphic_abstract:
        kinds = " or ".join(f"{m.class_.noun()}s" for m in inspect(model).self_and_descendants
                            if m.class_ is not model)
        raise Invalid(f"{model.noun()}s are created as {kinds}")
    with session.begin_nested(), session.no_autoflush:
        row = model()
        _apply_defaults(row)
        _assign(session, row, values)
        _save(session, row)
    return row


def get(session: Session, model: type[M], key: str | int) -> M:
    """The row named ``key`` (its ``key`` field), or with primary key ``key`` when it is a number."""
    if isinstance(key, int) and not isinstance(key, bool):
        row = session.get(model, key)
    else:
        row = session.scalars(select(model).where(_key_clause(model, key))).one_or_none()
    if row is None:
        what = "id" if isinstance(key, int) else model.key
        raise NotFound(f"there is no {model.noun()} with {what} {key!r}")
    return row


def find(session: Session, model: type[M], *, limit: int = DEFAULT_LIMIT, offset: int = 0,
         **filters: Any) -> Page[M]:
    """The rows whose fields equal ``filters``, ordered by key. A relationship filters by the other row's key:
    ``find(s, Container, host="lisbon")``, ``find(s, Service, apps="shop")`` (those with that one among them)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit is {limit}; it must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise Invalid(f"offset is {offset}; it must be 0 or more")
    query = select(model)
    for name, value in filters.items():
        query = query.where(_filter(model, name, value))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(*_order(model)).limit(limit).offset(offset)).all()
    return Page(list(items), total, limit, offset)


def update(session: Session, model: type[M], key: str | int, **changes: Any) -> M:
    """The row named ``key`` with ``changes`` made (only the fields given change)."""
    with session.begin_nested(), session.no_autoflush:
        row = get(session, model, key)
        _assign(session, row, changes)
        _save(session, row)
    return row


def delete(session: Session, model: type[M], key: str | int) -> None:
    """Delete the row named ``key``; refused while rows in its ``blocking`` relationships depend on it."""
    with session.begin_nested():
        row = get(session, model, key)
        dependants = {name.replace("_", " "): [label(r) for r in _rows(getattr(row, name))]
                      for name in type(row).blocking}
        dependants = {name: keys for name, keys in dependants.items() if keys}
        if dependants:
            used_by = "; ".join(f"{name} {', '.join(map(repr, keys))}" for name, keys in dependants.items())
            raise InUse(f"{type(row).noun()} {label(row)!r} is still used by {used_by}: delete or change them "
                        "first", dependants)
        session.delete(row)
        _flush(session, row)


def label(row: Base) -> str:
    """How messages and listings name a row: its key, or the key of the row its key relationship points at."""
    value = getattr(row, type(row).key)
    return label(value) if isinstance(value, Base) else str(value)


def fields(model: type[Base]) -> list[str]:
    """The fields ``create`` and ``update`` take for ``model``."""
    return sorted(_columns(model)) + sorted(model.refs)


# Assigning and checking values.


def _apply_defaults(row: Base) -> None:
    """Give the new row its column defaults now (SQLAlchemy would at INSERT), so checks see them."""
    for name, column in _columns(type(row)).items():
        if column.default is not None and column.default.is_scalar and getattr(row, name) is None:
            setattr(row, name, column.default.arg)


def _assign(session: Session, row: Base, values: dict[str, Any]) -> None:
    model = type(row)
    columns = _columns(model)
    unknown = sorted(set(values) - set(columns) - set(model.refs))
    if unknown:
        raise Invalid(f"{model.noun()}s have no field {', '.join(map(repr, unknown))}; their fields are "
                      f"{', '.join(fields(model))}")
    problems = []
    for name, value in values.items():
        try:
            if name in model.refs:
                setattr(row, name, _resolve(session, model, name, value))
            else:
                setattr(row, name, _coerce(columns[name], name, value))
        except Invalid as wrong:
            problems.append(str(wrong))
    if problems:
        raise Invalid(f"{model.noun()} {_name_of(row)}: {'; '.join(problems)}", tuple(problems))


def _save(session: Session, row: Base) -> None:
    model = type(row)
    row.prepare(session)
    missing = _missing(row)
    if missing:
        raise Invalid(f"{model.noun()} {_name_of(row)} needs {', '.join(missing)}; give "
                      f"{'it' if len(missing) == 1 else 'them'}", tuple(f"{name} is missing" for name in missing))
    problems = row.problems()
    if problems:
        raise Invalid(f"{model.noun()} {_name_of(row)}: {'; '.join(problems)}", tuple(problems))
    _check_unique(session, row)
    session.add(row)
    _flush(session, row)


def _flush(session: Session, row: Base) -> None:
    """Flush, turning what the database still refuses (a race with another writer) into a store error."""
    try:
        session.flush()
    except IntegrityError as refused:
        reason = str(refused.orig).strip().splitlines()[0]
        error = Duplicate if "unique" in reason.lower() or "duplicate" in reason.lower() else Invalid
        raise error(f"the database refused {type(row).noun()} {_name_of(row)}: {reason}") from None


def _coerce(column: Column[Any], name: str, value: Any) -> Any:
    """``value`` as the column stores it; ``Invalid`` saying what was expected."""
    if value is None:
        if not column.nullable:
            raise Invalid(f"{name} cannot be empty")
        return None
    kind = column.type
    enum: type[Enum] | None = getattr(kind, "enum_class", None)
    if enum is not None:
        try:
            return as_enum(enum, value)
        except ValueError as wrong:
            raise Invalid(f"{name}: {wrong}") from None
    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise Invalid(f"{name} must be true or false, not {value!r}")
    elif isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{name} must be a whole number, not {value!r}")
    elif isinstance(kind, Float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"{name} must be a number, not {value!r}")
        return float(value)
    elif isinstance(kind, UtcDateTime):
        return _datetime(name, value)
    elif isinstance(kind, String):
        if not isinstance(value, str):
            raise Invalid(f"{name} must be text, not {value!r}")
        if kind.length is not None and len(value) > kind.length:
            raise Invalid(f"{name} is {len(value)} characters long; at most {kind.length} fit")
        if column.unique and not value.strip():
            raise Invalid(f"{name} cannot be blank")
    return value


def _datetime(name: str, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise Invalid(f"{name} {value!r} is not an ISO 8601 time such as 2026-12-24T18:00:00+00:00") from None
    if not isinstance(value, datetime):
        raise Invalid(f"{name} must be a time, not {value!r}")
    if value.tzinfo is None:
        raise Invalid(f"{name} {value.isoformat()} has no time zone; add one, e.g. +00:00 for UTC")
    return value


def _resolve(session: Session, model: type[Base], name: str, value: Any) -> Any:
    """The row (or rows) a reference field names, by key."""
    target = _entity(model.refs[name])
    relationship = inspect(model).relationships.get(name)
    if relationship is None or relationship.uselist:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise Invalid(f"{name} must be a list of {target.noun()} {target.key}s, not {value!r}")
        return [_referenced(session, target, name, item) for item in value]
    if value is None:
        if not all(c.nullable for c in relationship.local_columns):
            raise Invalid(f"{name} cannot be empty")
        return None
    return _referenced(session, target, name, value)


def _referenced(session: Session, target: type[Base], name: str, key: Any) -> Base:
    if isinstance(key, target):
        return key
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise Invalid(f"{name} must name {_a(target.noun())} by its {target.key}, not {key!r}")
    try:
        return get(session, target, key)
    except NotFound:
        raise Invalid(f"{name}: there is no {target.noun()} {key!r}; create it first or fix the name") from None


def _missing(row: Base) -> list[str]:
    """The required fields the row has no value for (a foreign key is asked for as its relationship)."""
    mapper: Mapper[Any] = inspect(type(row))
    missing = []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if column is mapper.polymorphic_on or column.nullable or column.default is not None:
            continue
        if column.foreign_keys:
            relationship = _relationship_of(mapper, column)
            if relationship is not None and getattr(row, relationship.key) is None:
                missing.append(relationship.key)
        elif not column.primary_key and getattr(row, prop.key) is None:
            missing.append(prop.key)
    return missing


def _check_unique(session: Session, row: Base) -> None:
    """Refuse a value of a unique field that another row has, naming that row."""
    mapper: Mapper[Any] = inspect(type(row))
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if not column.unique:
            continue
        owner = next(m.class_ for m in mapper.iterate_to_root() if column.table is m.local_table)
        relationship = _relationship_of(mapper, column) if column.foreign_keys else None
        field = relationship.key if relationship is not None else prop.key
        value = getattr(row, field)
        if value is None:
            continue
        for other in session.scalars(select(owner).where(getattr(owner, field) == value).limit(2)):
            if other is row:
                continue
            if field == "name":
                raise Duplicate(f"{_a(owner.noun())} named {value!r} exists already; choose another name")
            shown = label(value) if isinstance(value, Base) else value
            raise Duplicate(f"{owner.noun()} {label(other)!r} already has {field} {shown!r}; two "
                            f"{owner.noun()}s cannot share it")


# Queries.


def _key_clause(model: type[Base], key: Any) -> ColumnElement[bool]:
    prop = inspect(model).get_property(model.key)
    attribute = getattr(model, model.key)
    if isinstance(prop, RelationshipProperty):
        target = prop.mapper.class_
        return attribute.has(_key_clause(target, key))
    return attribute == _coerce(prop.columns[0], model.key, key)


def _filter(model: type[Base], name: str, value: Any) -> ColumnElement[bool]:
    mapper: Mapper[Any] = inspect(model)
    columns = {p.key: p.columns[0] for p in mapper.column_attrs}
    relationships = {r.key: r for r in mapper.relationships if hasattr(r.mapper.class_, r.mapper.class_.key)}
    attribute = getattr(model, name, None)
    if name in columns:
        return attribute.is_(None) if value is None else attribute == _coerce(columns[name], name, value)
    if name not in relationships:
        known = sorted(set(columns) | set(relationships))
        raise Invalid(f"{model.noun()}s cannot be filtered by {name!r}; filter by one of {', '.join(known)}")
    relationship = relationships[name]
    if value is None:
        return ~attribute.any() if relationship.uselist else attribute == None
    clause = _key_clause(relationship.mapper.class_, value)
    return attribute.any(clause) if relationship.uselist else attribute.has(clause)


def _order(model: type[Base]) -> list[Any]:
    prop = inspect(model).get_property(model.key)
    primary = [getattr(model, c.key) for c in inspect(model).primary_key]
    return primary if isinstance(prop, RelationshipProperty) else [getattr(model, model.key), *primary]


# Model introspection.


@cache
def _columns(model: type[Base]) -> dict[str, Column[Any]]:
    """The model's own value fields: its columns but keys, foreign keys and the kind of an inherited row."""
    mapper: Mapper[Any] = inspect(model)
    result = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if column.primary_key or column.foreign_keys or column is mapper.polymorphic_on:
            continue
        if isinstance(prop, ColumnProperty):
            result[prop.key] = column
    return result


def _relationship_of(mapper: Mapper[Any], column: Column[Any]) -> RelationshipProperty[Any] | None:
    for relationship in mapper.relationships:
        if column in relationship.local_columns and not relationship.viewonly and relationship.direction.name \
                == "MANYTOONE":
            return relationship
    return None


@cache
def _entity(name: str) -> type[Base]:
    for mapper in Base.registry.mappers:
        if mapper.class_.__name__ == name:
            return mapper.class_
    raise KeyError(name)


def _rows(value: Any) -> list[Base]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _name_of(row: Base) -> str:
    try:
        value = getattr(row, type(row).key)
    except AttributeError:
        value = None
    if value is None:
        return "(new)"
    return repr(label(value) if isinstance(value, Base) else value)


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Page", "create", "delete", "fields", "find", "get", "label", "update"]

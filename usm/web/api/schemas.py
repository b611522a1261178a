"""The API's models of stored entities, derived from the SQLAlchemy models (one description of each entity, so
the API and the store cannot drift apart).

For each entity: ``Create`` (the fields ``crud.create`` takes, the required ones required), ``Update`` (the
same, all optional), ``Filters`` (equality filters on columns and references, with paging) and ``Item`` (what
the API answers). Other rows are named by their key, enums by their value, times in ISO 8601 with a zone, as in
``usm.manager.store.crud``. Range checks stay in the store, which explains them; the models give types.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model
from sqlalchemy import BigInteger, Boolean, Float, Integer, String, inspect
from sqlalchemy.orm import Mapper

from usm.manager.store import crud
from usm.manager.store.base import Base, UtcDateTime

INT32, INT64 = 2**31 - 1, 2**63 - 1
"""The largest values the store's integer columns hold (SQLite and PostgreSQL alike)."""

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
"""Bodies and queries: an unknown field is an error (a typo must not be ignored), as are NaN and infinities."""


class Page(BaseModel):
    """Paging of a listing."""

    model_config = STRICT

    limit: int = Field(crud.DEFAULT_LIMIT, ge=1, le=crud.MAX_LIMIT, description="at most this many items")
    offset: int = Field(0, ge=0, le=INT32, description="skip this many items first")


def column_type(column: Any) -> Any:
    """The pydantic type of a column's values."""
    kind = column.type
    enum: type[Enum] | None = getattr(kind, "enum_class", None)
    if enum is not None:
        return Literal[tuple(m.value for m in enum)]  # type: ignore[misc]
    if isinstance(kind, Boolean):
        return bool
    if isinstance(kind, BigInteger):
        return Annotated[int, Field(ge=-INT64, le=INT64)]
    if isinstance(kind, Integer):
        return Annotated[int, Field(ge=-INT32, le=INT32)]
    if isinstance(kind, Float):
        return float
    if isinstance(kind, UtcDateTime):
        return AwareDatetime
    if isinstance(kind, String) and kind.length:
        return Annotated[str, Field(max_length=kind.length)]
    return str


def _fields(model: type[Base]) -> dict[str, tuple[Any, bool]]:
    """Field name -> (type, required at creation) for what ``crud.create`` takes."""
    mapper: Mapper[Any] = inspect(model)
    found: dict[str, tuple[Any, bool]] = {}
    for name, column in value_columns(model).items():
        kind = column_type(column)
        required = not column.nullable and column.default is None
        found[name] = (kind | None if column.nullable else kind, required)
    for name in model.refs:
        relationship = mapper.relationships.get(name)
        many = relationship is None or relationship.uselist
        if many:
            found[name] = (list[str], False)
        else:
            nullable = all(c.nullable for c in relationship.local_columns)
            found[name] = (str | None if nullable else str, not nullable and _needed(model, name))
    return found


@cache
def value_columns(model: type[Base]) -> dict[str, Any]:
    """The columns a client sets: all but keys, foreign keys (given as references) and the kind of a host."""
    mapper: Mapper[Any] = inspect(model)
    found = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if not (column.primary_key or column.foreign_keys or column is mapper.polymorphic_on):
            found[prop.key] = column
    return found


def _needed(model: type[Base], name: str) -> bool:
    """Whether a reference must be given: not when the row fills it itself (a host's region)."""
    return not (name == "region" and any(m.class_.__name__ == "Host" for m in inspect(model).iterate_to_root()))


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional_field(kind: Any) -> Any:
    """A field that may be left out: the store fills it (its default, or what it derives). A ``null`` default in
    the document would contradict a type that excludes null, so the document shows none."""
    return Field(None) if _optional(kind) else Field(None, json_schema_extra=_no_default)


@cache
def create_schema(model: type[Base]) -> type[BaseModel]:
    fields = {name: (kind, ... if required else _optional_field(kind))
              for name, (kind, required) in _fields(model).items()}
    return create_model(f"{model.__name__}Create", __config__=STRICT, __doc__=f"A new {model.noun()}.",
                        **fields)  # type: ignore[call-overload]


@cache
def update_schema(model: type[Base]) -> type[BaseModel]:
    fields = {name: (kind, _optional_field(kind)) for name, (kind, _) in _fields(model).items()}
    return create_model(f"{model.__name__}Update", __config__=STRICT,
                        __doc__=f"Changes to a {model.noun()}: only the fields given change.",
                        **fields)  # type: ignore[call-overload]


@cache
def filter_schema(model: type[Base]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, (kind, _) in _fields(model).items():
        single = str if kind in (list[str], str | None) else kind
        fields[name] = (single | None, Field(None, description=f"only {model.noun()}s whose {name} is (has) this"))
    return create_model(f"{model.__name__}Filters", __base__=Page, __doc__=f"Filters on {model.noun()}s.",
                        **fields)  # type: ignore[call-overload]


@cache
def item_schema(model: type[Base], extras: tuple[tuple[str, Any], ...] = ()) -> type[BaseModel]:
    fields: dict[str, Any] = {name: (kind, ...) if not _optional(kind) else (kind, None)
                              for name, (kind, _) in _fields(model).items()}
    fields.update({name: (kind, ...) for name, kind in extras})
    return create_model(f"{model.__name__}Item", __doc__=f"A {model.noun()}.", **fields)  # type: ignore[call-overload]


@cache
def listing_schema(model: type[Base], extras: tuple[tuple[str, Any], ...] = ()) -> type[BaseModel]:
    return create_model(f"{model.__name__}Listing", __doc__=f"A page of {model.noun()}s.",
                        items=(list[item_schema(model, extras)], ...), total=(int, ...), limit=(int, ...),
                        offset=(int, ...))  # type: ignore[call-overload]


def _optional(kind: Any) -> bool:
    return getattr(kind, "__args__", None) is not None and type(None) in kind.__args__


@cache
def single_references(model: type[Base]) -> dict[str, tuple[str, Any, Any]]:
    """The model's references to one row named by a plain column: reference -> (the attribute holding its foreign
    key, the target's id column, the target's key column)."""
    mapper: Mapper[Any] = inspect(model)
    found = {}
    for name in model.refs:
        relationship = mapper.relationships.get(name)
        if relationship is None or relationship.uselist or len(relationship.local_columns) != 1:
            continue
        target = relationship.mapper.class_
        if target.key in inspect(target).relationships:
            continue
        foreign_key = mapper.get_property_by_column(next(iter(relationship.local_columns))).key
        found[name] = (foreign_key, inspect(target).primary_key[0], getattr(target, target.key))
    return found


def dump(row: Base, labels: Mapping[str, Mapping[Any, str]] | None = None) -> dict[str, Any]:
    """A stored row as the API shows it: its fields, other rows by their key, enums by value, times in ISO.
    ``labels`` (from ``paging.preload``) gives the keys of referenced rows without loading them."""
    model = type(row)
    result = {name: _plain(getattr(row, name)) for name in value_columns(model)}
    references = single_references(model) if labels else {}
    for name in model.refs:
        if name in references and name in labels:
            result[name] = labels[name].get(getattr(row, references[name][0]))
        else:
            result[name] = _plain(getattr(row, name))
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, Base):
        return crud.label(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


__all__ = ["Page", "create_schema", "dump", "filter_schema", "item_schema", "listing_schema", "single_references",
           "update_schema", "value_columns"]

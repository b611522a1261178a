"""What every stored entity shares: the declarative base, constraint names, and the column types that must mean
the same on SQLite and PostgreSQL (UTC datetimes, enums stored as their values).

Each model also says, as class attributes, how the service layer (``usm.manager.store.crud``) treats it: which
field names a row for people and the API (``key``), which fields take other rows by their key (``refs``), and
which of its relationships forbid deleting it while they hold rows (``blocking``). The layer is generic; these
few facts are what differs between entities.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar

from sqlalchemy import DateTime, Dialect, MetaData
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Every constraint gets a predictable name, the same on every backend, so later migrations can alter it (SQLite
batch migrations rebuild tables and need the names)."""

NAME_LENGTH = 255


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    key: ClassVar[str] = "name"
    """The field that names a row: a unique column, or a many-to-one relationship whose target's key names it."""

    refs: ClassVar[dict[str, str]] = {}
    """Input field -> entity class name, for fields given as the other row's key (or a list of keys)."""

    blocking: ClassVar[tuple[str, ...]] = ()
    """Relationships that must be empty before a row can be deleted (a delete never takes other rows with it
    silently; owned rows such as an app's memberships are cascaded by the relationship instead)."""

    def prepare(self, session: Session) -> None:
        """Fill what can be derived from other rows before the row is checked (e.g. a host's region)."""

    def problems(self) -> list[str]:
        """What is wrong with the row's values as a whole, as sentences an operator can act on."""
        return []

    def __repr__(self) -> str:
        value = getattr(self, self.key, None)
        return f"<{type(self).__name__} {getattr(value, self.key, value)!r}>"

    @classmethod
    def noun(cls) -> str:
        """How messages name the entity: ``CloudHost`` -> "cloud host"."""
        return re.sub(r"(?<!^)(?=[A-Z][a-z])", " ", cls.__name__).lower()


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, always returned as an aware UTC datetime.

    PostgreSQL keeps the zone (``timestamptz``); SQLite keeps none and would hand back naive values that compare
    wrongly with aware ones, so values are stored there as naive UTC and given their zone back when read. A naive
    value is refused: it could be local time or UTC, and guessing loses the difference silently.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no time zone; give it one (e.g. UTC)")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def enum_type(enum: type[Enum], name: str) -> SqlEnum:
    """An enum column stored as its values (``"running"``, not ``"RUNNING"``) in a plain string column with a CHECK
    constraint: the same on SQLite and PostgreSQL, and a new value is a constraint change, not a type change."""
    return SqlEnum(enum, name=name, native_enum=False, create_constraint=True, length=16,
                   values_callable=lambda members: [m.value for m in members], validate_strings=True)


def choices(enum: type[Enum]) -> str:
    return ", ".join(str(m.value) for m in enum)


def as_enum(enum: type[Enum], value: Any) -> Enum:
    """``value`` (a member or its value) as a member of ``enum``; ``ValueError`` naming the choices otherwise."""
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{value!r} is not one of {choices(enum)}") from None


__all__ = ["NAME_LENGTH", "Base", "UtcDateTime", "as_enum", "choices", "enum_type"]

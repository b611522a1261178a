"""Versions of what the master hands its workers through the database: the policy in force and the site file.

``usm policy apply DIR`` validates a policy and stores its files here with its digest under the next version
number; every manager compares the newest stored version with its own between cycles, as the single-node hot
reload compares files, and loads the new one. The master stores its site file the same way, so that a worker needs
nothing but the database and its region. Files are kept as text, name by name, so a manager rebuilds the very
bytes the digest was taken of.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from usm.manager.store.base import Base, UtcDateTime, enum_type
from usm.manager.store.errors import Invalid


class ConfigKind(str, Enum):
    POLICY = "policy"
    SITE = "site"


class ConfigVersion(Base):
    """One stored version of the policy or the site: its files (name -> text), their digest, where they were read
    from and when they were stored. Versions of one kind count up from 1."""

    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("kind", "version"),)
    key = "id"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ConfigKind] = mapped_column(enum_type(ConfigKind, "config_kind"))
    version: Mapped[int]
    digest: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(1024), default="")
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)


def store_version(session: Session, kind: ConfigKind, files: Mapping[str, bytes], digest: str, source: str,
                  at: datetime) -> tuple[ConfigVersion, bool]:
    """Store ``files`` as the next version of ``kind``, unless the newest version has the same ``digest`` (then
    that one is returned: applying the same policy twice makes no new version). Returns the version and whether
    it is new."""
    if at.tzinfo is None:
        raise Invalid(f"time {at.isoformat()} has no time zone; pass an aware time")
    texts = {}
    for name, content in files.items():
        try:
            texts[name] = content.decode("utf-8")
        except UnicodeDecodeError as wrong:
            raise Invalid(f"{source}/{name} is not UTF-8 text (byte {wrong.start}); save it as UTF-8") from None
    newest = latest_version(session, kind)
    if newest is not None and newest.digest == digest:
        return newest, False
    number = (session.scalar(select(func.max(ConfigVersion.version)).where(ConfigVersion.kind == kind)) or 0) + 1
    row = ConfigVersion(kind=kind, version=number, digest=digest, files=texts, source=source, stored_at=at)
    session.add(row)
    session.flush()
    return row, True


def latest_version(session: Session, kind: ConfigKind) -> ConfigVersion | None:
    """The newest stored version of ``kind``, or ``None`` when none was stored."""
    query = select(ConfigVersion).where(ConfigVersion.kind == kind).order_by(ConfigVersion.version.desc()).limit(1)
    return session.scalars(query).first()


def latest_number(session: Session, kind: ConfigKind) -> int:
    """The newest version number of ``kind`` (0: none), in one indexed look-up: what managers poll each cycle."""
    return session.scalar(select(func.max(ConfigVersion.version)).where(ConfigVersion.kind == kind)) or 0


def file_bytes(row: ConfigVersion) -> dict[str, bytes]:
    """The stored files as the bytes they were stored from."""
    return {name: str(text).encode("utf-8") for name, text in row.files.items()}


__all__ = ["ConfigKind", "ConfigVersion", "file_bytes", "latest_number", "latest_version", "store_version"]

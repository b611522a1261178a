"""Who may use the hub: users with password hashes, the API tokens scripts present, and the audit log of what
people did through the hub (original-system §13 items 22-23: no default password, every SSH action traced).

Secrets are never stored: a password as its Argon2 hash, a token as the SHA-256 digest of its random text. The
service functions that create, check and revoke them live in ``usm.manager.accounts``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from usm.manager.store.base import NAME_LENGTH, Base, UtcDateTime


class User(Base):
    """A person who signs in to the hub. An ``admin`` may change things and manage users; others only read."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                  order_by="ApiToken.id")


class ApiToken(Base):
    """A bearer token for scripts, acting as its user. ``digest`` is the SHA-256 of the token (looked up by it);
    ``prefix`` its first characters, so people can tell their tokens apart. Revoked tokens are kept (with
    ``revoked_at``) for the audit trail."""

    __tablename__ = "api_tokens"
    key = "id"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class AuditEntry(Base):
    """One thing a person did or tried through the hub: who (by name, kept after the user is deleted), from
    where, what (``action`` on ``target``), how it ended (``outcome``: ok, refused, failed) and the details."""

    __tablename__ = "audit_entries"
    key = "id"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(45), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")


__all__ = ["ApiToken", "AuditEntry", "User"]

"""Users, API tokens and the audit log: the service functions the hub and the ``usm user`` command share.

Passwords are hashed with Argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): ~35-50 ms per hash
on this project's 2-core machine, where argon2-cffi's default profile (64 MiB, 3 passes, 4 lanes) took 0.7 s and
would make every sign-in slow and the login form a way to load the hub. An old hash is upgraded on the next
successful sign-in when the parameters change. Tokens are 256 random bits shown once, and
stored as their SHA-256 digest: a token is already unguessable, so a fast digest is enough and lets the hub find
the token with one indexed lookup per request. There is no default user or password anywhere: the first admin
is created by an operator (``usm user create --admin``) or from a password file given at startup.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from usm.manager.store.accounts import ApiToken, AuditEntry, User
from usm.manager.store.errors import Duplicate, Invalid, NotFound

MIN_PASSWORD_LENGTH = 12
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
TOKEN_PREFIX = "usm_"

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
"""Verified against when no such user exists, so that a wrong name costs as much time as a wrong password."""


@dataclass(frozen=True)
class IssuedToken:
    """A new token: its row, and its text, which is shown once and never stored."""

    token: ApiToken
    text: str


def check_password(password: str) -> None:
    """Refuse a password too short to resist guessing, saying what is needed."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"the password has {len(password)} characters; use at least {MIN_PASSWORD_LENGTH}",
                      (f"password must have at least {MIN_PASSWORD_LENGTH} characters",))


def read_password_file(path: str | Path) -> str:
    """The password in ``path``: its first line, without the line end (so `echo secret > file` works)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Invalid(f"cannot read the password file {path}: {error}") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


def create_user(session: Session, name: str, password: str, at: datetime, admin: bool = False) -> User:
    """A new user named ``name`` with ``password`` (hashed here)."""
    if not USER_NAME.fullmatch(name):
        raise Invalid(f"user name {name!r} is not allowed: use 1 to 64 letters, digits and _ . @ -, starting with "
                      "a letter or digit", ("name must be 1 to 64 letters, digits and _ . @ -",))
    check_password(password)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Duplicate(f"a user named {name!r} exists already; choose another name")
    user = User(name=name, password_hash=_hasher.hash(password), admin=admin, created_at=at)
    session.add(user)
    session.flush()
    return user


def user_named(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"there is no user named {name!r}")
    return user


def count_admins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.admin.is_(True))) or 0


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else ``None`` (whether the name or the password was wrong is not
    told apart, in time either)."""
    user = session.scalar(select(User).where(User.name == name))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def issue_token(session: Session, user: User, name: str, at: datetime, expires_at: datetime | None = None
                ) -> IssuedToken:
    """A new token acting as ``user``; ``name`` says what it is for (a script, a machine)."""
    if not name.strip():
        raise Invalid("a token needs a name saying what it is for", ("name cannot be blank",))
    if expires_at is not None and expires_at <= at:
        raise Invalid(f"expires_at {expires_at.isoformat()} is not in the future",
                      ("expires_at must be in the future",))
    text = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, digest=_digest(text), prefix=text[:12], created_at=at,
                     expires_at=expires_at)
    session.add(token)
    session.flush()
    return IssuedToken(token, text)


def token_user(session: Session, text: str, at: datetime) -> User | None:
    """The user a token acts as, when the token exists, is not revoked and has not expired."""
    found = token_holder(session, text, at)
    return found[0] if found is not None else None


def token_holder(session: Session, text: str, at: datetime) -> tuple[User, datetime | None] | None:
    """The user a token acts as and when the token expires (``None``: never), when the token exists, is not
    revoked and has not expired at ``at``: what a caller that keeps the answer must check again later."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    found = session.execute(select(User, ApiToken.expires_at).join(ApiToken).where(
        ApiToken.digest == _digest(text), ApiToken.revoked_at.is_(None),
        ApiToken.expires_at.is_(None) | (ApiToken.expires_at > at))).one_or_none()
    return (found[0], found[1]) if found is not None else None


def revoke_token(session: Session, user: User, token_id: int, at: datetime) -> ApiToken:
    """Revoke one of ``user``'s tokens (an admin may revoke anyone's); revoking twice changes nothing."""
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != user.id and not user.admin):
        raise NotFound(f"there is no token with id {token_id}")
    if token.revoked_at is None:
        token.revoked_at = at
    return token


def audit(session: Session, at: datetime, user: str, action: str, outcome: str, target: str = "",
          detail: Any = None, address: str = "") -> AuditEntry:
    """Record one thing done through the hub; ``detail`` is kept as JSON."""
    entry = AuditEntry(at=at, user=user, address=address, action=action, target=target, outcome=outcome,
                       detail="" if detail is None else json.dumps(detail, sort_keys=True, default=str))
    session.add(entry)
    session.flush()
    return entry


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["MIN_PASSWORD_LENGTH", "IssuedToken", "audit", "authenticate", "check_password", "count_admins",
           "create_user", "issue_token", "read_password_file", "revoke_token", "token_holder", "token_user",
           "user_named"]

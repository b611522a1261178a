"""The caller's session, their API tokens, the users (admins only) and the audit log (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask_wtf.csrf import generate_csrf
from pydantic import AwareDatetime, BaseModel, Field
from spectree import Response as Responses
from spectree import SpecTree
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from usm.manager import accounts
from usm.manager.store.accounts import ApiToken, AuditEntry, User
from usm.manager.store.errors import StoreError
from usm.web.api.schemas import STRICT, Page
from usm.web.audit import record
from usm.web.errors import ApiError, ErrorBody, from_store
from usm.web.hub import now, transaction
from usm.web.security import caller, for_viewers, require_admin


class SessionBody(BaseModel):
    user: str
    admin: bool
    by_token: bool
    csrf_token: str = Field(description="send it as X-CSRFToken with state-changing calls made with the cookie")


class TokenNew(BaseModel):
    model_config = STRICT
    name: str = Field(min_length=1, max_length=255, description="what the token is for")
    expires_at: AwareDatetime | None = None


class TokenItem(BaseModel):
    id: int
    name: str
    user: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenItem):
    token: str = Field(description="the token itself, shown only now: keep it secret")


class TokenListing(BaseModel):
    items: list[TokenItem]


class UserNew(BaseModel):
    model_config = STRICT
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    admin: bool = False


class UserItem(BaseModel):
    name: str
    admin: bool
    created_at: datetime


class UserListing(BaseModel):
    items: list[UserItem]


class AuditFilters(Page):
    model_config = STRICT
    user: str | None = None
    action: str | None = None
    target: str | None = None
    outcome: str | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class AuditItem(BaseModel):
    id: int
    at: datetime
    user: str
    address: str
    action: str
    target: str
    outcome: str
    detail: str


class AuditListing(BaseModel):
    items: list[AuditItem]
    total: int
    limit: int
    offset: int


def _token(token: ApiToken) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "user": token.user.name, "prefix": token.prefix,
            "created_at": token.created_at.isoformat(),
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None}


def _user(user: User) -> dict[str, Any]:
    return {"name": user.name, "admin": user.admin, "created_at": user.created_at.isoformat()}


def audit_item(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "user": entry.user, "address": entry.address,
            "action": entry.action, "target": entry.target, "outcome": entry.outcome, "detail": entry.detail}


def remove_user_named(session: Session, name: str) -> None:
    """Delete a user and their tokens; the last admin is kept (409), so someone can always manage the hub."""
    user = accounts.user_named(session, name)
    if user.admin and accounts.count_admins(session) == 1:
        raise ApiError(409, f"{name!r} is the only admin; make another admin first")
    session.delete(user)


def audit_matching(filters: AuditFilters) -> Any:
    """The audit entries the filters select, as a query (the hub's logs page pages through it too)."""
    query = select(AuditEntry)
    for name in ("user", "action", "target", "outcome"):
        if (value := getattr(filters, name)) is not None:
            query = query.where(getattr(AuditEntry, name) == value)
    if filters.since is not None:
        query = query.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEntry.at < filters.until)
    return query


def blueprint(spec: SpecTree) -> Blueprint:
    bp = Blueprint("accounts", __name__)

    @bp.get("/session")
    @spec.validate(resp=Responses(HTTP_200=SessionBody, HTTP_401=ErrorBody), tags=["accounts"])
    def whoami() -> Response:
        """Who is calling\n\nWith the CSRF token pages send back with their changes."""
        identity = caller()
        return jsonify({"user": identity.name, "admin": identity.admin, "by_token": identity.by_token,
                        "csrf_token": generate_csrf()})

    @bp.get("/tokens")
    @spec.validate(resp=Responses(HTTP_200=TokenListing), tags=["accounts"])
    def tokens() -> Response:
        """List the caller's API tokens\n\nRevoked ones included; the tokens themselves are never shown again."""
        with transaction() as session:
            user = accounts.user_named(session, caller().name)
            items = [_token(t) for t in user.tokens]
        return jsonify({"items": items})

    @bp.post("/tokens")
    @for_viewers
    @spec.validate(json=TokenNew, resp=Responses(HTTP_201=TokenIssued), tags=["accounts"])
    def new_token() -> Any:
        """Create an API token\n\nIt acts as the caller; send it as 'Authorization: Bearer <token>'."""
        body: TokenNew = request.context.json  # type: ignore[attr-defined]
        with transaction() as session:
            user = accounts.user_named(session, caller().name)
            try:
                issued = accounts.issue_token(session, user, body.name, now(), body.expires_at)
            except StoreError as error:
                raise from_store(error, ("name", "expires_at")) from None
            answer = {**_token(issued.token), "token": issued.text}
        record("token.create", "ok", body.name, {"id": answer["id"], "prefix": answer["prefix"]})
        return jsonify(answer), 201

    @bp.delete("/tokens/<int(max=2147483647):token>")
    @for_viewers
    @spec.validate(resp=Responses("HTTP_204", HTTP_404=ErrorBody), tags=["accounts"])
    def revoke(token: int) -> Any:
        """Revoke an API token\n\nOne's own; an admin may revoke anyone's."""
        with transaction() as session:
            user = accounts.user_named(session, caller().name)
            revoked = accounts.revoke_token(session, user, token, now())
            name = revoked.name
        record("token.revoke", "ok", name, {"id": token})
        return "", 204

    @bp.get("/users")
    @spec.validate(resp=Responses(HTTP_200=UserListing, HTTP_403=ErrorBody), tags=["accounts"])
    def users() -> Response:
        """List the users (admins only)"""
        require_admin()
        with transaction() as session:
            items = [_user(u) for u in session.scalars(select(User).order_by(User.name))]
        return jsonify({"items": items})

    @bp.post("/users")
    @spec.validate(json=UserNew, resp=Responses(HTTP_201=UserItem, HTTP_409=ErrorBody), tags=["accounts"])
    def new_user() -> Any:
        """Create a user (admins only)"""
        body: UserNew = request.context.json  # type: ignore[attr-defined]
        with transaction() as session:
            try:
                user = accounts.create_user(session, body.name, body.password, now(), admin=body.admin)
            except StoreError as error:
                raise from_store(error, ("name", "password", "admin")) from None
            answer = _user(user)
        record("user.create", "ok", body.name, {"admin": body.admin})
        return jsonify(answer), 201

    @bp.delete("/users/<name>")
    @spec.validate(resp=Responses("HTTP_204", HTTP_404=ErrorBody, HTTP_409=ErrorBody), tags=["accounts"])
    def remove_user(name: str) -> Any:
        """Delete a user (admins only)\n\nTheir tokens go with them; the last admin cannot be deleted."""
        with transaction() as session:
            remove_user_named(session, name)
        record("user.delete", "ok", name)
        return "", 204

    @bp.get("/audit")
    @spec.validate(query=AuditFilters, resp=Responses(HTTP_200=AuditListing, HTTP_403=ErrorBody), tags=["accounts"])
    def audit() -> Response:
        """Read the audit log (admins only)\n\nNewest first: sign-ins, token and user changes, every action."""
        require_admin()
        filters: AuditFilters = request.context.query  # type: ignore[attr-defined]
        query = audit_matching(filters)
        with transaction() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                                   .limit(filters.limit).offset(filters.offset))
            items = [audit_item(e) for e in rows]
        return jsonify({"items": items, "total": total, "limit": filters.limit, "offset": filters.offset})

    return bp


__all__ = ["AuditFilters", "TokenNew", "UserNew", "audit_item", "audit_matching", "blueprint", "remove_user_named"]

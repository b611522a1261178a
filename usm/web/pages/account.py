"""Users and API tokens: one's own tokens (made, shown once, revoked) and, for admins, the users (made with a
password, deleted). The same service functions as the API's accounts endpoints (``usm.manager.accounts``,
``usm.web.api.accounts.remove_user_named``), the same audit entries.

A new token is shown on the page that answers the form, never put in a redirect or the (signed, not encrypted)
session cookie.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy import select

from usm.manager import accounts
from usm.manager.store.accounts import User
from usm.manager.store.errors import StoreError
from usm.web.api.accounts import TokenNew, UserNew, remove_user_named
from usm.web.audit import record
from usm.web.errors import ApiError, from_store
from usm.web.hub import now, transaction
from usm.web.pages import admin_only
from usm.web.security import login_required

bp = Blueprint("account", __name__, url_prefix="/account")


def _page(issued: dict[str, Any] | None = None, problem: str = "", problems: dict[str, list[str]] | None = None,
          status: int = 200) -> Any:
    with transaction() as session:
        me = accounts.user_named(session, g.identity.name)
        tokens = [{"id": t.id, "name": t.name, "prefix": t.prefix, "created_at": t.created_at,
                   "expires_at": t.expires_at, "revoked_at": t.revoked_at} for t in me.tokens]
        users = [{"name": u.name, "admin": u.admin, "created_at": u.created_at}
                 for u in session.scalars(select(User).order_by(User.name))] if g.identity.admin else []
    return render_template("account.html", tokens=tokens, users=users, issued=issued, problem=problem,
                           problems=problems or {}), status


def _problems(error: ValidationError) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        found.setdefault(str(item["loc"][0]) if item["loc"] else "body", []).append(item["msg"])
    return found


@bp.get("")
@login_required
def index() -> Any:
    return _page()


@bp.post("/tokens")
@login_required
def new_token() -> Any:
    """A token acting as the signed-in user (viewers too: a token can do no more than its user)."""
    values: dict[str, Any] = {"name": request.form.get("name", "").strip()}
    if request.form.get("expires_at", "").strip():
        values["expires_at"] = request.form["expires_at"].strip()
    try:
        body = TokenNew.model_validate(values)
    except ValidationError as error:
        return _page(problem="The token was not made; see the fields.", problems=_problems(error), status=422)
    try:
        with transaction() as session:
            user = accounts.user_named(session, g.identity.name)
            made = accounts.issue_token(session, user, body.name, now(), body.expires_at)
            issued = {"id": made.token.id, "name": made.token.name, "text": made.text}
    except StoreError as error:
        refusal = from_store(error, ("name", "expires_at"))
        return _page(problem=refusal.message, problems=refusal.errors, status=refusal.status)
    record("token.create", "ok", body.name, {"id": issued["id"], "prefix": issued["text"][:12]})
    return _page(issued=issued, status=201)


@bp.post("/tokens/<int(max=2147483647):token>/revoke")
@login_required
def revoke(token: int) -> Any:
    try:
        with transaction() as session:
            user = accounts.user_named(session, g.identity.name)
            name = accounts.revoke_token(session, user, token, now()).name
    except StoreError as error:
        flash(str(error), "error")
    else:
        record("token.revoke", "ok", name, {"id": token})
        flash(f"Revoked token {name}.", "ok")
    return redirect(url_for("account.index"))


@bp.post("/users")
@login_required
@admin_only
def new_user() -> Any:
    values = {"name": request.form.get("name", "").strip(), "password": request.form.get("password", ""),
              "admin": "admin" in request.form}
    try:
        body = UserNew.model_validate(values)
    except ValidationError as error:
        return _page(problem="The user was not made; see the fields.", problems=_problems(error), status=422)
    try:
        with transaction() as session:
            accounts.create_user(session, body.name, body.password, now(), admin=body.admin)
    except StoreError as error:
        refusal = from_store(error, ("name", "password", "admin"))
        return _page(problem=refusal.message, problems=refusal.errors, status=refusal.status)
    record("user.create", "ok", body.name, {"admin": body.admin})
    flash(f"Made {'admin' if body.admin else 'user'} {body.name}.", "ok")
    return redirect(url_for("account.index"))


@bp.post("/users/<name>/delete")
@login_required
@admin_only
def delete_user(name: str) -> Any:
    if request.form.get("confirm") != "yes":
        flash(f"Tick the box to confirm that {name} is to be deleted.", "error")
        return redirect(url_for("account.index"))
    try:
        with transaction() as session:
            remove_user_named(session, name)
    except ApiError as refused:
        flash(refused.message, "error")
    except StoreError as error:
        flash(str(error), "error")
    else:
        record("user.delete", "ok", name)
        flash(f"Deleted user {name} and their tokens.", "ok")
    return redirect(url_for("account.index"))


__all__ = ["bp"]

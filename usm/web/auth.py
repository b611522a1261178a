"""Signing in and out with a name and password (a session cookie), throttled per name and per address.

The login page is the one page this module renders; the hub's other pages build on ``security.login_required``
and on the session set here.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, redirect, render_template, request, session

from usm.manager.accounts import authenticate
from usm.web.audit import record
from usm.web.hub import now, state, transaction
from usm.web.throttle import keys_for

bp = Blueprint("auth", __name__)


@bp.get("/login")
def login_page() -> Any:
    return render_template("login.html", message="", name="", next=_local(request.args.get("next")))


@bp.post("/login")
def login() -> Any:
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    target = _local(request.form.get("next"))
    keys = keys_for(name, request.remote_addr or "")
    throttle, moment = state().throttle, now().timestamp()
    wait = throttle.wait(keys, moment)
    if wait > 0:
        record("login", "refused", name, {"reason": "throttled", "wait_s": math.ceil(wait)}, user=name)
        return _page(f"Too many failed sign-ins: try again in {math.ceil(wait)} s.", name, target, 429,
                     {"Retry-After": str(math.ceil(wait))})
    with transaction() as store:
        user = authenticate(store, name, password) if name and password else None
        signed_in = (user.id, user.name) if user is not None else None
    if signed_in is None:
        wait = throttle.failed(keys, moment)
        record("login", "refused", name, {"reason": "wrong name or password"}, user=name)
        later = f" Wait {math.ceil(wait)} s before the next try." if wait > 0 else ""
        return _page(f"Wrong name or password.{later}", name, target, 401)
    throttle.succeeded(keys[:1])
    session.clear()  # a new session at each sign-in (no fixation)
    session.permanent = True
    session["user_id"], session["user"] = signed_in
    record("login", "ok", name, user=name)
    return redirect(target)


@bp.post("/logout")
def logout() -> Any:
    name = session.get("user")
    session.clear()
    if name:
        record("logout", "ok", name, user=name)
    return redirect("/login")


def _page(message: str, name: str, target: str, status: int, headers: dict[str, str] | None = None) -> Any:
    return render_template("login.html", message=message, name=name, next=target), status, headers or {}


def _local(target: str | None) -> str:
    """``target`` if it is a path on this hub, else ``/`` (no open redirect to another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


__all__ = ["bp"]

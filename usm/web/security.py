"""Who is calling, and the protections every request passes through.

A caller is identified either by an API token (``Authorization: Bearer usm_...``; for scripts) or by the signed
session cookie set at sign-in (for people). Cookie-authenticated requests that change something must carry the
session's CSRF token (Flask-WTF's ``CSRFProtect``, as a form field or the ``X-CSRFToken`` header); token requests
are exempt, since a browser never adds that header to a forged cross-site request on its own. A token this process
has seen is not looked up again while the store's users and tokens are unchanged (``usm.web.tokens``). Cookies are
``HttpOnly``, ``SameSite=Lax`` and ``Secure``. CORS headers are sent only for origins configured explicitly,
never ``*``. Every response carries headers that keep pages from being framed or sniffed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import quote

from flask import Flask, Response, current_app, g, redirect, request, session
from flask_wtf.csrf import CSRFProtect

from usm.manager.accounts import token_holder
from usm.manager.store.accounts import User
from usm.web.errors import ApiError, is_api
from usm.web.hub import now, revisions, revisions_in, state, transaction
from usm.web.tokens import Bearer, revision_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SESSION_LIFETIME = timedelta(hours=12)
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")

csrf = CSRFProtect()

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Identity:
    """The caller: a user's name, whether they are an admin, and whether an API token (not a cookie) says so."""

    name: str
    admin: bool
    by_token: bool = False


def init(app: Flask, secure_cookies: bool, cors_origins: list[str]) -> None:
    app.config.update(
        SESSION_COOKIE_NAME="usm_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=secure_cookies,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in ``protect`` below, for cookie-authenticated requests only
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session: a page left open still works
    )
    app.config.setdefault("USM_CONTENT_SECURITY_POLICY", CONTENT_SECURITY_POLICY)
    csrf.init_app(app)
    app.before_request(identify)
    app.before_request(protect)
    app.after_request(harden)
    if cors_origins:
        from flask_cors import CORS

        CORS(app, resources={r"/api/*": {"origins": cors_origins}}, supports_credentials=True,
             allow_headers=["Authorization", "Content-Type", "X-CSRFToken"], max_age=600)


def identify() -> None:
    """Set ``g.identity`` (``None``: anonymous) and ``g.refusal`` (why a presented credential was not taken)."""
    g.identity, g.refusal = None, ""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, text = header.partition(" ")
        if scheme.lower() != "bearer" or not text.strip():
            g.refusal = "the Authorization header must be 'Bearer <token>'"
            return
        bearer = _bearer(text.strip())
        if bearer is None:
            g.refusal = "the API token is unknown, revoked or expired; create a new one"
        else:
            g.identity = Identity(bearer.user, bearer.admin, by_token=True)
        return
    user_id = session.get("user_id")
    if user_id is not None:
        with transaction() as store:
            user = store.get(User, user_id)
            if user is not None and user.name == session.get("user"):
                g.identity = Identity(user.name, user.admin)
            else:
                session.clear()  # the user was deleted: the cookie no longer means anyone


def _bearer(text: str) -> Bearer | None:
    """Who a token acts as: from the tokens this process saw at the current revisions, or from the store."""
    tokens = state().tokens
    current = revisions()
    revision = revision_of(current) if current is not None else None
    if revision is not None and (known := tokens.get(text, revision, now())) is not None:
        return known
    with transaction() as store:
        current = revisions_in(store)
        found = token_holder(store, text, now())
    if found is None:
        return None
    bearer = Bearer(found[0].name, found[0].admin, found[1])
    if current is not None and (revision := revision_of(current)) is not None:
        tokens.keep(text, revision, bearer)
    return bearer


def protect() -> None:
    """Check the CSRF token of a state-changing request that does not come with an API token. An anonymous API
    call is left to ``guard_api``, which answers 401: there is no session to forge."""
    if request.method in SAFE_METHODS or "Authorization" in request.headers:
        return
    if g.identity is None and is_api():
        return
    csrf.protect()


def harden(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", current_app.config["USM_CONTENT_SECURITY_POLICY"])
    if g.get("identity") is not None or session.get("user_id") is not None:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def caller() -> Identity:
    """The identified caller; 401 when there is none."""
    identity = g.get("identity")
    if identity is None:
        raise ApiError(401, g.get("refusal") or "sign in at /login, or send an API token as 'Authorization: "
                       "Bearer <token>'", headers={"WWW-Authenticate": 'Bearer realm="usm"'})
    return identity


def require_admin() -> Identity:
    identity = caller()
    if not identity.admin:
        raise ApiError(403, f"{identity.name} may read but not change anything; an admin can")
    return identity


def for_viewers(view: F) -> F:
    """Let users who are not admins call this state-changing view too (their own tokens, signing out)."""
    view.for_viewers = True  # type: ignore[attr-defined]
    return view


def public(view: F) -> F:
    """Let anyone call this view, signed in or not (the OpenAPI document, the health check)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def login_required(view: F) -> F:
    """For pages: send an anonymous visitor to the login page, coming back here afterwards."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("identity") is None:
            return redirect(f"/login?next={quote(request.full_path.rstrip('?'), safe='/?=&')}")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def guard_api() -> None:
    """Before every API view: identified callers only (but public views), admins only for changes (but views
    for viewers)."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "public", False) or request.method == "OPTIONS":
        return
    identity = caller()
    if request.method not in SAFE_METHODS and not identity.admin and not getattr(view, "for_viewers", False):
        require_admin()


__all__ = ["Identity", "caller", "csrf", "for_viewers", "guard_api", "init", "login_required", "public",
           "require_admin"]

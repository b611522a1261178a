"""The hub's pages: server-rendered HTML over the same service functions as the REST API (``crud`` and the API's
models for the inventory, ``PolicyFiles`` for rules and simulated metrics, ``usm.web.operations`` for actions,
the decision log's index), so a page and an API call can never disagree.

One blueprint per area: ``dashboard`` (the world map), ``inventory`` (list, detail, create, edit and delete of
every stored entity), ``policy`` (the rule and simulated-metric editors), ``operate`` (launching containers,
hosts, nodes, SSH and SFTP through the actions seam), ``records`` (the decision log, the logs),
``workbench`` (the policy-testing UI) and ``account`` (users and API tokens). Every page needs a signed-in
user; every change needs an admin (but one's own API tokens) and the session's CSRF token (``security.protect``
checks it on every POST). Static assets are served from ``usm/web/static`` (nothing from a CDN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, g, redirect, render_template, request, url_for

THEMES = ("light", "dark")
THEME_COOKIE = "usm_theme"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class NavItem:
    title: str
    endpoint: str
    values: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return url_for(self.endpoint, **dict(self.values))


def admin_only(view: F) -> F:
    """For pages that change something: a user who is not an admin gets a 403 page saying so."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        identity = g.get("identity")
        if identity is None or not identity.admin:
            name = identity.name if identity is not None else "you"
            return render_template("message.html", title="Not allowed",
                                   message=f"{name} may read but not change anything; an admin can."), 403
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def back(default: str) -> str:
    """Where to go after a form: the ``next`` field if it is a path on this hub, else ``default``."""
    target = request.form.get("next") or request.args.get("next") or ""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def theme_of() -> str:
    """The theme chosen (a cookie), or "" to follow the browser's preference."""
    chosen = request.cookies.get(THEME_COOKIE, "")
    return chosen if chosen in THEMES else ""


def _theme_bp() -> Blueprint:
    bp = Blueprint("theme", __name__)

    @bp.post("/theme")
    def choose() -> Any:
        """Remember the theme asked for (a year, in a cookie that only styles pages) and go back."""
        theme = request.form.get("theme", "")
        response = redirect(back("/"))
        if theme in THEMES:
            response.set_cookie(THEME_COOKIE, theme, max_age=365 * 86400, samesite="Lax", httponly=True,
                                secure=request.is_secure)
        else:
            response.delete_cookie(THEME_COOKIE)
        return response

    return bp


def blueprints() -> list[Blueprint]:
    from usm.web.pages import account, dashboard, inventory, operate, policy, records, workbench

    return [_theme_bp(), dashboard.bp, inventory.bp, policy.bp, operate.bp, records.bp, workbench.bp, account.bp]


def init(app: Flask) -> None:
    """Register the pages and what every template sees: the navigation, the theme and the caller."""
    from usm.web.pages import inventory, records

    records.log_buffer()
    for blueprint in blueprints():
        app.register_blueprint(blueprint)

    @app.context_processor
    def layout() -> dict[str, Any]:
        return {"theme": theme_of(), "identity": g.get("identity"), "navigation": _navigation(inventory),
                "here": request.path}


def _navigation(inventory: Any) -> list[tuple[str, list[NavItem]]]:
    return [
        ("Overview", [NavItem("Dashboard", "dashboard.index")]),
        ("Inventory", [NavItem(page.title, "inventory.listing", (("path", page.path),))
                       for page in inventory.PAGES.values()]),
        ("Policy", [NavItem("Rules", "policy.listing", (("path", "rules"),)),
                    NavItem("Simulated metrics", "policy.listing", (("path", "simulated-metrics"),)),
                    NavItem("Workbench", "workbench.index")]),
        ("Records", [NavItem("Decision log", "records.decisions"), NavItem("Logs", "records.logs")]),
        ("Operations", [NavItem("SSH and SFTP", "operate.shell"), NavItem("Users and tokens", "account.index")]),
    ]


__all__ = ["THEMES", "admin_only", "back", "blueprints", "init", "theme_of"]

"""The hub: a Flask app over the same store and service functions as the CLI.

``create_app(config)`` builds one app: settings from ``config`` and the environment (``usm.web.settings``), the
session key from its file, the store opened and migrated, an admin created from a password file when asked, the
security layer (``usm.web.security``), the login page (``usm.web.auth``), the API (``usm.web.api``) and the
pages (``usm.web.pages``), behind a short way for API listings already in memory (``usm.web.shortcut``).

To add pages, register a blueprint on the app ``create_app`` returns (or pass ``blueprints`` to it); views reach
the store with ``usm.web.hub.transaction()``, the caller with ``flask.g.identity``, and protect themselves with
``usm.web.security.login_required``. Forms must carry ``{{ csrf_token() }}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask

from usm.manager import accounts
from usm.manager.store.database import open_engine, sessions, upgrade
from usm.web import auth, errors, security
from usm.web.actions import NoActions
from usm.web.hub import EXTENSION, HubState, wall_clock
from usm.web.policyfiles import PolicyFiles
from usm.web.settings import SettingsError, flag, gather, origins, secret_key
from usm.web.throttle import LoginThrottle

MAX_BODY = 8 * 2**20
"""The largest request body taken (an SFTP upload is base64 of at most 4 MiB)."""


def create_app(config: Mapping[str, Any] | None = None, blueprints: Iterable[Blueprint] = ()) -> Flask:
    """A hub app; see the module's documentation and ``usm.web.settings`` for the settings."""
    settings = gather(config)
    app = Flask(__name__, instance_path=settings.get("INSTANCE_PATH"))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update({k: v for k, v in settings.items() if k.isupper()})
    app.config["MAX_CONTENT_LENGTH"] = settings.get("MAX_CONTENT_LENGTH", MAX_BODY)
    app.secret_key = secret_key(Path(settings.get("USM_SECRET_KEY_FILE") or Path(app.instance_path) / "secret_key"))

    engine = open_engine(settings.get("USM_DATABASE") or Path(app.instance_path) / "usm.db")
    upgrade(engine)
    clock = settings.get("USM_CLOCK") or wall_clock
    hub = HubState(engine=engine, sessions=sessions(engine), clock=clock,
                   throttle=settings.get("USM_THROTTLE") or LoginThrottle(),
                   actions=settings.get("USM_ACTIONS") or NoActions(),
                   policy=PolicyFiles(Path(settings.get("USM_POLICY") or "policies")))
    app.extensions[EXTENSION] = hub
    _first_admin(hub, settings)

    security.init(app, secure_cookies=flag(settings.get("USM_SECURE_COOKIES", True), "USM_SECURE_COOKIES"),
                  cors_origins=origins(settings.get("USM_CORS_ORIGINS")))
    errors.register(app)
    from usm.web import api, pages
    from usm.web.shortcut import ListingShortcut

    spec, api_blueprint = api.built(_version())
    app.register_blueprint(auth.bp)
    app.register_blueprint(api_blueprint)
    pages.init(app)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    spec.register(app)
    app.wsgi_app = ListingShortcut(app)  # type: ignore[method-assign]
    return app


def _first_admin(hub: HubState, settings: Mapping[str, Any]) -> None:
    """Create the admin named by USM_ADMIN_NAME with the password in USM_ADMIN_PASSWORD_FILE, when the store has
    no admin yet (later starts leave users alone)."""
    name, password_file = settings.get("USM_ADMIN_NAME"), settings.get("USM_ADMIN_PASSWORD_FILE")
    if not name and not password_file:
        return
    if not (name and password_file):
        raise SettingsError("USM_ADMIN_NAME and USM_ADMIN_PASSWORD_FILE go together: set both, or neither")
    with hub.sessions.begin() as session:
        if accounts.count_admins(session) == 0:
            accounts.create_user(session, name, accounts.read_password_file(password_file), hub.clock(), admin=True)


def _version() -> str:
    try:
        return version("usm")
    except PackageNotFoundError:
        return "0"


__all__ = ["create_app"]

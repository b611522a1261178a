"""Fixtures of the hub's tests, in the pattern of Flask's own: an ``app`` on a fresh SQLite store in a temporary
directory, a copy of the shipped policy, a virtual clock, and clients signed in as an admin (session cookie and
CSRF token), as a viewer, or by API token."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from usm.manager import accounts
from usm.manager.seed import seed_scenario
from usm.manager.store.database import open_engine, sessions, upgrade
from usm.simulator.scenario import load_scenario
from usm.simulator.world import World
from usm.web import create_app
from usm.web.hub import state
from usm.web.simulated import SimulatedActions

ROOT = Path(__file__).resolve().parents[2]
ADMIN, ADMIN_PASSWORD = "ada", "correct horse battery"
VIEWER, VIEWER_PASSWORD = "vic", "staple battery horse"


@dataclass
class VirtualClock:
    """The hub's clock in tests: moves only when told to."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 27, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A copy of the shipped policy (its YAML files, not its tests) that the API may edit."""
    target = tmp_path / "policies"
    target.mkdir()
    for file in sorted((ROOT / "policies").glob("*.yaml")):
        shutil.copyfile(file, target / file.name)
    return target


def settings(tmp_path: Path, clock: VirtualClock, policy_dir: Path, **more: object) -> dict[str, object]:
    return {"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance"), "USM_DATABASE": str(tmp_path / "usm.db"),
            "USM_POLICY": str(policy_dir), "USM_CLOCK": clock, **more}


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    """A store migrated and filled once: two users (an admin and a viewer) and the sock-shop inventory."""
    folder = tmp_path_factory.mktemp("template")
    engine = open_engine(folder / "usm.db")
    upgrade(engine)
    with sessions(engine).begin() as session:
        at = VirtualClock()()
        accounts.create_user(session, ADMIN, ADMIN_PASSWORD, at, admin=True)
        accounts.create_user(session, VIEWER, VIEWER_PASSWORD, at)
        seed_scenario(session, load_scenario("sock-shop"))
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return folder / "usm.db"


@pytest.fixture
def app(tmp_path: Path, clock: VirtualClock, policy_dir: Path, template_store: Path) -> Flask:
    """A hub on its own copy of the template store."""
    shutil.copyfile(template_store, tmp_path / "usm.db")
    hub_app = create_app(settings(tmp_path, clock, policy_dir))
    yield hub_app
    state_of(hub_app).engine.dispose()


@pytest.fixture
def world(app: Flask, clock: VirtualClock) -> World:
    """The sock-shop world behind the app's actions, as ``usm serve`` wires it."""
    hub = state_of(app)
    hub.actions = SimulatedActions(World(load_scenario("sock-shop")), hub.sessions, clock)
    return hub.actions.world


def state_of(app: Flask):
    with app.app_context():
        return state()


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_of(page: bytes) -> str:
    found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF token"
    return found.group(1).decode()


def sign_in(client: FlaskClient, name: str, password: str) -> str:
    """Sign in through the login form; the session's CSRF token."""
    token = csrf_of(client.get("/login").data)
    answer = client.post("/login", data={"name": name, "password": password, "csrf_token": token})
    assert answer.status_code == 302, answer.data
    return client.get("/api/session").get_json()["csrf_token"]


class SignedIn:
    """A client with a session cookie that sends its CSRF token with every change, as the hub's pages do."""

    def __init__(self, client: FlaskClient, csrf: str) -> None:
        self.client, self.csrf = client, csrf

    def get(self, *args, **kwargs):
        return self.client.get(*args, **kwargs)

    def _with_token(self, method: str, *args, **kwargs):
        headers = {"X-CSRFToken": self.csrf, **kwargs.pop("headers", {})}
        return getattr(self.client, method)(*args, headers=headers, **kwargs)

    def post(self, *args, **kwargs):
        return self._with_token("post", *args, **kwargs)

    def patch(self, *args, **kwargs):
        return self._with_token("patch", *args, **kwargs)

    def put(self, *args, **kwargs):
        return self._with_token("put", *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._with_token("delete", *args, **kwargs)


@pytest.fixture
def admin(app: Flask) -> SignedIn:
    client = app.test_client()
    return SignedIn(client, sign_in(client, ADMIN, ADMIN_PASSWORD))


@pytest.fixture
def viewer(app: Flask) -> SignedIn:
    client = app.test_client()
    return SignedIn(client, sign_in(client, VIEWER, VIEWER_PASSWORD))


@pytest.fixture
def token(admin: SignedIn) -> str:
    """An admin's API token, made through the API."""
    answer = admin.post("/api/tokens", json={"name": "tests"})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["token"]

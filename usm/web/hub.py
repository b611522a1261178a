"""What one hub app holds beside Flask's own objects: the store, the clock, the login throttle, the actions'
service and the policy directory. ``create_app`` builds it; views reach it through ``state()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from usm.web.policyfiles import PolicyFiles
from usm.web.throttle import LoginThrottle

EXTENSION = "usm"

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class HubState:
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    throttle: LoginThrottle
    actions: Any  # usm.web.actions.Actions
    policy: PolicyFiles


def state() -> HubState:
    return current_app.extensions[EXTENSION]


def now() -> datetime:
    """The hub's time (injected in tests): aware, UTC."""
    return state().clock()


@contextmanager
def transaction() -> Iterator[Session]:
    """A session in a transaction committed on success and rolled back on any error (so a refused request
    changes nothing)."""
    with state().sessions.begin() as session:
        yield session


__all__ = ["EXTENSION", "Clock", "HubState", "now", "state", "transaction", "wall_clock"]

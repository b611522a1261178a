"""What one hub app holds beside Flask's own objects: the store, the clock, the login throttle, the actions'
service, the policy directory, and what the app keeps between requests (listings, API tokens) while the store's
revisions say it is current. ``create_app`` builds it; views reach it through ``state()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, has_app_context
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from usm.manager.store import revisions as store_revisions
from usm.web.listings import ListingCache
from usm.web.policyfiles import PolicyFiles
from usm.web.throttle import LoginThrottle
from usm.web.tokens import TokenCache

EXTENSION = "usm"
_REVISIONS = "usm_revisions"  # the request's revisions, in flask.g

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
    listings: ListingCache = field(default_factory=ListingCache)
    tokens: TokenCache = field(default_factory=TokenCache)
    tracked: bool | None = None
    """Whether every table of the store keeps its revision (checked on first use): if not, nothing is cached."""
    latest: store_revisions.Latest = field(init=False)
    """The store's revisions as last committed (a cheap read, for every request)."""

    def __post_init__(self) -> None:
        self.latest = store_revisions.Latest(self.engine)


def state() -> HubState:
    return current_app.extensions[EXTENSION]


def now() -> datetime:
    """The hub's time (injected in tests): aware, UTC."""
    return state().clock()


@contextmanager
def transaction() -> Iterator[Session]:
    """A session in a transaction committed on success and rolled back on any error (so a refused request
    changes nothing). The request's revisions are read again afterwards, so it sees its own writes."""
    try:
        with state().sessions.begin() as session:
            yield session
    finally:
        if has_app_context():
            g.pop(_REVISIONS, None)


def revisions() -> Mapping[str, int] | None:
    """The store's table revisions (``usm.manager.store.revisions``) as this request first read them; ``None``
    when the store does not keep them for every table, and nothing may be served from memory."""
    if _REVISIONS not in g:
        hub = state()
        if hub.tracked is None:
            with hub.engine.connect() as connection:
                _read(connection)
        setattr(g, _REVISIONS, hub.latest() if hub.tracked else None)
    return g.get(_REVISIONS)


def revisions_in(session: Session) -> Mapping[str, int] | None:
    """The revisions as ``session``'s transaction sees them: read them before the rows they guard."""
    return _read(session.connection())


def _read(connection: Connection) -> Mapping[str, int] | None:
    hub = state()
    if hub.tracked is None:
        missing = store_revisions.untracked(connection)
        if missing:
            current_app.logger.warning("the store keeps no revision of %s (a migration dropped its triggers?): the "
                                       "hub reads everything from the store", ", ".join(missing))
        hub.tracked = not missing
    return store_revisions.read(connection) if hub.tracked else None


__all__ = ["EXTENSION", "Clock", "HubState", "now", "revisions", "revisions_in", "state", "transaction",
           "wall_clock"]

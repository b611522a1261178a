"""The audit trail of the hub: who did what, from where, and how it ended.

Entries are written in their own transaction, after the action: an action that fails and rolls its own
changes back is still recorded, as failed.
"""

from __future__ import annotations

from typing import Any

from flask import g, request

from usm.manager.accounts import audit
from usm.web.hub import now, transaction


def record(action: str, outcome: str, target: str = "", detail: Any = None, user: str | None = None) -> None:
    """Record ``action`` on ``target`` by the caller (or ``user``, for a sign-in) with ``outcome``: ok, refused
    or failed."""
    identity = g.get("identity")
    who = user if user is not None else (identity.name if identity is not None else "")
    with transaction() as store:
        audit(store, now(), who, action, outcome, target, detail, request.remote_addr or "")


__all__ = ["record"]

"""Who the API tokens seen lately act as, kept while the users and tokens tables are unchanged, so that a request
with a token known to this process costs no query of its own (the revisions the request reads anyway say whether
a token was revoked, a user deleted or made an admin since: ``usm.manager.store.revisions``). Expiry is checked
against the hub's clock at every request. Tokens are kept by their SHA-256 digest, never as their text, and only
valid ones (an unknown token is looked up every time: keeping them would let anyone fill the memory).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

TABLES = ("api_tokens", "users")
"""What a token's answer is read from."""

DEFAULT_SIZE = 1024


@dataclass(frozen=True)
class Bearer:
    """The user a token acts as, and until when (``None``: until it is revoked)."""

    user: str
    admin: bool
    expires_at: datetime | None


def revision_of(revisions: Mapping[str, int]) -> tuple[int, ...] | None:
    """The revisions a token's answer depends on; ``None`` when the store does not keep them all."""
    try:
        return tuple(revisions[table] for table in TABLES)
    except KeyError:
        return None


class TokenCache:
    """At most ``size`` valid tokens by digest, the least recently used dropped first. Safe to share between
    threads."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be 1 or more")
        self.size = size
        self._entries: OrderedDict[str, tuple[tuple[int, ...], Bearer]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str, revision: tuple[int, ...], at: datetime) -> Bearer | None:
        """Who ``text`` acts as, if it was valid at ``revision`` and has not expired at ``at``; ``None``: look it
        up in the store."""
        digest = _digest(text)
        with self._lock:
            found = self._entries.get(digest)
            if found is None or found[0] != revision:
                return None
            self._entries.move_to_end(digest)
        bearer = found[1]
        return bearer if bearer.expires_at is None or bearer.expires_at > at else None

    def keep(self, text: str, revision: tuple[int, ...], bearer: Bearer) -> None:
        with self._lock:
            digest = _digest(text)
            self._entries.pop(digest, None)
            self._entries[digest] = (revision, bearer)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["TABLES", "Bearer", "TokenCache", "revision_of"]

"""Login throttling: after a few failed sign-ins, a name or an address waits longer and longer before it may try
again (the original accepted unlimited guesses against ``admin/admin``, §13 item 22).

Pure bookkeeping over times given by the caller (seconds): the hub passes its injected clock, tests a virtual
one. Each key (``user:alice``, ``address:127.0.0.1``) counts its own failures; the ``limit``-th failure in a
row locks the key for ``base`` seconds, and each further one for twice as long as the one before, up to ``cap``. Keys are kept until
``forget`` seconds after their last failure, so memory stays bounded by the keys that failed recently.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class LoginThrottle:
    """Failed sign-ins per key, and how long each key must wait; safe to share between request threads."""

    def __init__(self, limit: int = 5, base: float = 30.0, cap: float = 900.0, forget: float = 3600.0,
                 prune_above: int = 4096) -> None:
        if limit < 1 or base <= 0 or cap < base or forget < cap:
            raise ValueError("need limit >= 1, 0 < base <= cap <= forget")
        self.limit, self.base, self.cap, self.forget = limit, base, cap, forget
        self._prune_above = prune_above
        self._keys: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def wait(self, keys: Iterable[str], now: float) -> float:
        """Seconds until every key in ``keys`` may try again (0: now)."""
        with self._lock:
            return max((max(0.0, f.locked_until - now) for k in keys if (f := self._keys.get(k))), default=0.0)

    def failed(self, keys: Iterable[str], now: float) -> float:
        """Count a failed sign-in for each key; the seconds the keys must now wait."""
        with self._lock:
            if len(self._keys) > self._prune_above:
                self._prune(now)
            longest = 0.0
            for key in keys:
                record = self._keys.get(key)
                if record is None or now - record.last >= self.forget:
                    record = self._keys[key] = _Failures(0, now, now)
                record.count += 1
                record.last = now
                delay = self.delay(record.count)
                record.locked_until = now + delay
                longest = max(longest, delay)
            return longest

    def succeeded(self, keys: Iterable[str]) -> None:
        """Forget the failures of ``keys`` (the user who just signed in; not the address, which others share)."""
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)

    def delay(self, failures: int) -> float:
        """The lock after ``failures`` consecutive failures: none before ``limit``, then doubling."""
        if failures < self.limit:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - self.limit, 64))

    def _prune(self, now: float) -> None:
        stale = [k for k, f in self._keys.items() if now - f.last >= self.forget and f.locked_until <= now]
        for key in stale:
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)


def keys_for(user: str, address: str) -> tuple[str, str]:
    """The throttle keys of a sign-in by ``user`` from ``address``."""
    return f"user:{user.casefold()}", f"address:{address}"


__all__ = ["LoginThrottle", "keys_for"]

"""Listings kept in memory between writes: a repeated listing costs a slice of bytes instead of two queries, and
is never stale.

A listing is every item an entity's filters select, in order, serialized once: a page of it is one slice of its
bytes, whatever the page's ``limit`` and ``offset`` (200 clients reading random pages of 10,000 containers share
one listing per process). Each listing is kept with the revisions of the tables it was read from
(``usm.manager.store.revisions``), read in the same transaction before the rows, and served only while those
revisions are still current: a write anywhere (this process, another worker, a manager, psql) moves a revision
on at its commit, and the next request builds the listing again.

Building a listing reads all its rows (~0.1 s for 10,000 containers), a page two small queries (~4 ms): a
listing is built by one request at a time (the others wait for it, ``BUILD_WAIT`` seconds at most), once enough
requests have missed it to make building worth it (``ListingCache``: a store that changes between most requests
is paged from the store, as without the cache), and only when it has at most ``largest`` items. Listings are
dropped least recently used first to keep their bytes within ``budget``.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter

DEFAULT_BUDGET = 64 * 2**20
"""Bytes of listings one process keeps (10,000 containers take ~1.3 MB)."""

DEFAULT_BUILD_AFTER = 2
DEFAULT_LARGEST = 100_000
BUILD_WAIT = 5.0
"""Seconds a request waits for a listing another request is building before reading its page from the store."""

Revision = tuple[int, ...]

_ITEM = TypeAdapter(dict[str, Any])
"""Serializes an item as compact JSON (pydantic's serializer: ~2 µs an item, ``json.dumps`` ~7 µs)."""


@dataclass(frozen=True)
class Listing:
    """Every item of one listing, each as JSON, joined by commas in ``body``; item ``i`` starts at ``starts[i]``,
    and ``starts`` ends one past the end of ``body`` (as if a comma followed the last item)."""

    body: bytes
    starts: array

    @property
    def total(self) -> int:
        return len(self.starts) - 1

    @property
    def size(self) -> int:
        """The memory it holds, in bytes."""
        return sys.getsizeof(self.body) + sys.getsizeof(self.starts)

    def page(self, limit: int, offset: int) -> bytes:
        """The API's answer for one page: ``{"items": [...], "total", "limit", "offset"}``."""
        first, last = min(offset, self.total), min(offset + limit, self.total)
        items = self.body[self.starts[first]:self.starts[last] - 1] if last > first else b""
        return envelope(items, self.total, limit, offset)


def listing_of(items: Iterable[Mapping[str, Any]]) -> Listing:
    """A listing of ``items`` (as the API shows them), serialized."""
    parts, starts, position = [], array("q"), 0
    for item in items:
        part = _ITEM.dump_json(item)
        parts.append(part)
        starts.append(position)
        position += len(part) + 1
    starts.append(position)
    return Listing(b",".join(parts), starts)


def page_of(items: Iterable[Mapping[str, Any]], total: int, limit: int, offset: int) -> bytes:
    """The API's answer for a page read straight from the store, in the same form as ``Listing.page``."""
    return envelope(b",".join(_ITEM.dump_json(item) for item in items), total, limit, offset)


def envelope(items: bytes, total: int, limit: int, offset: int) -> bytes:
    return b'{"items":[%b],"total":%d,"limit":%d,"offset":%d}' % (items, total, limit, offset)


def etag(key: Hashable, revision: Revision, limit: int, offset: int, shape: str) -> str:
    """The entity tag of a page: the same for the same listing, revisions, page and ``shape`` (what the items
    look like), so a client that has the page can ask whether it changed (``If-None-Match``) without receiving
    it again."""
    return f"{_listing_tag(key, revision, shape)}-{limit}-{offset}"


@lru_cache(maxsize=1024)
def _listing_tag(key: Hashable, revision: Revision, shape: str) -> str:
    return hashlib.sha256(repr((shape, key, revision)).encode()).hexdigest()[:32]


ROWS_PER_PAGE_READ = 300
"""A page read from the store (~4 ms) costs about as much as building 300 items of a listing (~13 µs each)."""


@dataclass
class _Pending:
    """No listing yet at ``revision``: how many requests missed it, whether one of them is building it or found
    it too large, and what the listing before it showed: how many items it had, and whether it served enough
    pages to pay for its building."""

    revision: Revision
    misses: int = 0
    building: bool = False
    too_large: bool = False
    rows: int | None = None
    paid_off: bool = True

    size = 200  # about what the entry holds, for the budget


@dataclass
class _Slot:
    entry: Listing | _Pending
    revision: Revision
    hits: int = 0


class ListingCache:
    """The listings of one process, by key (the entity and its filters), each at the revisions it was read at.
    Safe to share between threads.

    When should a missing listing be built? At once (after ``build_after`` misses) while the listings of the
    same key have served pages enough to pay for their building; otherwise, as in renting skis before buying
    them, only once the pages read from the store at these revisions have cost as much as building it would
    (``ROWS_PER_PAGE_READ``): never more than about twice the cheaper of the two, however often the store
    changes."""

    def __init__(self, budget: int = DEFAULT_BUDGET, build_after: int = DEFAULT_BUILD_AFTER,
                 largest: int = DEFAULT_LARGEST) -> None:
        if budget < 1 or build_after < 1 or largest < 0:
            raise ValueError("budget and build_after must be 1 or more, largest 0 or more")
        self.budget, self.build_after, self.largest = budget, build_after, largest
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when a claimed listing is kept or given up

    @property
    def bytes(self) -> int:
        """The memory the kept listings hold, in bytes (at most ``budget``)."""
        return self._bytes

    def __len__(self) -> int:
        return sum(isinstance(slot.entry, Listing) for slot in self._slots.values())

    def get(self, key: Hashable, revision: Revision) -> Listing | None:
        """The listing kept for ``key`` at ``revision``; ``None`` (and one more miss counted) when there is none."""
        with self._lock:
            found = self._kept(key, revision)
            if found is not None:
                return found
            slot = self._slots.get(key)
            if slot is not None and slot.revision == revision:
                assert isinstance(slot.entry, _Pending)
                pending = slot.entry
            else:
                pending = _Pending(revision, **self._history(slot))
            pending.misses += 1
            self._put(key, revision, pending)
            return None

    def peek(self, key: Hashable, revision: Revision) -> Listing | None:
        """The listing kept for ``key`` at ``revision``, if any, counting no miss (for a caller that goes the
        long way, through ``get``, when there is none)."""
        with self._lock:
            return self._kept(key, revision)

    def wait(self, key: Hashable, revision: Revision, timeout: float) -> Listing | None:
        """The listing for ``key`` at ``revision`` once the caller that claimed it has kept it, waiting at most
        ``timeout`` seconds; ``None`` when nobody is building it at that revision or it was not kept. (Building
        takes one request ~0.1 s for 10,000 containers; the requests that would meanwhile read their pages from
        the store one by one would cost more, all together, than waiting.)"""
        deadline = time.monotonic() + timeout
        with self._settled:
            while True:
                slot = self._slots.get(key)
                if slot is None or slot.revision != revision:
                    return None
                if isinstance(slot.entry, Listing):
                    return self._kept(key, revision)
                if not slot.entry.building or not self._settled.wait(deadline - time.monotonic()):
                    return None

    def claim(self, key: Hashable, revision: Revision) -> bool:
        """Whether the caller, having found no listing, should build it now (see the class's documentation): no
        other caller is building it, and it was not found too large. A caller that gets ``True`` must end with
        ``keep`` or ``give_up``."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None or slot.revision != revision or not isinstance(slot.entry, _Pending):
                return False
            pending = slot.entry
            needed = self.build_after
            if not pending.paid_off and pending.rows is not None:
                needed = max(needed, -(-pending.rows // ROWS_PER_PAGE_READ))
            if pending.building or pending.too_large or pending.misses < needed:
                return False
            pending.building = True
            return True

    def keep(self, key: Hashable, revision: Revision, listing: Listing) -> None:
        """Keep ``listing``, read at ``revision``, for ``key`` (unless it alone would exceed the budget)."""
        with self._settled:
            if listing.size > self.budget:
                self._put(key, revision, _Pending(revision, too_large=True))
            else:
                self._put(key, revision, listing)
            self._settled.notify_all()

    def give_up(self, key: Hashable, revision: Revision, too_large: bool = False) -> None:
        """The claimed listing was not built (its rows are too many, or the build failed)."""
        with self._settled:
            slot = self._slots.get(key)
            if slot is not None and slot.revision == revision and isinstance(slot.entry, _Pending):
                slot.entry.building = False
                slot.entry.too_large = too_large
            self._settled.notify_all()

    def _kept(self, key: Hashable, revision: Revision) -> Listing | None:
        slot = self._slots.get(key)
        if slot is None or slot.revision != revision or not isinstance(slot.entry, Listing):
            return None
        slot.hits += 1
        self._slots.move_to_end(key)
        return slot.entry

    @staticmethod
    def _history(slot: _Slot | None) -> dict[str, Any]:
        """What the entry for older revisions tells about building the next listing."""
        if slot is None:
            return {}
        if isinstance(slot.entry, Listing):
            return {"rows": slot.entry.total, "paid_off": slot.hits * ROWS_PER_PAGE_READ >= slot.entry.total}
        return {"rows": slot.entry.rows, "paid_off": False}

    def _put(self, key: Hashable, revision: Revision, entry: Listing | _Pending) -> None:
        old = self._slots.pop(key, None)
        if old is not None:
            self._bytes -= old.entry.size
        self._slots[key] = _Slot(entry, revision)
        self._bytes += entry.size
        while self._bytes > self.budget and len(self._slots) > 1:
            _, dropped = self._slots.popitem(last=False)
            self._bytes -= dropped.entry.size


__all__ = ["BUILD_WAIT", "DEFAULT_BUDGET", "ROWS_PER_PAGE_READ", "Listing", "ListingCache", "envelope", "etag", "listing_of", "page_of"]

"""Request counts per service and location, in time buckets, in memory of a fixed size.

The original monitor appended every posted item to a list that was never pruned, so its memory grew with the
request rate for ever (original-system.md §13 item 27). Here a *point* is a (service, rounded location) pair and
owns one row of a preallocated ``max_points x buckets`` matrix of counts; a column is a time bucket of
``resolution`` seconds, used as a ring over the retention. Posting adds to a cell; time moving on clears the
columns that fell out of the retention and frees the rows left empty. Memory is therefore bounded by
``max_points * buckets * 8`` bytes whatever the request rate, and a window is a sum over a few columns.

When every row is taken, a new location of a service is merged into that service's nearest point (its count is
kept; only its position is approximated, by at most the distance to that point). A service that has no point
yet cannot be merged anywhere, so the request is refused (:class:`TableFull`) and nothing of it is kept.

Time is always a parameter (seconds, e.g. the server's wall clock); nothing here reads a clock. A time earlier
than one already seen counts as that latest time, so a clock stepping back never revives pruned buckets.
Not thread-safe: the server calls it from its one event-loop thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from usm.geo.arrays import unit_vectors
from usm.geo.sphere import Coordinates, to_unit_vector

Key = tuple[str, float, float]  # service, rounded latitude, rounded longitude


@dataclass(frozen=True)
class RequestCount:
    """One posted item: ``count`` requests to ``service`` came from around (latitude, longitude)."""

    service: str
    latitude: float
    longitude: float
    count: int


@dataclass(frozen=True)
class LocationCount:
    """The requests of one service from one (rounded) location within a window."""

    latitude: float
    longitude: float
    count: int


@dataclass(frozen=True)
class Window:
    """The counts of a window: every bucket that overlaps ``(until - interval, until]``.

    Whole buckets are summed, so the counts cover ``[since, until]``: up to one ``resolution`` more than asked.
    """

    interval: float
    since: float
    until: float
    services: dict[str, tuple[LocationCount, ...]]


@dataclass(frozen=True)
class Added:
    """What one :meth:`LocationCounts.add` kept: the items counted, and how many of them were merged into a
    nearby point because the table was full."""

    items: int
    merged: int


class TableFull(Exception):
    """Every point is taken and a service with no point yet posted: nothing of the request was kept."""

    def __init__(self, service: str, max_points: int) -> None:
        self.service = service
        self.max_points = max_points
        super().__init__(
            f"all {max_points} location points are in use and service '{service}' has none to merge into, so "
            "nothing of this request was kept; points are freed as their counts leave the retention (or start "
            "the monitor with a larger --max-points or a shorter --retention)")


class LocationCounts:
    """Counts of requests per (service, rounded location) over the last ``retention`` seconds.

    ``precision`` is the number of decimals locations are rounded to (2: about 1 km), ``resolution`` the width of
    a time bucket in seconds: windows are exact to one bucket.
    """

    def __init__(self, retention: float, max_points: int, resolution: float = 5.0, precision: int = 2) -> None:
        if not (math.isfinite(retention) and retention > 0):
            raise ValueError(f"the retention must be a positive number of seconds, not {retention!r}")
        if not (math.isfinite(resolution) and 0 < resolution <= retention):
            raise ValueError(f"the resolution must be a positive number of seconds up to the retention "
                             f"({retention:g} s), not {resolution!r}")
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, not {max_points!r}")
        if not 0 <= precision <= 6:
            raise ValueError(f"the precision must be 0 to 6 decimals, not {precision!r}")
        self.retention = float(retention)
        self.resolution = float(resolution)
        self.precision = precision
        self.max_points = max_points
        self.buckets = math.ceil(retention / resolution) + 1  # every bucket that can overlap the retention
        self._counts = np.zeros((max_points, self.buckets), dtype=np.int64)
        self._latitude = np.zeros(max_points)
        self._longitude = np.zeros(max_points)
        self._row_of: dict[Key, int] = {}
        self._key_of: list[Key | None] = [None] * max_points
        self._rows_of_service: dict[str, set[int]] = {}
        self._vectors_of_service: dict[str, tuple[list[int], np.ndarray]] = {}  # for merging; dropped on change
        self._free: list[int] = []  # rows freed by pruning, reused before new ones
        self._top = 0  # rows [0, _top) have been used at some time
        self._newest: int | None = None  # the newest bucket seen
        self.accepted = 0
        self.merged = 0
        self.refused = 0

    @property
    def points(self) -> int:
        return len(self._row_of)

    @property
    def memory_bound(self) -> int:
        """Bytes of the count matrix: the most the counts can ever take."""
        return self._counts.nbytes

    # --- time ---------------------------------------------------------------------------------

    def _bucket(self, at: float) -> int:
        """The bucket of time ``at``, never older than the newest seen (the clock may step back)."""
        if not math.isfinite(at):
            raise ValueError(f"a time must be a finite number of seconds, not {at!r}")
        bucket = math.floor(at / self.resolution)
        return bucket if self._newest is None else max(bucket, self._newest)

    def advance(self, at: float) -> None:
        """Move the ring to ``at``: clear the buckets that left the retention and free the points left empty."""
        bucket = self._bucket(at)
        if self._newest is not None and bucket > self._newest:
            expired = range(self._newest + 1, min(bucket, self._newest + self.buckets) + 1)
            self._counts[:self._top, [b % self.buckets for b in expired]] = 0
            self._free_empty_rows()
        self._newest = bucket

    def _free_empty_rows(self) -> None:
        empty = np.flatnonzero(~self._counts[:self._top].any(axis=1))
        for row in empty.tolist():
            key = self._key_of[row]
            if key is None:
                continue
            self._key_of[row] = None
            del self._row_of[key]
            self._vectors_of_service.pop(key[0], None)
            service_rows = self._rows_of_service[key[0]]
            service_rows.discard(row)
            if not service_rows:
                del self._rows_of_service[key[0]]
            self._free.append(row)

    # --- adding -------------------------------------------------------------------------------

    def key(self, item: RequestCount) -> Key:
        """The point an item counts towards: its service and its location rounded to ``precision`` decimals."""
        return (item.service, round(item.latitude, self.precision) + 0.0, round(item.longitude, self.precision) + 0.0)

    def add(self, items: Sequence[RequestCount], at: float) -> Added:
        """Count ``items`` at time ``at``: all of them, or (raising :class:`TableFull`) none."""
        self.advance(at)
        try:
            rows, new, merged = self._place(items)
        except TableFull:
            self.refused += len(items)
            raise
        self._claim(new)
        column = self._newest % self.buckets
        for row, item in zip(rows, items):
            if row is not None:
                self._counts[row, column] += item.count
        self.accepted += len(items)
        self.merged += merged
        return Added(len(items), merged)

    def _place(self, items: Iterable[RequestCount]) -> tuple[list[int | None], dict[Key, int], int]:
        """The row of each item (None for a count of 0), the rows its new points would take, and how many items
        were merged into a nearby point; changes nothing, so a refused request leaves no trace."""
        new: dict[Key, int] = {}
        spare = len(self._free) + self.max_points - self._top
        rows: list[int | None] = []
        merged = 0
        for item in items:
            if item.count == 0:
                rows.append(None)
                continue
            key = self.key(item)
            row = self._row_of.get(key, new.get(key))
            if row is None and len(new) < spare:
                row = new[key] = self._spare_row(len(new))
            if row is None:
                row = self._nearest(key, new)
                merged += 1
            rows.append(row)
        return rows, new, merged

    def _spare_row(self, taken: int) -> int:
        """The row the next new point takes when ``taken`` spare rows are already spoken for: freed rows (newest
        first), then rows never used."""
        if taken < len(self._free):
            return self._free[-1 - taken]
        return self._top + taken - len(self._free)

    def _nearest(self, key: Key, new: dict[Key, int]) -> int:
        """The row of the point of ``key``'s service nearest to it (great-circle), among the kept ones and those
        this request is adding. The nearest has the largest dot product of unit vectors; the kept points'
        vectors are cached per service, since a full table changes only when pruning frees rows."""
        service = key[0]
        rows, vectors = self._service_vectors(service)
        pending = [(k, r) for k, r in new.items() if k[0] == service]
        if pending:
            rows = rows + [r for _, r in pending]
            vectors = np.concatenate([vectors, unit_vectors([k[1] for k, _ in pending], [k[2] for k, _ in pending])])
        if not rows:
            raise TableFull(service, self.max_points)
        return rows[int(np.argmax(vectors @ np.asarray(to_unit_vector(Coordinates(key[1], key[2])))))]

    def _service_vectors(self, service: str) -> tuple[list[int], np.ndarray]:
        cached = self._vectors_of_service.get(service)
        if cached is None:
            rows = sorted(self._rows_of_service.get(service, ()))
            cached = self._vectors_of_service[service] = (rows, unit_vectors(self._latitude[rows],
                                                                              self._longitude[rows]))
        return cached

    def _claim(self, new: dict[Key, int]) -> None:
        """Give each new point its row (as :meth:`_spare_row` chose them)."""
        from_free = min(len(new), len(self._free))
        del self._free[len(self._free) - from_free:]
        self._top += len(new) - from_free
        for key, row in new.items():
            self._row_of[key] = row
            self._key_of[row] = key
            self._latitude[row], self._longitude[row] = key[1], key[2]
            self._rows_of_service.setdefault(key[0], set()).add(row)
            self._vectors_of_service.pop(key[0], None)

    # --- reading ------------------------------------------------------------------------------

    def window(self, interval: float | None, at: float) -> Window:
        """The counts per service and location over the last ``interval`` seconds (the retention when None)."""
        interval = self.retention if interval is None else interval
        if not (math.isfinite(interval) and 0 < interval <= self.retention):
            raise ValueError(f"the interval must be a number of seconds above 0 and at most the retention "
                             f"({self.retention:g} s), not {interval!r}")
        self.advance(at)
        until = max(float(at), self._newest * self.resolution)
        first = max(math.floor((until - interval) / self.resolution), self._newest - self.buckets + 1)
        columns = [b % self.buckets for b in range(first, self._newest + 1)]
        totals = self._counts[:self._top, columns].sum(axis=1)
        services: dict[str, list[LocationCount]] = {}
        for row in np.flatnonzero(totals).tolist():
            service, latitude, longitude = self._key_of[row]  # type: ignore[misc] - a row with counts has a key
            services.setdefault(service, []).append(LocationCount(latitude, longitude, int(totals[row])))
        return Window(interval, first * self.resolution, until,
                      {s: tuple(sorted(points, key=lambda p: (p.latitude, p.longitude)))
                       for s, points in sorted(services.items())})


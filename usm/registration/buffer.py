"""Request locations waiting to be sent to the request-location monitor (pure, bounded).

Every look-up through the sidecar counts one request of the looked-up service from the caller's place; posted
``/metrics`` items add theirs. Counts of the same service at the same place are merged, so the buffer holds at
most one entry per (service, place) whatever the request rate, and at most ``max_points`` of those.

The original sent the buffer and cleared it concurrently, losing what arrived in between (§7.2, §13 item 27).
Here :meth:`take` hands the whole content over and leaves an empty buffer in one step, and a send that fails
gives its items back with :meth:`put_back`, so a monitor that is briefly down loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from usm.locationmonitor.counts import RequestCount

MAX_POINTS = 10_000


@dataclass
class RequestBuffer:
    max_points: int = MAX_POINTS
    dropped: int = 0  # requests not kept because the buffer was full (the monitor was unreachable for long)
    _counts: dict[tuple[str, float, float], int] = field(default_factory=dict)

    def add(self, service: str, latitude: float, longitude: float, count: int = 1) -> bool:
        """Count ``count`` requests; False (and counted in ``dropped``) when a new point does not fit."""
        key = (service, latitude, longitude)
        if key in self._counts:
            self._counts[key] += count
            return True
        if len(self._counts) >= self.max_points:
            self.dropped += count
            return False
        self._counts[key] = count
        return True

    def add_all(self, counts: Iterable[RequestCount]) -> None:
        for c in counts:
            self.add(c.service, c.latitude, c.longitude, c.count)

    def take(self) -> list[RequestCount]:
        """Everything buffered, leaving the buffer empty."""
        counts, self._counts = self._counts, {}
        return [RequestCount(s, lat, lon, n) for (s, lat, lon), n in counts.items() if n > 0]

    def put_back(self, counts: Iterable[RequestCount]) -> None:
        """Return counts a send could not deliver, merged with what arrived meanwhile."""
        self.add_all(counts)

    def __len__(self) -> int:
        return len(self._counts)


def as_items(counts: Iterable[RequestCount]) -> list[dict[str, object]]:
    """The monitor's wire format (``POST /metrics``)."""
    return [{"service": c.service, "latitude": c.latitude, "longitude": c.longitude, "count": c.count}
            for c in counts]

"""Where each service's requests came from: the control loop's client of the request-location monitors.

One GET per monitor (``/metrics?interval=SECONDS``), merged into ``RequestLocations`` (service -> ((Coordinates,
count), ...)). Two things the original got wrong are fixed here (original-system.md §13 item 19, §4.3):

* The window is always sent: the caller passes its request window on every call, and the monitor's answer is
  checked to cover it, so the loop never silently reads some other default window.
* A monitor that cannot be read raises :class:`MonitorUnavailable` naming it and why; an unreachable or broken
  monitor never looks like "no requests", which would make the loop place replicas as if nobody called.

Locations at latitude or longitude 0 are kept (the original skipped them, dropping the Gulf of Guinea and
everything on the Greenwich meridian or the equator).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

import httpx

from usm.geo.sphere import Coordinates
from usm.manager.ports import RequestLocations

DEFAULT_TIMEOUT = 5.0


class MonitorUnavailable(RuntimeError):
    """A request-location monitor did not answer, or answered something that is not a window of counts."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"request-location monitor {url}: {reason}")


class RequestLocationsClient:
    """Reads the counts of the last ``interval`` seconds from one or more monitors (``http://host:port``).

    With several monitors (one per region, say) they are asked side by side and their counts added up; if any
    cannot be read the whole call fails, since a partial picture would pull placements towards the regions that
    happened to answer. Each monitor has a connection pool of its own: the threads that ask them side by side
    share no sockets, so a monitor that dies mid-call fails its own request only.
    """

    def __init__(self, urls: str | Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.urls = (urls,) if isinstance(urls, str) else tuple(urls)
        if not self.urls:
            raise ValueError("give at least one request-location monitor URL")
        self.clients = {url: httpx.Client(timeout=timeout) for url in dict.fromkeys(self.urls)}

    def locations(self, interval: float) -> RequestLocations:
        """The request locations of every service over the last ``interval`` seconds."""
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"the request window must be a positive number of seconds, not {interval!r}")
        if len(self.urls) == 1:
            return merge([self.window(self.urls[0], interval)])
        with ThreadPoolExecutor(max_workers=min(8, len(self.urls))) as pool:
            return merge(list(pool.map(lambda url: self.window(url, interval), self.urls)))

    def window(self, url: str, interval: float) -> Mapping[str, Any]:
        """One monitor's answer for the window, checked."""
        client = self.clients[url]
        try:
            response = client.get(f"{url.rstrip('/')}/metrics", params={"interval": repr(float(interval))})
        except httpx.TimeoutException:
            raise MonitorUnavailable(url, f"no answer within {client.timeout.read:g} s") from None
        except httpx.HTTPError as error:
            raise MonitorUnavailable(url, f"cannot be reached ({type(error).__name__}: {error})") from None
        if response.status_code != 200:
            raise MonitorUnavailable(url, f"answered HTTP {response.status_code}: {_error_of(response)}")
        try:
            return checked_window(response.json(), interval)
        except ValueError as invalid:
            raise MonitorUnavailable(url, f"answered something that is not a window of counts: {invalid}") from None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class NotAWindow(ValueError):
    """A monitor's answer that is not a window of counts covering what was asked."""


def checked_window(body: Any, interval: float) -> Mapping[str, Any]:
    """``body`` if it is a monitor's window covering ``interval`` seconds; :class:`NotAWindow` saying what is off."""
    if not isinstance(body, dict) or not isinstance(body.get("services"), dict):
        raise NotAWindow("no 'services' mapping")
    covered = body.get("interval")
    if not isinstance(covered, (int, float)) or covered < interval:
        raise NotAWindow(f"it covers {covered!r} s where {interval:g} s were asked")
    for service, points in body["services"].items():
        if not isinstance(points, list) or not all(_is_point(p) for p in points):
            raise NotAWindow(f"the points of service {service!r} are not [{{latitude, longitude, count}}]")
    return body


def merge(windows: Iterable[Mapping[str, Any]]) -> RequestLocations:
    """The counts of several monitors' windows added up per service and location."""
    totals: dict[str, dict[Coordinates, float]] = {}
    for window in windows:
        for service, points in window["services"].items():
            service_totals = totals.setdefault(service, {})
            for point in points:
                where = Coordinates(float(point["latitude"]), float(point["longitude"]))
                service_totals[where] = service_totals.get(where, 0.0) + float(point["count"])
    return {service: tuple(points.items()) for service, points in sorted(totals.items())}


def _is_point(point: Any) -> bool:
    if not isinstance(point, dict):
        return False
    values = (point.get("latitude"), point.get("longitude"), point.get("count"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    latitude, longitude, count = values
    return -90 <= latitude <= 90 and -180 <= longitude <= 180 and count >= 0


def _error_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text[:200]))
    except ValueError:
        return response.text[:200] or response.reason_phrase

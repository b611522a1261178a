"""The request-location monitor's HTTP API (aiohttp), over one :class:`LocationCounts`.

* ``POST /metrics``: one item or a list of items ``{service, latitude, longitude, count}``. 200 with
  ``{"accepted": n, "merged": m}``; 400 with ``{"error", "errors": [{index, field, message}]}`` for a bad body;
  503 when the table of points is full for a new service (see ``counts``). Either way a refused request left
  nothing behind.
* ``GET /metrics?interval=SECONDS``: the counts per service and location over the last ``interval`` seconds
  (the whole retention without it), with the span they actually cover (``since``, ``until``).
* ``GET /health``: liveness and the table's state.

Why aiohttp, in one process: the counts live in this process's memory, so several worker processes would each
see a part of them; a single Flask process (WSGI, threads, the GIL) spent about 0.8-0.9 ms of CPU per POST where
aiohttp spends about 0.25 ms, which is the difference between missing and meeting 2,000 POST/s on a core (numbers
in docs/decisions.md). Handlers never await between reading and updating the counts, so every request is applied
whole, in arrival order, without a lock: there is none to deadlock on (the original's bug, §13 item 27).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from usm.locationmonitor.counts import LocationCounts, TableFull, Window
from usm.locationmonitor.items import InvalidItems, parse_items

Clock = Callable[[], float]

COUNTS: web.AppKey[LocationCounts] = web.AppKey("counts", LocationCounts)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Callable[[], float])
MAX_BODY = 4 * 1024 * 1024  # 10,000 items of ~100 bytes, with room


def make_app(counts: LocationCounts, clock: Clock = time.time) -> web.Application:
    """The monitor as an aiohttp application; ``clock`` gives the time of each request (inject a virtual one
    in tests)."""
    app = web.Application(client_max_size=MAX_BODY)
    app[COUNTS] = counts
    app[CLOCK] = clock
    app.router.add_post("/metrics", post_metrics)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/health", get_health)
    return app


async def post_metrics(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        items = parse_items(body)
        added = request.app[COUNTS].add(items, request.app[CLOCK]())
    except InvalidItems as invalid:
        return web.json_response(invalid.as_json(), status=400)
    except TableFull as full:
        retry = str(math.ceil(request.app[COUNTS].resolution))
        return web.json_response({"error": str(full)}, status=503, headers={"Retry-After": retry})
    return web.json_response({"accepted": added.items, "merged": added.merged})


async def get_metrics(request: web.Request) -> web.Response:
    counts = request.app[COUNTS]
    try:
        interval = parse_interval(request.query.get("interval"), counts.retention)
    except ValueError as invalid:
        return web.json_response({"error": str(invalid)}, status=400)
    return web.json_response(window_json(counts.window(interval, request.app[CLOCK]())))


async def get_health(request: web.Request) -> web.Response:
    counts = request.app[COUNTS]
    return web.json_response({
        "status": "ok", "points": counts.points, "max_points": counts.max_points, "retention": counts.retention,
        "resolution": counts.resolution, "precision": counts.precision, "memory_bound_bytes": counts.memory_bound,
        "accepted": counts.accepted, "merged": counts.merged, "refused": counts.refused,
    })


def parse_interval(text: str | None, retention: float) -> float | None:
    """The ``interval`` query parameter in seconds (None when absent: the whole retention)."""
    if text is None:
        return None
    try:
        interval = float(text)
    except ValueError:
        interval = math.nan
    if not (math.isfinite(interval) and 0 < interval <= retention):
        raise ValueError(f"interval={text!r} is not valid: give a number of seconds above 0 and at most the "
                         f"retention ({retention:g}), or leave it out for the whole retention")
    return interval


def window_json(window: Window) -> dict[str, Any]:
    return {
        "interval": window.interval, "since": window.since, "until": window.until,
        "services": {service: [{"latitude": p.latitude, "longitude": p.longitude, "count": p.count} for p in points]
                     for service, points in window.services.items()},
    }


def serve(host: str, port: int, counts: LocationCounts, announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted (SIGINT or SIGTERM)."""
    announce(f"usm location-monitor on http://{host}:{port}: retention {counts.retention:g} s in "
             f"{counts.resolution:g} s buckets, at most {counts.max_points} points "
             f"({counts.memory_bound / 2**20:.1f} MiB of counts)")
    web.run_app(make_app(counts), host=host, port=port, access_log=None, print=None, handle_signals=True)

"""``usm registration-client``: the sidecar beside each service instance, with the original's HTTP API.

* ``POST /register``: register this instance now (it is registered at start too, unless told not to).
* ``GET /services/{service}/endpoint``: the instance to call. Without parameters the closest to the caller;
  ``?number=X`` a random one among the X closest; ``?range=KM`` a random one among those within KM kilometres,
  doubling the range until one is found (``usm.registration.selection``). The caller is this sidecar's instance
  (``--latitude``/``--longitude``) unless ``?latitude=&longitude=`` say otherwise. 404 when none is registered.
* ``GET /services/{service}/endpoints``: every registered instance.
* ``POST /metrics``: request locations ``{service, latitude, longitude, count}`` (one or a list, checked as the
  location monitor checks them), forwarded with the look-ups' own counts to the monitor every ``interval``.
* ``GET /health``.

Look-ups never wait on etcd: they read an :class:`InstanceCache` that a watch keeps current, so an instance whose
lease expired disappears from answers as soon as etcd deletes it (the original cached its Eureka list for 10 s).
Its registration is kept alive by a :class:`KeepAlive` thread and revoked when the sidecar stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from usm.geo.sphere import Coordinates
from usm.locationmonitor.items import InvalidItems, parse_items
from usm.registration.buffer import RequestBuffer, as_items
from usm.registration.etcd import EtcdError
from usm.registration.instance import Instance, InvalidInstance, check_service
from usm.registration.registry import InstanceCache, KeepAlive, Registration, Registry
from usm.registration.selection import Ranked, choose, parse_choice, rank

log = logging.getLogger(__name__)

RANKINGS_KEPT = 10_000  # (service, caller) orderings cached between registry changes


@dataclass
class Sidecar:
    """What one sidecar holds: its registry view, its own registration (if any), the location buffer."""

    registry: Registry
    caller: Coordinates
    registration: Registration | None = None
    monitor: str | None = None  # the request-location monitor's URL; None: do not forward
    interval: float = 5.0
    rng: random.Random = field(default_factory=random.Random)
    buffer: RequestBuffer = field(default_factory=RequestBuffer)
    cache: InstanceCache = field(init=False)
    _rankings: dict[tuple[str, Coordinates], tuple[Ranked, ...]] = field(default_factory=dict)
    _answers: dict[Ranked, bytes] = field(default_factory=dict)
    _rankings_version: int = -1

    def __post_init__(self) -> None:
        self.cache = InstanceCache(self.registry)

    def ranked(self, service: str, caller: Coordinates) -> tuple[Ranked, ...]:
        """The instances of ``service`` nearest first from ``caller``; cached until the registry changes."""
        if self.cache.version != self._rankings_version or len(self._rankings) > RANKINGS_KEPT:
            self._rankings, self._answers = {}, {}
            self._rankings_version = self.cache.version
        key = (service, caller)
        ranked = self._rankings.get(key)
        if ranked is None:
            ranked = self._rankings[key] = rank(self.cache.services.get(service, ()), caller)
        return ranked

    def answer(self, chosen: Ranked) -> bytes:
        """The JSON body naming ``chosen``, encoded once per registry version (look-ups repeat it)."""
        body = self._answers.get(chosen)
        if body is None:
            instance = chosen.instance
            body = self._answers[chosen] = json.dumps({
                "instanceId": instance.instance_id, "endpoint": instance.endpoint,
                "distanceKm": round(chosen.distance_km, 3), "region": instance.region}).encode()
        return body


SIDECAR: web.AppKey[Sidecar] = web.AppKey("sidecar", Sidecar)


def make_app(sidecar: Sidecar, background: bool = True) -> web.Application:
    """The sidecar as an aiohttp application. With ``background`` it registers, watches the registry and
    forwards request locations while it runs (``False`` leaves those to the caller, for tests)."""
    app = web.Application()
    app[SIDECAR] = sidecar
    app.router.add_post("/register", post_register)
    app.router.add_get("/services/{service}/endpoint", get_endpoint)
    app.router.add_get("/services/{service}/endpoints", get_endpoints)
    app.router.add_post("/metrics", post_metrics)
    app.router.add_get("/health", get_health)
    if background:
        app.cleanup_ctx.append(_running)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _caller(request: web.Request, default: Coordinates) -> Coordinates:
    latitude, longitude = request.query.get("latitude"), request.query.get("longitude")
    if latitude is None and longitude is None:
        return default
    if latitude is None or longitude is None:
        raise ValueError("give both latitude and longitude of the caller, or neither (the sidecar's own place)")
    try:
        return Coordinates(float(latitude), float(longitude))
    except ValueError as invalid:
        raise ValueError(f"the caller's place is not valid: {invalid}") from None


def _not_ready(sidecar: Sidecar) -> web.Response | None:
    if sidecar.cache.synced.is_set():
        return None
    return _error(503, "the registry has not been read yet: etcd is not reachable (see the sidecar's log)")


async def get_endpoint(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    service = request.match_info["service"]
    try:
        check_service(service)
        number, reach = parse_choice(request.query.get("number"), request.query.get("range"))
        caller = _caller(request, sidecar.caller)
    except ValueError as invalid:
        return _error(400, str(invalid))
    if (refusal := _not_ready(sidecar)) is not None:
        return refusal
    chosen = choose(sidecar.ranked(service, caller), number, reach, sidecar.rng)
    if chosen is None:
        return _error(404, f"no instance of service {service!r} is registered")
    sidecar.buffer.add(service, caller.latitude, caller.longitude)
    return web.Response(body=sidecar.answer(chosen), content_type="application/json")


async def get_endpoints(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    service = request.match_info["service"]
    try:
        check_service(service)
    except InvalidInstance as invalid:
        return _error(400, str(invalid))
    if (refusal := _not_ready(sidecar)) is not None:
        return refusal
    return web.json_response([i.to_json() for i in sidecar.cache.services.get(service, ())])


async def post_register(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    if sidecar.registration is None:
        return _error(409, "this sidecar has no instance to register: start it with --service and --service-port")
    try:
        lease = await asyncio.get_running_loop().run_in_executor(None, sidecar.registration.register)
    except EtcdError as error:
        return _error(502, f"registration failed: {error}")
    instance = sidecar.registration.instance
    return web.json_response({"instanceId": instance.instance_id, "endpoint": instance.endpoint,
                              "lease": f"{lease:x}", "ttl": sidecar.registration.ttl})


async def post_metrics(request: web.Request) -> web.Response:
    try:
        counts = parse_items(await request.read())
    except InvalidItems as invalid:
        return web.json_response(invalid.as_json(), status=400)
    buffer = request.app[SIDECAR].buffer
    buffer.add_all(counts)
    return web.json_response({"accepted": len(counts), "buffered": len(buffer)})


async def get_health(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    registration = sidecar.registration
    return web.json_response({
        "status": "ok" if sidecar.cache.synced.is_set() else "starting",
        "services": len(sidecar.cache.services), "revision": sidecar.cache.revision,
        "registered": None if registration is None else registration.lease is not None,
        "buffered": len(sidecar.buffer), "dropped": sidecar.buffer.dropped,
    })


async def forward(sidecar: Sidecar, session: aiohttp.ClientSession) -> bool:
    """Send the buffered request locations to the monitor once; on failure keep them for the next time."""
    counts = sidecar.buffer.take()
    if not counts or sidecar.monitor is None:
        return True
    try:
        async with session.post(f"{sidecar.monitor.rstrip('/')}/metrics", json=as_items(counts)) as response:
            if response.status == 200:
                return True
            detail = (await response.text())[:200]
    except (TimeoutError, aiohttp.ClientError) as error:
        detail = f"{type(error).__name__}: {error}"
    sidecar.buffer.put_back(counts)
    log.warning("request locations not delivered to %s, kept for the next try: %s", sidecar.monitor, detail)
    return False


async def _forwarding(sidecar: Sidecar) -> None:
    timeout = aiohttp.ClientTimeout(total=max(1.0, sidecar.interval))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            while True:
                await asyncio.sleep(sidecar.interval)
                await forward(sidecar, session)
        finally:
            await asyncio.shield(forward(sidecar, session))


async def _running(app: web.Application) -> AsyncIterator[None]:
    sidecar = app[SIDECAR]
    loop = asyncio.get_running_loop()
    keepalive = None
    if sidecar.registration is not None:
        try:
            await loop.run_in_executor(None, sidecar.registration.register)
        except EtcdError as error:
            log.warning("could not register %s yet, retrying in the background: %s",
                        sidecar.registration.instance.service, error)
        keepalive = KeepAlive(sidecar.registration)
        keepalive.start()
    sidecar.cache.start()
    forwarding = asyncio.create_task(_forwarding(sidecar)) if sidecar.monitor else None
    yield
    if forwarding is not None:
        forwarding.cancel()
        await asyncio.gather(forwarding, return_exceptions=True)
    sidecar.cache.stop()
    if keepalive is not None:
        keepalive.stop()
        await loop.run_in_executor(None, keepalive.join, 10.0)  # no renewal may re-register after the revoke
        try:
            await loop.run_in_executor(None, sidecar.registration.deregister)
        except EtcdError as error:
            log.warning("could not deregister (the lease will expire by itself): %s", error)
    sidecar.registry.etcd.close()


def own_instance(service: str | None, host: str, port: int | None, caller: Coordinates,
                 region: str) -> Instance | None:
    """The instance this sidecar registers, or None when it only looks others up."""
    if service is None and port is None:
        return None
    if service is None or port is None:
        raise InvalidInstance("give both --service and --service-port to register an instance, or neither")
    return Instance(service, host, port, caller, region)


def serve(host: str, port: int, sidecar: Sidecar, announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted (SIGINT or SIGTERM); then deregister."""
    me = sidecar.registration.instance if sidecar.registration else None
    what = f"{me.service} at {me.endpoint}" if me else "no instance of its own"
    announce(f"usm registration-client on http://{host}:{port}: {what}, etcd {', '.join(sidecar.registry.etcd.endpoints)}"
             + (f", request locations to {sidecar.monitor} every {sidecar.interval:g} s" if sidecar.monitor else ""))
    web.run_app(make_app(sidecar), host=host, port=port, access_log=None, print=None, handle_signals=True)

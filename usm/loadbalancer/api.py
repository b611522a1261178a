"""``usm lb-api``: the load balancer's HTTP API; every change is checked by nginx and applied by a reload.

* ``GET /api/servers``: ``[{service, servers: [{server, weight, latitude, longitude, region}]}]``.
* ``GET /api/{service}/servers``: that service's servers.
* ``POST /api/{service}/servers``: add one server ``{server, weight?, latitude?, longitude?, region?}`` or a list
  of them (a server already there gets the new weight and place). 409 when an address serves another service.
* ``PUT /api/{service}/servers/{server}``: ``{weight}``, change a server's share of the requests.
* ``DELETE /api/{service}/servers/{server}``: stop sending it requests (in-flight ones finish). 404 if unknown.
* ``GET /health``.

A change renders the whole configuration, has nginx check it, installs it atomically and reloads nginx (see
``usm.actuators.nginx``); only then does the API's table change and the state file get rewritten. When nginx
refuses (an upstream host name that does not resolve, say) the answer is 400 with nginx's words and both the
table and the running nginx stay as they were. Changes are applied one at a time, in arrival order. The
original waited 15 s after an add before reloading; a reload costs a few milliseconds here, so every change
applies at once and the answer means it is live.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from usm.actuators.nginx import Nginx, NginxConfigError, NginxError
from usm.loadbalancer.config import Settings, render
from usm.loadbalancer.servers import (
    MAX_WEIGHT,
    InvalidServer,
    ServerConflict,
    ServerTable,
    UnknownServer,
    check_service,
    server_from_json,
)

log = logging.getLogger(__name__)


@dataclass
class LoadBalancer:
    """The table of servers, the nginx that serves it, and where the table is saved between runs."""

    nginx: Nginx
    settings: Settings = field(default_factory=Settings)
    state: Path | None = None
    table: ServerTable = field(default_factory=ServerTable)

    def apply(self, table: ServerTable, reload: bool = True) -> None:
        """Make ``table`` live: render, check and install the configuration, reload nginx, save the table."""
        self.nginx.install(render(table, self.settings))
        if reload:
            self.nginx.reload()
        self.table = table
        if self.state is not None:
            save_table(self.state, table)


def load_table(path: Path) -> ServerTable:
    """The table saved at ``path`` (an empty one when there is none yet)."""
    if not path.exists():
        return ServerTable()
    try:
        return ServerTable.from_json(json.loads(path.read_text()))
    except (ValueError, InvalidServer) as invalid:
        raise InvalidServer(f"{path} does not hold a valid table of servers ({invalid}): fix or remove it") from None


def save_table(path: Path, table: ServerTable) -> None:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(table.to_json(), file, indent=1)
    os.replace(name, path)


BALANCER: web.AppKey[LoadBalancer] = web.AppKey("balancer", LoadBalancer)
CHANGES: web.AppKey[asyncio.Lock] = web.AppKey("changes", asyncio.Lock)


def make_app(balancer: LoadBalancer) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[BALANCER] = balancer
    app[CHANGES] = asyncio.Lock()
    app.router.add_get("/api/servers", get_all)
    app.router.add_get("/api/{service}/servers", get_service)
    app.router.add_post("/api/{service}/servers", post_servers)
    app.router.add_put("/api/{service}/servers/{server}", put_weight)
    app.router.add_delete("/api/{service}/servers/{server}", delete_server)
    app.router.add_get("/health", get_health)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def get_all(request: web.Request) -> web.Response:
    return web.json_response(request.app[BALANCER].table.to_json())


async def get_service(request: web.Request) -> web.Response:
    try:
        servers = request.app[BALANCER].table.servers(request.match_info["service"])
    except InvalidServer as invalid:
        return _error(400, str(invalid))
    return web.json_response([s.to_json() for s in servers])


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as invalid:
        raise InvalidServer(f"the body is not valid JSON ({invalid})") from None


async def post_servers(request: web.Request) -> web.Response:
    service = request.match_info["service"]

    async def change(table: ServerTable) -> ServerTable:
        body = await _body(request)
        servers = [server_from_json(s) for s in (body if isinstance(body, list) else [body])]
        if not servers:
            raise InvalidServer("the list of servers is empty: give at least one {server, weight, ...}")
        return table.add(check_service(service), servers)

    return await _changed(request, change, lambda table: [s.to_json() for s in table.servers(service)])


async def put_weight(request: web.Request) -> web.Response:
    service, address = request.match_info["service"], request.match_info["server"]

    async def change(table: ServerTable) -> ServerTable:
        body = await _body(request)
        if not isinstance(body, dict) or set(body) != {"weight"}:
            raise InvalidServer(f"the body must be {{\"weight\": N}} with N a whole number from 1 to {MAX_WEIGHT}")
        return table.with_weight(check_service(service), address, body["weight"])

    return await _changed(request, change, lambda table: [s.to_json() for s in table.servers(service)])


async def delete_server(request: web.Request) -> web.Response:
    service, address = request.match_info["service"], request.match_info["server"]

    async def change(table: ServerTable) -> ServerTable:
        return table.remove(check_service(service), address)

    return await _changed(request, change, lambda table: [s.to_json() for s in table.servers(service)])


async def _changed(request: web.Request, change: Callable[[ServerTable], Any],
                   answer: Callable[[ServerTable], Any]) -> web.Response:
    """Apply ``change`` to the table, one change at a time; errors become answers that say what to fix."""
    balancer = request.app[BALANCER]
    async with request.app[CHANGES]:
        try:
            table = await change(balancer.table)
            await asyncio.get_running_loop().run_in_executor(None, balancer.apply, table)
        except UnknownServer as unknown:
            return _error(404, str(unknown))
        except ServerConflict as conflict:
            return _error(409, str(conflict))
        except (InvalidServer, NginxConfigError) as invalid:
            return _error(400, str(invalid))
        except NginxError as failed:
            log.error("nginx could not apply a change: %s", failed)
            return _error(502, f"{failed} (the configuration was installed; nginx runs the previous one until "
                               "it reloads)")
    return web.json_response(answer(table))


async def get_health(request: web.Request) -> web.Response:
    balancer = request.app[BALANCER]
    return web.json_response({"status": "ok" if balancer.nginx.running() else "nginx is not running",
                              "services": len(balancer.table.services),
                              "servers": sum(len(s) for s in balancer.table.services.values())})


def serve(host: str, port: int, balancer: LoadBalancer, start_nginx: bool,
          announce: Callable[[str], None] = print) -> None:
    """Install the configuration of the saved table, start nginx (unless it runs already under its own
    supervision), serve the API until interrupted, then stop the nginx it started."""
    balancer.apply(balancer.table, reload=False)
    if start_nginx:
        balancer.nginx.start()
    elif balancer.nginx.running():
        balancer.nginx.reload()
    else:
        raise NginxError(f"no nginx runs with prefix {balancer.nginx.prefix}: start one, or leave out --no-start")
    announce(f"usm lb-api on http://{host}:{port}/api/: nginx on {balancer.settings.listen} "
             f"(prefix {balancer.nginx.prefix}), {len(balancer.table.services)} services")
    try:
        web.run_app(make_app(balancer), host=host, port=port, access_log=None, print=None, handle_signals=True)
    finally:
        balancer.nginx.stop()

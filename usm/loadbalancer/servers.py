"""The load balancer's servers: for each service, the instances nginx spreads its requests over (pure values).

A :class:`ServerTable` is immutable; every change returns a new table, so the API can render and check the new
configuration first and keep the old table when nginx refuses it. Everything that ends up in nginx's
configuration is checked here (service names, ``host:port`` addresses, weights), so no input can inject
configuration text.

Differences from the original (§7.3): adding an address that already serves the service updates its weight and
place instead of being ignored; an address that serves another service is refused with 409 instead of silently
dropped; weights can be changed (nginx's ``weight=``, honoured by ``least_conn``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from usm.registration.instance import SERVICE_NAME

HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*$")
MAX_WEIGHT = 1000


class InvalidServer(ValueError):
    """A service or server that cannot be configured; the message says what to fix."""


class UnknownServer(LookupError):
    """The service has no such server."""


class ServerConflict(ValueError):
    """The address already serves another service."""


@dataclass(frozen=True)
class Server:
    """One instance behind the load balancer: ``host:port``, its share of requests, and where it runs."""

    address: str
    weight: int = 1
    latitude: float | None = None
    longitude: float | None = None
    region: str = ""

    def __post_init__(self) -> None:
        check_address(self.address)
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or not 1 <= self.weight <= MAX_WEIGHT:
            raise InvalidServer(f"weight {self.weight!r} of {self.address} is not valid: give a whole number from 1 "
                                f"to {MAX_WEIGHT} (its share of the requests relative to the others)")
        if self.region and not SERVICE_NAME.match(self.region):
            raise InvalidServer(f"region {self.region!r} is not valid: use lower-case letters, digits, '-', '_'")

    def to_json(self) -> dict[str, Any]:
        return {"server": self.address, "weight": self.weight, "latitude": self.latitude,
                "longitude": self.longitude, "region": self.region}


def check_service(name: Any) -> str:
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        raise InvalidServer(f"service name {name!r} is not valid: use 1 to 100 lower-case letters, digits, '-', '_' "
                            "or '.', starting with a letter or digit")
    return name


def check_address(address: Any) -> str:
    """``host:port`` with an IPv4 address or a host name and a port from 1 to 65535."""
    if not isinstance(address, str) or address.count(":") != 1:
        raise InvalidServer(f"server {address!r} is not valid: give host:port, such as 10.0.0.7:8080")
    host, port = address.split(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not HOST_NAME.match(host) or host.replace(".", "").isdigit():
            raise InvalidServer(f"server {address!r} is not valid: {host!r} is neither an IPv4 address nor a host "
                                "name") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidServer(f"server {address!r} is not valid: the port must be a number from 1 to 65535")
    return address


def server_from_json(body: Any) -> Server:
    """A server from the API's JSON ``{server, weight?, latitude?, longitude?, region?}``."""
    if not isinstance(body, dict):
        raise InvalidServer(f"a server must be an object {{server, weight, latitude, longitude, region}}, not "
                            f"{str(body)[:60]}")
    unknown = set(body) - {"server", "weight", "latitude", "longitude", "region"}
    if unknown:
        raise InvalidServer(f"unknown field(s) {', '.join(sorted(unknown))}: a server has server, weight, latitude, "
                            "longitude and region")
    if "server" not in body:
        raise InvalidServer("'server' is missing: give the instance's host:port")
    place = [body.get("latitude"), body.get("longitude")]
    for name, value, bound in (("latitude", place[0], 90), ("longitude", place[1], 180)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not -bound <= value <= bound):
            raise InvalidServer(f"{name} {value!r} is not valid: give decimal degrees from -{bound} to {bound}")
    return Server(body["server"], body.get("weight", 1), place[0], place[1], body.get("region", "") or "")


@dataclass(frozen=True)
class ServerTable:
    """Service -> its servers, in the order they were added."""

    services: Mapping[str, tuple[Server, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))

    def servers(self, service: str) -> tuple[Server, ...]:
        return self.services.get(check_service(service), ())

    def owner(self, address: str) -> str | None:
        return next((s for s, servers in self.services.items() if any(x.address == address for x in servers)), None)

    def add(self, service: str, servers: Iterable[Server]) -> ServerTable:
        """Add ``servers`` to ``service`` (one already there gets the new weight and place)."""
        check_service(service)
        current = list(self.servers(service))
        for server in servers:
            owner = self.owner(server.address)
            if owner is not None and owner != service:
                raise ServerConflict(f"{server.address} already serves {owner!r}: remove it there first")
            index = next((i for i, x in enumerate(current) if x.address == server.address), None)
            if index is None:
                current.append(server)
            else:
                current[index] = server
        return replace(self, services={**self.services, service: tuple(current)})

    def remove(self, service: str, address: str) -> ServerTable:
        current = self.servers(service)
        if not any(x.address == address for x in current):
            raise UnknownServer(f"{address} is not a server of {service!r}")
        rest = tuple(x for x in current if x.address != address)
        services = {**self.services, service: rest}
        if not rest:
            del services[service]
        return replace(self, services=services)

    def with_weight(self, service: str, address: str, weight: int) -> ServerTable:
        current = self.servers(service)
        if not any(x.address == address for x in current):
            raise UnknownServer(f"{address} is not a server of {service!r}")
        updated = tuple(replace(x, weight=weight) if x.address == address else x for x in current)
        return replace(self, services={**self.services, service: updated})

    def to_json(self) -> list[dict[str, Any]]:
        return [{"service": s, "servers": [x.to_json() for x in servers]} for s, servers in sorted(self.services.items())]

    @classmethod
    def from_json(cls, body: Any) -> ServerTable:
        """A table from ``[{service, servers: [...]}]`` (the API's GET /api/servers, the saved state)."""
        if not isinstance(body, list):
            raise InvalidServer("the servers must be a list of {service, servers: [{server, weight, ...}]}")
        table = cls()
        for entry in body:
            if not isinstance(entry, dict) or not isinstance(entry.get("servers"), list):
                raise InvalidServer(f"{str(entry)[:60]} is not {{service, servers: [...]}}")
            table = table.add(entry.get("service"), [server_from_json(s) for s in entry["servers"]])
        return table

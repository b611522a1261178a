"""A registered instance of a service: where to reach it and where on Earth it runs, and its registry key.

Pure values (the registry in ``registry`` does the I/O). The instance id is the SHA-1 of ``<service>_<host>_<port>``
as in the original, so registering the same instance again replaces its key instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usm.geo.sphere import Coordinates

PREFIX = "/usm/services/"
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


class InvalidInstance(ValueError):
    """An instance that cannot be registered; the message says what to fix."""


@dataclass(frozen=True)
class Instance:
    """One running instance of a service: where to reach it and where on Earth it is."""

    service: str
    host: str
    port: int
    coordinates: Coordinates
    region: str = ""

    def __post_init__(self) -> None:
        check_service(self.service)
        if not self.host or any(c in self.host for c in " /;{}\"'\n"):
            raise InvalidInstance(f"host {self.host!r} is not an address: give an IP address or a host name")
        if not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise InvalidInstance(f"port {self.port!r} is not valid: give a TCP port from 1 to 65535")

    @property
    def instance_id(self) -> str:
        return instance_id(self.service, self.host, self.port)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def key(self) -> str:
        return instance_key(self.service, self.instance_id)

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "instanceId": self.instance_id, "endpoint": self.endpoint,
                "host": self.host, "port": self.port, "latitude": self.coordinates.latitude,
                "longitude": self.coordinates.longitude, "region": self.region}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Instance:
        return cls(str(body["service"]), str(body["host"]), int(body["port"]),
                   Coordinates(float(body["latitude"]), float(body["longitude"])), str(body.get("region", "")))


def check_service(name: str) -> str:
    if not isinstance(name, str) or not SERVICE_NAME.match(name):
        raise InvalidInstance(f"service name {name!r} is not valid: use 1 to 100 lower-case letters, digits, '-', "
                              "'_' or '.', starting with a letter or digit")
    return name


def instance_id(service: str, host: str, port: int) -> str:
    return hashlib.sha1(f"{service}_{host}_{port}".encode()).hexdigest()


def instance_key(service: str, instance: str) -> str:
    return f"{PREFIX}{service}/{instance}"

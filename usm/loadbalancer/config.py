"""The load balancer's nginx configuration, rendered from its :class:`ServerTable` (pure).

One ``upstream`` per service with servers (``least_conn``, each server's ``weight``; a server that fails is
skipped for 10 s and the request retried on another), one ``location /<service>/`` proxying to it, and a health
location. A service whose last server was removed disappears from the configuration (nginx refuses an empty
upstream), so its path answers 404 like any unknown path. The original also exposed its API through nginx at
``/_/api/`` behind basic auth; that is here when ``api`` is given. The template is
``templates/loadbalancer.conf.j2``; Jinja2 renders it with undefined names as errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined

from usm.loadbalancer.servers import InvalidServer, ServerTable
from usm.registration.instance import SERVICE_NAME

LISTEN = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):[0-9]{1,5}$")

TEMPLATES = Environment(loader=PackageLoader("usm.loadbalancer"), undefined=StrictUndefined, autoescape=False,
                        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@dataclass(frozen=True)
class ApiRoute:
    """Expose the lb-api at ``/_/api/`` through nginx, behind basic auth with this htpasswd file."""

    url: str  # where lb-api listens, e.g. http://127.0.0.1:1906
    htpasswd: str


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:8080"  # nginx's listen directive: address:port
    region: str = ""
    workers: int | str = "auto"
    connections: int = 1024
    access_log: bool = False
    api: ApiRoute | None = None

    def __post_init__(self) -> None:
        if not LISTEN.match(self.listen):
            raise InvalidServer(f"listen {self.listen!r} is not valid: give address:port, such as 127.0.0.1:8080")
        if self.region and not SERVICE_NAME.match(self.region):
            raise InvalidServer(f"region {self.region!r} is not valid: use lower-case letters, digits, '-', '_'")
        if self.api is not None and any(c in self.api.url + self.api.htpasswd for c in " ;{}'\"\n"):
            raise InvalidServer("the API route's URL and htpasswd path may not hold spaces, quotes, ';' or braces")


def render(table: ServerTable, settings: Settings) -> str:
    services = [(service, servers) for service, servers in sorted(table.services.items()) if servers]
    return TEMPLATES.get_template("loadbalancer.conf.j2").render(
        services=services, listen=settings.listen, region=settings.region, workers=settings.workers,
        connections=settings.connections, access_log=settings.access_log, api=settings.api)

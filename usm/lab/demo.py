"""What a lab holds: its places on the map, its demo app, and the site file usm reads for it.

Pure data and a pure function (:func:`site_document`): the processes that make a lab real are
started in ``usm.lab.up``.

The demo app's containers run the busybox image every lab engine imports. Each command traps
SIGTERM and runs its work as a child (PID 1 of a container ignores signals it does not handle,
which would make every stop wait out the grace period). All pseudo-hosts share this machine's
loopback, so ``web`` does not take a fixed port: each replica serves on the first free port of
``WEB_PORTS`` (a copy on another pseudo-host would otherwise fail to bind).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from usm.geo.sphere import Coordinates


@dataclass(frozen=True)
class Place:
    name: str  # the pseudo-host's usm name
    location: Coordinates


PLACES = (
    Place("lisbon", Coordinates(38.72, -9.14)),
    Place("frankfurt", Coordinates(50.11, 8.68)),
    Place("portland", Coordinates(45.52, -122.68)),
    Place("singapore", Coordinates(1.35, 103.82)),
    Place("sao-paulo", Coordinates(-23.55, -46.63)),
    Place("nairobi", Coordinates(-1.29, 36.82)),
    Place("sydney", Coordinates(-33.87, 151.21)),
    Place("tokyo", Coordinates(35.68, 139.69)),
)
"""Where the pseudo-hosts are said to be, in the order ``usm lab up --hosts N`` takes them."""

IMAGE = "usm-lab/busybox:1"
APP = "demo"
WEB_PORTS = (18080, 18099)


@dataclass(frozen=True)
class DemoService:
    name: str
    command: tuple[str, ...]
    max_replicas: int
    memory: str = "64Mi"
    cpu: float = 0.1  # the cores a new replica is expected to use before it is measured


_ON_TERM = "trap 'exit 0' TERM; "
SERVICES = (
    DemoService("web", ("sh", "-c", _ON_TERM + "mkdir -p /tmp/www && hostname > /tmp/www/index.html; "
                        f"for port in $(seq {WEB_PORTS[0]} {WEB_PORTS[1]}); do "
                        "httpd -f -h /tmp/www -p 127.0.0.1:$port & wait $!; done"), max_replicas=2),
    DemoService("worker", ("sh", "-c", _ON_TERM + "while :; do seq 1 300000 > /dev/null; sleep 1; done & wait"),
                max_replicas=3),
)
"""``web`` serves a page and is idle; ``worker`` keeps a little busy (a fraction of a core), so a policy that
replicates busy services replicates it and leaves ``web`` alone."""


@dataclass(frozen=True)
class LabHost:
    """One pseudo-host as the site file describes it."""

    place: Place
    docker: str  # ssh://user@127.0.0.1:port
    node_exporter: str  # its instance label, 127.0.0.1:port


@dataclass(frozen=True)
class Capacity:
    """What each pseudo-host declares: this machine's own totals, since its node exporter reports this machine."""

    cpu: float
    ram: int
    disk: int


def site_document(hosts: list[LabHost], capacity: Capacity, prometheus: str, location_monitor: str) -> dict[str, Any]:
    """The site file of a lab, as data (``usm.manager.site`` validates it when ``usm run`` loads it)."""
    return {
        "prometheus": prometheus,
        "location_monitors": [location_monitor],
        "hosts": [{
            "name": h.place.name, "kind": "edge", "latitude": h.place.location.latitude,
            "longitude": h.place.location.longitude, "docker": h.docker, "node_exporter": h.node_exporter,
            "cpu": capacity.cpu, "ram": f"{capacity.ram // 2**20}Mi", "disk": f"{capacity.disk // 2**30}Gi",
        } for h in hosts],
        "apps": [{"name": APP, "services": [s.name for s in SERVICES]}],
        "services": [{
            "name": s.name, "image": IMAGE, "command": list(s.command), "memory": s.memory, "cpu": s.cpu,
            "min_replicas": 1, "max_replicas": s.max_replicas,
        } for s in SERVICES],
    }


def initial_placement(hosts: list[LabHost]) -> list[tuple[DemoService, LabHost]]:
    """One replica of each demo service, spread over the hosts in turn."""
    return [(service, hosts[i % len(hosts)]) for i, service in enumerate(SERVICES)]


__all__ = ["APP", "IMAGE", "PLACES", "SERVICES", "Capacity", "DemoService", "LabHost", "Place",
           "initial_placement", "site_document"]

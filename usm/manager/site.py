"""The site file: the hosts, apps and services a live usm manages, and where metrics come from.

One YAML file, validated by ``site.schema.json`` and then for its meaning (unique names, services
of apps declared, sizes and durations well formed, Docker endpoints reached over SSH or TLS), with
every problem at ``FILE:LINE:COLUMN`` as for policies. Containers are not listed here: they are
found on the hosts by their ``usm.managed`` label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from usm.actuators.dockerhosts import AccessError, DockerAccess, parse_endpoint
from usm.engine.expressions import parse_duration, parse_number
from usm.engine.inventory import App, Host, Service
from usm.engine.policy import Location
from usm.engine.yamldoc import InvalidSource, PathItem, Problem, load, schema_problems
from usm.geo.regions import nearest_area
from usm.geo.sphere import Coordinates
from usm.manager.sitesources import SiteCloud, SiteSwarm, read_cloud, read_swarm
from usm.manager.sitesupport import SiteSupport, read_support
from usm.placement.model import HostKind, Resources

SCHEMA = "site.schema.json"
DEFAULT_MEMORY = 256 * 2**20
DEFAULT_CPU = 0.1


@dataclass(frozen=True)
class SiteHost:
    name: str
    kind: HostKind
    location: Coordinates
    region: str  # its region: as given, else its world area
    cloud_region: str
    docker: str  # the Docker endpoint URL
    node_exporter: str  # its instance label in Prometheus ("" = not scraped)
    total: Resources


@dataclass(frozen=True)
class SiteService:
    name: str
    image: str
    command: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    demand: Resources = field(default_factory=lambda: Resources(DEFAULT_CPU, DEFAULT_MEMORY, 0.0))
    min_replicas: int = 1
    max_replicas: int = 0
    region: str = ""  # federation: the region whose manager runs it ("": the site's region)


@dataclass(frozen=True)
class Site:
    hosts: tuple[SiteHost, ...]
    apps: tuple[App, ...] = ()
    services: tuple[SiteService, ...] = ()
    prometheus: str = ""
    location_monitors: tuple[str, ...] = ()
    request_window: float = 300.0
    region: str = ""  # federation: the region of services that name none ("": the first host's)
    cloud: SiteCloud | None = None  # how usm reaches and syncs its EC2 hosts (None: it does not)
    swarm: SiteSwarm | None = None  # the host that manages usm's swarm, whose nodes are synced (None: no swarm)
    support: SiteSupport | None = None  # per-region support components run locally (None: none)

    @property
    def default_region(self) -> str:
        return self.region or (self.hosts[0].region if self.hosts else "")

    def inventory_parts(self) -> tuple[tuple[Host, ...], tuple[App, ...], tuple[Service, ...]]:
        hosts = tuple(Host(h.name, h.region, h.location.latitude, h.location.longitude) for h in self.hosts)
        services = tuple(Service(s.name, s.min_replicas, s.max_replicas) for s in self.services)
        return hosts, self.apps, services

    def app_of(self, service: str) -> str:
        return next((a.name for a in self.apps if service in a.services), "")


def load_site(path: str | Path, access: DockerAccess | None = None) -> Site:
    """Load and validate a site file; raises ``InvalidSource`` listing every problem."""
    file = Path(path)
    if not file.is_file():
        raise InvalidSource([Problem(Location(str(file), 1, 1), f"no such site file: {file}")])
    document = load(file)
    if document.data is None:
        raise InvalidSource([Problem(Location(str(file), 1, 1), "the site file is empty")])
    problems = schema_problems(document, SCHEMA, "usm.manager")
    if problems:
        raise InvalidSource(problems)
    data: Any = document.data
    access = access or DockerAccess.from_environment()

    def problem(where: list[PathItem], message: str, hint: str = "") -> None:
        problems.append(document.problem(where, message, hint))

    def size(where: list[PathItem], default: float) -> float:
        raw = document.value(where) if _has(data, where) else default
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        try:
            return parse_number(str(raw))
        except ValueError as error:
            problem(where, str(error), "write bytes with an optional suffix: 512Mi, 16Gi")
            return default

    names: dict[str, Location] = {}

    def unique(section: str, index: int, name: str, what: str) -> bool:
        where: list[PathItem] = [section, index, "name"]
        if name in names:
            problem(where, f"duplicate {what} name '{name}'", f"first used at {names[name]}")
            return False
        names[name] = document.at(where)
        return True

    hosts = []
    for i, item in enumerate(data["hosts"]):
        name = str(item["name"])
        if not unique("hosts", i, name, "host"):
            continue
        try:
            parse_endpoint(str(item["docker"]), access)
        except AccessError as error:
            problem(["hosts", i, "docker"], str(error))
        kind = HostKind(item.get("kind", "edge"))
        if kind is HostKind.CLOUD and not item.get("cloud_region"):
            problem(["hosts", i], f"cloud host '{name}' has no cloud_region", "name its provider region: eu-west-3")
        location = Coordinates(float(item["latitude"]), float(item["longitude"]))
        hosts.append(SiteHost(
            name, kind, location, str(item.get("region") or nearest_area(location).name),
            str(item.get("cloud_region", "")), str(item["docker"]),
            str(item.get("node_exporter", "")),
            Resources(float(item["cpu"]), size(["hosts", i, "ram"], 0.0), size(["hosts", i, "disk"], 0.0))))
    services = []
    for i, item in enumerate(data.get("services") or []):
        name = str(item["name"])
        if not unique("services", i, name, "service"):
            continue
        low, high = int(item.get("min_replicas", 1)), int(item.get("max_replicas", 0))
        if high and low > high:
            problem(["services", i, "min_replicas"], f"min_replicas {low} exceeds max_replicas {high}")
        services.append(SiteService(
            name, str(item["image"]), tuple(str(c) for c in item.get("command") or ()),
            {str(k): str(v) for k, v in (item.get("environment") or {}).items()},
            Resources(float(item.get("cpu", DEFAULT_CPU)), size(["services", i, "memory"], DEFAULT_MEMORY),
                      size(["services", i, "disk"], 0.0)),
            low, high, str(item.get("region", ""))))
    declared = {s.name for s in services}
    apps = []
    for i, item in enumerate(data.get("apps") or []):
        name = str(item["name"])
        if not unique("apps", i, name, "app"):
            continue
        for j, service in enumerate(item["services"]):
            if service not in declared:
                problem(["apps", i, "services", j], f"app '{name}' names an unknown service '{service}'",
                        "declare it under services")
        apps.append(App(name, tuple(str(s) for s in item["services"])))
    window = 300.0
    if "request_window" in data:
        try:
            window = parse_duration(str(data["request_window"]))
        except ValueError as error:
            problem(["request_window"], str(error))
    cloud = read_cloud(data, problem)
    swarm = read_swarm(data, problem)
    support = read_support(data, problem)
    if problems:
        raise InvalidSource(problems)
    return Site(tuple(hosts), tuple(apps), tuple(services), str(data.get("prometheus", "")),
                tuple(str(u) for u in data.get("location_monitors") or ()), window, str(data.get("region", "")),
                cloud=cloud, swarm=swarm, support=support)


def _has(data: Any, where: list[PathItem]) -> bool:
    node = data
    for key in where:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
    return True

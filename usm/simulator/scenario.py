"""Scenario files: the world a simulation starts from, and what happens to it.

A scenario is one YAML file, validated by ``scenario.schema.json`` (editors can use it too) and then for its
meaning: names unique and known, durations and sizes well formed, service dependencies without cycles, initial
containers on hosts that run. Every problem is reported at ``FILE:LINE:COLUMN`` as for policies
(:class:`~usm.engine.yamldoc.InvalidSource`); a scenario with a problem is never half-loaded.

Units once loaded: seconds, bytes, cores, US dollars per hour, requests per second. Durations are written
``15s``, ``5m``, ``24h``; sizes as bytes with an optional suffix (``256Mi``, ``1Gi``, ``500k``).

Defaults: ``seed`` 0; host ``state`` running; edge host ``start_time`` 60s; service ``bytes_per_request`` 1k,
``bytes_per_response`` 10k, ``disk`` 0, ``min_replicas`` 1, ``max_replicas`` 0 (no limit), ``start_time`` 5s;
``launch.instance_type`` the first instance type of the file. A cloud host stands at its region's coordinates
(``usm.geo.regions``); every host's ``region`` is its world area.

Apps of the demo catalogue (``usm.catalog``) are referenced instead of repeated: ``apps: [{catalog: sock-shop}]``
adds the app with its services (their expected memory, start-up times, dependencies and replica bounds; each
request costs ``cpu_per_request``, default 0.002 core-seconds, and the default bytes).

Event ``predictions`` give a service a minimum number of replicas between two dates and times (weekly, if asked);
``start_date`` is the UTC date whose midnight is 0s (default 2026-01-05, a Monday). ``launches`` launch an app at a
time, wave by wave in dependency order (``usm.manager.launcher``), near a place or on given hosts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from usm.catalog import catalog_app, catalog_names
from usm.engine.expressions import parse_duration, parse_number
from usm.engine.policy import Location, Scope, SimulatedMetric
from usm.engine.yamldoc import (
    Document,
    InvalidSource,
    PathItem,
    Problem,
    load,
    schema_problems,
)
from usm.geo.regions import (
    CLOUD_REGIONS,
    USABLE_CLOUD_REGIONS,
    CloudRegion,
    cloud_region,
    nearest_area,
)
from usm.geo.sphere import Coordinates
from usm.placement.launch import LaunchRefused, plan_launch
from usm.placement.model import HostKind, HostState, Resources
from usm.placement.predictions import PredictionWindow
from usm.simulator.workload import Constant, Diurnal, FlashCrowd, Profile, Ramp, Stage

SCHEMA = "scenario.schema.json"
BUNDLED = "scenarios"

PROFILE_KEYS: dict[str, frozenset[str]] = {
    "constant": frozenset({"kind", "rate"}),
    "ramp": frozenset({"kind", "stages", "start", "requests_per_user", "repeat"}),
    "diurnal": frozenset({"kind", "peak", "trough", "peak_at", "utc_offset"}),
    "flash_crowd": frozenset({"kind", "base", "peak", "start", "rise", "hold", "fall"}),
}
"""The keys each kind of workload profile takes (the schema allows their union)."""

DEFAULT_EDGE_START_TIME = 60.0
DEFAULT_SERVICE_START_TIME = 5.0
DEFAULT_BYTES_PER_REQUEST = 1_000.0
DEFAULT_BYTES_PER_RESPONSE = 10_000.0
DEFAULT_CATALOG_CPU_PER_REQUEST = 0.002
DEFAULT_START_DATE = date(2026, 1, 5)


@dataclass(frozen=True)
class InstanceType:
    """A cloud instance type: capacity, price while running and the time from launch (or start) to running."""

    name: str
    total: Resources
    price_per_hour: float
    boot_time: float


@dataclass(frozen=True)
class HostDefinition:
    """A host known at the start. ``boot_time`` is what starting it takes (instance type's for cloud hosts, the
    edge host's ``start_time`` otherwise); ``price_per_hour`` is 0 for edge hosts."""

    name: str
    kind: HostKind
    location: Coordinates
    total: Resources
    state: HostState = HostState.RUNNING
    region: str = ""
    cloud_region: str = ""
    instance_type: str = ""
    price_per_hour: float = 0.0
    boot_time: float = DEFAULT_EDGE_START_TIME


@dataclass(frozen=True)
class AppDefinition:
    name: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class ServiceDefinition:
    """A service: what a replica needs (``memory``, ``disk``), what a request costs (``cpu_per_request`` in
    core-seconds, bytes in and out), whom it calls once per request it serves, its replica bounds and how long a
    replica takes from start to running."""

    name: str
    image: str
    memory: float
    cpu_per_request: float
    bytes_per_request: float = DEFAULT_BYTES_PER_REQUEST
    bytes_per_response: float = DEFAULT_BYTES_PER_RESPONSE
    disk: float = 0.0
    dependencies: tuple[str, ...] = ()
    min_replicas: int = 1
    max_replicas: int = 0
    start_time: float = DEFAULT_SERVICE_START_TIME


@dataclass(frozen=True)
class InitialContainer:
    name: str
    service: str
    host: str


@dataclass(frozen=True)
class WorkloadSource:
    """Users at ``location`` calling ``service`` at the rate of ``profile``, which starts ``offset`` seconds into
    the scenario (nothing before). ``noise`` is the relative standard deviation of a per-tick seeded factor."""

    name: str
    service: str
    location: Coordinates
    profile: Profile
    offset: float = 0.0
    noise: float = 0.0


class FaultKind(str, Enum):
    CONTAINER_CRASH = "container_crash"
    HOST_DOWN = "host_down"
    HOST_UP = "host_up"


@dataclass(frozen=True)
class Fault:
    """Something that goes wrong at ``at``: a container crashes (the named one, or the first running replica of
    ``service`` by name), a host goes down (its containers fail) or comes back up (empty, after its boot time)."""

    at: float
    kind: FaultKind
    container: str = ""
    service: str = ""
    host: str = ""


@dataclass(frozen=True)
class Prediction:
    """An event prediction of ``service``: its window in seconds from the scenario's start."""

    service: str
    window: PredictionWindow


@dataclass(frozen=True)
class AppLaunchDefinition:
    """Launch ``app`` at ``at``: its replicas near ``near`` or on ``hosts`` (in turn), wave by wave or, with
    ``one_by_one``, a service at a time; ``on_failure`` is ``report`` or ``rollback``."""

    app: str
    at: float
    near: Coordinates | None = None
    hosts: tuple[str, ...] = ()
    one_by_one: bool = False
    on_failure: str = "report"


@dataclass(frozen=True)
class TimedMetric:
    """A simulated metric (as in a policy) that applies from ``start`` until ``end`` (seconds)."""

    metric: SimulatedMetric
    start: float = 0.0
    end: float = math.inf

    def active_at(self, at: float) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario. ``service_order`` lists the services callers first: every service comes before the
    services it depends on (ties by name), the order in which load is propagated."""

    name: str
    duration: float
    tick: float
    hosts: tuple[HostDefinition, ...]
    services: tuple[ServiceDefinition, ...]
    workloads: tuple[WorkloadSource, ...]
    description: str = ""
    seed: int = 0
    policy: Path | None = None
    regions: tuple[str, ...] = ()
    max_cloud_hosts: int | None = None
    launch_instance_type: str = ""
    instance_types: Mapping[str, InstanceType] = field(default_factory=lambda: MappingProxyType({}))
    apps: tuple[AppDefinition, ...] = ()
    containers: tuple[InitialContainer, ...] = ()
    simulated_metrics: tuple[TimedMetric, ...] = ()
    faults: tuple[Fault, ...] = ()
    source: str = ""
    start_date: date = DEFAULT_START_DATE
    predictions: tuple[Prediction, ...] = ()
    launches: tuple[AppLaunchDefinition, ...] = ()

    @cached_property
    def service_order(self) -> tuple[str, ...]:
        return callers_first({s.name: s.dependencies for s in self.services})

    @cached_property
    def service_by_name(self) -> dict[str, ServiceDefinition]:
        return {s.name: s for s in self.services}

    @property
    def ticks(self) -> int:
        """Cycles in the scenario: one at 0, then one every tick up to the duration."""
        return int(self.duration // self.tick) + 1

    @property
    def cloud_regions(self) -> tuple[CloudRegion, ...]:
        """Where hosts may be launched: the scenario's regions, or every usable one."""
        if not self.regions:
            return USABLE_CLOUD_REGIONS
        return tuple(cloud_region(code) for code in self.regions)

    @property
    def launch_type(self) -> InstanceType | None:
        """The instance type of launched hosts (``None``: no host can be launched)."""
        return self.instance_types.get(self.launch_instance_type)


def callers_first(dependencies: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The services ordered so that each comes before every service it depends on (Kahn's algorithm, ties by
    name). ``ValueError`` naming the services left when the dependencies have a cycle."""
    callers_of: dict[str, int] = {name: 0 for name in dependencies}
    for deps in dependencies.values():
        for d in deps:
            callers_of[d] = callers_of.get(d, 0) + 1
    ready = sorted(name for name, n in callers_of.items() if n == 0)
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for d in dependencies.get(name, ()):
            callers_of[d] -= 1
            if callers_of[d] == 0:
                ready.append(d)
                ready.sort()
    if len(order) < len(callers_of):
        left = sorted(set(callers_of) - set(order))
        raise ValueError(f"dependency cycle among: {', '.join(left)}")
    return tuple(order)


# --- bundled scenarios --------------------------------------------------------------------------------


def bundled_scenarios() -> tuple[str, ...]:
    """Names of the scenarios shipped with usm (``sock-shop``, ...)."""
    folder = resources.files("usm.simulator").joinpath(BUNDLED)
    return tuple(sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")))


def bundled_scenario(name: str) -> Path:
    """The file of a bundled scenario; ``KeyError`` for an unknown name."""
    if name not in bundled_scenarios():
        raise KeyError(f"no bundled scenario '{name}' (there are: {', '.join(bundled_scenarios())})")
    return Path(str(resources.files("usm.simulator").joinpath(BUNDLED, f"{name}.yaml")))


# --- loading ------------------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate one scenario file (or a bundled scenario's name). Raises ``InvalidSource`` listing
    every problem at ``FILE:LINE:COLUMN``."""
    file = Path(path)
    if not file.exists() and isinstance(path, str) and path in bundled_scenarios():
        file = bundled_scenario(path)
    if not file.is_file():
        raise InvalidSource([Problem(Location(str(file), 1, 1), f"no such scenario file: {file}")])
    document = load(file)
    if document.data is None:
        raise InvalidSource([Problem(Location(str(file), 1, 1), "the scenario file is empty")])
    _dates_as_text(document.data)
    problems = schema_problems(document, SCHEMA, "usm.simulator")
    if problems:
        raise InvalidSource(problems)
    scenario = _Builder(document, file).build()
    return scenario


def _dates_as_text(data: Any) -> None:
    """YAML reads ``2026-11-27`` as a date and ``2026-11-27 09:00:00`` as a timestamp; the schema and the
    checks take them as the text they were written as."""
    if not isinstance(data, Mapping):
        return
    places = [(data, "start_date")] + [(p, key) for p in data.get("predictions") or [] if isinstance(p, Mapping)
                                       for key in ("start", "end")]
    for mapping, key in places:
        value = mapping.get(key)
        if isinstance(value, datetime):
            mapping[key] = value.isoformat(sep=" ")
        elif isinstance(value, date):
            mapping[key] = value.isoformat()


class _Builder:
    """The semantic checks of a schema-valid document, collecting problems instead of stopping at the first."""

    def __init__(self, document: Document, file: Path) -> None:
        self.document = document
        self.file = file
        self.data: Any = document.data
        self.problems: list[Problem] = []
        self.host_names: set[str] = set()  # every host named, valid or not: no "unknown" for a broken one
        self.container_names: set[str] = set()

    # small helpers

    def problem(self, path: list[PathItem], message: str, hint: str = "", key: bool = False) -> None:
        self.problems.append(self.document.problem(path, message, hint, key=key))

    def duration(self, path: list[PathItem], default: float = 0.0) -> float:
        try:
            raw = self.document.value(path)
        except (KeyError, IndexError):
            return default
        try:
            return parse_duration(str(raw))
        except ValueError as error:
            self.problem(path, str(error))
            return default

    def size(self, path: list[PathItem], default: float = 0.0) -> float:
        try:
            raw = self.document.value(path)
        except (KeyError, IndexError):
            return default
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        try:
            return parse_number(str(raw))
        except ValueError as error:
            self.problem(path, str(error), "write bytes with an optional suffix: 500k, 256Mi, 1Gi")
            return default

    def unique(self, section: str, seen: dict[str, Location], what: str) -> list[tuple[int, Any]]:
        """The items of a list section whose name was not used before (in ``seen``, which is shared by sections
        whose names must not clash)."""
        kept = []
        for index, item in enumerate(self.data.get(section) or []):
            name = str(item["name"])
            path: list[PathItem] = [section, index, "name"]
            if name in seen:
                self.problem(path, f"duplicate {what} name '{name}'", f"first used at {seen[name]}")
                continue
            seen[name] = self.document.at(path)
            kept.append((index, item))
        return kept

    # the sections

    def build(self) -> Scenario:
        data = self.data
        duration = self.duration(["duration"], 0.0)
        tick = self.duration(["tick"], 0.0)
        if duration <= 0:
            self.problem(["duration"], "the duration must be longer than 0s")
        if tick <= 0:
            self.problem(["tick"], "the tick must be longer than 0s")
        elif duration > 0 and tick > duration:
            self.problem(["tick"], "the tick is longer than the duration")
        policy = None
        if "policy" in data:
            policy = (self.file.parent / str(data["policy"])).resolve()
            if not policy.exists():
                self.problem(["policy"], f"no such policy file or directory: {policy}",
                             "the path is relative to the scenario file")
        regions = self.regions()
        instance_types = self.instance_types()
        launch = str((data.get("launch") or {}).get("instance_type", next(iter(instance_types), "")))
        if launch and launch not in instance_types:
            self.problem(["launch", "instance_type"], f"unknown instance type '{launch}'",
                         _known(instance_types))
        entity_names: dict[str, Location] = {}
        hosts = self.hosts(instance_types, entity_names)
        catalog_services, catalog_apps = self.catalog_apps()
        services = self.services(catalog_services)
        if not services and "services" not in data:
            self.problem([], "the scenario has no service", "define services, or add a catalogue app to apps "
                         "(apps: [{catalog: sock-shop}])")
        apps = self.apps(services, catalog_apps)
        containers = self.containers(services, hosts, entity_names)
        workloads = self.workloads(services)
        metrics = self.simulated_metrics()
        faults = self.faults(services, hosts, containers)
        start_date = self.start_date()
        predictions = self.predictions(services, start_date)
        launches = self.launches(apps, services, hosts, containers, duration)
        if self.problems:
            raise InvalidSource(self.problems)
        return Scenario(
            name=str(data["name"]),
            description=str(data.get("description", "")).strip(),
            duration=duration,
            tick=tick,
            seed=int(data.get("seed", 0)),
            policy=policy,
            regions=regions,
            max_cloud_hosts=(data.get("limits") or {}).get("max_cloud_hosts"),
            launch_instance_type=launch,
            instance_types=MappingProxyType(instance_types),
            hosts=tuple(hosts.values()),
            apps=apps,
            services=tuple(services.values()),
            containers=tuple(containers.values()),
            workloads=workloads,
            simulated_metrics=metrics,
            faults=faults,
            source=str(self.file),
            start_date=start_date,
            predictions=predictions,
            launches=launches,
        )

    def regions(self) -> tuple[str, ...]:
        known = {r.code: r for r in CLOUD_REGIONS}
        codes = []
        for index, code in enumerate(self.data.get("regions") or []):
            region = known.get(str(code))
            if region is None or not region.usable:
                why = "unknown" if region is None else "disabled"
                self.problem(["regions", index], f"{why} cloud region '{code}'",
                             "use one of: " + ", ".join(r.code for r in USABLE_CLOUD_REGIONS))
            elif str(code) not in codes:
                codes.append(str(code))
        return tuple(codes)

    def instance_types(self) -> dict[str, InstanceType]:
        result = {}
        for name, raw in (self.data.get("instance_types") or {}).items():
            path: list[PathItem] = ["instance_types", name]
            total = Resources(float(raw["cpu"]), self.size(path + ["ram"]), self.size(path + ["disk"]))
            result[str(name)] = InstanceType(str(name), total, float(raw["price_per_hour"]),
                                             self.duration(path + ["boot_time"]))
        return result

    def hosts(self, instance_types: dict[str, InstanceType], seen: dict[str, Location]) -> dict[str, HostDefinition]:
        result = {}
        for index, raw in self.unique("hosts", seen, "host or container"):
            path: list[PathItem] = ["hosts", index]
            kind = HostKind(raw["kind"])
            state = HostState(raw.get("state", "running"))
            name = str(raw["name"])
            self.host_names.add(name)
            foreign = ("latitude", "longitude", "cpu", "ram", "disk", "start_time") if kind is HostKind.CLOUD \
                else ("instance_type", "cloud_region")
            for key in foreign:
                if key in raw:
                    self.problem(path + [key], f"a {kind.value} host has no '{key}'",
                                 "cloud hosts have instance_type and cloud_region; edge hosts have latitude, "
                                 "longitude, cpu, ram, disk and start_time", key=True)
            if kind is HostKind.CLOUD:
                type_name, code = str(raw["instance_type"]), str(raw["cloud_region"])
                itype = instance_types.get(type_name)
                if itype is None:
                    self.problem(path + ["instance_type"], f"unknown instance type '{type_name}'",
                                 _known(instance_types))
                region = next((r for r in CLOUD_REGIONS if r.code == code), None)
                if region is None:
                    self.problem(path + ["cloud_region"], f"unknown cloud region '{code}'",
                                 "use an AWS region code such as eu-west-2 (see usm.geo.regions)")
                if itype is None or region is None:
                    continue
                result[name] = HostDefinition(name, kind, region.location, itype.total, state, region.area, code,
                                              type_name, itype.price_per_hour, itype.boot_time)
            else:
                location = Coordinates(float(raw["latitude"]), float(raw["longitude"]))
                total = Resources(float(raw["cpu"]), self.size(path + ["ram"]), self.size(path + ["disk"]))
                result[name] = HostDefinition(
                    name, kind, location, total, state, nearest_area(location).name,
                    boot_time=self.duration(path + ["start_time"], DEFAULT_EDGE_START_TIME))
        return result

    def catalog_apps(self) -> tuple[dict[str, ServiceDefinition], dict[int, AppDefinition]]:
        """The services and apps of the catalogue apps the scenario references (by index in ``apps``)."""
        services: dict[str, ServiceDefinition] = {}
        apps: dict[int, AppDefinition] = {}
        for index, raw in enumerate(self.data.get("apps") or []):
            if "catalog" not in raw:
                if "cpu_per_request" in raw:
                    self.problem(["apps", index, "cpu_per_request"], "only a catalogue app has 'cpu_per_request'",
                                 "give each service of this app its own cpu_per_request", key=True)
                continue
            for key in ("name", "services"):
                if key in raw:
                    self.problem(["apps", index, key], f"a catalogue app has no '{key}'",
                                 "its name and services come from the catalogue", key=True)
            try:
                app = catalog_app(str(raw["catalog"]))
            except KeyError:
                self.problem(["apps", index, "catalog"], f"no app '{raw['catalog']}' in the catalogue",
                             "use one of: " + ", ".join(catalog_names()))
                continue
            cpu = float(raw.get("cpu_per_request", DEFAULT_CATALOG_CPU_PER_REQUEST))
            for s in app.services:
                services.setdefault(s.name, ServiceDefinition(
                    name=s.name, image=s.image, memory=s.memory, cpu_per_request=cpu, dependencies=s.dependencies,
                    min_replicas=s.min_replicas, max_replicas=s.max_replicas, start_time=s.start_time))
            apps[index] = AppDefinition(app.name, tuple(s.name for s in app.services))
        return services, apps

    def services(self, catalog: Mapping[str, ServiceDefinition] = MappingProxyType({})) -> dict[str, ServiceDefinition]:
        kept = self.unique("services", {}, "service")
        names = {str(raw["name"]) for _, raw in kept} | set(catalog)
        result = dict(catalog)
        for index, raw in kept:
            path: list[PathItem] = ["services", index]
            name = str(raw["name"])
            if name in catalog:
                self.problem(path + ["name"], f"service '{name}' is already defined by a catalogue app of the "
                             "scenario", "rename this service, or leave the catalogue app out of apps")
                continue
            dependencies: list[str] = []
            for k, dep in enumerate(raw.get("dependencies") or []):
                dep = str(dep)
                if dep == name:
                    self.problem(path + ["dependencies", k], f"service '{name}' depends on itself")
                elif dep not in names:
                    self.problem(path + ["dependencies", k], f"unknown service '{dep}'", _known(names))
                elif dep not in dependencies:
                    dependencies.append(dep)
            low, high = int(raw.get("min_replicas", 1)), int(raw.get("max_replicas", 0))
            if high and low > high:
                self.problem(path + ["max_replicas"], f"max_replicas ({high}) is smaller than min_replicas ({low})")
            result[name] = ServiceDefinition(
                name=name,
                image=str(raw["image"]),
                memory=self.size(path + ["memory"]),
                cpu_per_request=float(raw["cpu_per_request"]),
                bytes_per_request=self.size(path + ["bytes_per_request"], DEFAULT_BYTES_PER_REQUEST),
                bytes_per_response=self.size(path + ["bytes_per_response"], DEFAULT_BYTES_PER_RESPONSE),
                disk=self.size(path + ["disk"]),
                dependencies=tuple(dependencies),
                min_replicas=low,
                max_replicas=high,
                start_time=self.duration(path + ["start_time"], DEFAULT_SERVICE_START_TIME),
            )
        self.check_cycles(result, {str(raw["name"]): index for index, raw in kept})
        return result

    def check_cycles(self, services: dict[str, ServiceDefinition], index_of: dict[str, int]) -> None:
        """One problem per dependency cycle, at the dependency that closes it (depth-first, by file order)."""
        state: dict[str, str] = {}  # name -> "open" while on the path, "done" after
        reported: set[frozenset[str]] = set()

        def visit(name: str, trail: list[str]) -> None:
            state[name] = "open"
            for k, dep in enumerate(services[name].dependencies):
                if state.get(dep) == "open":
                    cycle = trail[trail.index(dep):] + [name, dep] if dep in trail else [name, dep]
                    members = frozenset(cycle)
                    if members not in reported:
                        reported.add(members)
                        raw_deps = list(self.data["services"][index_of[name]].get("dependencies") or [])
                        position = raw_deps.index(dep) if dep in raw_deps else k
                        self.problem(["services", index_of[name], "dependencies", position],
                                     "dependency cycle: " + " -> ".join(cycle),
                                     "a service cannot depend, even indirectly, on itself")
                elif dep not in state:
                    visit(dep, trail + [name])
            state[name] = "done"

        for name in services:
            if name not in state:
                visit(name, [])

    def apps(self, services: dict[str, ServiceDefinition],
             catalog: Mapping[int, AppDefinition] = MappingProxyType({})) -> tuple[AppDefinition, ...]:
        result = []
        seen: dict[str, Location] = {}
        for index, raw in enumerate(self.data.get("apps") or []):
            key = "catalog" if "catalog" in raw else "name"
            name = str(raw[key])
            if name in seen:
                self.problem(["apps", index, key], f"duplicate app name '{name}'", f"first used at {seen[name]}")
                continue
            seen[name] = self.document.at(["apps", index, key])
            if key == "catalog":
                if index in catalog:
                    result.append(catalog[index])
                continue
            members = []
            for k, service in enumerate(raw["services"] or []):
                if str(service) not in services:
                    self.problem(["apps", index, "services", k], f"unknown service '{service}'", _known(services))
                else:
                    members.append(str(service))
            result.append(AppDefinition(str(raw["name"]), tuple(members)))
        return tuple(result)

    def containers(self, services: dict[str, ServiceDefinition], hosts: dict[str, HostDefinition],
                   seen: dict[str, Location]) -> dict[str, InitialContainer]:
        result = {}
        for index, raw in self.unique("containers", seen, "host or container"):
            path: list[PathItem] = ["containers", index]
            service, host = str(raw["service"]), str(raw["host"])
            ok = True
            if service not in services:
                self.problem(path + ["service"], f"unknown service '{service}'", _known(services))
                ok = False
            if host not in hosts:
                if host not in self.host_names:  # a host with a problem of its own is known
                    self.problem(path + ["host"], f"unknown host '{host}'", _known(hosts))
                ok = False
            elif hosts[host].state is not HostState.RUNNING:
                self.problem(path + ["host"], f"host '{host}' is stopped at the start",
                             "put initial containers on running hosts")
                ok = False
            self.container_names.add(str(raw["name"]))
            if ok:
                result[str(raw["name"])] = InitialContainer(str(raw["name"]), service, host)
        return result

    def workloads(self, services: dict[str, ServiceDefinition]) -> tuple[WorkloadSource, ...]:
        result = []
        for index, raw in self.unique("workloads", {}, "workload"):
            path: list[PathItem] = ["workloads", index]
            service = str(raw["service"])
            if service not in services:
                self.problem(path + ["service"], f"unknown service '{service}'", _known(services))
                continue
            location = Coordinates(float(raw["latitude"]), float(raw["longitude"]))
            profile = self.profile(path + ["profile"], raw["profile"], location)
            result.append(WorkloadSource(str(raw["name"]), service, location, profile,
                                         self.duration(path + ["offset"]), float(raw.get("noise", 0.0))))
        return tuple(result)

    def profile(self, path: list[PathItem], raw: Any, location: Coordinates) -> Profile:
        kind = raw["kind"]
        allowed = PROFILE_KEYS[kind]
        for key in raw:
            if key not in allowed:
                self.problem(path + [key], f"a {kind} profile has no '{key}'",
                             f"{kind} profiles take: {', '.join(sorted(allowed - {'kind'}))}", key=True)
        if kind == "constant":
            return Constant(float(raw["rate"]))
        if kind == "ramp":
            stages = tuple(Stage(self.duration(path + ["stages", k, "duration"]), float(stage["target"]))
                           for k, stage in enumerate(raw["stages"]))
            return Ramp(stages, float(raw.get("start", 0.0)), float(raw.get("requests_per_user", 1.0)),
                        bool(raw.get("repeat", False)))
        if kind == "diurnal":
            offset = float(raw.get("utc_offset", location.longitude / 15.0))
            return Diurnal(float(raw["peak"]), float(raw["trough"]), float(raw["peak_at"]), offset)
        return FlashCrowd(float(raw["base"]), float(raw["peak"]), self.duration(path + ["start"]),
                          self.duration(path + ["rise"]), self.duration(path + ["hold"]),
                          self.duration(path + ["fall"]))

    def simulated_metrics(self) -> tuple[TimedMetric, ...]:
        result = []
        for index, raw in self.unique("simulated_metrics", {}, "simulated metric"):
            path: list[PathItem] = ["simulated_metrics", index]
            low, high = float(raw["min"]), float(raw["max"])
            if low > high:
                self.problem(path + ["max"], f"max ({high:g}) is smaller than min ({low:g})")
                continue
            target = raw["target"]
            targets = None if target == "*" else ((str(target),) if isinstance(target, str)
                                                  else tuple(str(t) for t in target))
            metric = SimulatedMetric(name=str(raw["name"]), scope=Scope(raw["scope"]), targets=targets,
                                     field=str(raw["field"]), min=low, max=high,
                                     override=bool(raw.get("override", False)), order=index,
                                     location=self.document.at(path))
            start = self.duration(path + ["from"]) if "from" in raw else 0.0
            end = self.duration(path + ["until"]) if "until" in raw else math.inf
            if end <= start:
                self.problem(path + ["until"], "until must be later than from")
            result.append(TimedMetric(metric, start, end))
        return tuple(result)

    def faults(self, services: dict[str, ServiceDefinition], hosts: dict[str, HostDefinition],
               containers: dict[str, InitialContainer]) -> tuple[Fault, ...]:
        result = []
        for index, raw in enumerate(self.data.get("faults") or []):
            path: list[PathItem] = ["faults", index]
            kind = FaultKind(raw["kind"])
            at = self.duration(path + ["at"])
            if kind is FaultKind.CONTAINER_CRASH:
                if ("container" in raw) == ("service" in raw):
                    self.problem(path, "a container_crash names either a container or a service",
                                 "container: crashes that container; service: its first running replica by name")
                    continue
                for key in ("host",):
                    if key in raw:
                        self.problem(path + [key], f"a container_crash has no '{key}'", key=True)
                if "container" in raw and str(raw["container"]) not in containers:
                    if str(raw["container"]) in self.container_names:  # it has a problem of its own
                        continue
                    self.problem(path + ["container"], f"unknown container '{raw['container']}'",
                                 "name one of the initial containers, or crash a service's replica with service:")
                    continue
                if "service" in raw and str(raw["service"]) not in services:
                    self.problem(path + ["service"], f"unknown service '{raw['service']}'", _known(services))
                    continue
                result.append(Fault(at, kind, container=str(raw.get("container", "")),
                                    service=str(raw.get("service", ""))))
            else:
                for key in ("container", "service"):
                    if key in raw:
                        self.problem(path + [key], f"a {kind.value} fault has no '{key}'", key=True)
                if str(raw["host"]) not in hosts:
                    if str(raw["host"]) not in self.host_names:
                        self.problem(path + ["host"], f"unknown host '{raw['host']}'", _known(hosts))
                    continue
                result.append(Fault(at, kind, host=str(raw["host"])))
        return tuple(sorted(result, key=lambda f: f.at))

    def start_date(self) -> date:
        if "start_date" not in self.data:
            return DEFAULT_START_DATE
        try:
            return date.fromisoformat(str(self.data["start_date"]))
        except ValueError:
            self.problem(["start_date"], f"'{self.data['start_date']}' is not a date", "write it as 2026-11-27")
            return DEFAULT_START_DATE

    def moment(self, path: list[PathItem], origin: datetime) -> float | None:
        """A date and time (UTC unless it names a zone) as seconds from ``origin``; ``None`` after a problem."""
        text = str(self.document.value(path))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.problem(path, f"'{text}' is not a date and time", "write it as 2026-11-27 09:00 (UTC) or "
                         "2026-11-27T09:00+01:00")
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - origin).total_seconds()

    def predictions(self, services: dict[str, ServiceDefinition], start_date: date) -> tuple[Prediction, ...]:
        origin = datetime(start_date.year, start_date.month, start_date.day, tzinfo=UTC)
        result = []
        for index, raw in self.unique("predictions", {}, "prediction"):
            path: list[PathItem] = ["predictions", index]
            service = str(raw["service"])
            start, end = self.moment(path + ["start"], origin), self.moment(path + ["end"], origin)
            if service not in services:
                self.problem(path + ["service"], f"unknown service '{service}'", _known(services))
                continue
            if start is None or end is None:
                continue
            window = PredictionWindow(start, end, int(raw["min_replicas"]), bool(raw.get("weekly", False)),
                                      str(raw["name"]))
            found = window.problems()
            for message in found:
                self.problem(path + (["min_replicas"] if "min_replicas" in message else ["end"]), message)
            highest = services[service].max_replicas
            if highest and window.min_replicas > highest:
                self.problem(path + ["min_replicas"], f"min_replicas ({window.min_replicas}) is above the "
                             f"max_replicas ({highest}) of {service}", "lower it, or raise the service's bound")
            elif not found:
                result.append(Prediction(service, window))
        return tuple(result)

    def launches(self, apps: tuple[AppDefinition, ...], services: dict[str, ServiceDefinition],
                 hosts: dict[str, HostDefinition], containers: dict[str, InitialContainer],
                 duration: float) -> tuple[AppLaunchDefinition, ...]:
        by_name = {a.name: a for a in apps}
        running = {c.service for c in containers.values()}
        result: list[AppLaunchDefinition] = []
        seen: dict[str, Location] = {}
        raws = list(enumerate(self.data.get("launches") or []))
        times = [self.duration(["launches", index, "at"]) for index, _ in raws]
        for (index, raw), at in sorted(zip(raws, times, strict=True), key=lambda pair: pair[1]):
            path: list[PathItem] = ["launches", index]
            name = str(raw["app"])
            if ("near" in raw) == ("hosts" in raw):
                self.problem(path, "a launch gives either near (a place) or hosts",
                             "near: {latitude: .., longitude: ..} lets placement choose hosts close to it; hosts: "
                             "[a, b] uses those in turn")
                continue
            if name not in by_name:
                self.problem(path + ["app"], f"unknown app '{name}'", _known(by_name))
                continue
            if name in seen:
                self.problem(path + ["app"], f"app '{name}' is launched twice", f"first at {seen[name]}")
                continue
            seen[name] = self.document.at(path + ["app"])
            if at > duration:
                self.problem(path + ["at"], "the launch comes after the end of the scenario")
            unknown = [h for h in raw.get("hosts") or [] if str(h) not in hosts]
            for k, host in enumerate(raw.get("hosts") or []):
                if str(host) in unknown and str(host) not in self.host_names:
                    self.problem(path + ["hosts", k], f"unknown host '{host}'", _known(hosts))
            members = by_name[name].services
            try:
                plan_launch(name, {s: services[s].dependencies for s in members}, running)
            except LaunchRefused as refused:
                self.problem(path + ["app"], str(refused), "a service the app needs from outside must have an "
                             "initial container or belong to an app launched earlier")
            running |= set(members)
            near = raw.get("near")
            result.append(AppLaunchDefinition(
                name, at, Coordinates(float(near["latitude"]), float(near["longitude"])) if near else None,
                tuple(str(h) for h in raw.get("hosts") or []), raw.get("waves", "parallel") == "one_by_one",
                str(raw.get("on_failure", "report"))))
        return tuple(sorted(result, key=lambda launch: launch.at))


def _known(names: Any) -> str:
    listed = sorted(str(n) for n in names)
    if not listed:
        return "none is defined"
    shown = ", ".join(listed[:12]) + (", ..." if len(listed) > 12 else "")
    return f"known: {shown}"


__all__ = [
    "AppDefinition",
    "AppLaunchDefinition",
    "Fault",
    "FaultKind",
    "HostDefinition",
    "InitialContainer",
    "InstanceType",
    "Prediction",
    "Scenario",
    "ServiceDefinition",
    "TimedMetric",
    "WorkloadSource",
    "bundled_scenario",
    "bundled_scenarios",
    "callers_first",
    "load_scenario",
]

"""The demo app catalogue: the apps the original seeded (Sock Shop, Online Boutique, Hotel Reservation, Media,
Social Network), as data in ``usm/catalog/data/*.yaml``, one app per file.

Each file is validated by ``app.schema.json`` and then for its meaning: service names unique, every dependency a
service of the same app, no dependency cycle (the app must have a launch plan, ``usm.placement.launch``). Every
problem is reported at ``FILE:LINE:COLUMN`` (:class:`~usm.engine.yamldoc.InvalidSource`); a file with a problem
is never half-loaded. Each file's comments say where its numbers come from and what was corrected from the
original's seed.

Units once loaded: bytes for memory, seconds for start-up times. ``usm catalog import`` puts the apps into the
inventory store; simulator scenarios reference them with ``apps: [{catalog: sock-shop}]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from usm.engine.expressions import parse_duration, parse_number
from usm.engine.policy import Location
from usm.engine.yamldoc import Document, InvalidSource, PathItem, Problem, load, schema_problems
from usm.placement.launch import LaunchPlan, find_cycle, plan_launch

SCHEMA = "app.schema.json"
DATA = "data"


@dataclass(frozen=True)
class CatalogService:
    """A service of a catalogue app: its image and kind, ports (``None`` when it has none), expected ``memory``
    per replica in bytes, ``start_time`` (seconds from start to answering), replica bounds and the services of the
    app that must run before it."""

    name: str
    kind: str
    image: str
    memory: float
    start_time: float
    external_port: int | None = None
    internal_port: int | None = None
    min_replicas: int = 1
    max_replicas: int = 0
    dependencies: tuple[str, ...] = ()


@dataclass(frozen=True)
class CatalogApp:
    name: str
    title: str
    description: str
    services: tuple[CatalogService, ...]
    source: str = ""

    @cached_property
    def service_by_name(self) -> dict[str, CatalogService]:
        return {s.name: s for s in self.services}

    def launch_plan(self) -> LaunchPlan:
        """The waves the app's services start in (checked when the file was loaded)."""
        return plan_launch(self.name, {s.name: s.dependencies for s in self.services})


def catalog_names() -> tuple[str, ...]:
    """The names of the apps in the catalogue (``sock-shop``, ...)."""
    folder = resources.files("usm.catalog").joinpath(DATA)
    return tuple(sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")))


def catalog_app(name: str) -> CatalogApp:
    """The catalogue app ``name``; ``KeyError`` naming the apps there are for an unknown one."""
    if name not in catalog_names():
        raise KeyError(f"no app '{name}' in the catalogue (there are: {', '.join(catalog_names())})")
    return _bundled(name)


def catalog() -> tuple[CatalogApp, ...]:
    """Every app of the catalogue, by name."""
    return tuple(_bundled(name) for name in catalog_names())


@cache
def _bundled(name: str) -> CatalogApp:
    return load_app(Path(str(resources.files("usm.catalog").joinpath(DATA, f"{name}.yaml"))))


def load_app(path: Path) -> CatalogApp:
    """Load and check one catalogue file. ``InvalidSource`` lists every problem at ``FILE:LINE:COLUMN``."""
    if not path.is_file():
        raise InvalidSource([Problem(Location(str(path), 1, 1), f"no such catalogue file: {path}")])
    document = load(path)
    if document.data is None:
        raise InvalidSource([Problem(Location(str(path), 1, 1), "the catalogue file is empty")])
    problems = schema_problems(document, SCHEMA, "usm.catalog")
    if problems:
        raise InvalidSource(problems)
    return _build(document)


def _build(document: Document) -> CatalogApp:
    data: Any = document.data
    problems: list[Problem] = []
    index_of: dict[str, int] = {}
    for index, raw in enumerate(data["services"]):
        name = str(raw["name"])
        if name in index_of:
            problems.append(document.problem(["services", index, "name"], f"duplicate service name '{name}'",
                                             f"first used at {document.at(['services', index_of[name], 'name'])}"))
        else:
            index_of[name] = index
    services = []
    for name, index in index_of.items():
        raw = data["services"][index]
        path: list[PathItem] = ["services", index]
        dependencies: list[str] = []
        for k, dep in enumerate(raw.get("dependencies") or []):
            dep = str(dep)
            if dep == name:
                problems.append(document.problem(path + ["dependencies", k], f"service '{name}' depends on itself"))
            elif dep not in index_of:
                problems.append(document.problem(
                    path + ["dependencies", k], f"unknown service '{dep}'",
                    "a dependency must be a service of the same app: " + ", ".join(sorted(index_of))))
            elif dep in dependencies:
                problems.append(document.problem(path + ["dependencies", k], f"'{dep}' is listed twice"))
            else:
                dependencies.append(dep)
        low, high = int(raw.get("min_replicas", 1)), int(raw.get("max_replicas", 0))
        if high and low > high:
            problems.append(document.problem(path + ["max_replicas"],
                                             f"max_replicas ({high}) is smaller than min_replicas ({low})"))
        services.append(CatalogService(
            name=name, kind=str(raw["kind"]), image=str(raw["image"]),
            memory=_parsed(document, path + ["memory"], parse_number, problems),
            start_time=_parsed(document, path + ["start_time"], parse_duration, problems),
            external_port=raw.get("external_port"), internal_port=raw.get("internal_port"),
            min_replicas=low, max_replicas=high, dependencies=tuple(dependencies)))
    cycle = find_cycle({s.name: s.dependencies for s in services})
    if cycle:
        first, then = cycle[0], cycle[1]
        raw_deps = [str(d) for d in data["services"][index_of[first]].get("dependencies") or []]
        problems.append(document.problem(["services", index_of[first], "dependencies", raw_deps.index(then)],
                                         "dependency cycle: " + " -> ".join(cycle),
                                         "a service cannot depend, even through others, on itself"))
    if problems:
        raise InvalidSource(problems)
    return CatalogApp(name=str(data["name"]), title=str(data.get("title", data["name"])),
                      description=" ".join(str(data.get("description", "")).split()), services=tuple(services),
                      source=document.file)


def _parsed(document: Document, path: list[PathItem], parse: Any, problems: list[Problem]) -> float:
    raw = document.value(path)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    try:
        return float(parse(str(raw)))
    except ValueError as error:
        problems.append(document.problem(path, str(error)))
        return 0.0


__all__ = ["CatalogApp", "CatalogService", "catalog", "catalog_app", "catalog_names", "load_app"]

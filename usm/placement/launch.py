"""Launching an app as a unit: the order its services start in, as waves.

A service starts only once everything it depends on runs and is reachable; the services of one wave start side by
side. Waves are as early as they can be: a service sits in the wave right after the last of its dependencies, so
each wave holds every service that could start at that point (Kahn's algorithm taken level by level). The
original started one service after the other in a hand-numbered ``launchOrder`` and skipped the databases,
leaving them to be started on demand by their dependents (original-system §3.6); here databases are services like
the others, started in the wave their dependents wait for.

Stopping an app goes the other way round: dependents stop before what they depend on.

Everything is refused before anything starts: a dependency cycle (the message names it, ``a -> b -> a``) or a
dependency that is neither a service of the app nor already running elsewhere (the message names both services).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass


class LaunchRefused(ValueError):
    """An app that cannot be launched as described; the message says what to change. Nothing was started."""


@dataclass(frozen=True)
class LaunchPlan:
    """The waves an app's services start in: every service of a wave once the waves before it run."""

    app: str
    waves: tuple[tuple[str, ...], ...]

    @property
    def services(self) -> tuple[str, ...]:
        """Every service of the plan, wave after wave (a valid order to start them one by one)."""
        return tuple(service for wave in self.waves for service in wave)

    def wave_of(self, service: str) -> int:
        """The index of the wave ``service`` starts in; ``KeyError`` if it is not in the plan."""
        for index, wave in enumerate(self.waves):
            if service in wave:
                return index
        raise KeyError(f"service {service!r} is not in the launch plan of app {self.app!r}")

    def stop_order(self) -> tuple[tuple[str, ...], ...]:
        """The waves to stop the app in: the last wave first, so that nothing loses a dependency it still uses."""
        return tuple(reversed(self.waves))

    def one_by_one(self) -> LaunchPlan:
        """The same order with one service per wave: how the original launched (for comparison)."""
        return LaunchPlan(self.app, tuple((service,) for service in self.services))


def plan_launch(app: str, dependencies: Mapping[str, Iterable[str]], running: Collection[str] = ()) -> LaunchPlan:
    """The launch plan of ``app``, whose services are the keys of ``dependencies`` (each mapped to the services it
    depends on). A dependency outside the app is fine when it is in ``running`` (a service that runs already);
    otherwise, or when the dependencies have a cycle, ``LaunchRefused`` says which services are at fault."""
    graph = {service: tuple(dict.fromkeys(deps)) for service, deps in dependencies.items()}
    _refuse_missing(app, graph, frozenset(running))
    inside = {service: tuple(d for d in deps if d in graph) for service, deps in graph.items()}
    waves = _levels(inside)
    placed = sum(len(wave) for wave in waves)
    if placed < len(inside):
        left = {s: deps for s, deps in inside.items() if not any(s in wave for wave in waves)}
        cycle = find_cycle(left)
        raise LaunchRefused(f"app {app!r} cannot be launched: its dependencies form a cycle, "
                            f"{' -> '.join(cycle)}; a service cannot depend, even through others, on itself, so "
                            "remove one of these dependencies")
    return LaunchPlan(app, waves)


def _refuse_missing(app: str, graph: Mapping[str, tuple[str, ...]], running: frozenset[str]) -> None:
    missing = [(service, dep) for service, deps in graph.items() for dep in deps
               if dep not in graph and dep not in running]
    if not missing:
        return
    listed = "; ".join(f"{service!r} depends on {dep!r}" for service, dep in missing)
    absent = ", ".join(dict.fromkeys(repr(dep) for _, dep in missing))
    raise LaunchRefused(f"app {app!r} cannot be launched: {listed}, which is neither a service of the app nor "
                        f"running; add {absent} to the app, or start it first")


def _levels(graph: Mapping[str, tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    """Kahn's algorithm, one level at a time: each level is every service whose dependencies are all in earlier
    levels (by name within a level). Services on or behind a cycle are left out."""
    waiting = {service: len(deps) for service, deps in graph.items()}
    dependents: dict[str, list[str]] = {service: [] for service in graph}
    for service, deps in graph.items():
        for dep in deps:
            dependents[dep].append(service)
    wave = sorted(service for service, count in waiting.items() if count == 0)
    waves: list[tuple[str, ...]] = []
    while wave:
        waves.append(tuple(wave))
        following = []
        for service in wave:
            for dependent in dependents[service]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    following.append(dependent)
        wave = sorted(following)
    return tuple(waves)


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A dependency cycle of ``graph`` as a path that returns to its start (``['a', 'b', 'a']``), or ``[]``.
    Depth-first from each service by name, following dependencies by name, so the answer is stable."""
    state: dict[str, int] = {}  # 1 while on the current path, 2 once explored
    path: list[str] = []

    def visit(service: str) -> list[str]:
        state[service] = 1
        path.append(service)
        for dep in sorted(d for d in graph.get(service, ()) if d in graph):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[service] = 2
        return []

    for service in sorted(graph):
        if service not in state and (found := visit(service)):
            return found
    return []


__all__ = ["LaunchPlan", "LaunchRefused", "find_cycle", "plan_launch"]

"""The inventory the engine judges: hosts, apps, services and containers.

Plain frozen data, built by the caller (a policy test, the simulator, the live store).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Host:
    name: str
    region: str = ""
    latitude: float = 0.0
    longitude: float = 0.0


@dataclass(frozen=True)
class App:
    name: str
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    name: str
    min_replicas: int = 1
    max_replicas: int = 0  # 0 = unlimited


@dataclass(frozen=True)
class Container:
    name: str
    service: str
    host: str


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...] = ()
    apps: tuple[App, ...] = ()
    services: tuple[Service, ...] = ()
    containers: tuple[Container, ...] = ()

    @cached_property
    def service_by_name(self) -> dict[str, Service]:
        """Every service named by the inventory; one a container names but nobody declared gets defaults."""
        known = {s.name: s for s in self.services}
        for c in self.containers:
            if c.service not in known:  # (not setdefault: that would make a Service per container)
                known[c.service] = Service(c.service)
        return known

    @cached_property
    def apps_of_service(self) -> dict[str, tuple[str, ...]]:
        """Service name -> the names of the apps it belongs to, in inventory order."""
        result: dict[str, list[str]] = {}
        for app in self.apps:
            for s in app.services:
                result.setdefault(s, []).append(app.name)
        return {s: tuple(a) for s, a in result.items()}

    @cached_property
    def replicas(self) -> dict[str, int]:
        """Service name -> number of its containers in the inventory."""
        counts: dict[str, int] = {name: 0 for name in self.service_by_name}
        for c in self.containers:
            counts[c.service] += 1
        return counts

    def entity_names(self) -> list[str]:
        return [h.name for h in self.hosts] + [c.name for c in self.containers]


__all__ = ["App", "Container", "Host", "Inventory", "Service"]

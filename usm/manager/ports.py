"""The two edges of the control loop: what it reads from the world, and how it acts on it.

The loop (``usm.manager.loop``) only talks to a :class:`Collector` and an :class:`Actuator`.
The simulator implements both over its virtual world; live mode implements them over
Prometheus, Docker, EC2 and SSH. The loop cannot tell the difference, which is what makes a
dry run or a simulation trustworthy: the same engine, placement and loop decide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import polars as pl

from usm.engine.inventory import Inventory
from usm.geo.sphere import Coordinates
from usm.placement.model import Cluster, PlacementOptions, ServiceSpec

# (coordinates of a group of callers, number of requests they made)
RequestLocations = Mapping[str, Sequence[tuple[Coordinates, float]]]


@dataclass(frozen=True)
class Failure:
    """A container that stopped without being asked to (crash, or its host went down)."""

    container: str
    service: str
    host: str
    lineage: str = ""  # the container it replaced, for recovery's failure counting


@dataclass(frozen=True)
class Observation:
    """Everything the loop reads at one cycle time."""

    inventory: Inventory  # the engine's view: hosts, apps, services, containers (running or starting)
    placement: Cluster | Callable[[], Cluster]  # placement's view of the same, or how to make it when needed
    samples: pl.DataFrame  # ts, entity, field, value: the samples measured since the last cycle
    requests: RequestLocations  # service -> where its callers were, over the request window
    services: tuple[ServiceSpec, ...] = ()  # every service's demand and minimum replicas
    failures: tuple[Failure, ...] = ()  # containers that failed since the last cycle
    options: PlacementOptions | None = None  # the world's own bounds (launch capacity, host limits), if any
    problems: tuple[Any, ...] = ()  # sources that could not be read (usm.collectors.batch.Problem), and why

    @cached_property
    def cluster(self) -> Cluster:
        """Placement's view: capacities, usage, demands, host states. Made on first use, since most cycles plan
        nothing (the simulator's world pays several milliseconds for it at a thousand containers)."""
        return self.placement() if callable(self.placement) else self.placement


@dataclass(frozen=True)
class Outcome:
    """What became of one plan step."""

    step: Any
    ok: bool
    detail: str = ""
    transient: bool = False  # a failure that may pass if the step is tried again (a host that did not answer)


class Collector(Protocol):
    def observe(self, at: float) -> Observation:
        """The world as it is at ``at``."""


class Actuator(Protocol):
    def execute(self, step: Any, at: float) -> Outcome:
        """Carry out one plan step (``usm.placement.plans``); never raise for a step that fails:
        say so in the outcome."""

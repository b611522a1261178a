"""The policy model: settings, rules and simulated metrics, as loaded and validated.

Everything here is frozen data. Rules keep their load ``order`` (file-name order, then order in
the file), which breaks priority ties (policy-spec §3), and their source ``Location`` for
error messages and explanations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from usm.engine.expressions import BUILTIN_FIELDS, Node, terms
from usm.engine.terms import Term
from usm.engine.yamldoc import Location


class Scope(str, Enum):
    HOST = "host"
    APP = "app"
    SERVICE = "service"
    CONTAINER = "container"


class Decision(str, Enum):
    NONE = "none"
    REPLICATE = "replicate"
    MIGRATE = "migrate"
    STOP = "stop"
    OVERWORK = "overwork"
    UNDERWORK = "underwork"


HOST_DECISIONS = (Decision.NONE, Decision.OVERWORK, Decision.UNDERWORK)
CONTAINER_DECISIONS = (Decision.NONE, Decision.REPLICATE, Decision.MIGRATE, Decision.STOP)


def allowed_decisions(scope: Scope) -> tuple[Decision, ...]:
    return HOST_DECISIONS if scope is Scope.HOST else CONTAINER_DECISIONS




DEFAULT_STREAK: Mapping[Decision, int] = MappingProxyType({
    Decision.REPLICATE: 2, Decision.MIGRATE: 2, Decision.STOP: 3, Decision.OVERWORK: 3, Decision.UNDERWORK: 3,
})


@dataclass(frozen=True)
class Settings:
    period: float = 15.0
    streak: Mapping[Decision, int] = field(default_factory=lambda: DEFAULT_STREAK)
    cooldown: Mapping[Decision, float] = field(default_factory=lambda: MappingProxyType({}))
    fields: tuple[str, ...] = ()
    retention: float = 3600.0
    seed: int = 0

    @property
    def all_fields(self) -> tuple[str, ...]:
        return BUILTIN_FIELDS + tuple(f for f in self.fields if f not in BUILTIN_FIELDS)

    def streak_for(self, decision: Decision) -> int:
        return self.streak.get(decision, DEFAULT_STREAK.get(decision, 1))

    def cooldown_for(self, decision: Decision) -> float:
        return self.cooldown.get(decision, 0.0)


@dataclass(frozen=True)
class Rule:
    name: str
    scope: Scope
    targets: tuple[str, ...] | None  # None: generic ("*")
    when: Node
    when_text: str
    then: Decision
    priority: int = 0
    order: int = 0
    location: Location | None = None

    @property
    def generic(self) -> bool:
        return self.targets is None


@dataclass(frozen=True)
class SimulatedMetric:
    name: str
    scope: Scope
    targets: tuple[str, ...] | None
    field: str
    min: float
    max: float
    override: bool = False
    active: bool = True
    order: int = 0
    location: Location | None = None

    @property
    def generic(self) -> bool:
        return self.targets is None


@dataclass(frozen=True)
class Policy:
    settings: Settings = Settings()
    rules: tuple[Rule, ...] = ()
    simulated_metrics: tuple[SimulatedMetric, ...] = ()
    source: str = ""
    digest: str = ""  # a hash of the files' contents: the policy's version

    @property
    def host_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.scope is Scope.HOST)

    @property
    def container_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.scope is not Scope.HOST)

    @property
    def terms(self) -> frozenset[Term]:
        """Every term the rules read."""
        return frozenset().union(*(terms(r.when) for r in self.rules))


def digest_of(contents: Mapping[str, bytes]) -> str:
    """A short, stable version id of a set of files."""
    h = hashlib.sha256()
    for name in sorted(contents):
        h.update(name.encode() + b"\0" + contents[name] + b"\0")
    return h.hexdigest()[:12]


# --- which rules apply to an entity (policy-spec §3) ------------------------------------------------


def container_level(scope: Scope, targets: tuple[str, ...] | None, container: str, service: str,
                    apps: tuple[str, ...]) -> int | None:
    """The precedence level (1 most specific .. 4 generic) at which a rule or simulated metric of
    ``scope``/``targets`` judges a container, or None when it does not apply to it."""
    if scope is Scope.HOST:
        return None
    if targets is None:
        return 4
    if scope is Scope.CONTAINER:
        return 1 if container in targets else None
    if scope is Scope.SERVICE:
        return 2 if service in targets else None
    return 3 if any(a in targets for a in apps) else None


def host_level(scope: Scope, targets: tuple[str, ...] | None, host: str) -> int | None:
    """1 for a host rule naming ``host``, 2 for a generic host rule, None otherwise."""
    if scope is not Scope.HOST:
        return None
    if targets is None:
        return 2
    return 1 if host in targets else None

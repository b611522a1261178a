"""What one decision cycle produces: evaluations, actions, suppressions and explanations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from usm.engine.policy import Decision

EVALUATION_SCHEMA = {
    "entity": pl.String, "kind": pl.String, "service": pl.String, "decision": pl.String, "rule": pl.String,
    "level": pl.Int32, "streak": pl.Int64,
}
STREAK_SCHEMA = {"entity": pl.String, "decision": pl.String, "streak": pl.Int64}


@dataclass(frozen=True)
class Action:
    """An action to carry out (policy-spec §4): ``target`` is the service for container
    decisions, with ``container`` the container whose decision won, or the host."""

    at: float
    action: Decision
    target: str
    rule: str
    container: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "action": self.action.value, "target": self.target}
        if self.container is not None:
            out["container"] = self.container
        out["rule"] = self.rule
        return out


@dataclass(frozen=True)
class Suppression:
    """An action candidate that bounds or a cooldown kept from running."""

    at: float
    action: Decision
    target: str
    entity: str
    rule: str
    reason: str


@dataclass(frozen=True)
class RuleVerdict:
    """How one rule that applies to an entity judged it."""

    rule: str
    level: int
    priority: int
    decision: Decision
    result: bool | None  # None: unknown, because a term was missing
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Explanation:
    """Why an entity got its decision: the winner, the rules it shadowed, and the terms read."""

    entity: str
    kind: str
    decision: Decision
    rule: str | None
    level: int | None
    streak: int
    shadowed: tuple[RuleVerdict, ...]
    verdicts: tuple[RuleVerdict, ...]  # every rule that applies to the entity, in precedence order
    terms: Mapping[str, float | None] = field(default_factory=lambda: MappingProxyType({}))
    policy: str = ""  # the policy's digest

    @property
    def missing(self) -> tuple[str, ...]:
        """Terms that some applicable rule needed and the history did not have."""
        return tuple(sorted({m for v in self.verdicts for m in v.missing}))

    def as_dict(self) -> dict[str, Any]:
        def verdict(v: RuleVerdict) -> dict[str, Any]:
            return {"rule": v.rule, "level": v.level, "priority": v.priority, "decision": v.decision.value,
                    "result": v.result, "missing": list(v.missing)}

        return {
            "entity": self.entity, "kind": self.kind, "decision": self.decision.value, "rule": self.rule,
            "level": self.level, "streak": self.streak, "shadowed": [v.rule for v in self.shadowed],
            "rules": [verdict(v) for v in self.verdicts], "terms": dict(self.terms), "missing": list(self.missing),
            "policy": self.policy,
        }


DECISIONS: tuple[Decision, ...] = tuple(Decision)
"""Decisions by code: a decision's code is its index here (none is 0)."""


@dataclass(frozen=True, eq=False)
class StreakTable:
    """Each entity's decision (by code, see ``DECISIONS``) and for how many cycles in a row it has
    held it; 0 means restarted by an action, so that the next cycle counts 1 whatever it decides."""

    entities: Sequence[str] = ()
    decisions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    streaks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({
            "entity": pl.Series(list(self.entities), dtype=pl.String),
            "decision": pl.Series([DECISIONS[code].value for code in self.decisions.tolist()], dtype=pl.String),
            "streak": pl.Series(self.streaks, dtype=pl.Int64),
        }, schema=STREAK_SCHEMA)


@dataclass(frozen=True)
class EngineState:
    """What carries from one cycle to the next: each entity's streak, and the cooldowns."""

    table: StreakTable = field(default_factory=StreakTable)
    # (kind "host"|"container", target, decision value) -> the time until which it is cooling down
    cooldowns: Mapping[tuple[str, str, str], float] = field(default_factory=lambda: MappingProxyType({}))

    @cached_property
    def streaks(self) -> pl.DataFrame:
        """The streaks as a frame: entity, decision, streak."""
        return self.table.frame()

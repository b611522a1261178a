"""Backtesting: a candidate policy replayed over what was recorded, and where it would have decided otherwise.

A live (or dry) run leaves two records: the decision log (every cycle, the inventory's changes, every
evaluation that was not ``none``, every action) and the history (every sample). ``backtest`` rebuilds
each recorded cycle's inventory from the log, reads each cycle's terms from the history as the engine
would have then, runs the candidate policy's engine over them, and compares, entity by entity, its
decisions with the ones recorded.

The candidate starts with no streaks or cooldowns: cycles in the ``warmup`` before ``start`` are
replayed without being compared, so that streaks build up and cooldowns run out as they had (by
default, the longest of the candidate's streaks times its period and its cooldowns). Cycles are
replayed at the recorded times, whatever the candidate's period. The recorded samples already include
the simulated metrics of the policy then in force.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from usm.collectors.history import History
from usm.engine import Engine, Policy
from usm.engine.inventory import Inventory
from usm.manager.decisionlog import replay_inventory

NONE = "none"


@dataclass(frozen=True)
class Verdict:
    decision: str
    rule: str | None

    def __str__(self) -> str:
        return self.decision if self.rule is None else f"{self.decision} ({self.rule})"


@dataclass(frozen=True)
class Difference:
    at: float
    entity: str
    recorded: Verdict
    candidate: Verdict


@dataclass(frozen=True)
class ActionDifference:
    at: float
    recorded: tuple[str, ...]  # "replicate front (front-1)"
    candidate: tuple[str, ...]


@dataclass
class RecordedCycle:
    at: float
    policy: str
    inventory: Inventory
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # entities whose decision was not none
    actions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BacktestResult:
    replayed: int  # cycles run, warm-up included
    compared: int  # cycles compared
    judged: int  # entity verdicts compared
    differences: tuple[Difference, ...]
    action_differences: tuple[ActionDifference, ...]
    recorded_policies: tuple[str, ...]  # the digests of the policies in force over the compared cycles

    @property
    def same(self) -> bool:
        return not self.differences and not self.action_differences


def read_decision_log(path: Path) -> list[RecordedCycle]:
    """The recorded cycles of a decision log, in order."""
    cycles: list[RecordedCycle] = []
    inventory: Inventory | None = None
    current: RecordedCycle | None = None
    with Path(path).open(encoding="utf-8") as log:
        for number, line in enumerate(log, 1):
            try:
                record = json.loads(line)
                kind = record["type"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a decision-log record") from None
            if kind == "cycle":
                current = RecordedCycle(record["at"], record["policy"], inventory or Inventory())
                cycles.append(current)
            elif current is None:
                raise ValueError(f"{path}:{number}: a record of type {kind} before any cycle record "
                                 "(a log written before usm recorded cycles cannot be backtested)")
            elif kind == "inventory":
                inventory = current.inventory = replay_inventory(inventory, record)
            elif kind == "evaluation":
                current.verdicts[record["entity"]] = Verdict(record["decision"], record["rule"])
            elif kind == "action":
                current.actions.append(_action_text(record))
    return cycles


def backtest(policy: Policy, decisions: Path, history: Path, start: float = float("-inf"),
             end: float = float("inf"), warmup: float | None = None) -> BacktestResult:
    recorded = read_decision_log(decisions)
    if warmup is None:  # long enough for streaks to build up and cooldowns to run out
        warmup = max(max(policy.settings.streak.values(), default=1) * policy.settings.period,
                     max(policy.settings.cooldown.values(), default=0.0))
    engine = Engine(policy)
    settings = policy.settings
    differences: list[Difference] = []
    action_differences: list[ActionDifference] = []
    replayed = compared = judged = 0
    policies: list[str] = []
    with History(str(history), read_only=True) as samples:
        for cycle in _within(recorded, start - warmup, end):
            terms = samples.terms(cycle.at, settings.period, engine.compiled.terms, settings.retention)
            result = engine.cycle(cycle.at, cycle.inventory, terms)
            replayed += 1
            if cycle.at < start:
                continue
            compared += 1
            if cycle.policy not in policies:
                policies.append(cycle.policy)
            for entity, decision, rule in result.evaluations.select("entity", "decision", "rule").iter_rows():
                judged += 1
                mine = Verdict(decision, rule if decision != NONE else None)
                theirs = cycle.verdicts.get(entity, Verdict(NONE, None))
                if theirs.decision == NONE:
                    theirs = Verdict(NONE, None)
                if mine != theirs:
                    differences.append(Difference(cycle.at, entity, theirs, mine))
            mine_actions = tuple(sorted(_action_text(a.as_dict()) for a in result.actions))
            if mine_actions != tuple(sorted(cycle.actions)):
                action_differences.append(ActionDifference(cycle.at, tuple(sorted(cycle.actions)), mine_actions))
    return BacktestResult(replayed, compared, judged, tuple(differences), tuple(action_differences),
                          tuple(policies))


def _within(cycles: list[RecordedCycle], start: float, end: float) -> Iterator[RecordedCycle]:
    return (c for c in cycles if start <= c.at <= end)


def _action_text(record: dict[str, Any]) -> str:
    container = f" ({record['container']})" if record.get("container") else ""
    return f"{record['action']} {record['target']}{container}"

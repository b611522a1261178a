"""Running policy tests: the real engine and the real history, on the test's samples.

Each file runs its cycles at ``0, interval, 2 x interval, ...`` up to its largest ``at``, with
one engine and one in-memory history, so streaks, cooldowns and windows carry across cycles.
Actions are recorded, never applied: the inventory stays as written (policy-spec §5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from usm.collectors.history import History
from usm.engine import Cycle, Engine, InvalidSource
from usm.engine.simulated import SAMPLE_SCHEMA
from usm.policytest.testfile import Check, TestFile, load_test_file


@dataclass(frozen=True)
class CheckResult:
    file: str
    check: Check
    failures: tuple[str, ...]  # a diff line per mismatch; empty when the check passed

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def name(self) -> str:
        return f"{self.file} at {self.check.at:g}s (line {self.check.location.line})"


@dataclass(frozen=True)
class FileResult:
    path: str
    results: tuple[CheckResult, ...] = ()
    invalid: InvalidSource | None = None
    policy_source: str = ""
    rules: tuple[str, ...] = ()
    matched: frozenset[str] = field(default_factory=frozenset)


def run_file(path: str) -> FileResult:
    """Load and run one test file; an invalid file is reported in the result, never raised."""
    try:
        test = load_test_file(path)
    except InvalidSource as invalid:
        return FileResult(path, invalid=invalid)
    return run(test)


def samples_at(test: TestFile, index: int) -> pl.DataFrame:
    """The samples of cycle ``index``: every series' value number ``index``, at its time."""
    at = index * test.interval
    rows = [(at, s.entity, s.field, s.values[index]) for s in test.series
            if index < len(s.values) and s.values[index] is not None]
    return pl.DataFrame(rows, schema=SAMPLE_SCHEMA, orient="row")


def run(test: TestFile, on_cycle: Callable[[Cycle], object] | None = None) -> FileResult:
    """Run a loaded test file; ``on_cycle`` sees every cycle (the dry-run equivalence test uses it)."""
    engine = Engine(test.policy)
    settings = test.policy.settings
    by_time: dict[float, list[Check]] = defaultdict(list)
    for check in test.checks:
        by_time[round(check.at / test.interval)].append(check)
    results, matched = [], set()
    with History() as history:
        for index in range(round(test.last_cycle / test.interval) + 1):
            at = index * test.interval
            history.append(engine.simulate(at, test.inventory, samples_at(test, index)))
            terms = history.terms(at, settings.period, engine.compiled.terms, settings.retention)
            cycle = engine.cycle(at, test.inventory, terms)
            matched |= cycle.matched_rules
            if on_cycle is not None:
                on_cycle(cycle)
            for check in by_time.get(index, ()):
                results.append(CheckResult(test.path, check, tuple(_compare(check, cycle))))
    results.sort(key=lambda r: r.check.location.line)
    return FileResult(test.path, tuple(results), policy_source=test.policy.source,
                      rules=tuple(r.name for r in test.policy.rules), matched=frozenset(matched))


def _compare(check: Check, cycle: Any) -> list[str]:
    failures = []
    decided = {row["entity"]: row for row in cycle.evaluations.iter_rows(named=True)}
    for expected in check.decisions:
        actual = decided[expected.entity]
        same = actual["decision"] == expected.decision and (not expected.check_rule or actual["rule"] == expected.rule)
        if not same:
            want = _decision_text(expected.decision, expected.rule if expected.check_rule else ...)
            got = _decision_text(actual["decision"], actual["rule"])
            failures.append(f"decision of {expected.entity}:\n      - expected {want}\n      + actual   {got}")
    if check.actions is not None:
        actual_actions = [_comparable(a.as_dict()) for a in cycle.actions]
        unmatched_expected, unmatched_actual = match_actions(list(check.actions), actual_actions)
        if unmatched_expected or unmatched_actual:
            lines = ["actions:"]
            lines += [f"      - expected {_action_text(a)}" for a in unmatched_expected]
            lines += [f"      + actual   {_action_text(a)}" for a in unmatched_actual]
            failures.append("\n".join(lines))
    return failures


def _comparable(action: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in action.items() if k != "at"}


def _decision_text(decision: str, rule: Any) -> str:
    if rule is ...:
        return decision
    return f"{decision} (rule {rule if rule is not None else 'none matched'})"


def _action_text(action: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in action.items()) + "}"


def _agrees(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    return all(k in actual and actual[k] == v for k, v in expected.items())


def match_actions(expected: list[dict[str, Any]], actual: list[dict[str, Any]]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pair expected with actual actions one to one (an expected one matches an actual one when
    every key it gives agrees). Returns what stayed unpaired on each side; both empty means the
    lists match. A maximum bipartite matching, so the order of either list does not matter."""
    partner: dict[int, int] = {}  # actual index -> expected index

    def augment(i: int, seen: set[int]) -> bool:
        for j, candidate in enumerate(actual):
            if j in seen or not _agrees(expected[i], candidate):
                continue
            seen.add(j)
            if j not in partner or augment(partner[j], seen):
                partner[j] = i
                return True
        return False

    for i in range(len(expected)):
        augment(i, set())
    paired = set(partner.values())
    return ([e for i, e in enumerate(expected) if i not in paired],
            [a for j, a in enumerate(actual) if j not in partner])

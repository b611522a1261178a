"""Policy test files (policy-spec §5 and §7.7): reading, validating and expanding them.

A test file fixes an inventory, feeds metric series in promtool's expanding notation and says
what the engine must decide at given cycle times. ``load_test_file`` returns a
:class:`TestFile` or raises :class:`~usm.engine.yamldoc.InvalidSource` with every problem at
``FILE:LINE:COLUMN``; the policy it names is loaded (and validated) with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usm.engine.expressions import parse_duration
from usm.engine.inventory import App, Container, Host, Inventory, Service
from usm.engine.loader import load_policy
from usm.engine.policy import Policy
from usm.engine.yamldoc import InvalidSource, Location, Problem, load, schema_problems

SCHEMA = "policy-test.schema.json"
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_SERIES_ITEM = re.compile(rf"^(?P<a>{_NUMBER})(?:(?P<sign>[-+])(?P<b>{_NUMBER}))?(?:x(?P<n>\d+))?$")
_MISSING_ITEM = re.compile(r"^_(?:x(?P<n>\d+))?$")


def expand_series(text: str) -> list[float | None]:
    """promtool's notation: ``1 2 _`` literally; ``a+bxn`` and ``a-bxn`` give n+1 values from a
    in steps of b; ``axn`` is n+1 copies of a; ``_`` is one missing sample, ``_xn`` n of them."""
    values: list[float | None] = []
    for item in str(text).split():
        missing = _MISSING_ITEM.match(item)
        if missing:
            values.extend([None] * int(missing["n"] or 1))
            continue
        match = _SERIES_ITEM.match(item)
        if not match or (match["sign"] and match["n"] is None):
            raise ValueError(f"'{item}' is not a series value (write 1.5, 10+2x3, 5x4, _ or _x2)")
        start = float(match["a"])
        if match["n"] is None:
            values.append(start)
            continue
        step = float(match["b"] or 0) * (-1 if match["sign"] == "-" else 1)
        values.extend(start + step * i for i in range(int(match["n"]) + 1))
    if any(v is not None and not math.isfinite(v) for v in values):
        raise ValueError("series values must be finite numbers")
    return values


@dataclass(frozen=True)
class Series:
    entity: str
    field: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class ExpectedDecision:
    entity: str
    decision: str
    rule: str | None
    check_rule: bool  # False when the test leaves ``rule`` out


@dataclass(frozen=True)
class Check:
    """One item of ``tests``: what must hold at cycle time ``at``."""

    at: float
    decisions: tuple[ExpectedDecision, ...]
    actions: tuple[dict[str, Any], ...] | None  # None: not checked
    location: Location


@dataclass(frozen=True)
class TestFile:
    path: str
    policy: Policy
    interval: float
    inventory: Inventory
    series: tuple[Series, ...]
    checks: tuple[Check, ...]

    @property
    def last_cycle(self) -> float:
        return max(c.at for c in self.checks)


def load_test_file(path: str | Path) -> TestFile:
    file = Path(path)
    document = load(file)
    problems = schema_problems(document, SCHEMA, "usm.policytest")
    if document.data is None:
        problems.append(Problem(Location(str(file), 1, 1), "the test file is empty"))
    if problems:
        raise InvalidSource(problems)
    data = document.data
    interval = _duration(document, ["interval"], problems)
    if interval is not None and interval <= 0:
        problems.append(document.problem(["interval"], "the interval must be longer than 0s"))
    if problems:
        raise InvalidSource(problems)
    policy = load_policy(file.parent / str(data["policy"]), period=interval)
    inventory = _inventory(document, problems)
    names = {h.name for h in inventory.hosts} | {c.name for c in inventory.containers}
    series = []
    for index, item in enumerate(data.get("series") or []):
        where = ["series", index]
        if item["entity"] not in names:
            problems.append(document.problem(where + ["entity"], f"unknown entity '{item['entity']}'",
                                             "series may name the inventory's hosts and containers"))
        if item["field"] not in policy.settings.all_fields:
            problems.append(document.problem(where + ["field"], f"unknown field '{item['field']}'",
                                             "use a built-in field or one of the policy's settings.fields"))
        try:
            values = expand_series(str(item["values"]))
        except ValueError as error:
            problems.append(document.problem(where + ["values"], str(error)))
            continue
        series.append(Series(str(item["entity"]), str(item["field"]), tuple(values)))
    checks = []
    for index, item in enumerate(data["tests"]):
        check = _check(document, ["tests", index], item, interval or 1.0, names, problems)
        if check:
            checks.append(check)
    if problems:
        raise InvalidSource(problems)
    return TestFile(str(file), policy, interval or 1.0, inventory, tuple(series), tuple(checks))


def _duration(document: Any, path: list[Any], problems: list[Problem]) -> float | None:
    raw = document.value(path)
    try:
        return parse_duration(str(raw)) if isinstance(raw, str) else parse_duration("")
    except ValueError:
        problems.append(document.problem(path, f"'{raw}' is not a duration", "write a number and a unit: 0s, 15s, 1m"))
        return None


def _inventory(document: Any, problems: list[Problem]) -> Inventory:
    raw = document.data["inventory"] or {}
    seen: dict[str, Location] = {}
    for kind in ("hosts", "containers"):
        for index, item in enumerate(raw.get(kind) or []):
            location = document.at(["inventory", kind, index, "name"])
            if item["name"] in seen:
                problems.append(Problem(location, f"duplicate entity name '{item['name']}'",
                                        f"first used at {seen[item['name']]}; hosts and containers share one namespace"))
            seen.setdefault(item["name"], location)
    return Inventory(
        hosts=tuple(Host(str(h["name"]), str(h.get("region", "")), float(h.get("latitude", 0.0)),
                         float(h.get("longitude", 0.0))) for h in raw.get("hosts") or []),
        apps=tuple(App(str(a["name"]), tuple(map(str, a.get("services") or []))) for a in raw.get("apps") or []),
        services=tuple(Service(str(s["name"]), int(s.get("min_replicas", 1)), int(s.get("max_replicas", 0)))
                       for s in raw.get("services") or []),
        containers=tuple(Container(str(c["name"]), str(c["service"]), str(c["host"]))
                         for c in raw.get("containers") or []),
    )


def _check(document: Any, path: list[Any], item: Any, interval: float, names: set[str],
           problems: list[Problem]) -> Check | None:
    at = _duration(document, path + ["at"], problems)
    if at is not None and abs(at / interval - round(at / interval)) > 1e-9:
        problems.append(document.problem(path + ["at"], f"at {item['at']} is not a multiple of the interval",
                                         "cycles run at 0s, interval, 2 x interval, ..."))
    decisions = []
    for index, d in enumerate(item.get("decisions") or []):
        if d["entity"] not in names:
            problems.append(document.problem(path + ["decisions", index, "entity"],
                                             f"unknown entity '{d['entity']}'", "name a host or container of the inventory"))
        decisions.append(ExpectedDecision(str(d["entity"]), str(d["decision"]), d.get("rule"), "rule" in d))
    if "actions" in item and item["actions"] is None:
        problems.append(document.problem(path + ["actions"], "actions: null is not allowed",
                                         "write actions: [] for no action, or leave actions out to not check them"))
    actions = None if item.get("actions") is None else tuple(dict(a) for a in item["actions"])
    if at is None:
        return None
    return Check(at, tuple(decisions), actions, document.at(path))

"""Loading and validating a policy directory (policy-spec §1, §2, §6 and §7).

``load_policy`` reads every ``*.yaml``/``*.yml`` file of a directory in file-name order (or one
file), validates the structure against the shipped JSON Schema (``policy.schema.json``, which
editors can use too) and then the meaning: expressions, fields, durations, decisions allowed
by each scope, unique names, one settings block. Any problem rejects the whole policy:
:class:`~usm.engine.yamldoc.InvalidSource` lists every problem found, at ``FILE:LINE:COLUMN``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from usm.engine.expressions import ExpressionError, Literal, parse, parse_duration
from usm.engine.policy import (
    DEFAULT_STREAK,
    Decision,
    Location,
    Policy,
    Rule,
    Scope,
    Settings,
    SimulatedMetric,
    allowed_decisions,
    digest_of,
)
from usm.engine.yamldoc import Document, InvalidSource, PathItem, Problem, load, schema_problems

SCHEMA = "policy.schema.json"
SUFFIXES = (".yaml", ".yml")


def policy_files(path: Path) -> list[Path]:
    """The files a policy at ``path`` consists of: the file itself, or a directory's YAML files
    (not its subdirectories) in file-name order."""
    if path.is_file():
        return [path]
    return sorted((p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES), key=lambda p: p.name)


def load_policy(path: str | Path, period: float | None = None) -> Policy:
    """Load and validate a policy directory or file. Raises InvalidSource, never a partial policy.
    ``period`` replaces ``settings.period`` (a policy test runs at its own interval, §7.9)."""
    root = Path(path)
    if not root.exists():
        raise InvalidSource([Problem(_nowhere(root), f"no such policy file or directory: {root}")])
    files = policy_files(root)
    if not files:
        raise InvalidSource([Problem(_nowhere(root), "the policy directory has no .yaml or .yml file",
                                     "put the policy's rules in files such as rules.yaml")])
    documents, problems = [], []
    for file in files:
        try:
            document = load(file)
        except InvalidSource as error:
            problems.extend(error.problems)
            continue
        if document.data is None:  # an empty file is an empty part of the policy
            continue
        found = schema_problems(document, SCHEMA)
        problems.extend(found)
        if not found:
            documents.append(document)
    if problems:
        raise InvalidSource(problems)
    policy = _build(documents, root, problems, period)
    if problems:
        raise InvalidSource(problems)
    digest = digest_of({f.name: f.read_bytes() for f in files})
    return Policy(policy.settings, policy.rules, policy.simulated_metrics, str(root), digest)


def _nowhere(path: Path) -> Location:
    return Location(str(path), 1, 1)


def _build(documents: list[Document], root: Path, problems: list[Problem], period: float | None) -> Policy:
    """Semantic checks on schema-valid documents; appends to ``problems``."""
    with_settings = [d for d in documents if "settings" in d.data]
    for extra in with_settings[1:]:
        problems.append(extra.problem(["settings"], "settings may appear in only one file of the policy",
                                      f"the first is in {with_settings[0].file}; merge them there", key=True))
    settings = _settings(with_settings[0], problems) if with_settings else Settings()
    if period is not None:
        settings = replace(settings, period=period)
    rules: list[Rule] = []
    metrics: list[SimulatedMetric] = []
    seen_rules: dict[str, Any] = {}
    seen_metrics: dict[str, Any] = {}
    for document in documents:
        for index, item in enumerate(document.data.get("rules") or []):
            path: list[PathItem] = ["rules", index]
            if _unique(document, path, item["name"], seen_rules, "rule", problems):
                rule = _rule(document, path, item, settings, len(rules), problems)
                if rule:
                    rules.append(rule)
        for index, item in enumerate(document.data.get("simulated_metrics") or []):
            path = ["simulated_metrics", index]
            if _unique(document, path, item["name"], seen_metrics, "simulated metric", problems):
                metric = _metric(document, path, item, settings, len(metrics), problems)
                if metric:
                    metrics.append(metric)
    return Policy(settings, tuple(rules), tuple(metrics), str(root))


def _unique(document: Document, path: list[PathItem], name: str, seen: dict[str, Any], what: str,
            problems: list[Problem]) -> bool:
    if name in seen:
        problems.append(document.problem(path + ["name"], f"duplicate {what} name '{name}'",
                                         f"first defined at {seen[name]}; {what} names are unique across the policy"))
        return False
    seen[name] = document.at(path + ["name"])
    return True


def _duration(document: Document, path: list[PathItem], problems: list[Problem]) -> float | None:
    try:
        return parse_duration(str(document.value(path)))
    except ValueError as error:
        problems.append(document.problem(path, str(error)))
        return None


def _settings(document: Document, problems: list[Problem]) -> Settings:
    raw = document.data["settings"] or {}
    base: list[PathItem] = ["settings"]
    period = _duration(document, base + ["period"], problems) if "period" in raw else 15.0
    if period is not None and period <= 0:
        problems.append(document.problem(base + ["period"], "the period must be longer than 0s"))
    retention = _duration(document, base + ["retention"], problems) if "retention" in raw else 3600.0
    streak = dict(DEFAULT_STREAK)
    streak.update({Decision(k): int(v) for k, v in (raw.get("streak") or {}).items()})
    cooldown = {}
    for kind in raw.get("cooldown") or {}:
        seconds = _duration(document, base + ["cooldown", kind], problems)
        if seconds is not None:
            cooldown[Decision(kind)] = seconds
    return Settings(
        period=period or 15.0,
        streak=MappingProxyType(streak),
        cooldown=MappingProxyType(cooldown),
        fields=tuple(str(f) for f in raw.get("fields") or ()),
        retention=retention or 3600.0,
        seed=int(raw.get("seed", 0)),
    )


def _targets(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        return None if raw == "*" else (raw,)
    return tuple(str(x) for x in raw)


def _check_targets(document: Document, path: list[PathItem], raw: Any, problems: list[Problem]) -> None:
    if not isinstance(raw, str) and "*" in raw:
        problems.append(document.problem(path + ["target"], "'*' cannot be mixed with names in a target list",
                                         'write target: "*" for every entity of the scope'))


def _rule(document: Document, path: list[PathItem], item: Any, settings: Settings, order: int,
          problems: list[Problem]) -> Rule | None:
    scope, then = Scope(item["scope"]), Decision(item["then"])
    ok = True
    if then not in allowed_decisions(scope):
        allowed = ", ".join(d.value for d in allowed_decisions(scope))
        problems.append(document.problem(path + ["then"], f"a {scope.value} rule cannot decide '{then.value}'",
                                         f"{scope.value} rules decide one of: {allowed}"))
        ok = False
    _check_targets(document, path, item["target"], problems)
    raw_when = item["when"]
    if isinstance(raw_when, bool):
        when, text = Literal(raw_when), "true" if raw_when else "false"
    else:
        text = str(raw_when)
        try:
            when = parse(text, settings.all_fields, min_window=settings.period)
        except ExpressionError as error:
            location = document.text_location(path + ["when"], error.column)
            problems.append(Problem(location, f"bad expression in rule '{item['name']}': {error.message}", error.hint))
            return None
    if not ok:
        return None
    return Rule(name=str(item["name"]), scope=scope, targets=_targets(item["target"]), when=when, when_text=text,
                then=then, priority=int(item.get("priority", 0)), order=order, location=document.at(path))


def _metric(document: Document, path: list[PathItem], item: Any, settings: Settings, order: int,
            problems: list[Problem]) -> SimulatedMetric | None:
    _check_targets(document, path, item["target"], problems)
    field = str(item["field"])
    if field not in settings.all_fields:
        problems.append(document.problem(path + ["field"], f"unknown field '{field}'",
                                         "use a built-in field or declare it in settings.fields"))
        return None
    low, high = float(item["min"]), float(item["max"])
    if low > high:
        problems.append(document.problem(path + ["max"], f"max ({high:g}) is smaller than min ({low:g})"))
        return None
    return SimulatedMetric(name=str(item["name"]), scope=Scope(item["scope"]), targets=_targets(item["target"]),
                           field=field, min=low, max=high, override=bool(item.get("override", False)),
                           active=bool(item.get("active", True)), order=order, location=document.at(path))

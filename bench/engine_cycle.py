"""One full decision cycle at fleet scale: usm against experta, durable_rules and a polars floor.

A seeded generator builds an inventory (hosts, apps, services with replica bounds, containers
spread over the hosts), a policy of ``--rules`` rules written as YAML and loaded with
``usm.engine.load_policy``, and one hour of metric history at a 15 s period for every entity
and every field the rules read, appended cycle by cycle to an in-memory ``History``.

usm is timed on the full cycle: ``History.terms(...)`` plus ``Engine.cycle(...)`` at the final
time. Each run uses a new engine warmed by the three earlier cycles (so streaks, actions,
cooldowns and the engine's working memory exist), so that every run does the same work.

The alternatives judge the *same* term values (the frame ``History.terms`` returned) with the
same rules, previous streaks and cooldowns, and are timed on evaluation + resolution (level,
priority, load order) + streaks and action selection, as far as each can do it:

* ``polars``: the conditions, scopes and targets as hand-written polars expressions and a
  set-wise resolution and selection (the floor: no rule engine at all);
* ``experta`` (1.9.4), twice: the policy rules as experta rules with resolution and selection in
  Python; and everything (resolution, streaks, bounds, cooldowns, one action per target) as
  experta rules. Both judge the whole fleet by default; ``--alt-fraction`` and
  ``--experta-rules-fraction`` run them on whole services and hosts only and scale the times
  (linearly, or with the growth measured between two sizes), saying so in the output;
* ``durable_rules`` (2.0.28): one ``when_all`` per policy rule, facts asserted one at a time in
  a child process that is killed after ``--durable-timeout`` (it can hang, and it fails with
  error 303 when one fact passes more than 64 sibling alpha tests); the ruleset layouts tried
  are reported; resolution and selection in plain Python, since a durable action sees one
  match, not all the matches of an entity.

Every implementation's winners, streaks, match count, actions and suppressions are compared
with usm's. Then a table: median and min ms, ratio to usm, entities judged, agreement.

    PYTHONPATH=. .venv/bin/python bench/engine_cycle.py                 # everything, ~6 min
    PYTHONPATH=. .venv/bin/python bench/engine_cycle.py --skip durable,experta,experta-rules --runs 9
    PYTHONPATH=. .venv/bin/python bench/engine_cycle.py --profile        # + where usm's time goes

The alternatives need the ``bench`` extra (durable-rules, experta, frozendict>=2.4, schema);
``--profile`` needs pyinstrument. Missing ones are reported and skipped.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import operator
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from usm.collectors.history import History
from usm.engine import App, Container, Engine, Host, Inventory, Service, load_policy

PERIOD = 15.0
HISTORY_SECONDS = 3600.0
WARMUP_CYCLES = 3
SETTINGS_YAML = """\
settings:
  period: 15s
  retention: 1h
  streak: {replicate: 2, migrate: 2, stop: 3, overwork: 3, underwork: 3}
  cooldown: {replicate: 60s, migrate: 60s, stop: 120s, overwork: 60s, underwork: 60s}
"""
STREAK = {"replicate": 2, "migrate": 2, "stop": 3, "overwork": 3, "underwork": 3}
COOLDOWN = {"replicate": 60.0, "migrate": 60.0, "stop": 120.0, "overwork": 60.0, "underwork": 60.0}
RANK = {"replicate": 0, "migrate": 1, "stop": 2, "overwork": 0, "underwork": 0}

HOST_FIELDS = ("cpu_percent", "ram_percent", "bandwidth_percent")
CONTAINER_FIELDS = ("cpu_percent", "ram_percent", "rx_bytes_per_sec", "tx_bytes_per_sec", "latency",
                    "requests_per_sec")
OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                  "<=": operator.le}


# --- rule conditions: our own small tree, rendered to YAML and to each implementation -----------------


@dataclass(frozen=True)
class TermRef:
    func: str  # value avg min max deviation_avg deviation_last
    field: str
    window: str | None = None  # "5m"; None: no window

    @property
    def text(self) -> str:
        """As written in a policy."""
        if self.func == "value":
            return self.field
        return f"{self.func}({self.field}, {self.window})" if self.window else f"{self.func}({self.field})"

    @property
    def key(self) -> str:
        """The column the history returns for it (``Term.key``: windows in whole seconds)."""
        if self.func == "value":
            return self.field
        if self.window is None:
            return f"{self.func}({self.field})"
        seconds = int(self.window[:-1]) * {"s": 1, "m": 60, "h": 3600}[self.window[-1]]
        return f"{self.func}({self.field}, {seconds}s)"


@dataclass(frozen=True)
class Cmp:
    term: TermRef
    op: str
    number: str  # as written
    value: float  # as usm parses it


@dataclass(frozen=True)
class Bool:
    op: str  # and | or
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Const:
    value: bool


def render(cond: Any, nested: bool = False) -> str:
    if isinstance(cond, Const):
        return "true" if cond.value else "false"
    if isinstance(cond, Cmp):
        return f"{cond.term.text} {cond.op} {cond.number}"
    text = f" {cond.op} ".join(render(x, True) for x in cond.items)
    return f"({text})" if nested and cond.op == "or" else text


def comparisons(cond: Any) -> list[Cmp]:
    if isinstance(cond, Cmp):
        return [cond]
    if isinstance(cond, Bool):
        return [c for x in cond.items for c in comparisons(x)]
    return []


def is_conjunction(cond: Any) -> bool:
    return isinstance(cond, Cmp) or (isinstance(cond, Bool) and cond.op == "and"
                                     and all(isinstance(x, Cmp) for x in cond.items))


def python_condition(cond: Any, column: Callable[[str], str]) -> Callable[[dict], bool | None]:
    """Three-valued evaluation of ``cond`` on a dict of term values (missing key or None: unknown)."""
    if isinstance(cond, Const):
        return lambda row, v=cond.value: v
    if isinstance(cond, Cmp):
        name, test, threshold = column(cond.term.key), OPS[cond.op], cond.value

        def compare(row: dict) -> bool | None:
            v = row.get(name)
            return None if v is None else test(v, threshold)
        return compare
    parts = [python_condition(x, column) for x in cond.items]
    decisive = cond.op == "or"

    def combine(row: dict) -> bool | None:
        unknown = False
        for part in parts:
            r = part(row)
            if r is None:
                unknown = True
            elif r is decisive:
                return decisive
        return None if unknown else not decisive
    return combine


def polars_condition(cond: Any) -> pl.Expr:
    """The same condition, hand-written in polars (Kleene logic: null is unknown)."""
    if isinstance(cond, Const):
        return pl.lit(cond.value)
    if isinstance(cond, Cmp):
        return OPS[cond.op](pl.col(cond.term.key), pl.lit(cond.value, dtype=pl.Float64))
    expr = polars_condition(cond.items[0])
    for item in cond.items[1:]:
        expr = (expr & polars_condition(item)) if cond.op == "and" else (expr | polars_condition(item))
    return expr


@dataclass(frozen=True)
class RuleSpec:
    name: str
    scope: str  # host app service container
    targets: tuple[str, ...] | None  # None: "*"
    cond: Any
    then: str
    priority: int
    order: int = 0  # load order
    file: str = ""

    @property
    def level(self) -> int:
        if self.scope == "host":
            return 2 if self.targets is None else 1
        if self.targets is None:
            return 4
        return {"container": 1, "service": 2, "app": 3}[self.scope]

    @property
    def key(self) -> tuple[int, int, int]:
        """Smaller wins: most specific level, then highest priority, then loaded first."""
        return (self.level, -self.priority, self.order)

    def yaml(self) -> str:
        target = '"*"' if self.targets is None else "[" + ", ".join(f'"{t}"' for t in self.targets) + "]"
        when = render(self.cond)
        when = when if isinstance(self.cond, Const) else f'"{when}"'
        return (f"  - name: {self.name}\n    scope: {self.scope}\n    target: {target}\n"
                f"    priority: {self.priority}\n    when: {when}\n    then: {self.then}\n")


# --- the workload ------------------------------------------------------------------------------------


# Terms the rules of each decision read, and the direction of the comparison.
HOST_TERMS = {
    "overwork": [TermRef("value", "cpu_percent"), TermRef("avg", "cpu_percent", "5m"),
                 TermRef("max", "cpu_percent", "1m"), TermRef("value", "ram_percent"),
                 TermRef("avg", "ram_percent", "5m"), TermRef("max", "bandwidth_percent", "1m"),
                 TermRef("avg", "bandwidth_percent", "5m")],
    "underwork": [TermRef("avg", "cpu_percent", "15m"), TermRef("min", "cpu_percent", "15m"),
                  TermRef("avg", "ram_percent", "5m"), TermRef("avg", "bandwidth_percent", "5m")],
}
HOST_TERMS["none"] = HOST_TERMS["overwork"]
CONTAINER_TERMS = {
    "replicate": [TermRef("value", "cpu_percent"), TermRef("avg", "cpu_percent", "5m"),
                  TermRef("max", "cpu_percent", "1m"), TermRef("avg", "ram_percent", "5m"),
                  TermRef("max", "rx_bytes_per_sec", "1m"), TermRef("avg", "rx_bytes_per_sec", "5m"),
                  TermRef("deviation_avg", "rx_bytes_per_sec", "5m"), TermRef("value", "requests_per_sec"),
                  TermRef("avg", "requests_per_sec", "15m"),
                  TermRef("deviation_avg", "requests_per_sec", "15m")],
    "migrate": [TermRef("value", "latency"), TermRef("avg", "latency", "1m"), TermRef("max", "latency", "5m"),
                TermRef("deviation_last", "latency"), TermRef("value", "ram_percent"),
                TermRef("max", "ram_percent", "5m"), TermRef("avg", "tx_bytes_per_sec", "5m")],
    "stop": [TermRef("avg", "requests_per_sec", "15m"), TermRef("avg", "requests_per_sec"),
             TermRef("avg", "cpu_percent", "15m"), TermRef("avg", "rx_bytes_per_sec", "5m"),
             TermRef("value", "tx_bytes_per_sec")],
}
CONTAINER_TERMS["none"] = CONTAINER_TERMS["replicate"]
LOW = {"underwork", "stop"}  # decisions on low values: comparisons are "<"


@dataclass
class Workload:
    inventory: Inventory
    rules: list[RuleSpec]
    policy_dir: Path
    at: float
    entity_kind: dict[str, str]
    entity_service: dict[str, str | None]
    history: History | None = None  # the one timed
    samples: int = 0
    append_seconds: float = 0.0
    warm: list[tuple[float, pl.DataFrame]] | None = None  # the warm-up cycles' term values (live fill)
    live_terms: list[float] = field(default_factory=list)  # seconds of each terms call of the live fill


def make_inventory(rng: np.random.Generator, containers: int, hosts: int) -> Inventory:
    host_objs = tuple(Host(f"host-{i:04d}", region=("europe", "america", "asia")[i % 3]) for i in range(hosts))
    n_services = max(1, containers // 25)
    n_apps = max(1, containers // 250)
    services = [f"svc-{i:04d}" for i in range(n_services)]
    # replicas per service: every service has one, the rest spread unevenly (Dirichlet)
    share = rng.dirichlet(np.full(n_services, 1.5))
    extra = rng.multinomial(containers - n_services, share)
    counts = extra + 1
    service_objs = []
    for name, n in zip(services, counts, strict=True):
        low = int(rng.integers(1, 4))
        high = 0 if rng.random() < 0.3 else int(n + rng.integers(0, 4))
        service_objs.append(Service(name, min_replicas=low, max_replicas=high))
    members: dict[str, list[str]] = defaultdict(list)
    for name in services:
        if rng.random() < 0.05:  # a few services belong to no app
            continue
        for a in rng.choice(n_apps, size=1 if rng.random() < 0.8 else 2, replace=False):
            members[f"app-{int(a):03d}"].append(name)
    app_objs = tuple(App(f"app-{i:03d}", tuple(members[f"app-{i:03d}"])) for i in range(n_apps))
    container_objs = []
    for name, n in zip(services, counts, strict=True):
        for k in range(int(n)):
            container_objs.append(Container(f"{name}-{k:03d}", name, host_objs[int(rng.integers(hosts))].name))
    return Inventory(host_objs, app_objs, tuple(service_objs), tuple(container_objs))


def make_series(rng: np.random.Generator, inventory: Inventory, cycles: int
                ) -> tuple[list[str], list[str], np.ndarray]:
    """Values of every (entity, field) series at every cycle: ``values[t, s]``, NaN = no sample."""
    entities, fields = [], []
    for h in inventory.hosts:
        for f in HOST_FIELDS:
            entities.append(h.name)
            fields.append(f)
    for c in inventory.containers:
        for f in CONTAINER_FIELDS:
            entities.append(c.name)
            fields.append(f)
    n = len(entities)
    field_arr = np.array(fields)
    base = np.empty(n)
    for f, draw in {
        "cpu_percent": lambda k: rng.beta(2, 5, k) * 100,
        "ram_percent": lambda k: rng.beta(3, 4, k) * 100,
        "bandwidth_percent": lambda k: rng.beta(2, 6, k) * 100,
        "rx_bytes_per_sec": lambda k: rng.lognormal(math.log(200e3), 1.0, k),
        "tx_bytes_per_sec": lambda k: rng.lognormal(math.log(150e3), 1.0, k),
        "latency": lambda k: rng.lognormal(math.log(40), 0.6, k),
        "requests_per_sec": lambda k: rng.lognormal(math.log(80), 1.0, k),
    }.items():
        mask = field_arr == f
        base[mask] = draw(int(mask.sum()))
    # an episode (load surge or drop) in 10% of the series, from a random cycle on
    episode = rng.random(n) < 0.10
    factor = np.where(episode, np.where(rng.random(n) < 0.75, rng.uniform(1.3, 2.5, n), rng.uniform(0.2, 0.6, n)),
                      1.0)
    start = rng.integers(0, cycles, n)
    values = np.empty((cycles, n))
    noise = rng.standard_normal(n)
    bounded = np.isin(field_arr, ["cpu_percent", "ram_percent", "bandwidth_percent"])
    for t in range(cycles):
        noise = 0.9 * noise + math.sqrt(1 - 0.81) * rng.standard_normal(n)  # AR(1), unit variance
        v = base * np.where(t >= start, factor, 1.0) * np.maximum(0.05, 1 + 0.1 * noise)
        values[t] = np.where(bounded, np.minimum(v, 100.0), v)
    values[rng.random(values.shape) < 0.003] = np.nan  # lost samples
    # 2% of the containers started recently; 0.5% of the series stopped reporting 1-3 cycles ago
    entity_arr = np.array(entities)
    new = {c.name for c in inventory.containers if rng.random() < 0.02}
    if new:
        cols = np.flatnonzero(np.isin(entity_arr, list(new)))
        first = rng.integers(cycles - 80, cycles - 4, len(cols))
        for col, f0 in zip(cols, first, strict=True):
            values[:f0, col] = np.nan
    stale = np.flatnonzero(rng.random(n) < 0.005)
    for col in stale:
        values[cycles - int(rng.integers(1, 4)):, col] = np.nan
    return entities, fields, values


def fill_history(history: History, entities: list[str], fields: list[str], values: np.ndarray) -> int:
    entity_s, field_s = pl.Series("entity", entities), pl.Series("field", fields)
    stored = 0
    for t in range(values.shape[0]):
        frame = pl.DataFrame({"ts": np.full(len(entities), t * PERIOD), "entity": entity_s, "field": field_s,
                              "value": values[t]})
        stored += history.append(frame)
    return stored


def _number(term: TermRef, x: float) -> tuple[str, float]:
    """The threshold as written in the policy, and its value as usm parses it."""
    if term.field.endswith("bytes_per_sec") and term.func != "deviation_avg" and abs(x) >= 10_000:
        k = max(1, round(x / 1000))
        return f"{k}k", float(str(k)) * 1e3
    text = f"{x:.1f}"
    return text, float(text) * 1.0


def make_rules(rng: np.random.Generator, inventory: Inventory, n_rules: int, values: pl.DataFrame
               ) -> list[RuleSpec]:
    """``n_rules`` rules; thresholds are quantiles of the term values at the final time, chosen so
    that each rule matches a small share of the entities it applies to."""
    hosts = [h.name for h in inventory.hosts]
    services = [s.name for s in inventory.services]
    apps = [a.name for a in inventory.apps if a.services]
    containers = [c.name for c in inventory.containers]
    by_service: dict[str, list[str]] = defaultdict(list)
    for c in inventory.containers:
        by_service[c.service].append(c.name)
    by_app = {a.name: [c for s in a.services for c in by_service[s]] for a in inventory.apps}
    column = {name: i for i, name in enumerate(values["entity"].to_list())}

    def applies_to(scope: str, targets: tuple[str, ...] | None) -> list[str]:
        if scope == "host":
            return hosts if targets is None or len(targets) < 3 else list(targets)
        if targets is None or scope == "container":
            return containers
        pool = by_service if scope == "service" else by_app
        found = [c for t in targets for c in pool.get(t, [])]
        return found if len(found) >= 8 else containers

    def comparison(term: TermRef, op: str, share: float, rows: list[int]) -> Cmp:
        col = values[term.key].to_numpy()
        sample = col[rows]
        sample = sample[~np.isnan(sample)]
        if sample.size == 0:
            sample = col[~np.isnan(col)]
        q = float(np.quantile(sample, share if op.startswith("<") else 1 - share))
        number, value = _number(term, q)
        return Cmp(term, op, number, value)

    def condition(decision: str, pool: list[TermRef], share: float, scope_entities: list[str]) -> Any:
        """1-3 comparisons; with several, the per-comparison share is found by bisection so that the
        whole condition is true for about ``share`` of the entities it applies to (terms correlate)."""
        direction = "<" if decision in LOW else ">"
        k = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        picked = [pool[i] for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]
        ops = [direction if rng.random() < 0.7 else direction + "=" for _ in picked]
        nested = k == 3 and rng.random() < 0.5  # a and (b or c)
        rows = [column[e] for e in scope_entities if e in column]
        if k == 1:
            return comparison(picked[0], ops[0], share, rows)
        scope_values = values[rows]

        def build(q: float) -> Any:
            parts = [comparison(t, op, q / 2 if nested and i else q, rows)
                     for i, (t, op) in enumerate(zip(picked, ops, strict=True))]
            return Bool("and", (parts[0], Bool("or", tuple(parts[1:])))) if nested else Bool("and", tuple(parts))

        def rate(cond: Any) -> float:
            return scope_values.select(polars_condition(cond).fill_null(False).mean()).item()

        low, high = share, 1.0
        for _ in range(20):
            mid = (low + high) / 2
            if rate(build(mid)) < share:
                low = mid
            else:
                high = mid
        return build(low)

    def decision_of(choices: dict[str, float]) -> str:
        names = list(choices)
        return str(rng.choice(names, p=np.array(list(choices.values())) / sum(choices.values())))

    plan = [  # (file, scope kind, share of the rules)
        ("10-hosts.yaml", "host-generic", 0.06), ("10-hosts.yaml", "host", 0.14),
        ("20-generic.yaml", "generic", 0.16), ("30-apps.yaml", "app", 0.14),
        ("40-services.yaml", "service", 0.32), ("50-containers.yaml", "container", 0.18),
    ]
    counts = [max(1, round(n_rules * share)) for *_, share in plan]
    counts[-1] = max(0, n_rules - sum(counts[:-1]))
    rules: list[RuleSpec] = []
    for (file, kind, _), count in zip(plan, counts, strict=True):
        for _ in range(count):
            if kind in ("host-generic", "host"):
                scope = "host"
                targets = None if kind == "host-generic" else tuple(
                    sorted(rng.choice(hosts, size=int(rng.integers(1, 5)), replace=False).tolist()))
                then = decision_of({"overwork": 0.6, "underwork": 0.4} if targets is None
                                   else {"overwork": 0.45, "underwork": 0.35, "none": 0.2})
                pool = HOST_TERMS[then]
                share = rng.uniform(0.005, 0.02) if targets is None else rng.uniform(0.1, 0.3)
            else:
                if kind == "generic":
                    scope, targets = str(rng.choice(["container", "service", "app"])), None
                    then = decision_of({"replicate": 0.4, "migrate": 0.25, "stop": 0.25, "none": 0.1})
                    share = rng.uniform(0.002, 0.006)
                else:
                    scope = kind
                    source = {"app": apps, "service": services, "container": containers}[kind]
                    size = int(rng.integers(1, 6 if kind == "container" else 3))
                    targets = tuple(sorted(rng.choice(source, size=size, replace=False).tolist()))
                    then = decision_of({"replicate": 0.35, "migrate": 0.2, "stop": 0.2, "none": 0.25})
                    share = rng.uniform(0.03, 0.15)
                pool = CONTAINER_TERMS[then]
            scope_entities = applies_to(scope, targets)
            if then == "none" and scope in ("host", "container") and targets is not None and rng.random() < 0.5:
                cond: Any = Const(True)  # a pin: the entity is left alone, whatever happens
            elif then == "none":
                cond = condition("stop", pool, share, scope_entities)  # pinned while quiet
            else:
                cond = condition(then, pool, share, scope_entities)
            priority = int(rng.integers(0, 10)) if then == "none" else int(rng.integers(0, 6))
            name = f"{scope}-{'all' if targets is None else 'named'}-{then}-{len(rules):03d}"
            rules.append(RuleSpec(name, scope, targets, cond, then, priority, len(rules), file))
    return rules


def write_policy(rules: list[RuleSpec], directory: Path) -> None:
    (directory / "00-settings.yaml").write_text(SETTINGS_YAML)
    files: dict[str, list[str]] = defaultdict(list)
    for r in rules:
        files[r.file].append(r.yaml())
    for file, items in files.items():
        (directory / file).write_text("rules:\n" + "".join(items))


def build(args: argparse.Namespace, history: History, live: History, tmp: Path) -> Workload:
    """The inventory, the series, the policy (thresholds calibrated on ``history``, filled in bulk)
    and the history to time: with ``--fill live``, ``live``, filled as a live loop does (append a
    cycle, then ask for the policy's terms) over the last ``--live-cycles`` cycles before the final
    one; with ``--fill bulk``, ``history`` itself."""
    rng = np.random.default_rng(args.seed)
    inventory = make_inventory(rng, args.containers, args.hosts)
    cycles = int(HISTORY_SECONDS / PERIOD)
    entities, fields, values = make_series(rng, inventory, cycles)
    start = time.perf_counter()
    stored = fill_history(history, entities, fields, values)
    appended = time.perf_counter() - start
    at = (cycles - 1) * PERIOD
    vocabulary = sorted({t for pools in (HOST_TERMS, CONTAINER_TERMS) for p in pools.values() for t in p},
                        key=lambda t: t.key)
    from usm.engine.terms import Func, Term  # only to ask the history for the whole vocabulary once

    def as_term(t: TermRef) -> Term:
        window = None if t.window is None else float(TermRef("avg", "x", t.window).key.split(", ")[1][:-2])
        return Term(Func(t.func), t.field, window)

    known = history.terms(at, PERIOD, [as_term(t) for t in vocabulary], HISTORY_SECONDS)
    rules = make_rules(rng, inventory, args.rules, known)
    write_policy(rules, tmp)
    kinds = {h.name: "host" for h in inventory.hosts} | {c.name: "container" for c in inventory.containers}
    services = {h.name: None for h in inventory.hosts} | {c.name: c.service for c in inventory.containers}
    work = Workload(inventory, rules, tmp, at, kinds, services, history, stored, appended)
    if args.fill == "live":
        policy = load_policy(tmp)
        terms = sorted(policy.terms, key=lambda t: t.key)
        entity_s, field_s = pl.Series("entity", entities), pl.Series("field", fields)
        warm = []
        start = time.perf_counter()
        for t in range(cycles):
            ts = t * PERIOD
            live.append(pl.DataFrame({"ts": np.full(len(entities), ts), "entity": entity_s, "field": field_s,
                                      "value": values[t]}))
            if cycles - 1 - args.live_cycles <= t < cycles - 1:  # not the final cycle: that one is timed
                t0 = time.perf_counter()
                frame = live.terms(ts, PERIOD, terms, policy.settings.retention)
                work.live_terms.append(time.perf_counter() - t0)
                warm = (warm + [(ts, frame)])[-WARMUP_CYCLES:]
        work.history, work.warm = live, warm
        work.append_seconds = time.perf_counter() - start - sum(work.live_terms)
    return work


# --- the common result shape, and agreement ------------------------------------------------------------


@dataclass
class Outcome:
    """What one implementation decided for the entities it judged."""

    winners: dict[str, tuple[str, str | None]]  # entity -> (decision, rule or None)
    matches: int  # (entity, rule) pairs whose condition is true, shadowed ones included
    actions: set[tuple[str, str, str | None, str]]  # (action, target, container or None, rule)
    suppressed: set[tuple[str, str, str, str]]  # (action, target, entity, rule)
    streaks: dict[str, int] = field(default_factory=dict)
    next_state: Any = None  # (streaks, cooldowns) for the next cycle, where computed; not compared


@dataclass
class Timing:
    name: str
    seconds: list[float]
    judged: int
    note: str = ""
    outcome: Outcome | None = None
    scale: float = 1.0  # multiply the measured times by this to get the full-fleet estimate
    parts: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000 * self.scale

    @property
    def min_ms(self) -> float:
        return min(self.seconds) * 1000 * self.scale


def agreement(reference: Outcome, other: Outcome, entities: set[str], targets: set[str]) -> dict[str, Any]:
    """How ``other`` agrees with ``reference`` on ``entities`` (and actions on ``targets``)."""
    same = sum(1 for e in entities if reference.winners.get(e, ("none", None)) == other.winners.get(e))
    streaks = sum(1 for e in entities if reference.streaks.get(e) == other.streaks.get(e))
    ref_actions = {a for a in reference.actions if a[1] in targets}
    ref_suppressed = {s for s in reference.suppressed if s[2] in entities}
    return {
        "winners": same, "entities": len(entities), "streaks": streaks if other.streaks else None,
        "actions_same": ref_actions == other.actions, "actions": (len(other.actions), len(ref_actions)),
        "suppressed_same": ref_suppressed == other.suppressed,
        "suppressed": (len(other.suppressed), len(ref_suppressed)),
    }


# --- usm -----------------------------------------------------------------------------------------------


@dataclass
class UsmRun:
    timing: Timing
    frame: pl.DataFrame  # the term values of the final cycle
    state: Any  # the EngineState before the final cycle
    cycle: Any  # the final Cycle
    policy: Any
    terms: list
    warm: list[tuple[float, pl.DataFrame]]  # the warm-up cycles' times and term values


def warmed_engine(policy: Any, work: Workload, warm: list[tuple[float, pl.DataFrame]]) -> Engine:
    """A new engine that has run the warm-up cycles (the engine keeps state, and possibly working
    memory, across cycles: each timed cycle must follow the same history to do the same work)."""
    engine = Engine(policy)
    for t, frame in warm:
        engine.cycle(t, work.inventory, frame)
    return engine


def run_usm(args: argparse.Namespace, work: Workload, history: History) -> UsmRun:
    policy = load_policy(work.policy_dir)
    assert [r.name for r in policy.rules] == [r.name for r in work.rules], "load order differs from the plan"
    terms = sorted(policy.terms, key=lambda t: t.key)
    retention = policy.settings.retention
    warm = work.warm or [(work.at - k * PERIOD, history.terms(work.at - k * PERIOD, PERIOD, terms, retention))
                         for k in range(WARMUP_CYCLES, 0, -1)]
    totals, term_times, engine_times = [], [], []
    frame, cycle, before = None, None, None
    for _ in range(args.runs):
        engine = warmed_engine(policy, work, warm)
        before = engine.state
        t0 = time.perf_counter()
        frame = history.terms(work.at, PERIOD, terms, retention)
        t1 = time.perf_counter()
        cycle = engine.cycle(work.at, work.inventory, frame)
        t2 = time.perf_counter()
        totals.append(t2 - t0)
        term_times.append(t1 - t0)
        engine_times.append(t2 - t1)
    assert frame is not None and cycle is not None
    evaluations = cycle.evaluations
    winners = {e: (d, r) for e, d, r in evaluations.select("entity", "decision", "rule").iter_rows()}
    outcome = Outcome(
        winners=winners, matches=cycle.matches.height,
        actions={(a.action.value, a.target, a.container, a.rule) for a in cycle.actions},
        suppressed={(s.action.value, s.target, s.entity, s.rule) for s in cycle.suppressed},
        streaks=dict(evaluations.select("entity", "streak").iter_rows()),
    )
    timing = Timing("usm (terms + cycle)", totals, evaluations.height, outcome=outcome,
                    parts={"terms": term_times, "engine": engine_times})
    return UsmRun(timing, frame, before, cycle, policy, terms, warm)


# --- shared inputs of the alternatives ------------------------------------------------------------------


@dataclass
class Inputs:
    """Everything an alternative needs, in plain data: the same term values, rules and state."""

    rules: list[RuleSpec]
    at: float
    keys: list[str]  # term columns
    entities: list[tuple[str, str, str | None, tuple[str, ...]]]  # entity, kind, service, apps
    rows: dict[str, dict[str, float]]  # entity -> term key -> value (missing ones left out)
    previous: dict[str, tuple[str, int]]  # entity -> (decision, streak)
    cooldowns: dict[tuple[str, str, str], float]
    bounds: dict[str, tuple[int, int, int]]  # service -> (replicas, min, max)


def make_inputs(work: Workload, frame: pl.DataFrame, state: Any, keep: set[str] | None = None) -> Inputs:
    inv = work.inventory
    apps_of = inv.apps_of_service
    entities = [(h.name, "host", None, ()) for h in inv.hosts] + \
               [(c.name, "container", c.service, apps_of.get(c.service, ())) for c in inv.containers]
    if keep is not None:
        entities = [e for e in entities if e[0] in keep]
    keys = [c for c in frame.columns if c != "entity"]
    wanted = {e[0] for e in entities}
    rows = {}
    for row in frame.iter_rows(named=True):
        if row["entity"] in wanted:
            entity = row.pop("entity")
            rows[entity] = {k: v for k, v in row.items() if v is not None and not math.isnan(v)}
    previous = {e: (d, s) for e, d, s in state.streaks.iter_rows()}
    bounds = {s.name: (inv.replicas[s.name], s.min_replicas, s.max_replicas) for s in inv.services}
    return Inputs(work.rules, work.at, keys, entities, rows, previous, dict(state.cooldowns), bounds)


def subset(work: Workload, fraction: float) -> tuple[set[str], set[str]]:
    """Whole services and hosts, about ``fraction`` of each: (entities, targets)."""
    if fraction >= 1:
        names = set(work.entity_kind)
        return names, {h.name for h in work.inventory.hosts} | {s.name for s in work.inventory.services}
    step = max(1, round(1 / fraction))
    services = {s.name for i, s in enumerate(work.inventory.services) if i % step == 0}
    hosts = {h.name for i, h in enumerate(work.inventory.hosts) if i % step == 0}
    entities = hosts | {c.name for c in work.inventory.containers if c.service in services}
    return entities, hosts | services


def resolve_python(inputs: Inputs, matched: list[tuple[str, int]]) -> Outcome:
    """Winners from (entity, rule index) matches (policy-spec §3), then :func:`select_python`.
    Duplicate activations of one rule on one entity count once."""
    by_entity: dict[str, set[int]] = defaultdict(set)
    for entity, index in matched:
        by_entity[entity].add(index)
    winners: dict[str, tuple[str, str | None]] = {}
    for entity, *_ in inputs.entities:
        hits = by_entity.get(entity)
        if hits:
            best = min((inputs.rules[i] for i in hits), key=lambda r: r.key)
            winners[entity] = (best.then, best.name)
        else:
            winners[entity] = ("none", None)
    outcome = select_python(inputs, winners, {r.name: r.priority for r in inputs.rules})
    outcome.matches = sum(len(v) for v in by_entity.values())
    return outcome


def select_python(inputs: Inputs, winners: dict[str, tuple[str, str | None]], priority: dict[str, int]
                  ) -> Outcome:
    """Streaks, candidates, bounds, cooldowns and one action per target (policy-spec §4), in Python."""
    streaks: dict[str, int] = {}
    candidates: dict[tuple[str, str], list[tuple[tuple, str, str, str]]] = defaultdict(list)
    for entity, kind, service, _ in inputs.entities:
        decision, rule = winners[entity]
        before = inputs.previous.get(entity)
        streak = before[1] + 1 if before and before[0] == decision else 1
        streaks[entity] = streak
        if decision != "none" and streak >= STREAK[decision]:
            target = service if kind == "container" else entity
            candidates[(kind, target)].append(((RANK[decision], -priority[rule], entity), entity, decision, rule))
    actions, suppressed = set(), set()
    for (kind, target), items in candidates.items():
        chosen = None
        for _, entity, decision, rule in sorted(items):
            reason = None
            if kind == "container":
                replicas, low, high = inputs.bounds[target]
                if decision == "replicate" and high > 0 and replicas >= high:
                    reason = "max"
                elif decision == "stop" and replicas <= low:
                    reason = "min"
            if reason is None and inputs.at < inputs.cooldowns.get((kind, target, decision), -math.inf):
                reason = "cooldown"
            if reason:
                suppressed.add((decision, target, entity, rule))
            elif chosen is None:
                chosen = (decision, target, entity if kind == "container" else None, rule)
        if chosen:
            actions.add(chosen)
    # the next state (streak restarts, cooldowns), as the engine keeps it; computed, not compared
    services = {a[1] for a in actions if a[2] is not None}
    hosts = {a[1] for a in actions if a[2] is None}
    next_streaks = {e: 0 if (k == "container" and s in services) or (k == "host" and e in hosts) else streaks[e]
                    for e, k, s, _ in inputs.entities}
    cooldowns = {key: until for key, until in inputs.cooldowns.items() if until > inputs.at}
    cooldowns.update({("host" if a[2] is None else "container", a[1], a[0]): inputs.at + COOLDOWN[a[0]]
                      for a in actions})
    return Outcome(winners, 0, actions, suppressed, streaks, (next_streaks, cooldowns))


# --- (a) polars, the floor ---------------------------------------------------------------------------------


def run_polars(args: argparse.Namespace, work: Workload, frame: pl.DataFrame, state: Any) -> Timing:
    rules = work.rules
    inv = work.inventory
    width = len(rules)
    prio_span = max(r.priority for r in rules) + 1

    def one() -> Outcome:
        # the entities, from the inventory, as usm builds them each cycle
        apps_of = inv.apps_of_service
        hosts = [h.name for h in inv.hosts]
        entities = pl.DataFrame({
            "entity": hosts + [c.name for c in inv.containers],
            "kind": ["host"] * len(hosts) + ["container"] * len(inv.containers),
            "service": [None] * len(hosts) + [c.service for c in inv.containers],
        }, schema={"entity": pl.String, "kind": pl.String, "service": pl.String})
        services_of_app: dict[str, set[str]] = defaultdict(set)
        for service, apps in apps_of.items():
            for a in apps:
                services_of_app[a].add(service)
        facts = entities.join(frame, on="entity", how="left")
        is_host = pl.col("kind") == "host"
        hits, keys = [], []
        for r in rules:
            if r.scope == "host":
                applies = is_host if r.targets is None else is_host & pl.col("entity").is_in(r.targets)
            elif r.targets is None:
                applies = ~is_host
            elif r.scope == "container":
                applies = ~is_host & pl.col("entity").is_in(r.targets)
            elif r.scope == "service":
                applies = pl.col("service").is_in(r.targets)
            else:
                applies = pl.col("service").is_in(sorted(set().union(*(services_of_app[a] for a in r.targets))))
            hit = (applies & polars_condition(r.cond)).fill_null(False)
            hits.append(hit.cast(pl.UInt16))
            level, priority, order = r.key
            keys.append(pl.when(hit).then(pl.lit(((level * prio_span) + (priority + prio_span - 1)) * width + order,
                                                  dtype=pl.Int64)))
        judged = facts.select("entity", "kind", "service", pl.min_horizontal(keys).alias("key"),
                              pl.sum_horizontal(hits).alias("n"))
        decision = pl.Series([r.then for r in rules])
        names = pl.Series([r.name for r in rules])
        judged = judged.with_columns(idx=(pl.col("key") % width).cast(pl.UInt32))
        judged = judged.with_columns(
            rule=pl.when(pl.col("key").is_not_null()).then(pl.col("idx").replace_strict(
                range(width), names, default=None)),
            decision=pl.col("idx").replace_strict(range(width), decision, default="none").fill_null("none"),
            priority=pl.col("idx").replace_strict(range(width), [r.priority for r in rules], default=0))
        previous = state.streaks.rename({"decision": "previous", "streak": "previous_streak"})
        evaluated = judged.join(previous, on="entity", how="left").with_columns(
            streak=pl.when(pl.col("previous") == pl.col("decision")).then(pl.col("previous_streak") + 1)
            .otherwise(1).cast(pl.Int64))
        evaluated = evaluated.with_columns(candidate=(pl.col("decision") != "none") & (
            pl.col("streak") >= pl.col("decision").replace_strict(STREAK, default=None, return_dtype=pl.Int64)
        ).fill_null(False))
        bounds = pl.DataFrame(
            [(s.name, inv.replicas[s.name], s.min_replicas, s.max_replicas) for s in inv.services],
            schema={"target": pl.String, "replicas": pl.Int64, "min": pl.Int64, "max": pl.Int64}, orient="row")
        cooling = pl.DataFrame(
            [(k, t, d, u) for (k, t, d), u in state.cooldowns.items()],
            schema={"kind": pl.String, "target": pl.String, "decision": pl.String, "until": pl.Float64},
            orient="row")
        candidates = (
            evaluated.filter(pl.col("candidate"))
            .with_columns(target=pl.when(is_host).then(pl.col("entity")).otherwise(pl.col("service")),
                          rank=pl.col("decision").replace_strict(RANK, return_dtype=pl.Int64))
            .join(bounds, on="target", how="left")
            .join(cooling, on=["kind", "target", "decision"], how="left")
            .with_columns(suppressed=((pl.col("decision") == "replicate") & (pl.col("max") > 0)
                                      & (pl.col("replicas") >= pl.col("max")))
                          | ((pl.col("decision") == "stop") & (pl.col("replicas") <= pl.col("min")))
                          | (pl.col("until") > work.at))
            .with_columns(pl.col("suppressed").fill_null(False))
        )
        chosen = (candidates.filter(~pl.col("suppressed"))
                  .sort("kind", "target", "rank", pl.col("priority"), "entity", descending=[False, False, False,
                                                                                            True, False])
                  .unique(subset=["kind", "target"], keep="first", maintain_order=True))
        # the next state, as the engine keeps it (streak restarts; cooldowns)
        services = chosen.filter(~is_host)["target"]
        hosts_acted = chosen.filter(is_host)["target"]
        restart = (~is_host & pl.col("service").is_in(services.implode())) | \
                  (is_host & pl.col("entity").is_in(hosts_acted.implode()))
        next_streaks = evaluated.select("entity", "decision",
                                        streak=pl.when(restart).then(0).otherwise(pl.col("streak")))
        cooldowns = {key: until for key, until in state.cooldowns.items() if until > work.at}
        for k, t, d in chosen.select("kind", "target", "decision").iter_rows():
            cooldowns[(k, t, d)] = work.at + COOLDOWN[d]
        return Outcome(
            winners={e: (d, r) for e, d, r in judged.select("entity", "decision", "rule").iter_rows()},
            matches=int(judged["n"].sum()),
            actions={(d, t, None if k == "host" else e, r)
                     for e, k, t, d, r in chosen.select("entity", "kind", "target", "decision", "rule").iter_rows()},
            suppressed={(d, t, e, r) for e, t, d, r in
                        candidates.filter(pl.col("suppressed")).select("entity", "target", "decision",
                                                                        "rule").iter_rows()},
            streaks=dict(evaluated.select("entity", "streak").iter_rows()),
            next_state=(next_streaks, cooldowns),
        )

    one()  # warm polars' caches
    times, outcome = [], None
    for _ in range(args.runs):
        t0 = time.perf_counter()
        outcome = one()
        times.append(time.perf_counter() - t0)
    return Timing("polars (hand-written floor)", times, len(work.entity_kind), outcome=outcome)


# --- (b) experta ---------------------------------------------------------------------------------------------


def experta_engine(inputs: Inputs, mode: str) -> tuple[type, dict[str, str]]:
    """A KnowledgeEngine subclass with one rule per policy rule; in mode ``rules`` also resolution,
    streaks and selection as rules; in mode ``alpha`` the policy rules only record their matches."""
    from experta import AS, MATCH, NOT, TEST, Fact, KnowledgeEngine, L, P, Rule

    class Entity(Fact):
        pass

    class Match(Fact):
        pass

    class Eval(Fact):
        pass

    class Candidate(Fact):
        pass

    class Bounds(Fact):
        pass

    class Cooling(Fact):
        pass

    class Clock(Fact):
        pass

    class Suppressed(Fact):
        pass

    column = {k: f"t{i}" for i, k in enumerate(inputs.keys)}
    attrs: dict[str, Any] = {}

    def predicate(op: str, threshold: float) -> Any:
        test = OPS[op]
        return P(lambda v: test(v, threshold))

    def make(rule: RuleSpec) -> Any:
        pattern: dict[str, Any] = {"kind": "host" if rule.scope == "host" else "container"}
        if rule.targets is not None:
            either = L(rule.targets[0])
            for t in rule.targets[1:]:
                either = either | L(t)
            if rule.scope in ("host", "container"):
                pattern["name"] = either
            elif rule.scope == "service":
                pattern["service"] = either
            else:
                wanted = frozenset(rule.targets)
                pattern["apps"] = P(lambda apps: not wanted.isdisjoint(apps))
        tests = []
        if is_conjunction(rule.cond):
            for cmp in comparisons(rule.cond):
                name = column[cmp.term.key]
                constraint = predicate(cmp.op, cmp.value)
                pattern[name] = pattern[name] & constraint if name in pattern else constraint
        elif not (isinstance(rule.cond, Const) and rule.cond.value):
            check = python_condition(rule.cond, column.__getitem__)
            tests.append(TEST(lambda f: check(f) is True))
        key, index, then = rule.key, rule.order, rule.then

        def record(self: Any, f: Any) -> None:
            self.sink.append((f["name"], index))

        def fire(self: Any, f: Any) -> None:
            self.matched += 1
            target = f["service"] if f["kind"] == "container" else f["name"]
            self.declare(Match(entity=f["name"], key=key, rule=index, decision=then, kind=f["kind"], target=target,
                               prev=f["prev"], pstreak=f["pstreak"]))
        return Rule(AS.f << Entity(**pattern), *tests)(record if mode == "alpha" else fire)

    for rule in inputs.rules:
        attrs[f"rule_{rule.order}"] = make(rule)

    @Rule(AS.a << Match(entity=MATCH.e, key=MATCH.ka), AS.b << Match(entity=MATCH.e, key=MATCH.kb),
          TEST(lambda ka, kb: ka < kb), salience=-10)
    def beats(self: Any, a: Any, b: Any, **_: Any) -> None:
        self.retract(b)

    priority = {r.order: r.priority for r in inputs.rules}

    def evaluation(self: Any, entity: str, kind: str, target: str, decision: str, rule: int | None,
                   previous: str, streak: int) -> None:
        streak = streak + 1 if previous == decision else 1
        self.declare(Eval(entity=entity, decision=decision, rule=rule, streak=streak))
        if decision != "none" and streak >= STREAK[decision]:
            self.declare(Candidate(entity=entity, kind=kind, target=target, decision=decision, rule=rule,
                                   order=(RANK[decision], -priority[rule], entity)))

    # The previous decision and streak travel in the Entity fact and its Match facts: experta's joins
    # are nested loops, so a join with a separate Prev fact per entity would cost N x N.
    @Rule(Match(entity=MATCH.e, rule=MATCH.r, decision=MATCH.d, kind=MATCH.k, target=MATCH.t, prev=MATCH.pd,
                pstreak=MATCH.ps), salience=-20)
    def judged(self: Any, e: str, r: int, d: str, k: str, t: str, pd: str, ps: int) -> None:
        evaluation(self, e, k, t, d, r, pd, ps)

    @Rule(Entity(name=MATCH.e, prev=MATCH.pd, pstreak=MATCH.ps), NOT(Match(entity=MATCH.e)), salience=-20)
    def unmatched(self: Any, e: str, pd: str, ps: int) -> None:
        self.declare(Eval(entity=e, decision="none", rule=None, streak=ps + 1 if pd == "none" else 1))

    @Rule(AS.c << Candidate(kind="container", target=MATCH.s, decision="replicate"),
          Bounds(service=MATCH.s, replicas=MATCH.n, max=MATCH.mx), TEST(lambda n, mx: 0 < mx <= n), salience=-30)
    def at_max(self: Any, c: Any, **_: Any) -> None:
        self.retract(c)
        self.declare(Suppressed(entity=c["entity"], target=c["target"], decision=c["decision"], rule=c["rule"]))

    @Rule(AS.c << Candidate(kind="container", target=MATCH.s, decision="stop"),
          Bounds(service=MATCH.s, replicas=MATCH.n, min=MATCH.mn), TEST(lambda n, mn: n <= mn), salience=-30)
    def at_min(self: Any, c: Any, **_: Any) -> None:
        self.retract(c)
        self.declare(Suppressed(entity=c["entity"], target=c["target"], decision=c["decision"], rule=c["rule"]))

    @Rule(AS.c << Candidate(kind=MATCH.k, target=MATCH.t, decision=MATCH.d),
          Cooling(kind=MATCH.k, target=MATCH.t, decision=MATCH.d, until=MATCH.u), Clock(now=MATCH.now),
          TEST(lambda now, u: now < u), salience=-31)
    def cooling(self: Any, c: Any, **_: Any) -> None:
        self.retract(c)
        self.declare(Suppressed(entity=c["entity"], target=c["target"], decision=c["decision"], rule=c["rule"]))

    @Rule(AS.a << Candidate(kind=MATCH.k, target=MATCH.t, order=MATCH.oa),
          AS.b << Candidate(kind=MATCH.k, target=MATCH.t, order=MATCH.ob), TEST(lambda oa, ob: oa < ob),
          salience=-40)
    def choose(self: Any, a: Any, b: Any, **_: Any) -> None:
        self.retract(b)

    if mode == "rules":
        attrs.update(beats=beats, judged=judged, unmatched=unmatched, at_max=at_max, at_min=at_min, cooling=cooling,
                     choose=choose)
    engine = type("PolicyEngine", (KnowledgeEngine,), attrs)
    engine.facts_of = {"Entity": Entity, "Bounds": Bounds, "Cooling": Cooling, "Clock": Clock, "Eval": Eval,
                       "Candidate": Candidate, "Suppressed": Suppressed}
    return engine, column


EXPERTA_NAMES = {"alpha": "experta 1.9.4 (rules match, Python resolves)",
                 "rules": "experta 1.9.4 (all in rules)"}


def run_experta(args: argparse.Namespace, work: Workload, inputs: Inputs, targets: set[str], mode: str,
                runs: int) -> Timing:
    """Mode ``alpha``: the policy rules as experta rules, resolution and selection in Python (as for
    durable_rules). Mode ``rules``: resolution, streaks, bounds, cooldowns and the choice of one action
    per target as experta rules too (joins on the entity and the target, retraction of the losers)."""
    engine_class, column = experta_engine(inputs, mode)
    F = engine_class.facts_of
    names = {r.order: r.name for r in inputs.rules}
    services = {e[2] for e in inputs.entities if e[2] is not None}

    def one() -> Outcome:
        engine = engine_class()
        engine.matched = 0
        engine.sink = []
        engine.reset()
        facts = []  # declared in one call: experta updates its agenda once per declare() call
        for entity, kind, service, apps in inputs.entities:
            values = {column[k]: v for k, v in inputs.rows.get(entity, {}).items()}
            if mode == "rules":
                values["prev"], values["pstreak"] = inputs.previous.get(entity, ("", 0))
            facts.append(F["Entity"](name=entity, kind=kind, service=service, apps=tuple(apps), **values))
        if mode == "rules":
            for s in sorted(services):
                replicas, low, high = inputs.bounds[s]
                facts.append(F["Bounds"](service=s, replicas=replicas, min=low, max=high))
            for (kind, target, decision), until in inputs.cooldowns.items():
                facts.append(F["Cooling"](kind=kind, target=target, decision=decision, until=until))
            facts.append(F["Clock"](now=inputs.at))
        engine.declare(*facts)
        engine.run()
        if mode == "alpha":
            return resolve_python(inputs, engine.sink)
        winners, streaks, actions, suppressed = {}, {}, set(), set()
        kind_of = {e[0]: e[1] for e in inputs.entities}
        for fact in engine.facts.values():
            if isinstance(fact, F["Eval"]):
                rule = None if fact["rule"] is None else names[fact["rule"]]
                winners[fact["entity"]] = (fact["decision"], rule)
                streaks[fact["entity"]] = fact["streak"]
            elif isinstance(fact, F["Candidate"]):
                container = fact["entity"] if kind_of[fact["entity"]] == "container" else None
                actions.add((fact["decision"], fact["target"], container, names[fact["rule"]]))
            elif isinstance(fact, F["Suppressed"]):
                suppressed.add((fact["decision"], fact["target"], fact["entity"], names[fact["rule"]]))
        return Outcome(winners, engine.matched, actions, suppressed, streaks)

    times, outcome = [], None
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        outcome = one()
        times.append(time.perf_counter() - t0)
    judged = len(inputs.entities)
    scale = len(work.entity_kind) / judged
    note = ("policy rules as experta rules (field constraints, TEST for or-conditions), all facts declared in "
            "one call; resolution, streaks and selection in Python" if mode == "alpha" else
            "policy rules, resolution (retract the loser of two matches of an entity), streaks, bounds, cooldowns "
            "and the one-action-per-target choice as experta rules")
    note += f"; {len(times)} run(s)"
    if scale != 1:
        note += f" on {judged:,} entities ({len(targets):,} whole services and hosts), times scaled " \
                f"x{scale:.2f} (linearly) to the full fleet"
    return Timing(EXPERTA_NAMES[mode], times, judged, note=note, outcome=outcome, scale=scale)


def run_experta_growth(args: argparse.Namespace, work: Workload, frame: pl.DataFrame, state: Any) -> Timing:
    """Experta with everything in rules, on the whole fleet; or, with ``--experta-rules-fraction`` < 1, on
    two subsets (half of that share, then all of it), extrapolated with the growth exponent between them."""
    runs = args.experta_rules_runs
    if args.experta_rules_fraction >= 1:
        entities, targets = subset(work, 1.0)
        return run_experta(args, work, make_inputs(work, frame, state, entities), targets, "rules", runs)
    half_entities, half_targets = subset(work, args.experta_rules_fraction / 2)
    small = run_experta(args, work, make_inputs(work, frame, state, half_entities), half_targets, "rules", runs)
    entities, targets = subset(work, args.experta_rules_fraction)
    big = run_experta(args, work, make_inputs(work, frame, state, entities), targets, "rules", runs)
    n1, n2 = small.judged, big.judged
    t1, t2 = statistics.median(small.seconds), statistics.median(big.seconds)
    exponent = math.log(t2 / t1) / math.log(n2 / n1) if n2 > n1 and t2 > 0 and t1 > 0 else 1.0
    exponent = max(1.0, exponent)
    full = len(work.entity_kind)
    big.scale = (full / n2) ** exponent
    big.note = (f"everything in rules; run on {n1:,} and {n2:,} entities (whole services and hosts): "
                f"{t1:.1f} s and {t2:.1f} s, "
                f"growth exponent {exponent:.2f}; times scaled x{big.scale:,.0f} to the full fleet "
                f"((N/{n2:,})^{exponent:.2f}; linear scaling would give {t2 * full / n2:,.0f} s). Its joins on "
                f"entity and target are nested loops (experta's OrdinaryMatchNode scans the whole opposite memory)")
    return big


# --- (c) durable_rules, in a child process -----------------------------------------------------------------


def _durable_child(conn: Any, inputs: Inputs, runs: int, sizes: list[int]) -> None:
    """Define the rules as durable rulesets (as few as the C engine accepts), assert every entity as a
    fact into each, collect the matches, then resolve and select in Python. Sends a dict back."""
    try:
        from durable import engine as durable_engine
        from durable.lang import assert_fact, delete_state, item, m, ruleset, when_all
    except Exception as error:  # noqa: BLE001 - a competitor that fails is reported, not fatal
        conn.send({"error": f"durable_rules is not importable: {error}"})
        return
    column = {k: f"t{i}" for i, k in enumerate(inputs.keys)}
    sink: list[tuple[str, int]] = []

    def compare(cmp: Cmp) -> Any:
        prop = getattr(m, column[cmp.term.key])
        return {">": prop > cmp.value, ">=": prop >= cmp.value, "<": prop < cmp.value,
                "<=": prop <= cmp.value}[cmp.op]

    def condition(cond: Any) -> Any:
        if isinstance(cond, Cmp):
            return compare(cond)
        parts = [condition(x) for x in cond.items]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if cond.op == "and" else (out | p)
        return out

    def expression(rule: RuleSpec, scope_first: bool) -> Any:
        """The rule's scope and target tests and its condition, in this order or the other way round
        (durable builds its alpha network in the written order)."""
        expr = m.kind == ("host" if rule.scope == "host" else "container")
        if rule.targets is not None:
            if rule.scope == "app":
                names = item == rule.targets[0]
                for t in rule.targets[1:]:
                    names = names | (item == t)
                expr = expr & m.apps.anyItem(names)
            else:
                prop = m.entity if rule.scope in ("host", "container") else m.service
                names = prop == rule.targets[0]
                for t in rule.targets[1:]:
                    names = names | (prop == t)
                expr = expr & names
        if isinstance(rule.cond, Const):
            return expr
        return expr & condition(rule.cond) if scope_first else condition(rule.cond) & expr

    def action(index: int) -> Callable[[Any], None]:
        def act(c: Any) -> None:  # one parameter: two would make durable treat it as async
            sink.append((c.m.entity, index))
        return act

    facts = []
    for entity, kind, service, apps in inputs.entities:
        fact = {"entity": entity, "kind": kind, "service": service or "", "apps": list(apps)}
        fact.update({column[k]: v for k, v in inputs.rows.get(entity, {}).items()})
        facts.append(fact)

    def assert_all(names: list[str], sid: str) -> tuple[int, int]:
        unhandled = 0
        for fact in facts:
            fact = dict(fact, sid=sid)
            for name in names:
                try:
                    assert_fact(name, fact)
                except durable_engine.MessageNotHandledException:
                    unhandled += 1
        return unhandled, 0

    attempts: list[str] = []
    working: list[tuple[int, int, str, list[str]]] = []  # (rulesets, preference, label, names)
    generation = 0
    for preference, (scope_first, label) in enumerate(((False, "condition first"), (True, "scope first"))):
        for size in sizes:
            generation += 1
            names = []
            chunks = [inputs.rules[i:i + size] for i in range(0, len(inputs.rules), size)]
            layout = f"{len(chunks)} ruleset(s) of <= {size} rules, {label}"
            try:
                for k, chunk in enumerate(chunks):
                    name = f"usm_bench_{generation}_{k}"
                    with ruleset(name):
                        for rule in chunk:
                            when_all(expression(rule, scope_first))(action(rule.order))
                    names.append(name)
                sink.clear()
                t0 = time.perf_counter()
                assert_all(names, f"probe{generation}")
                probe = time.perf_counter() - t0
                for name in names:
                    delete_state(name, f"probe{generation}")
                attempts.append(f"{layout}: ok (one pass {probe:.2f} s)")
                working.append((len(chunks), -preference, layout, names))
                break  # the largest size that works, for this order
            except Exception as error:  # noqa: BLE001 - error 303 and friends
                attempts.append(f"{layout}: {type(error).__name__}: {str(error).strip()[:60]}")
    if not working:
        conn.send({"attempts": attempts, "error": "no ruleset layout worked"})
        return
    *_, timed, chosen = min(working)
    times, outcome = [], None
    for run in range(runs):
        sink.clear()
        t0 = time.perf_counter()
        unhandled, _ = assert_all(chosen, f"run{run}")
        matched = list(sink)
        outcome = resolve_python(inputs, matched)
        duplicates = len(matched) - outcome.matches
        times.append(time.perf_counter() - t0)
        for name in chosen:
            delete_state(name, f"run{run}")
    # Where error 303 comes from: ERR_MAX_STACK_SIZE of the alpha walk (events.c keeps at most 64 pending
    # alpha nodes). Rules that share their first test and whose second tests all pass for one fact:
    stack = []
    for n in (64, 65):
        generation += 1
        name = f"usm_bench_stack_{generation}"
        with ruleset(name):
            for i in range(n):
                when_all((m.kind == "x") & (m.v > float(i)) & (m.w > 0.0))(action(-1))
        try:
            assert_fact(name, {"entity": "probe", "kind": "x", "v": 1e9, "w": 1.0})
            stack.append(f"{n} rules ok")
        except Exception as error:  # noqa: BLE001 - a competitor or probe that fails is reported, not fatal
            stack.append(f"{n} rules: {str(error).strip()[:60]}")
    conn.send({"attempts": attempts, "times": times, "outcome": outcome, "rulesets": len(chosen), "timed": timed,
               "stack": "; ".join(stack),
               "duplicates": duplicates, "unhandled": unhandled})


def run_durable(args: argparse.Namespace, work: Workload, inputs: Inputs, targets: set[str]) -> Timing:
    n = len(inputs.rules)
    sizes = [n] + [s for s in (90, 64, 48, 32, 16, 8) if s < n]
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_durable_child, args=(child, inputs, max(1, min(args.runs, args.slow_runs)),
                                                           sizes), daemon=True)
    process.start()
    child.close()
    result: dict[str, Any] | None = None
    if parent.poll(args.durable_timeout):
        try:
            result = parent.recv()
        except EOFError:
            result = None
    process.join(5)
    if process.is_alive():
        process.kill()  # the child we started, by its handle
        process.join()
    judged = len(inputs.entities)
    scale = len(work.entity_kind) / judged
    if result is None:
        return Timing("durable_rules 2.0.28", [math.nan], judged,
                      note=f"no result within {args.durable_timeout:.0f} s (hung or crashed, exit code "
                           f"{process.exitcode}); killed")
    attempts = "; ".join(result.get("attempts", []))
    if "error" in result:
        return Timing("durable_rules 2.0.28", [math.nan], judged, note=f"{result['error']} ({attempts})")
    note = (f"layouts tried: {attempts}; timed: {result['timed']}. Matching in durable_rules "
            f"({result['unhandled']:,} assertions matched "
            f"no rule of their ruleset and raised MessageNotHandledException; {result['duplicates']:,} duplicate "
            f"activations of one rule on one entity, counted once); resolution and selection in Python. Error 303 "
            f"probe (one fact passing the second test of every rule of one ruleset): {result.get('stack', '?')}")
    if scale != 1:
        note += f"; run on {judged:,} entities, times scaled x{scale:.2f} to the full fleet"
    return Timing("durable_rules 2.0.28", result["times"], judged, note=note, outcome=result["outcome"],
                  scale=scale)


# --- reporting ----------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    versions = {}
    for dist in ("polars", "duckdb", "clipspy", "experta", "frozendict", "durable-rules", "numpy"):
        try:
            from importlib.metadata import version
            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001 - a competitor or probe that fails is reported, not fatal
            versions[dist] = "not installed"
    try:
        import subprocess
        root = Path(__file__).resolve().parents[1]
        revision = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True,
                                  text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "usm"], capture_output=True,
                               text=True, timeout=10, check=False).stdout.split("\n")
        changed = [line[3:] for line in dirty if line.strip()]
        revision += f" (uncommitted changes in {', '.join(changed)})" if changed else ""
    except Exception:  # noqa: BLE001 - a competitor or probe that fails is reported, not fatal
        revision = "?"
    return {"nproc": str(os.cpu_count()), "cpu": model, "ram": ram, "python": platform.python_version(),
            "platform": platform.platform(), **versions, "usm": revision}


def report(timings: list[Timing], reference: Outcome, checks: dict[str, dict[str, Any]]) -> None:
    usm = timings[0]
    rows = []
    for t in timings:
        if not t.seconds or math.isnan(t.seconds[0]):
            rows.append((t.name, "-", "-", "-", f"{t.judged:,}", "did not run"))
            continue
        check = checks.get(t.name)
        if check is None:
            agree = "reference"
        else:
            agree = f"{check['winners']:,}/{check['entities']:,} winners"
            if check["streaks"] is not None:
                agree += f", streaks {'ok' if check['streaks'] == check['entities'] else check['streaks']}"
            agree += f", actions {'=' if check['actions_same'] else '!='} ({check['actions'][0]}/{check['actions'][1]})"
            agree += f", suppressed {'=' if check['suppressed_same'] else '!='} " \
                     f"({check['suppressed'][0]}/{check['suppressed'][1]})"
            agree += f", matches {check['matches'][0]:,}/{check['matches'][1]:,}"
        ratio = t.median_ms / usm.median_ms
        rows.append((t.name, f"{t.median_ms:,.1f}", f"{t.min_ms:,.1f}", f"{ratio:.2f}x", f"{t.judged:,}", agree))
    try:
        from rich.console import Console
        from rich.table import Table
        table = Table(title="one decision cycle", show_lines=False)
        for head in ("implementation", "median ms", "min ms", "ratio to usm", "entities judged", "agreement"):
            table.add_column(head, justify="right" if "ms" in head or "ratio" in head or "entities" in head
                             else "left")
        for row in rows:
            table.add_row(*row)
        Console(width=200).print(table)
    except ImportError:  # pragma: no cover
        for row in rows:
            print(" | ".join(row))
    print("\nmarkdown:\n")
    print("| implementation | median ms | min ms | ratio to usm | entities judged | agreement with usm |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for t in timings:
        if t.note:
            print(f"\n* {t.name}: {t.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", help="comma-separated: durable, experta, experta-rules, polars")
    parser.add_argument("--alt-fraction", type=float, default=1.0,
                        help="share of the services and hosts experta (matching) and durable_rules judge (1 = all)")
    parser.add_argument("--experta-rules-fraction", type=float, default=1.0,
                        help="share judged by experta with everything in rules (its joins are nested loops); "
                             "below 1 it also runs on half of that share and extrapolates with the measured growth")
    parser.add_argument("--experta-rules-runs", type=int, default=1,
                        help="runs of experta with everything in rules (about 90 s each for the full fleet)")
    parser.add_argument("--slow-runs", type=int, default=3,
                        help="at most this many runs of experta (matching) and durable_rules")
    parser.add_argument("--durable-timeout", type=float, default=600.0, help="seconds before durable is killed")
    parser.add_argument("--fill", choices=("live", "bulk"), default="live",
                        help="live: the timed history is filled as the live loop does, asking for the terms "
                             "after each of the last --live-cycles appends; bulk: appended, then asked")
    parser.add_argument("--live-cycles", type=int, default=80, help="cycles of the live fill that ask for terms")
    parser.add_argument("--profile", action="store_true", help="profile usm's cycle with pyinstrument")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"durable", "experta", "experta-rules", "polars"}
    if unknown:
        parser.error(f"--skip: unknown {', '.join(sorted(unknown))}")

    info = machine()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, {info['ram']} RAM, Python {info['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()
                                   if k not in ("nproc", "cpu", "ram", "python", "platform", "usm")))
    print(f"usm at: {info['usm']}")
    with tempfile.TemporaryDirectory(prefix="usm-bench-") as tmp, History() as calibration, History() as live:
        start = time.perf_counter()
        work = build(args, calibration, live, Path(tmp))
        history = work.history
        assert history is not None
        inv = work.inventory
        print(f"workload: {len(inv.hosts):,} hosts, {len(inv.containers):,} containers, {len(inv.services):,} "
              f"services, {len(inv.apps):,} apps, {len(work.rules)} rules; {work.samples:,} samples "
              f"(appended in {work.append_seconds:.1f} s); built in {time.perf_counter() - start:.1f} s")
        if work.live_terms:
            last = work.live_terms[-20:]
            print(f"live fill: History.terms after each of the last {len(work.live_terms)} appends before the "
                  f"final cycle; last {len(last)}: median {statistics.median(last) * 1000:.1f} ms, "
                  f"min {min(last) * 1000:.1f} ms")
        by_scope: dict[str, int] = defaultdict(int)
        for r in work.rules:
            by_scope[f"{r.scope}{'*' if r.targets is None else ''}"] += 1
        print("rules by scope (* = generic): " + ", ".join(f"{k} {v}" for k, v in sorted(by_scope.items())))

        run = run_usm(args, work, history)
        usm, frame, state, terms = run.timing, run.frame, run.state, run.terms
        ref = usm.outcome
        assert ref is not None
        matched = sum(1 for d, r in ref.winners.values() if r is not None)
        acting = sum(1 for d, r in ref.winners.values() if d != "none")
        print(f"usm: {len(terms)} terms; {matched:,} of {len(ref.winners):,} entities matched a rule "
              f"({matched / len(ref.winners):.1%}), {acting:,} with a non-none decision, {ref.matches:,} matches, "
              f"{len(ref.actions)} actions, {len(ref.suppressed)} suppressed")
        print(f"usm parts (median): terms {statistics.median(usm.parts['terms']) * 1000:.1f} ms, "
              f"engine {statistics.median(usm.parts['engine']) * 1000:.1f} ms; "
              f"all runs: {', '.join(f'{t * 1000:.0f}' for t in usm.seconds)} ms")
        missing = [r.cond for r in work.rules for c in comparisons(r.cond) if c.term.key not in frame.columns]
        assert not missing, "a rule reads a column the history did not return"

        timings = [usm]
        checks: dict[str, dict[str, Any]] = {}
        everyone = set(work.entity_kind)
        all_targets = {h.name for h in inv.hosts} | {s.name for s in inv.services}

        usm_match_entities = run.cycle.matches["entity"].to_list()

        def check(timing: Timing, entities: set[str], targets: set[str]) -> None:
            if timing.outcome is None:
                return
            c = agreement(ref, timing.outcome, entities, targets)
            c["matches"] = (timing.outcome.matches, sum(1 for e in usm_match_entities if e in entities))
            checks[timing.name] = c

        if "polars" not in skip:
            t = run_polars(args, work, frame, state)
            check(t, everyone, all_targets)
            timings.append(t)
            print(f"polars: median {t.median_ms:.1f} ms")
        entities, targets = subset(work, args.alt_fraction)
        inputs = None
        if {"experta", "durable"} - skip:
            inputs = make_inputs(work, frame, state, entities)
        for mode in ("alpha", "rules"):
            if ("experta" if mode == "alpha" else "experta-rules") in skip:
                continue
            try:
                import experta  # noqa: F401
                if mode == "alpha":
                    t = run_experta(args, work, inputs, targets, mode, min(args.runs, args.slow_runs))
                    check(t, entities, targets)
                else:
                    t = run_experta_growth(args, work, frame, state)
                    check(t, *subset(work, args.experta_rules_fraction))
                print(f"{t.name}: {statistics.median(t.seconds):.1f} s on {t.judged:,} entities")
            except Exception as error:  # noqa: BLE001 - a competitor or probe that fails is reported, not fatal
                traceback.print_exc()
                t = Timing(EXPERTA_NAMES[mode], [math.nan], 0, note=f"failed: {type(error).__name__}: {error}")
            timings.append(t)
        if "durable" not in skip:
            try:
                t = run_durable(args, work, inputs, targets)
                check(t, entities, targets)
                if t.seconds and not math.isnan(t.seconds[0]):
                    print(f"durable_rules: {statistics.median(t.seconds):.1f} s on {t.judged:,} entities")
            except Exception as error:  # noqa: BLE001 - a competitor or probe that fails is reported, not fatal
                traceback.print_exc()
                t = Timing("durable_rules 2.0.28", [math.nan], 0, note=f"failed: {type(error).__name__}: {error}")
            timings.append(t)
        print()
        report(timings, ref, checks)
        print(f"\ncommand: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
        if args.profile:
            profile(run, work, history)
    return 0


def profile(run: UsmRun, work: Workload, history: History) -> None:
    """Where usm's cycle spends its time: a pyinstrument profile of five final cycles (each on a freshly
    warmed engine), and ``History.terms`` timed on groups of the policy's terms."""
    terms, retention = run.terms, run.policy.settings.retention

    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: .venv/bin/uv pip install --python .venv/bin/python pyinstrument")
    else:
        engines = [warmed_engine(run.policy, work, run.warm) for _ in range(5)]
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for engine in engines:
            frame = history.terms(work.at, PERIOD, terms, retention)
            engine.cycle(work.at, work.inventory, frame)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    windowless = [t for t in terms if t.window is None and t.func.value != "value"]
    groups = {
        "all the policy's terms": terms,
        "without the window-less ones (" + ", ".join(t.key for t in windowless) + ")":
            [t for t in terms if t not in windowless],
        "the window-less ones only": windowless,
        "windowed avg/min/max only": [t for t in terms
                                      if t.window is not None and t.func.value in ("avg", "min", "max")],
        "current values only": [t for t in terms if t.func.value == "value"],
        "one current value (cpu_percent)": [t for t in terms if t.key == "cpu_percent"][:1],
    }
    print("History.terms by group of terms (5 calls each):")
    for name, group in groups.items():
        if not group:
            continue
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            history.terms(work.at, PERIOD, group, retention)
            times.append(time.perf_counter() - t0)
        print(f"  {name:75s} {len(group):3d} terms  median {statistics.median(times) * 1000:7.1f} ms"
              f"  min {min(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    sys.exit(main())

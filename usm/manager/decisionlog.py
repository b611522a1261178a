"""The decision log: every decision with its explanation, every action and every plan step.

One JSON object per line (JSON Lines), keys sorted and floats as Python writes them, so the
same cycles always give the same bytes: the simulator's determinism test compares hashes.

Record types:
* ``cycle``: one per cycle, with the policy digest and the number of entities judged;
* ``inventory``: what changed in the inventory since the previous cycle (everything, at the
  first): hosts, services and apps as they now are, containers added and removed, so that a
  backtest can rebuild each cycle's inventory from the log;
* ``evaluation``: an entity whose decision is not ``none``, or that a rule pinned to ``none``,
  with its rule, level, streak, the rules it shadowed, the term values the matching rules read
  and the terms they missed;
* ``action`` and ``suppressed``: the engine's choice after hysteresis, bounds and cooldowns;
* ``step``: what placement planned for it, and the actuator's outcome;
* ``support``: a region's support components started, stopped, or their stop armed or cancelled.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from enum import Enum
from typing import IO, Any

import polars as pl

from usm.engine.engine import Cycle
from usm.engine.expressions import terms as terms_of
from usm.engine.inventory import App, Container, Host, Inventory, Service


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def evaluation_records(cycle: Cycle) -> Iterator[dict[str, Any]]:
    """Set-wise explanations of the evaluations worth logging (see the module docstring)."""
    rules = {r.name: r for r in cycle.policy.rules}
    reads = {name: sorted(t.key for t in terms_of(rule.when)) for name, rule in rules.items()}
    judged = cycle.evaluations.filter((pl.col("decision") != "none") | pl.col("rule").is_not_null())
    if judged.is_empty():
        return
    matched = (cycle.matches.filter(pl.col("entity").is_in(judged["entity"].implode()))
               .group_by("entity", maintain_order=True).agg(pl.col("rule").alias("matched")))
    rows = judged.join(matched, on="entity", how="left").join(cycle.facts, on="entity", how="left", suffix="_fact")
    for row in rows.iter_rows(named=True):
        matched_rules = row["matched"] or []
        keys = sorted({k for name in matched_rules for k in reads[name]})
        yield {
            "type": "evaluation", "at": cycle.at, "entity": row["entity"], "kind": row["kind"],
            "decision": row["decision"], "rule": row["rule"], "level": row["level"], "streak": row["streak"],
            "candidate": row["candidate"], "shadowed": [r for r in matched_rules if r != row["rule"]],
            "terms": {k: row[k] for k in keys if row[k] is not None},
            "missing": [k for k in keys if row[k] is None],
        }


def inventory_record(before: Inventory | None, now: Inventory, at: float) -> dict[str, Any] | None:
    """The change from ``before`` to ``now`` (``None`` when there is none)."""
    old = before or Inventory()
    if old == now:
        return None
    record: dict[str, Any] = {"type": "inventory", "at": at}
    for part in ("hosts", "apps", "services"):
        if getattr(old, part) != getattr(now, part):
            record[part] = [dataclasses.asdict(item) for item in getattr(now, part)]
    was, has = set(old.containers), set(now.containers)
    record["containers_added"] = [[c.name, c.service, c.host] for c in now.containers if c not in was]
    record["containers_removed"] = [c.name for c in old.containers if c not in has]
    return record


def replay_inventory(before: Inventory | None, record: dict[str, Any]) -> Inventory:
    """The inventory after an ``inventory`` record (the inverse of :func:`inventory_record`)."""
    old = before or Inventory()
    hosts = tuple(Host(**h) for h in record["hosts"]) if "hosts" in record else old.hosts
    apps = tuple(App(a["name"], tuple(a["services"])) for a in record["apps"]) if "apps" in record else old.apps
    services = tuple(Service(**s) for s in record["services"]) if "services" in record else old.services
    removed = set(record.get("containers_removed", ()))
    kept = [c for c in old.containers if c.name not in removed]
    added = [Container(*c) for c in record.get("containers_added", ())]
    return Inventory(hosts, apps, services, tuple(sorted(kept + added, key=lambda c: c.name)))


def cycle_records(cycle: Cycle, planned: Any = (), outcomes: Any = (),
                  inventory: dict[str, Any] | None = None, support: Any = ()) -> Iterator[dict[str, Any]]:
    policy = cycle.policy.digest
    yield {"type": "cycle", "at": cycle.at, "policy": policy, "judged": cycle.evaluations.height}
    if inventory is not None:
        yield inventory
    for record in evaluation_records(cycle):
        yield {**record, "policy": policy}
    for action in cycle.actions:
        yield {"type": "action", **action.as_dict(), "policy": policy}
    for s in cycle.suppressed:
        yield {"type": "suppressed", "at": s.at, "action": s.action.value, "target": s.target, "entity": s.entity,
               "rule": s.rule, "reason": s.reason, "policy": policy}
    for event in support:
        yield {"type": "support", "at": event.at, "event": _plain(event.event), "ok": event.ok, "detail": event.detail}
    for item, outcome in zip(planned, outcomes):
        yield {"type": "step", "at": cycle.at, "why": item.why, "step": _plain(item.step),
               "ok": None if outcome is None else outcome.ok, "detail": "" if outcome is None else outcome.detail}


class DecisionLog:
    """Appends records to a text stream as JSON Lines."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.records = 0

    def write(self, records: Iterator[dict[str, Any]]) -> None:
        for record in records:
            self.stream.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            self.records += 1
        self.stream.flush()  # a cycle's records reach the file together: a crash loses no decided cycle

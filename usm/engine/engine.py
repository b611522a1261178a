"""One decision cycle: evaluate, resolve, apply hysteresis, select actions (policy-spec §3, §4).

``Engine`` holds a compiled policy and the state that carries across cycles (streaks and
cooldowns). ``Engine.cycle(at, inventory, terms)`` judges every host and container once:

1. *alpha* (polars): every rule condition on every entity's term values, set-wise;
2. *judge* (CLIPS): scope and target joins, then the winner per entity (§3);
3. *streaks* (polars): consecutive identical decisions, and the action candidates (§4);
4. *select* (CLIPS): bounds, cooldowns, at most one action per service or host (§4).

Nothing here reads the clock or does I/O: ``at`` and the term values come from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from usm.engine.compiler import CompiledPolicy, compile_policy
from usm.engine.expressions import evaluate
from usm.engine.expressions import terms as terms_of
from usm.engine.inventory import Inventory
from usm.engine.memory import WorkingMemory
from usm.engine.policy import Decision, Policy, Rule, container_level, host_level
from usm.engine.results import (
    EVALUATION_SCHEMA,
    Action,
    EngineState,
    Explanation,
    RuleVerdict,
    Suppression,
)
from usm.engine.simulated import apply_simulated_metrics

DECISION_RANK = {Decision.REPLICATE: 0, Decision.MIGRATE: 1, Decision.STOP: 2,
                 Decision.OVERWORK: 0, Decision.UNDERWORK: 0}


def entity_frame(inventory: Inventory) -> pl.DataFrame:
    """One row per host and container: entity, kind, service (containers) and apps."""
    hosts = pl.DataFrame({"entity": [h.name for h in inventory.hosts]}, schema={"entity": pl.String})
    containers = pl.DataFrame({"entity": [c.name for c in inventory.containers],
                               "service": [c.service for c in inventory.containers]},
                              schema={"entity": pl.String, "service": pl.String})
    apps_of = inventory.apps_of_service
    apps = pl.DataFrame({"service": list(apps_of), "apps": [list(a) for a in apps_of.values()]},
                        schema={"service": pl.String, "apps": pl.List(pl.String)})
    containers = containers.join(apps, on="service", how="left", maintain_order="left").with_columns(
        pl.col("apps").fill_null(pl.lit([], dtype=pl.List(pl.String))), kind=pl.lit("container"))
    hosts = hosts.with_columns(kind=pl.lit("host"), service=pl.lit(None, dtype=pl.String),
                               apps=pl.lit([], dtype=pl.List(pl.String)))
    columns = ["entity", "kind", "service", "apps"]
    return pl.concat([hosts.select(columns), containers.select(columns)])


@dataclass(frozen=True)
class Cycle:
    """The outcome of one cycle at time ``at``."""

    at: float
    evaluations: pl.DataFrame  # entity, kind, service, decision, rule, level, streak, candidate
    matches: pl.DataFrame  # entity, rule, level, priority, decision, winner: every rule that matched
    actions: tuple[Action, ...]
    suppressed: tuple[Suppression, ...]
    state: EngineState
    facts: pl.DataFrame  # the entities with the term values they were judged on
    policy: Policy

    @property
    def matched_rules(self) -> frozenset[str]:
        """Names of the rules that matched some entity (shadowed matches included)."""
        return frozenset(self.matches["rule"].to_list())

    def evaluation(self, entity: str) -> dict[str, Any]:
        rows = self.evaluations.filter(pl.col("entity") == entity).to_dicts()
        if not rows:
            raise KeyError(entity)
        return rows[0]

    def explain(self, entity: str) -> Explanation:
        """Every rule that applies to ``entity``, how it judged, and which one decided."""
        row = self.facts.filter(pl.col("entity") == entity).to_dicts()
        if not row:
            raise KeyError(entity)
        facts = row[0]
        evaluation = self.evaluation(entity)
        verdicts = []
        for rule in self.policy.rules:
            level = _level(rule, facts)
            if level is None:
                continue
            keys = sorted(t.key for t in terms_of(rule.when))
            missing = tuple(k for k in keys if facts.get(k) is None)
            verdicts.append((level, -rule.priority, rule.order, RuleVerdict(
                rule.name, level, rule.priority, rule.then, evaluate(rule.when, facts), missing)))
        ordered = tuple(v for *_, v in sorted(verdicts, key=lambda x: x[:3]))
        read = sorted({t.key for r in self.policy.rules if _level(r, facts) is not None for t in terms_of(r.when)})
        return Explanation(
            entity=entity, kind=facts["kind"], decision=Decision(evaluation["decision"]), rule=evaluation["rule"],
            level=evaluation["level"], streak=evaluation["streak"],
            shadowed=tuple(v for v in ordered if v.result and v.rule != evaluation["rule"]),
            verdicts=ordered, terms=MappingProxyType({k: facts.get(k) for k in read}), policy=self.policy.digest,
        )


def _level(rule: Rule, facts: dict[str, Any]) -> int | None:
    if facts["kind"] == "host":
        return host_level(rule.scope, rule.targets, facts["entity"])
    return container_level(rule.scope, rule.targets, facts["entity"], facts["service"], tuple(facts["apps"]))


class Engine:
    """A compiled policy, its CLIPS working memory, and the state that carries from cycle to
    cycle. Not thread-safe: give each thread or process its own."""

    def __init__(self, policy: Policy, state: EngineState | None = None) -> None:
        self._install(compile_policy(policy))
        self.state = state or EngineState()

    def _install(self, compiled: CompiledPolicy) -> None:
        memory = WorkingMemory(compiled)
        self._compiled, self._memory = compiled, memory
        self._alpha: _Alpha | None = None  # the last cycle's, with the inventory it judged
        self._judged: Inventory | None = None
        self._entities: tuple[Inventory | None, pl.DataFrame | None] = (None, None)

    def _entity_frame(self, inventory: Inventory) -> pl.DataFrame:
        """``entity_frame(inventory)``, remembered while the caller passes the same inventory."""
        known, frame = self._entities
        if known is not inventory or frame is None:
            frame = entity_frame(inventory)
            self._entities = (inventory, frame)
        return frame

    @property
    def policy(self) -> Policy:
        return self._compiled.policy

    @property
    def compiled(self) -> CompiledPolicy:
        return self._compiled

    def replace(self, policy: Policy) -> None:
        """Put a new policy in force for the next cycle, atomically: if it does not compile, the
        old one stays and the error propagates. Streaks and cooldowns carry over."""
        self._install(compile_policy(policy))

    def simulate(self, at: float, inventory: Inventory, batch: pl.DataFrame) -> pl.DataFrame:
        """The samples of this cycle with the policy's simulated metrics applied (§6)."""
        return apply_simulated_metrics(self.policy, inventory, at, batch)

    def cycle(self, at: float, inventory: Inventory, terms: pl.DataFrame) -> Cycle:
        """Judge every host and container of ``inventory`` at time ``at`` on ``terms`` (a frame
        with an ``entity`` column and one column per term key, as the history returns it)."""
        at = float(at)
        compiled, memory = self._compiled, self._memory
        policy = compiled.policy
        facts = _facts(compiled, self._entity_frame(inventory), terms)
        alpha = _alpha(compiled, facts)
        changed, removed = _changes(self._alpha, alpha, same_entities=inventory is self._judged)
        memory.judge(changed, removed)
        self._alpha, self._judged = alpha, inventory
        matches, winners = _results(policy, memory)
        evaluations = _streaks(policy, facts, winners, self.state)
        actions, suppressed = _select(policy, memory, at, inventory, evaluations, self.state)
        self.state = _next_state(policy, at, evaluations, actions, self.state)
        return Cycle(at, evaluations, matches, actions, suppressed, self.state, facts, policy)


_ALPHA_SCHEMA = {"entity": pl.String, "kind": pl.String, "service": pl.String, "apps": pl.List(pl.String),
                 "key": pl.Binary, "any": pl.Boolean}
_EMPTY_ALPHA = pl.DataFrame(schema=_ALPHA_SCHEMA)


def _facts(compiled: CompiledPolicy, entities: pl.DataFrame, terms: pl.DataFrame) -> pl.DataFrame:
    keys = [t.key for t in compiled.terms]
    present = [k for k in keys if k in terms.columns]
    values = terms.select(["entity", *present]) if "entity" in terms.columns else pl.DataFrame(
        schema={"entity": pl.String})
    missing = [pl.lit(None, dtype=pl.Float64).alias(k) for k in keys if k not in present]
    return (entities.lazy().join(values.lazy(), on="entity", how="left", maintain_order="left")
            .with_columns(*missing, *(pl.col(k).cast(pl.Float64).fill_nan(None) for k in present))
            .collect())


@dataclass(frozen=True)
class _Alpha:
    """Which rule conditions hold for which entity: a boolean matrix (entities x rules of the
    policy's alpha columns), and a frame with each entity's identity and a packed ``key`` of its
    row, by which cycles compare cheaply."""

    frame: pl.DataFrame
    matrix: np.ndarray
    rules: np.ndarray  # the rule index of each matrix column
    keys: list[bytes]  # each row packed (the frame's ``key`` column)

    def matched(self, row: int) -> list[int]:
        return sorted(self.rules[np.flatnonzero(self.matrix[row])].tolist())


def _alpha(compiled: CompiledPolicy, facts: pl.DataFrame) -> _Alpha:
    """Every rule condition (with its scope and target pre-filter) on every entity, set-wise."""
    is_host = pl.col("kind") == "host"
    columns = [(is_host & cond).fill_null(False) for _, cond in compiled.host_alpha] + \
              [(~is_host & cond).fill_null(False) for _, cond in compiled.container_alpha]
    rules = np.array([i for i, _ in compiled.host_alpha] + [i for i, _ in compiled.container_alpha], dtype=np.int64)
    if columns:
        matrix = facts.select(c.alias(f"r{k}") for k, c in enumerate(columns)).to_numpy().astype(bool, copy=False)
    else:
        matrix = np.zeros((facts.height, 0), dtype=bool)
    keys = [row.tobytes() for row in np.packbits(matrix, axis=1)]
    frame = facts.select("entity", "kind", "service", "apps").with_columns(
        key=pl.Series(keys, dtype=pl.Binary), any=pl.Series(matrix.any(axis=1), dtype=pl.Boolean))
    return _Alpha(frame, matrix, rules, keys)


def _changes(previous: _Alpha | None, now: _Alpha, same_entities: bool) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The entities whose identity or true conditions differ from ``previous`` (new ones included;
    those that matched nothing, then and now, left out) as judge rows, and the entities gone.
    ``same_entities``: the same inventory as last time, so the same rows in the same order: the
    packed keys are then compared row by row, without a join (most cycles)."""
    if previous is not None and same_entities:
        was_any = previous.matrix.any(axis=1)
        now_any = now.matrix.any(axis=1)
        rows = [i for i, (key, old) in enumerate(zip(now.keys, previous.keys, strict=True))
                if key != old and (now_any[i] or was_any[i])]
        if not rows:
            return [], []
        picked = now.frame[rows].select("entity", "kind", "service", "apps").iter_rows()
        return [(*identity, now.matched(row)) for row, identity in zip(rows, picked, strict=True)], []
    before = _EMPTY_ALPHA if previous is None else previous.frame
    joined = now.frame.with_row_index("row").join(before, on="entity", how="left", suffix="_before")
    differs = pl.lit(False)
    for column in ("kind", "service", "apps", "key"):
        differs = differs | pl.col(column).ne_missing(pl.col(f"{column}_before"))
    relevant = pl.col("any") | pl.col("any_before").fill_null(False)
    changed = [(entity, kind, service, apps, now.matched(row)) for row, entity, kind, service, apps in
               joined.filter(differs & relevant).select("row", "entity", "kind", "service", "apps").iter_rows()]
    removed = before.join(now.frame, on="entity", how="anti")["entity"].to_list()
    return changed, removed


def _results(policy: Policy, memory: WorkingMemory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The matches and winners CLIPS derived, as frames."""
    rules = policy.rules
    winner_rows = [(e, rules[r].name, level, rules[r].then.value) for e, (r, level) in memory.winners.items()]
    winners = pl.DataFrame(winner_rows, schema={"entity": pl.String, "rule": pl.String, "level": pl.Int32,
                                                "decision": pl.String}, orient="row")
    match_rows = [(e, rules[r].name, level, rules[r].priority, rules[r].then.value,
                   memory.winners.get(e, (None, None))[0] == r)
                  for e, found in memory.matches.items() for r, level in found.items()]
    matches = pl.DataFrame(match_rows, schema={"entity": pl.String, "rule": pl.String, "level": pl.Int32,
                                               "priority": pl.Int64, "decision": pl.String, "winner": pl.Boolean},
                           orient="row").sort("entity", "level", "rule")
    return matches, winners


def _streaks(policy: Policy, facts: pl.DataFrame, winners: pl.DataFrame, state: EngineState) -> pl.DataFrame:
    thresholds = {d.value: policy.settings.streak_for(d) for d in Decision if d is not Decision.NONE}
    previous = state.streaks.rename({"decision": "previous", "streak": "previous_streak"})
    return (
        facts.lazy().select("entity", "kind", "service")
        .join(winners.lazy(), on="entity", how="left", maintain_order="left")
        .with_columns(pl.col("decision").fill_null(Decision.NONE.value))
        .join(previous.lazy(), on="entity", how="left", maintain_order="left")
        .with_columns(
            streak=pl.when(pl.col("previous") == pl.col("decision"))
            .then(pl.col("previous_streak") + 1).otherwise(1).cast(pl.Int64))
        .with_columns(
            candidate=(pl.col("decision") != Decision.NONE.value)
            & (pl.col("streak") >= pl.col("decision").replace_strict(thresholds, default=None, return_dtype=pl.Int64))
            .fill_null(False))
        .select(*EVALUATION_SCHEMA, "candidate")
        .collect()
    )


def _select(policy: Policy, memory: WorkingMemory, at: float, inventory: Inventory, evaluations: pl.DataFrame,
            state: EngineState) -> tuple[tuple[Action, ...], tuple[Suppression, ...]]:
    """Phase 2. Bounds and cooldowns concern a (kind, target, decision) group as a whole, and within a group the
    best candidate is the one of highest priority, then first by name: so CLIPS receives only each group's best
    candidate (beside the other groups of its target it competes with), and its verdict on the group's best holds
    for the whole group. This keeps the working memory at a few facts per service however many replicas it has."""
    priority = {r.name: r.priority for r in policy.rules}
    rows: dict[str, tuple[str | None, Decision, str, str]] = {}  # entity -> (container, decision, target, rule)
    groups: dict[tuple[str, str, Decision], list[tuple[int, str]]] = {}  # (kind, target, decision) -> members
    for entity, kind, service, decision_name, rule in evaluations.filter(pl.col("candidate")).select(
            "entity", "kind", "service", "decision", "rule").iter_rows():
        decision = Decision(decision_name)
        target = service if kind == "container" else entity
        groups.setdefault((kind, target, decision), []).append((-priority[rule], entity))
        rows[entity] = (entity if kind == "container" else None, decision, target, rule)
    candidates: dict[str, tuple[Any, ...]] = {}
    members: dict[str, list[str]] = {}  # each group's best -> the whole group
    for (kind, target, decision), group in groups.items():
        negated_priority, best = min(group)
        candidates[best] = (kind, target, decision.value, DECISION_RANK[decision], -negated_priority)
        members[best] = [entity for _, entity in group]
    bounds = {}
    for kind, name, _ in groups:
        if kind == "container":
            service = inventory.service_by_name[name]
            bounds[name] = (inventory.replicas[name], service.min_replicas, service.max_replicas)
    selection = memory.select(at, candidates, bounds, dict(state.cooldowns))
    actions = []
    for entity in selection.actions:
        container, decision, target, rule = rows[entity]
        actions.append(Action(at, decision, target, rule, container))
    suppressed = [Suppression(at, rows[e][1], rows[e][2], e, rows[e][3], reason)
                  for best, reason in selection.suppressed.items() for e in members[best]]
    actions.sort(key=lambda a: (a.container is None, a.target))
    suppressed.sort(key=lambda x: (x.target, x.entity))
    return tuple(actions), tuple(suppressed)


def _next_state(policy: Policy, at: float, evaluations: pl.DataFrame, actions: tuple[Action, ...],
                state: EngineState) -> EngineState:
    """Streaks restart after an action (§4): every container of the service, or the host.
    A restarted streak is stored as 0, so that the next cycle counts 1 whatever it decides."""
    services = [a.target for a in actions if a.container is not None]
    hosts = [a.target for a in actions if a.container is None]
    restart = (pl.col("service").is_in(services) & (pl.col("kind") == "container")) | \
              (pl.col("entity").is_in(hosts) & (pl.col("kind") == "host"))
    streaks = evaluations.select(
        "entity", "decision", streak=pl.when(restart).then(0).otherwise(pl.col("streak")).cast(pl.Int64))
    cooldowns = {k: until for k, until in state.cooldowns.items() if until > at}
    for action in actions:
        seconds = policy.settings.cooldown_for(action.action)
        if seconds > 0:
            kind = "host" if action.container is None else "container"
            cooldowns[(kind, action.target, action.action.value)] = at + seconds
    return replace(state, streaks=streaks, cooldowns=MappingProxyType(cooldowns))


__all__ = ["Cycle", "Engine", "entity_frame"]

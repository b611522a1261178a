"""One decision cycle: evaluate, resolve, apply hysteresis, select actions (policy-spec §3, §4).

``Engine`` holds a compiled policy and the state that carries across cycles (streaks and
cooldowns). ``Engine.cycle(at, inventory, terms)`` judges every host and container once:

1. *alpha* (numpy): every rule condition on every entity's term values, set-wise;
2. *judge* (CLIPS): scope and target joins, then the winner per entity (§3); only the entities
   whose true conditions changed since the last cycle are told;
3. *streaks* (numpy): consecutive identical decisions, and the action candidates (§4);
4. *select* (CLIPS): bounds, cooldowns, at most one action per service or host (§4).

Per-entity results are arrays in the order of ``Entities`` (hosts, then containers), built once
per inventory; the frames a ``Cycle`` offers are built from them only when read. Nothing here
reads the clock or does I/O: ``at`` and the term values come from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from operator import attrgetter
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from usm.engine.compiler import CompiledPolicy, compile_policy
from usm.engine.expressions import evaluate, holds
from usm.engine.expressions import terms as terms_of
from usm.engine.inventory import Inventory
from usm.engine.memory import WorkingMemory
from usm.engine.policy import Decision, Policy, Rule, Scope, container_level, host_level
from usm.engine.results import (
    DECISIONS,
    EVALUATION_SCHEMA,
    Action,
    EngineState,
    Explanation,
    RuleVerdict,
    StreakTable,
    Suppression,
)
from usm.engine.simulated import apply_simulated_metrics

DECISION_RANK = {Decision.REPLICATE: 0, Decision.MIGRATE: 1, Decision.STOP: 2,
                 Decision.OVERWORK: 0, Decision.UNDERWORK: 0}


_NAME, _SERVICE = attrgetter("name"), attrgetter("service")
_DECISION_VALUES = np.array([d.value for d in DECISIONS], dtype=object)


class Entities:
    """The hosts then the containers of one inventory, as the engine judges them: names, identities, and
    which rules' scope and target cover which entity. Built once per inventory object."""

    def __init__(self, inventory: Inventory, rules: tuple[Rule, ...]) -> None:
        apps_of = inventory.apps_of_service
        services = list(map(_SERVICE, inventory.containers))
        self.inventory = inventory
        self.names: list[str] = list(map(_NAME, inventory.hosts)) + list(map(_NAME, inventory.containers))
        self.index = dict(zip(self.names, range(len(self.names))))
        self.hosts = len(inventory.hosts)
        self.is_host = np.arange(len(self.names)) < self.hosts
        self.services: list[str | None] = [None] * self.hosts + services
        self.apps: list[tuple[str, ...]] = [()] * self.hosts + list(map(apps_of.get, services, repeat(())))
        self._rows_in: tuple[Entities, np.ndarray] | None = None
        self.applies = np.column_stack([applies(rule, self) for rule in rules]) if rules else \
            np.zeros((len(self.names), 0), dtype=bool)

    def __len__(self) -> int:
        return len(self.names)

    def kind(self, row: int) -> str:
        return "host" if row < self.hosts else "container"

    def identity(self, row: int) -> tuple[str, str | None, list[str]]:
        """(kind, service, apps) of the entity at ``row``, as the ``judged`` fact holds them."""
        return self.kind(row), self.services[row], list(self.apps[row])

    def rows_in(self, other: Entities) -> np.ndarray:
        """Each entity's row in ``other`` (-1: not there); the last answer is kept, since both the alpha and the
        streaks of a cycle ask it of the same previous entities."""
        if self._rows_in is None or self._rows_in[0] is not other:
            self._rows_in = (other, np.array([other.index.get(name, -1) for name in self.names], dtype=np.int64))
        return self._rows_in[1]

    @cached_property
    def identities(self) -> list[tuple[bool, str | None, tuple[str, ...]]]:
        """Each entity's identity as one comparable value: whether it is a host, its service, its apps."""
        return list(zip(self.is_host.tolist(), self.services, self.apps, strict=True))

    @cached_property
    def frame(self) -> pl.DataFrame:
        """One row per entity: entity, kind, service (containers) and apps."""
        return pl.DataFrame({
            "entity": self.names,
            "kind": ["host"] * self.hosts + ["container"] * (len(self.names) - self.hosts),
            "service": self.services,
            "apps": [list(a) for a in self.apps],
        }, schema={"entity": pl.String, "kind": pl.String, "service": pl.String, "apps": pl.List(pl.String)})


def applies(rule: Rule, entities: Entities) -> np.ndarray:
    """Which entities the rule's scope and target cover: a cheap pre-filter on identity, so that CLIPS only
    hears of entities the rule can judge (the generated defrule checks scope and target again and stays the
    authority)."""
    kind = entities.is_host if rule.scope is Scope.HOST else ~entities.is_host
    if rule.targets is None:
        return kind.copy()
    targets = set(rule.targets)
    if rule.scope in (Scope.HOST, Scope.CONTAINER):
        chosen = [name in targets for name in entities.names]
    elif rule.scope is Scope.SERVICE:
        chosen = [service in targets for service in entities.services]
    else:
        chosen = [not targets.isdisjoint(apps) for apps in entities.apps]
    return kind & np.array(chosen, dtype=bool)


@dataclass(frozen=True, eq=False)
class Cycle:
    """The outcome of one cycle at time ``at``. The frames (``evaluations``, ``matches``, ``facts``) and the
    suppressions are built when first read: a simulator that reads only the actions never pays for them."""

    at: float
    actions: tuple[Action, ...]
    state: EngineState
    policy: Policy
    _suppressed: _Suppressed = field(repr=False)
    _judgement: _Judgement = field(repr=False)

    @cached_property
    def suppressed(self) -> tuple[Suppression, ...]:
        """The candidates that bounds or a cooldown kept from acting, by target and entity."""
        return self._suppressed.each()

    @cached_property
    def evaluations(self) -> pl.DataFrame:
        """entity, kind, service, decision, rule, level, streak, candidate: one row per entity."""
        return self._judgement.evaluations(self.policy)

    @cached_property
    def matches(self) -> pl.DataFrame:
        """entity, rule, level, priority, decision, winner: every rule that matched."""
        return self._judgement.matches(self.policy)

    @cached_property
    def facts(self) -> pl.DataFrame:
        """The entities with the term values they were judged on."""
        return self._judgement.facts()

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


@dataclass(frozen=True)
class _Judgement:
    """What one cycle concluded per entity, in the entities' order, with what the frames of ``Cycle`` are
    built from."""

    entities: Entities
    terms: pl.DataFrame
    keys: tuple[str, ...]
    rules: np.ndarray  # each entity's winning rule index, -1 for none
    levels: np.ndarray
    decisions: np.ndarray  # decision codes (DECISIONS)
    streaks: np.ndarray
    candidates: np.ndarray  # bool
    matched: dict[str, dict[int, int]]  # entity -> {rule index: level}, as CLIPS derived them
    winners: dict[str, tuple[int, int]]

    def evaluations(self, policy: Policy) -> pl.DataFrame:
        names = [r.name for r in policy.rules]
        won = self.rules >= 0
        entities = self.entities
        return pl.DataFrame({
            "entity": entities.names,
            "kind": entities.frame.get_column("kind"),
            "service": entities.services,
            "decision": _DECISION_VALUES[self.decisions].tolist(),
            "rule": [names[r] if r >= 0 else None for r in self.rules.tolist()],
            "level": pl.Series(self.levels, dtype=pl.Int32).set(pl.Series(~won), None),
            "streak": self.streaks,
            "candidate": self.candidates,
        }, schema={**EVALUATION_SCHEMA, "candidate": pl.Boolean})

    def matches(self, policy: Policy) -> pl.DataFrame:
        rules = policy.rules
        rows = [(e, rules[r].name, level, rules[r].priority, rules[r].then.value,
                 self.winners.get(e, (None, None))[0] == r)
                for e, found in self.matched.items() for r, level in found.items()]
        return pl.DataFrame(rows, schema={"entity": pl.String, "rule": pl.String, "level": pl.Int32,
                                          "priority": pl.Int64, "decision": pl.String, "winner": pl.Boolean},
                            orient="row").sort("entity", "level", "rule")

    def facts(self) -> pl.DataFrame:
        return _facts(self.keys, self.entities.frame, self.terms)


class Engine:
    """A compiled policy, its CLIPS working memory, and the state that carries from cycle to
    cycle. Not thread-safe: give each thread or process its own."""

    def __init__(self, policy: Policy, state: EngineState | None = None) -> None:
        self._install(compile_policy(policy))
        self.state = state or EngineState()

    def _install(self, compiled: CompiledPolicy) -> None:
        rules = compiled.policy.rules
        self._compiled, self._memory = compiled, WorkingMemory(compiled)
        self._keys = tuple(t.key for t in compiled.terms)
        self._rule_decisions = np.array([DECISIONS.index(r.then) for r in rules] + [0], dtype=np.int8)
        self._thresholds = np.array([0] + [compiled.policy.settings.streak_for(d) for d in DECISIONS[1:]],
                                    dtype=np.int64)
        self._alpha: _Alpha | None = None  # the last cycle's, as CLIPS knows it
        self._entities: Entities | None = None
        self._rows: tuple[Entities | None, pl.Series | None, np.ndarray] = (None, None, np.zeros(0, np.int64))

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
        policy, memory = self._compiled.policy, self._memory
        entities = self._entities_of(inventory)
        alpha, previous = _alpha(policy.rules, entities, self._term_values(entities, terms)), self._alpha
        changed, removed = _changes(previous, alpha)
        memory.judge(changed, removed)
        self._alpha = alpha
        rules, levels = _winners(entities, memory.winners)
        decisions = self._rule_decisions[rules]  # rule -1 reads the none appended at the end
        streaks = _streaks(entities, decisions, self.state.table, previous and previous.entities)
        candidates = (decisions != 0) & (streaks >= self._thresholds[decisions])
        judgement = _Judgement(entities, terms, self._keys, rules, levels, decisions, streaks, candidates,
                               dict(memory.matches), dict(memory.winners))
        actions, suppressed = _select(policy, memory, at, judgement, self.state)
        self.state = _next_state(policy, at, judgement, actions, self.state)
        return Cycle(at, actions, self.state, policy, suppressed, judgement)

    def _entities_of(self, inventory: Inventory) -> Entities:
        if self._entities is None or self._entities.inventory is not inventory:
            self._entities = Entities(inventory, self._compiled.policy.rules)
        return self._entities

    def _term_values(self, entities: Entities, terms: pl.DataFrame) -> dict[str, np.ndarray]:
        """Each term key's values in the entities' order (NaN where missing: no row, a null, or a NaN)."""
        present = [k for k in self._keys if k in terms.columns] if "entity" in terms.columns else []
        missing = np.full(len(entities), np.nan)
        if not present:
            return dict.fromkeys(self._keys, missing)
        rows = self._rows_of(entities, terms.get_column("entity"))
        values = dict.fromkeys(self._keys, missing)
        for key in present:
            column = terms.get_column(key).cast(pl.Float64).to_numpy()  # a null is NaN here
            values[key] = np.append(column, np.nan)[rows]  # the NaN appended: entities without terms
        return values

    def _rows_of(self, entities: Entities, named: pl.Series) -> np.ndarray:
        """The row of ``named`` (the terms' entity column) that holds each entity, ``len(named)`` for none;
        remembered while the inventory and the terms' entities stay the same (most cycles)."""
        known, last, rows = self._rows
        if known is entities and last is not None and last.equals(named):
            return rows
        rows = np.full(len(entities), len(named), dtype=np.int64)
        index = entities.index
        for row, name in enumerate(named.to_list()):  # (a polars replace_strict takes five times as long)
            entity = index.get(name)
            if entity is not None:
                rows[entity] = row
        self._rows = (entities, named, rows)
        return rows


def _facts(keys: tuple[str, ...], entities: pl.DataFrame, terms: pl.DataFrame) -> pl.DataFrame:
    present = [k for k in keys if k in terms.columns]
    values = terms.select(["entity", *present]) if "entity" in terms.columns else pl.DataFrame(
        schema={"entity": pl.String})
    missing = [pl.lit(None, dtype=pl.Float64).alias(k) for k in keys if k not in present]
    return (entities.lazy().join(values.lazy(), on="entity", how="left", maintain_order="left")
            .with_columns(*missing, *(pl.col(k).cast(pl.Float64).fill_nan(None) for k in present))
            .collect())


@dataclass(frozen=True)
class _Alpha:
    """Which rule conditions hold for which entity: a boolean matrix (entities x rules)."""

    entities: Entities
    matrix: np.ndarray

    @cached_property
    def any(self) -> np.ndarray:
        return self.matrix.any(axis=1)

    def row(self, row: int) -> tuple[str, str, str | None, list[str], list[int]]:
        """The judge row of an entity: name, kind, service, apps and the rules whose condition holds."""
        return (self.entities.names[row], *self.entities.identity(row), np.flatnonzero(self.matrix[row]).tolist())


def _alpha(rules: tuple[Rule, ...], entities: Entities, values: dict[str, np.ndarray]) -> _Alpha:
    """Every rule condition (behind its scope and target pre-filter) on every entity, set-wise."""
    matrix = entities.applies.copy()
    for k, rule in enumerate(rules):
        if matrix[:, k].any():
            matrix[:, k] &= holds(rule.when, values.__getitem__, len(entities))
    return _Alpha(entities, matrix)


def _changes(previous: _Alpha | None, now: _Alpha) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The entities whose identity or true conditions differ from ``previous`` (new ones included; those that
    matched nothing, then and now, left out) as judge rows, and the entities gone. With the same entities as
    last time (most cycles), rows are compared in place."""
    if previous is None:
        return [now.row(row) for row in np.flatnonzero(now.any).tolist()], []
    if previous.entities is now.entities:
        differs = (now.matrix != previous.matrix).any(axis=1) & (now.any | previous.any)
        return [now.row(row) for row in np.flatnonzero(differs).tolist()], []
    before, entities = previous.entities, now.entities
    old = entities.rows_in(before)
    was = np.vstack([previous.matrix, np.zeros((1, previous.matrix.shape[1]), dtype=bool)])[old]  # -1: none
    was_any = np.append(previous.any, False)[old]
    differs = (now.matrix != was).any(axis=1) | (old < 0)
    kept = np.flatnonzero(~differs & (now.any | was_any)).tolist()
    was_identity, identity = before.identities, entities.identities
    differs[kept] = [was_identity[was] != identity[row] for row, was in zip(kept, old[kept].tolist(), strict=True)]
    removed = [name for name in before.names if name not in entities.index]
    return [now.row(row) for row in np.flatnonzero(differs & (now.any | was_any)).tolist()], removed


def _winners(entities: Entities, winners: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Each entity's winning rule index (-1: none) and its level."""
    rules = np.full(len(entities), -1, dtype=np.int64)
    levels = np.zeros(len(entities), dtype=np.int32)
    for entity, (rule, level) in winners.items():
        row = entities.index[entity]
        rules[row], levels[row] = rule, level
    return rules, levels


def _streaks(entities: Entities, decisions: np.ndarray, table: StreakTable, previous: Entities | None) -> np.ndarray:
    """Consecutive cycles with the same decision, counting this one (§4). ``previous``: the entities of the last
    cycle, whose names the table usually holds (it may come from elsewhere: a state passed to a new engine)."""
    if table.entities is entities.names:
        before, count = table.decisions, table.streaks
    else:  # another inventory: each entity's previous row, by name (the -1 of a new one reads what is appended)
        if previous is not None and table.entities is previous.names:
            rows = entities.rows_in(previous)
        else:
            at = {name: row for row, name in enumerate(table.entities)}
            rows = np.array([at.get(name, -1) for name in entities.names], dtype=np.int64)
        before = np.append(table.decisions, -1)[rows]
        count = np.append(table.streaks, 0)[rows]
    return np.where(decisions == before, count + 1, 1).astype(np.int64)


@dataclass(frozen=True)
class _Suppressed:
    """Phase 2's suppressions by group, made into one ``Suppression`` per candidate only when read."""

    at: float
    policy: Policy
    judgement: _Judgement
    reasons: dict[int, str]  # each suppressed group's best candidate (its row) -> why
    members: dict[int, list[int]]  # each group's best -> the rows of the whole group

    def each(self) -> tuple[Suppression, ...]:
        suppressed = []
        for best, reason in self.reasons.items():
            for row in self.members[best]:
                decision, target, rule = _candidate(self.policy, self.judgement, row)
                suppressed.append(Suppression(self.at, decision, target, self.judgement.entities.names[row], rule,
                                              reason))
        return tuple(sorted(suppressed, key=lambda x: (x.target, x.entity)))


def _candidate(policy: Policy, judgement: _Judgement, row: int) -> tuple[Decision, str, str]:
    """The decision, target and rule name of the candidate at ``row``."""
    entities = judgement.entities
    target = entities.names[row] if row < entities.hosts else entities.services[row]
    return DECISIONS[judgement.decisions[row]], target, policy.rules[judgement.rules[row]].name


def _select(policy: Policy, memory: WorkingMemory, at: float, judgement: _Judgement,
            state: EngineState) -> tuple[tuple[Action, ...], _Suppressed]:
    """Phase 2. Bounds and cooldowns concern a (kind, target, decision) group as a whole, and within a group the
    best candidate is the one of highest priority, then first by name: so CLIPS receives only each group's best
    candidate (beside the other groups of its target it competes with), and its verdict on the group's best holds
    for the whole group. This keeps the working memory at a few facts per service however many replicas it has."""
    entities = judgement.entities
    names, services, hosts = entities.names, entities.services, entities.hosts
    rows = np.flatnonzero(judgement.candidates)
    priorities = np.array([r.priority for r in policy.rules], dtype=np.int64)[judgement.rules[rows]].tolist()
    groups: dict[tuple[bool, str, int], list[tuple[int, str, int]]] = {}  # (host?, target, decision) -> members
    for row, decision, priority in zip(rows.tolist(), judgement.decisions[rows].tolist(), priorities, strict=True):
        name = names[row]
        host = row < hosts
        groups.setdefault((host, name if host else services[row], decision), []).append((-priority, name, row))
    candidates: dict[str, tuple[Any, ...]] = {}
    members: dict[int, list[int]] = {}  # each group's best (its row) -> the rows of the whole group
    best_row: dict[str, int] = {}
    bounds = {}
    inventory = entities.inventory
    for (host, target, code), group in groups.items():
        negated_priority, best, row = min(group)
        decision = DECISIONS[code]
        candidates[best] = ("host" if host else "container", target, decision.value, DECISION_RANK[decision],
                            -negated_priority)
        members[row] = [r for *_, r in group]
        best_row[best] = row
        if not host and target not in bounds:
            service = inventory.service_by_name[target]
            bounds[target] = (inventory.replicas[target], service.min_replicas, service.max_replicas)
    selection = memory.select(at, candidates, bounds, dict(state.cooldowns))
    actions = []
    for entity in selection.actions:
        row = best_row[entity]
        decision, target, rule = _candidate(policy, judgement, row)
        actions.append(Action(at, decision, target, rule, entity if row >= hosts else None))
    actions.sort(key=lambda a: (a.container is None, a.target))
    reasons = {best_row[entity]: reason for entity, reason in selection.suppressed.items()}
    return tuple(actions), _Suppressed(at, policy, judgement, reasons, members)


def _next_state(policy: Policy, at: float, judgement: _Judgement, actions: tuple[Action, ...],
                state: EngineState) -> EngineState:
    """Streaks restart after an action (§4): every container of the service, or the host.
    A restarted streak is stored as 0, so that the next cycle counts 1 whatever it decides."""
    entities, streaks = judgement.entities, judgement.streaks
    if actions:
        services = {a.target for a in actions if a.container is not None}
        hosts = [entities.index[a.target] for a in actions if a.container is None and a.target in entities.index]
        restart = np.fromiter((s in services for s in entities.services), dtype=bool, count=len(entities))
        restart[[h for h in hosts if entities.is_host[h]]] = True
        streaks = np.where(restart, 0, streaks)
    cooldowns = {k: until for k, until in state.cooldowns.items() if until > at}
    for action in actions:
        seconds = policy.settings.cooldown_for(action.action)
        if seconds > 0:
            kind = "host" if action.container is None else "container"
            cooldowns[(kind, action.target, action.action.value)] = at + seconds
    return EngineState(StreakTable(entities.names, judgement.decisions, streaks), MappingProxyType(cooldowns))


__all__ = ["Cycle", "Engine", "Entities"]

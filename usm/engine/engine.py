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

import clips
import polars as pl

from usm.engine.compiler import CompiledPolicy, compile_policy
from usm.engine.expressions import evaluate, terms as terms_of
from usm.engine.inventory import Inventory
from usm.engine.policy import Decision, Policy, Rule, Scope, container_level, host_level
from usm.engine.results import (
    EVALUATION_SCHEMA, Action, EngineState, Explanation, RuleVerdict, Suppression,
)
from usm.engine.simulated import apply_simulated_metrics

DECISION_RANK = {Decision.REPLICATE: 0, Decision.MIGRATE: 1, Decision.STOP: 2,
                 Decision.OVERWORK: 0, Decision.UNDERWORK: 0}


def entity_frame(inventory: Inventory) -> pl.DataFrame:
    """One row per host and container: entity, kind, service (containers) and apps."""
    apps_of = inventory.apps_of_service
    hosts = [h.name for h in inventory.hosts]
    containers = inventory.containers
    return pl.DataFrame(
        {
            "entity": hosts + [c.name for c in containers],
            "kind": ["host"] * len(hosts) + ["container"] * len(containers),
            "service": [None] * len(hosts) + [c.service for c in containers],
            "apps": [[] for _ in hosts] + [list(apps_of.get(c.service, ())) for c in containers],
        },
        schema={"entity": pl.String, "kind": pl.String, "service": pl.String, "apps": pl.List(pl.String)},
    )


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
    """A compiled policy plus the state that carries from cycle to cycle. Not thread-safe:
    give each thread or process its own."""

    def __init__(self, policy: Policy, state: EngineState | None = None) -> None:
        self._compiled, self._env = self._compile(policy)
        self.state = state or EngineState()

    @staticmethod
    def _compile(policy: Policy) -> tuple[CompiledPolicy, clips.Environment]:
        compiled = compile_policy(policy)
        return compiled, compiled.environment()

    @property
    def policy(self) -> Policy:
        return self._compiled.policy

    @property
    def compiled(self) -> CompiledPolicy:
        return self._compiled

    def replace(self, policy: Policy) -> None:
        """Put a new policy in force for the next cycle, atomically: if it does not compile, the
        old one stays and the error propagates. Streaks and cooldowns carry over."""
        compiled, env = self._compile(policy)
        self._compiled, self._env = compiled, env

    def simulate(self, at: float, inventory: Inventory, batch: pl.DataFrame) -> pl.DataFrame:
        """The samples of this cycle with the policy's simulated metrics applied (§6)."""
        return apply_simulated_metrics(self.policy, inventory, at, batch)

    def cycle(self, at: float, inventory: Inventory, terms: pl.DataFrame) -> Cycle:
        """Judge every host and container of ``inventory`` at time ``at`` on ``terms`` (a frame
        with an ``entity`` column and one column per term key, as the history returns it)."""
        result = decide(self._compiled, self._env, at, inventory, terms, self.state)
        self.state = result.state
        return result


def decide(compiled: CompiledPolicy, env: clips.Environment, at: float, inventory: Inventory,
           terms: pl.DataFrame, state: EngineState) -> Cycle:
    """The cycle as a function of its inputs; ``env`` is scratch space, reset on entry."""
    policy = compiled.policy
    facts = _facts(compiled, inventory, terms)
    matches, winners = _judge(compiled, env, facts)
    evaluations = _streaks(policy, facts, winners, state)
    actions, suppressed = _select(policy, env, at, inventory, evaluations, state)
    new_state = _next_state(policy, at, evaluations, actions, state, inventory)
    return Cycle(at, evaluations, matches, actions, suppressed, new_state, facts, policy)


def _facts(compiled: CompiledPolicy, inventory: Inventory, terms: pl.DataFrame) -> pl.DataFrame:
    keys = [t.key for t in compiled.terms]
    present = [k for k in keys if k in terms.columns]
    values = terms.select(["entity", *present]) if "entity" in terms.columns else pl.DataFrame(
        schema={"entity": pl.String})
    facts = entity_frame(inventory).join(values, on="entity", how="left")
    missing = [pl.lit(None, dtype=pl.Float64).alias(k) for k in keys if k not in present]
    return facts.with_columns(*missing, *(pl.col(k).cast(pl.Float64).fill_nan(None) for k in present))


def _judge(compiled: CompiledPolicy, env: clips.Environment, facts: pl.DataFrame
           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Alpha in polars, then scope, target and precedence in CLIPS."""
    is_host = pl.col("kind") == "host"
    hits = [pl.when(is_host & cond).then(pl.lit(i)) for i, cond in compiled.host_alpha] + \
           [pl.when(~is_host & cond).then(pl.lit(i)) for i, cond in compiled.container_alpha]
    policy = compiled.policy
    if hits:
        alpha = facts.select("entity", "kind", "service", "apps",
                             pl.concat_list(hits).list.drop_nulls().alias("matched"))
        alpha = alpha.filter(pl.col("matched").list.len() > 0)
    else:
        alpha = pl.DataFrame()
    env.reset()
    judged = env.find_template("judged")
    host, container = clips.Symbol("host"), clips.Symbol("container")
    for entity, kind, service, apps, matched in alpha.iter_rows():
        judged.assert_fact(entity=entity, kind=host if kind == "host" else container, service=service or "",
                           apps=apps, matched=matched)
    env.run()
    match_rows, winner_rows = [], []
    for fact in env.facts():
        name = fact.template.name
        if name == "match":
            rule = policy.rules[fact["rule"]]
            match_rows.append((fact["entity"], rule.name, fact["level"], rule.priority, rule.then.value))
        elif name == "winner":
            rule = policy.rules[fact["rule"]]
            winner_rows.append((fact["entity"], rule.name, fact["level"], rule.then.value))
    winners = pl.DataFrame(winner_rows, schema={"entity": pl.String, "rule": pl.String, "level": pl.Int32,
                                                "decision": pl.String}, orient="row")
    matches = pl.DataFrame(match_rows, schema={"entity": pl.String, "rule": pl.String, "level": pl.Int32,
                                               "priority": pl.Int64, "decision": pl.String}, orient="row")
    matches = matches.join(winners.select("entity", "rule", winner=pl.lit(True)), on=["entity", "rule"],
                           how="left").with_columns(pl.col("winner").fill_null(False)).sort("entity", "level", "rule")
    return matches, winners


def _streaks(policy: Policy, facts: pl.DataFrame, winners: pl.DataFrame, state: EngineState) -> pl.DataFrame:
    thresholds = {d.value: policy.settings.streak_for(d) for d in Decision if d is not Decision.NONE}
    previous = state.streaks.rename({"decision": "previous", "streak": "previous_streak"})
    return (
        facts.select("entity", "kind", "service")
        .join(winners, on="entity", how="left")
        .with_columns(pl.col("decision").fill_null(Decision.NONE.value))
        .join(previous, on="entity", how="left")
        .with_columns(
            streak=pl.when(pl.col("previous") == pl.col("decision"))
            .then(pl.col("previous_streak") + 1).otherwise(1).cast(pl.Int64))
        .with_columns(
            candidate=(pl.col("decision") != Decision.NONE.value)
            & (pl.col("streak") >= pl.col("decision").replace_strict(thresholds, default=None, return_dtype=pl.Int64))
            .fill_null(False))
        .select(*EVALUATION_SCHEMA, "candidate")
    )


def _select(policy: Policy, env: clips.Environment, at: float, inventory: Inventory, evaluations: pl.DataFrame,
            state: EngineState) -> tuple[tuple[Action, ...], tuple[Suppression, ...]]:
    candidates = evaluations.filter(pl.col("candidate"))
    if candidates.is_empty():
        return (), ()
    env.reset()
    priority = {r.name: r.priority for r in policy.rules}
    candidate = env.find_template("candidate")
    by_entity = {}
    services = set()
    for row in candidates.iter_rows(named=True):
        decision = Decision(row["decision"])
        target = row["service"] if row["kind"] == "container" else row["entity"]
        services.add(row["service"])
        by_entity[row["entity"]] = (row, decision, target)
        candidate.assert_fact(entity=row["entity"], kind=clips.Symbol(row["kind"]), target=target,
                              decision=clips.Symbol(decision.value), rank=DECISION_RANK[decision],
                              priority=priority[row["rule"]])
    bounds = env.find_template("bounds")
    for name in sorted(s for s in services if s is not None):
        service = inventory.service_by_name[name]
        bounds.assert_fact(service=name, replicas=inventory.replicas[name], min=service.min_replicas,
                           max=service.max_replicas)
    cooling = env.find_template("cooling")
    for (kind, target, decision), until in state.cooldowns.items():
        cooling.assert_fact(kind=clips.Symbol(kind), target=target, decision=clips.Symbol(decision), until=until)
    env.find_template("clock").assert_fact(now=float(at))
    env.run()
    actions, suppressed = [], []
    for fact in env.facts():
        name = fact.template.name
        if name not in ("action", "suppressed"):
            continue
        row, decision, target = by_entity[fact["entity"]]
        container = row["entity"] if row["kind"] == "container" else None
        if name == "action":
            actions.append(Action(at, decision, target, row["rule"], container))
        else:
            suppressed.append(Suppression(at, decision, target, row["entity"], row["rule"], fact["reason"]))
    actions.sort(key=lambda a: (a.container is None, a.target))
    suppressed.sort(key=lambda s: (s.target, s.entity))
    return tuple(actions), tuple(suppressed)


def _next_state(policy: Policy, at: float, evaluations: pl.DataFrame, actions: tuple[Action, ...],
                state: EngineState, inventory: Inventory) -> EngineState:
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


__all__ = ["Cycle", "Engine", "decide", "entity_frame", "Scope"]

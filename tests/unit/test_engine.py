"""The engine: CLIPS resolution against an independent reference, explanations, atomic replace."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usm.engine import App, Container, Decision, Engine, Host, Inventory, Service, load_policy
from usm.engine import engine as engine_module
from usm.engine.expressions import Literal
from usm.engine.policy import Policy, Rule, Scope

HOSTS = ["h1", "h2"]
SERVICES = ["s1", "s2", "s3"]
APPS = {"a1": ("s1", "s2"), "a2": ("s2",)}
CONTAINERS = [("c1", "s1"), ("c2", "s1"), ("c3", "s2"), ("c4", "s3")]
INVENTORY = Inventory(
    hosts=tuple(Host(h) for h in HOSTS),
    apps=tuple(App(a, s) for a, s in APPS.items()),
    services=tuple(Service(s) for s in SERVICES),
    containers=tuple(Container(c, s, "h1") for c, s in CONTAINERS),
)
TARGETS = {Scope.HOST: HOSTS, Scope.APP: list(APPS), Scope.SERVICE: SERVICES, Scope.CONTAINER: [c for c, _ in CONTAINERS]}
NO_TERMS = pl.DataFrame({"entity": []}, schema={"entity": pl.String})


@st.composite
def rules(draw):
    count = draw(st.integers(1, 12))
    out = []
    for index in range(count):
        scope = draw(st.sampled_from(list(Scope)))
        generic = draw(st.booleans())
        targets = None if generic else tuple(draw(st.lists(st.sampled_from(TARGETS[scope]), min_size=1, max_size=2,
                                                           unique=True)))
        decisions = [Decision.NONE, Decision.OVERWORK] if scope is Scope.HOST else \
            [Decision.NONE, Decision.REPLICATE, Decision.STOP]
        out.append(Rule(f"r{index}", scope, targets, Literal(draw(st.booleans())), "", draw(st.sampled_from(decisions)),
                        draw(st.integers(0, 2)), index))
    return tuple(out)


def reference_winner(rules, entity):
    """Policy-spec §3, written directly from the text: the most specific level with a match decides,
    then the highest priority, then the first loaded."""
    kind, service = ("host", None) if entity in HOSTS else ("container", dict(CONTAINERS)[entity])
    apps = [a for a, services in APPS.items() if service in services]
    matching = []
    for rule in rules:
        if not rule.when.value:
            continue
        if kind == "host":
            if rule.scope is not Scope.HOST:
                continue
            level = 2 if rule.targets is None else (1 if entity in rule.targets else None)
        else:
            if rule.scope is Scope.HOST:
                continue
            if rule.targets is None:
                level = 4
            elif rule.scope is Scope.CONTAINER:
                level = 1 if entity in rule.targets else None
            elif rule.scope is Scope.SERVICE:
                level = 2 if service in rule.targets else None
            else:
                level = 3 if set(apps) & set(rule.targets) else None
        if level is not None:
            matching.append((level, -rule.priority, rule.order, rule))
    if not matching:
        return Decision.NONE.value, None, []
    best = min(matching, key=lambda m: m[:3])
    return best[3].then.value, best[3].name, sorted(m[3].name for m in matching)


@settings(max_examples=150, deadline=None)
@given(rules())
def test_clips_resolution_agrees_with_the_reference(policy_rules):
    cycle = Engine(Policy(rules=policy_rules)).cycle(0.0, INVENTORY, NO_TERMS)
    for entity in HOSTS + [c for c, _ in CONTAINERS]:
        decision, rule, matched = reference_winner(policy_rules, entity)
        row = cycle.evaluation(entity)
        assert (row["decision"], row["rule"]) == (decision, rule), entity
        assert sorted(cycle.matches.filter(pl.col("entity") == entity)["rule"].to_list()) == matched
        explanation = cycle.explain(entity)
        assert sorted(v.rule for v in explanation.verdicts if v.result) == matched
        assert {v.rule for v in explanation.shadowed} == set(matched) - {rule}


POLICY = """
settings: {streak: {replicate: 2, overwork: 1}}
rules:
  - {name: hot-host, scope: host, target: "*", when: cpu_percent > 90 and ram_percent > 90, then: overwork}
  - {name: busy, scope: service, target: "*", priority: 1, when: "rx_bytes_per_sec > 500k or latency > 100", then: replicate}
  - {name: quiet, scope: container, target: c2, when: "avg(cpu, 1m) < 5", then: stop}
"""


@pytest.fixture()
def policy(tmp_path):
    (tmp_path / "p.yaml").write_text(POLICY)
    return load_policy(tmp_path)


def terms(rows):
    return pl.DataFrame(rows, schema={"entity": pl.String, "cpu_percent": pl.Float64, "ram_percent": pl.Float64,
                                      "rx_bytes_per_sec": pl.Float64, "latency": pl.Float64,
                                      "avg(cpu, 60s)": pl.Float64}, orient="row")


def test_explanations_show_terms_missing_values_and_shadowed_rules(policy):
    engine = Engine(policy)
    cycle = engine.cycle(0.0, INVENTORY, terms([("h1", 95.0, None, None, None, None),
                                                ("c2", None, None, 6e5, None, 1.0)]))
    host = cycle.explain("h1")
    assert (host.decision, host.rule) == (Decision.NONE, None)
    assert host.verdicts[0].result is None and host.missing == ("ram_percent",)
    assert host.terms == {"cpu_percent": 95.0, "ram_percent": None}
    c2 = cycle.explain("c2")
    assert (c2.decision, c2.rule, c2.level) == (Decision.STOP, "quiet", 1)
    assert [v.rule for v in c2.shadowed] == ["busy"]
    assert c2.missing == ("latency",)  # busy matched through its other side of the `or`
    assert c2.as_dict()["policy"] == policy.digest


def test_nan_is_missing_not_a_number(policy):
    cycle = Engine(policy).cycle(0.0, INVENTORY, terms([("c1", None, None, float("nan"), 150.0, None)]))
    assert cycle.evaluation("c1")["decision"] == "replicate"
    cycle = Engine(policy).cycle(0.0, INVENTORY, terms([("c1", None, None, float("nan"), None, None)]))
    assert cycle.evaluation("c1")["decision"] == "none"


def test_replace_is_atomic(policy, tmp_path, monkeypatch):
    engine = Engine(policy)
    hot = terms([("h1", 95.0, 95.0, None, None, None)])
    assert [a.target for a in engine.cycle(0.0, INVENTORY, hot).actions] == ["h1"]

    def broken(_):
        raise RuntimeError("CLIPS rejected the rules")

    monkeypatch.setattr(engine_module, "compile_policy", broken)
    with pytest.raises(RuntimeError):
        engine.replace(Policy())
    assert engine.policy is policy
    assert [a.target for a in engine.cycle(15.0, INVENTORY, hot).actions] == ["h1"]
    monkeypatch.undo()
    engine.replace(Policy())
    assert engine.cycle(30.0, INVENTORY, hot).actions == ()


def test_streaks_carry_over_and_restart_after_an_action(policy):
    engine = Engine(policy)
    busy = terms([("c1", None, None, 6e5, None, None), ("c2", None, None, 6e5, None, 9.0)])
    first = engine.cycle(0.0, INVENTORY, busy)
    assert first.actions == () and first.evaluation("c1")["streak"] == 1
    second = engine.cycle(15.0, INVENTORY, busy)
    assert [(a.target, a.container) for a in second.actions] == [("s1", "c1")]  # c1 before c2 by name
    third = engine.cycle(30.0, INVENTORY, busy)
    assert third.evaluation("c1")["streak"] == 1 and third.evaluation("c2")["streak"] == 1
    assert third.actions == ()


FIELDS = ("cpu", "ram")
VALUES = st.one_of(st.none(), st.sampled_from([0.0, 5.0, 50.0, 95.0]))


@st.composite
def condition_rules(draw):
    rules = []
    for index in range(draw(st.integers(1, 8))):
        scope = draw(st.sampled_from(list(Scope)))
        targets = None if draw(st.booleans()) else (draw(st.sampled_from(TARGETS[scope])),)
        field, op, threshold = draw(st.sampled_from(FIELDS)), draw(st.sampled_from([">", "<"])), draw(
            st.sampled_from([10, 60]))
        decision = draw(st.sampled_from([Decision.NONE, Decision.OVERWORK, Decision.UNDERWORK] if scope is Scope.HOST
                                        else [Decision.NONE, Decision.REPLICATE, Decision.MIGRATE, Decision.STOP]))
        from usm.engine.expressions import parse
        rules.append(Rule(f"r{index}", scope, targets, parse(f"{field} {op} {threshold}"), "", decision,
                          draw(st.integers(0, 1)), index))
    return tuple(rules)


@settings(max_examples=60, deadline=None)
@given(condition_rules(), st.lists(st.lists(st.tuples(VALUES, VALUES), min_size=6, max_size=6), min_size=2, max_size=5))
def test_the_incremental_working_memory_decides_like_a_fresh_one(policy_rules, cycles):
    """Facts kept across cycles (only changes retracted and asserted) give exactly what a new
    engine, rebuilt from the same state for every cycle, gives."""
    from types import MappingProxyType

    from usm.engine.policy import Settings

    settings_ = Settings(streak=MappingProxyType({d: 1 for d in Decision if d is not Decision.NONE}),
                         cooldown=MappingProxyType({Decision.REPLICATE: 30.0}))
    policy = Policy(settings=settings_, rules=policy_rules)
    kept = Engine(policy)
    entities = HOSTS + [c for c, _ in CONTAINERS]
    for index, values in enumerate(cycles):
        frame = pl.DataFrame([(e, *v) for e, v in zip(entities, values)],
                             schema={"entity": pl.String, "cpu": pl.Float64, "ram": pl.Float64}, orient="row")
        fresh = Engine(policy, kept.state)
        expected = fresh.cycle(index * 15.0, INVENTORY, frame)
        actual = kept.cycle(index * 15.0, INVENTORY, frame)
        assert actual.evaluations.to_dicts() == expected.evaluations.to_dicts()
        assert actual.matches.to_dicts() == expected.matches.to_dicts()
        assert actual.actions == expected.actions
        assert actual.suppressed == expected.suppressed


def inventory_of(containers):
    return Inventory(INVENTORY.hosts, INVENTORY.apps, INVENTORY.services,
                     tuple(Container(c, dict(CONTAINERS)[c], "h1") for c in containers))


@settings(max_examples=60, deadline=None)
@given(condition_rules(), st.lists(st.tuples(st.lists(st.sampled_from([c for c, _ in CONTAINERS]), unique=True),
                                             st.lists(st.tuples(VALUES, VALUES), min_size=6, max_size=6),
                                             st.permutations(range(6))), min_size=2, max_size=6))
def test_a_changing_inventory_and_changing_term_rows_decide_like_a_fresh_engine(policy_rules, cycles):
    """Containers come and go (the same Inventory object for the same containers, as the simulator passes it),
    and the terms list the entities in another order and leave some out: the arrays the engine keeps per
    inventory and the rows it remembers per terms frame never carry a stale value over."""
    from types import MappingProxyType

    from usm.engine.policy import Settings

    settings_ = Settings(streak=MappingProxyType({d: 2 for d in Decision if d is not Decision.NONE}),
                         cooldown=MappingProxyType({Decision.STOP: 30.0}))
    policy = Policy(settings=settings_, rules=policy_rules)
    kept = Engine(policy)
    inventories = {}
    for index, (containers, values, order) in enumerate(cycles):
        inventory = inventories.setdefault(frozenset(containers), inventory_of(sorted(containers)))
        entities = HOSTS + [c for c, _ in CONTAINERS]
        rows = [(entities[i], *values[i]) for i in order if values[i] != (None, None)]
        frame = pl.DataFrame(rows, schema={"entity": pl.String, "cpu": pl.Float64, "ram": pl.Float64}, orient="row")
        expected = Engine(policy, kept.state).cycle(index * 15.0, inventory, frame)
        actual = kept.cycle(index * 15.0, inventory, frame)
        assert actual.evaluations.to_dicts() == expected.evaluations.to_dicts()
        assert actual.matches.to_dicts() == expected.matches.to_dicts()
        assert actual.facts.to_dicts() == expected.facts.to_dicts()
        assert actual.actions == expected.actions
        assert actual.suppressed == expected.suppressed


def test_a_cooldown_ends_although_no_fact_changed(tmp_path):
    """Phase 2 keeps its last conclusions while nothing changes; the end of a cooldown is a change."""
    (tmp_path / "p.yaml").write_text("""
settings: {streak: {overwork: 1}, cooldown: {overwork: 40s}}
rules:
  - {name: hot-host, scope: host, target: h1, when: cpu_percent > 90, then: overwork}
""")
    engine = Engine(load_policy(tmp_path))
    hot = pl.DataFrame({"entity": ["h1"], "cpu_percent": [95.0]})
    acted = [bool(engine.cycle(at, INVENTORY, hot).actions) for at in (0.0, 15.0, 30.0, 45.0, 60.0)]
    assert acted == [True, False, False, True, False]
    assert engine.cycle(75.0, INVENTORY, hot).suppressed[0].reason.startswith("cooldown: overwork on h1 until 85")

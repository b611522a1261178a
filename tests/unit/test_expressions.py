"""The expression language: parsing, errors, and three-valued evaluation (policy-spec §2, §7.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usm.engine.expressions import (
    ExpressionError,
    evaluate,
    parse,
    parse_duration,
    parse_number,
    render,
    terms,
    truth,
)
from usm.engine.terms import Func, Term


@pytest.mark.parametrize("text, value", [
    ("500k", 500e3), ("2M", 2e6), ("1G", 1e9), ("1Ki", 1024), ("3Mi", 3 * 2**20), ("1Gi", 2**30),
    ("-2.5", -2.5), ("0", 0.0), ("1.5k", 1500),
], ids=lambda x: str(x))
def test_numbers_and_suffixes(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["5m", "1K", "1g", "2 k", "k", "1e3"])
def test_bad_numbers(text):
    with pytest.raises(ValueError):
        parse_number(text)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("1h", 3600), ("1.5m", 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5", "5 m", "5M", "5ms", "-5m", "m", "5H", ""])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text, column, phrase", [
    ("", 0, "empty"),
    ("cpu >", 5, "expected a field"),
    ("cpu > 1 > 2", 8, "unexpected '>'"),
    ("cpux > 1", 0, "unknown field 'cpux'"),
    ("avg(cpu, 5s) > 1", 9, "shorter than the period"),
    ("avg(cpu, 5x) > 1", 9, "not a duration"),
    ("deviation_last(cpu, 5m) > 1", 20, "takes no window"),
    ("median(cpu) > 1", 0, "unknown function"),
    ("cpu > 5m", 6, "unknown suffix"),
    ("(cpu > 1", 8, "expected ')'"),
    ("cpu", 3, "comparison operator"),
    ("avg > 1", 0, "is a function"),
    ("cpu > 1 and", 11, "expected a field"),
    ("cpu @ 1", 4, "unexpected character"),
    ("true > 1", 5, "unexpected '>'"),
], ids=lambda x: str(x))
def test_errors_point_at_the_offending_token(text, column, phrase):
    with pytest.raises(ExpressionError) as raised:
        parse(text, min_window=15)
    assert raised.value.column == column
    assert phrase in raised.value.message


def test_precedence_not_and_or():
    # not binds tighter than and, which binds tighter than or; comparisons bind tighter than not.
    values = {"cpu": 1.0, "ram": 1.0, "latency": 1.0}
    assert evaluate(parse("not cpu > 5 and ram > 5 or latency > 0"), values) is True
    assert evaluate(parse("not (cpu > 5 and ram > 5 or latency > 0)"), values) is False
    assert render(parse("cpu > 1 or ram > 1 and latency > 1")) == "(cpu > 1) or ((ram > 1) and (latency > 1))"


def test_terms_are_collected():
    node = parse("avg(cpu, 5m) > 1 or deviation_last(ram) < -5 and cpu > 0")
    assert terms(node) == {Term(Func.AVG, "cpu", 300.0), Term(Func.DEVIATION_LAST, "ram"), Term(Func.VALUE, "cpu")}
    assert Term(Func.AVG, "cpu", 300.0).key == "avg(cpu, 300s)"


def set_wise(node, rows, keys):
    """``truth`` on every row at once, as True / False / None (unknown) per row."""
    columns = {k: np.array([math.nan if row.get(k) is None else row[k] for row in rows], dtype=np.float64)
               for k in keys}
    true, false = truth(node, columns.__getitem__, len(rows))
    return [True if t else False if f else None for t, f in zip(true.tolist(), false.tolist(), strict=True)]


@pytest.mark.parametrize("text, expected", [
    ("cpu > 1 or ram > 1", True),       # unknown or true = true
    ("cpu > 1 or ram < 1", None),       # unknown or false = unknown
    ("cpu > 1 and ram < 1", False),     # unknown and false = false
    ("cpu > 1 and ram > 1", None),      # unknown and true = unknown
    ("not cpu > 1", None),              # not unknown = unknown
    ("true", True), ("false", False),
])
def test_three_valued_logic_with_missing_cpu(text, expected):
    assert evaluate(parse(text), {"ram": 5.0}) is expected
    assert set_wise(parse(text), [{"ram": 5.0}], ["cpu", "ram"]) == [expected]


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_the_parser_never_crashes_on_arbitrary_text(text):
    try:
        parse(text)
    except ExpressionError as error:
        assert 0 <= error.column <= len(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="cpuram()<>=!andortruefalsvg_, 0123456789.kMGism-"))
def test_the_parser_never_crashes_on_near_miss_text(text):
    try:
        parse(text)
    except ExpressionError as error:
        assert 0 <= error.column <= len(text)


# --- generated valid expressions against an independent reference evaluator ---------------------

FIELDS = ["cpu", "ram", "latency"]
SUFFIX = {"": 1, "k": 1000, "M": 10**6, "Ki": 1024}
WINDOWS = {"30s": 30, "5m": 300, "1h": 3600}


def _operand():
    number = st.tuples(st.integers(-3000, 3000), st.sampled_from(list(SUFFIX))).map(
        lambda t: ("num", f"{t[0]}{t[1]}", t[0] * SUFFIX[t[1]]))
    field = st.sampled_from(FIELDS).map(lambda f: ("term", f, Term(Func.VALUE, f)))
    windowed = st.tuples(st.sampled_from(["avg", "min", "max", "deviation_avg"]), st.sampled_from(FIELDS),
                         st.sampled_from(list(WINDOWS))).map(
        lambda t: ("term", f"{t[0]}({t[1]}, {t[2]})", Term(Func(t[0]), t[1], float(WINDOWS[t[2]]))))
    last = st.sampled_from(FIELDS).map(lambda f: ("term", f"deviation_last({f})", Term(Func.DEVIATION_LAST, f)))
    return st.one_of(number, field, windowed, last)


def _leaf():
    compare = st.tuples(_operand(), st.sampled_from([">", ">=", "<", "<=", "==", "!="]), _operand()).map(
        lambda t: ("cmp", t[0], t[1], t[2]))
    return st.one_of(compare, st.sampled_from([("lit", True), ("lit", False)]))


TREES = st.recursive(_leaf(), lambda inner: st.one_of(
    inner.map(lambda x: ("not", x)),
    st.lists(inner, min_size=2, max_size=3).map(lambda xs: ("and", xs)),
    st.lists(inner, min_size=2, max_size=3).map(lambda xs: ("or", xs)),
), max_leaves=8)

TIGHTNESS = {"or": 1, "and": 2, "not": 3, "cmp": 4, "lit": 4}


def _text(tree, parent=0):
    kind = tree[0]
    if kind == "lit":
        out = "true" if tree[1] else "false"
    elif kind == "cmp":
        out = f"{tree[1][1]} {tree[2]} {tree[3][1]}"
    elif kind == "not":
        out = "not " + _text(tree[1], TIGHTNESS["not"])
    else:
        out = f" {kind} ".join(_text(x, TIGHTNESS[kind] + 1 if kind in ("and", "or") else 0) for x in tree[1])
    return f"({out})" if TIGHTNESS[kind] < parent else out


def _reference(tree, values):
    """Kleene logic, written without looking at the engine."""
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "cmp":
        sides = []
        for operand in (tree[1], tree[3]):
            sides.append(operand[2] if operand[0] == "num" else values.get(operand[2].key))
        if None in sides:
            return None
        a, b = sides
        return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b, "==": a == b, "!=": a != b}[tree[2]]
    if kind == "not":
        inner = _reference(tree[1], values)
        return None if inner is None else not inner
    results = [_reference(x, values) for x in tree[1]]
    if kind == "and":
        return False if False in results else (None if None in results else True)
    return True if True in results else (None if None in results else False)


ALL_TERMS = [Term(Func.VALUE, f) for f in FIELDS] + [Term(Func(g), f, float(w)) for g in
             ("avg", "min", "max", "deviation_avg") for f in FIELDS for w in WINDOWS.values()] + \
            [Term(Func.DEVIATION_LAST, f) for f in FIELDS]
VALUES = st.fixed_dictionaries({t.key: st.one_of(st.none(), st.integers(-3000, 3000).map(float))
                                for t in ALL_TERMS})


@settings(max_examples=400, deadline=None)
@given(TREES, st.lists(VALUES, min_size=1, max_size=4))
def test_generated_expressions_parse_and_evaluate_like_the_reference(tree, rows):
    text = _text(tree)
    node = parse(text, FIELDS)
    expected = [_reference(tree, row) for row in rows]
    assert [evaluate(node, row) for row in rows] == expected
    assert set_wise(node, rows, [t.key for t in ALL_TERMS]) == expected  # literals broadcast
    assert evaluate(parse(render(node), FIELDS), rows[0]) == expected[0]

"""The metric history against hand-computed values and an independent reference model.

Every test runs a real DuckDB (in memory, or in a temporary file for persistence).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usm.collectors.history import SAMPLE_SCHEMA, History
from usm.engine.terms import Func, Term

Row = tuple[float, str, str, float | None]  # ts, entity, field, value


def frame(rows: Sequence[Row]) -> pl.DataFrame:
    """A frame of samples in the collectors' format."""
    return pl.DataFrame([list(row) for row in rows], schema=SAMPLE_SCHEMA, orient="row")


@pytest.fixture
def history() -> Iterator[History]:
    with History() as opened:
        yield opened


def one(
    history: History, at: float, period: float, term: Term, entity: str = "c1", **kw: float
) -> float | None:
    """The value of one term for one entity."""
    result = history.terms(at, period, [term], **kw)
    row = result.filter(pl.col("entity") == entity)
    assert row.height == 1, f"{entity} is not in {result}"
    return row[term.key].item()


CPU = "cpu_percent"


def value(window: float | None = None) -> Term:
    return Term(Func.VALUE, CPU, window)


def avg(window: float | None = None) -> Term:
    return Term(Func.AVG, CPU, window)


def dev_avg(window: float | None = None) -> Term:
    return Term(Func.DEVIATION_AVG, CPU, window)


def dev_last() -> Term:
    return Term(Func.DEVIATION_LAST, CPU)


@pytest.fixture
def series(history: History) -> History:
    """c1 cpu_percent: 10 at 0 s, 20 at 15 s, 60 at 30 s."""
    history.append(
        frame([(0.0, "c1", CPU, 10.0), (15.0, "c1", CPU, 20.0), (30.0, "c1", CPU, 60.0)])
    )
    return history


# --- VALUE and the period ---------------------------------------------------------------------


def test_value_is_the_newest_sample_of_the_period(series: History) -> None:
    assert one(series, 30, 15, value()) == 60.0
    assert one(series, 20, 15, value()) == 20.0
    assert one(series, 44.9, 15, value()) == 60.0


def test_value_period_edge_is_exclusive_at_the_start_and_inclusive_at_the_end(
    series: History,
) -> None:
    assert one(series, 45, 15, value()) is None  # 45 - 15 = 30: the sample at 30 is out
    assert one(series, 29.9, 15, value()) == 20.0  # 30 is after t: not yet seen
    assert one(series, 45, 16, value()) == 60.0


def test_value_ignores_a_window(series: History) -> None:
    assert value(300).key == CPU
    assert one(series, 30, 15, value(300)) == 60.0


# --- AVG / MIN / MAX --------------------------------------------------------------------------


def test_window_excludes_a_sample_at_t_minus_w_and_includes_one_at_t(series: History) -> None:
    assert one(series, 30, 15, avg(30)) == 40.0  # (20 + 60) / 2; the sample at 0 is out
    assert one(series, 30, 15, Term(Func.MIN, CPU, 30)) == 20.0
    assert one(series, 30, 15, Term(Func.MAX, CPU, 30)) == 60.0
    assert one(series, 30, 15, avg(30.5)) == 30.0  # now the sample at 0 is in


def test_aggregate_without_window_covers_the_retained_samples(series: History) -> None:
    assert one(series, 30, 15, avg()) == 30.0
    assert one(series, 30, 15, avg(), retention=30) == 40.0
    assert one(series, 30, 15, Term(Func.MIN, CPU), retention=30) == 20.0
    assert one(series, 30, 15, Term(Func.MAX, CPU)) == 60.0


def test_window_longer_than_retention_sees_retained_samples_only(series: History) -> None:
    assert one(series, 30, 15, avg(3600), retention=30) == 40.0


def test_aggregate_is_missing_without_a_sample_in_the_window(series: History) -> None:
    assert one(series, 60, 15, avg(30)) is None  # window (30, 60]: empty
    assert one(series, 60, 15, Term(Func.MAX, CPU, 30)) is None
    assert one(series, 60, 15, avg(31)) == 60.0


# --- DEVIATION_AVG ----------------------------------------------------------------------------


def test_deviation_avg_compares_the_current_value_with_the_mean_of_older_samples(
    series: History,
) -> None:
    assert one(series, 30, 15, dev_avg()) == pytest.approx(300.0)  # a = (10 + 20) / 2
    assert one(series, 30, 15, dev_avg(30)) == pytest.approx(200.0)  # a = 20: 0 is out
    assert one(series, 30, 15, dev_avg(45)) == pytest.approx(300.0)


def test_deviation_avg_counts_older_samples_of_the_current_period(history: History) -> None:
    # At t = 25 the current sample is the one at 25; the one at 20 is in the period but older.
    history.append(
        frame([(0.0, "c1", CPU, 10.0), (20.0, "c1", CPU, 30.0), (25.0, "c1", CPU, 40.0)])
    )
    for period in (10, 30):  # the sample at 0 before the period, then in it
        assert one(history, 25, period, dev_avg()) == pytest.approx(100.0)  # a = (10 + 30) / 2
        assert one(history, 25, period, dev_avg(10)) == pytest.approx(100 / 3)  # a = 30
        assert one(history, 25, period, dev_avg(5)) is None  # only the current one in (20, 25]


def test_deviation_avg_is_missing_without_current_value_base_or_with_zero_base(
    history: History,
) -> None:
    history.append(
        frame(
            [
                (0.0, "c1", CPU, -5.0),
                (15.0, "c1", CPU, 5.0),
                (30.0, "c1", CPU, 50.0),
                (30.0, "only", CPU, 50.0),
            ]
        )
    )
    assert one(history, 30, 15, dev_avg()) is None  # a = (-5 + 5) / 2 == 0
    assert one(history, 30, 15, dev_avg(30)) == pytest.approx(900.0)  # a = 5
    assert one(history, 30, 15, dev_avg(), "only") is None  # nothing older
    assert one(history, 44, 15, dev_avg()) is None  # a exists but the current value does not
    assert one(history, 45, 15, dev_avg()) is None  # no current value: 30 is out of the period


# --- DEVIATION_LAST ---------------------------------------------------------------------------


def test_deviation_last_compares_with_the_newest_older_sample(series: History) -> None:
    assert one(series, 30, 15, dev_last()) == pytest.approx(200.0)  # p = 20
    assert one(series, 15, 15, dev_last()) == pytest.approx(100.0)  # p = 10


def test_deviation_last_looks_past_gaps_within_retention(history: History) -> None:
    history.append(frame([(0.0, "c1", CPU, 50.0), (60.0, "c1", CPU, 100.0)]))
    assert one(history, 60, 15, dev_last()) == pytest.approx(100.0)
    assert one(history, 60, 15, dev_last(), retention=61) == pytest.approx(100.0)
    assert one(history, 60, 15, dev_last(), retention=60) is None  # the sample at 0 is gone


def test_deviation_last_in_the_current_period(history: History) -> None:
    history.append(
        frame([(0.0, "c1", CPU, 10.0), (20.0, "c1", CPU, 30.0), (25.0, "c1", CPU, 40.0)])
    )
    for period in (10, 30):  # the sample at 0 before the period, then in it
        assert one(history, 25, period, dev_last()) == pytest.approx(100 / 3)  # p = 30, not 10


def test_deviation_last_is_missing_with_zero_or_no_previous_or_no_current(
    history: History,
) -> None:
    history.append(
        frame(
            [
                (15.0, "c1", CPU, 0.0),
                (30.0, "c1", CPU, 50.0),
                (30.0, "single", CPU, 50.0),
            ]
        )
    )
    assert one(history, 30, 15, dev_last()) is None  # p == 0
    assert one(history, 30, 15, dev_last(), "single") is None  # only one sample
    assert one(history, 45, 15, dev_last()) is None  # no current sample


# --- the frame --------------------------------------------------------------------------------


def test_several_entities_and_fields_in_one_call(history: History) -> None:
    history.append(
        frame(
            [
                (0.0, "h1", CPU, 40.0),
                (0.0, "h1", "ram_percent", 70.0),
                (15.0, "h1", CPU, 60.0),
                (15.0, "h1", "ram_percent", 90.0),
                (0.0, "c2", CPU, 5.0),
                (15.0, "c2", "ram_percent", 10.0),
                (15.0, "B", "latency", 1.0),  # upper case sorts first (code points)
            ]
        )
    )
    terms = [
        Term(Func.VALUE, CPU),
        Term(Func.AVG, "ram_percent", 60),
        Term(Func.DEVIATION_LAST, CPU),
        Term(Func.MAX, CPU, 60),
        Term(Func.DEVIATION_AVG, "ram_percent", 60),
        Term(Func.VALUE, CPU),  # a duplicate: one column
        Term(Func.MIN, "never_sampled", 60),
    ]
    result = history.terms(15, 15, terms)
    assert result.columns == [
        "entity",
        "cpu_percent",
        "avg(ram_percent, 60s)",
        "deviation_last(cpu_percent)",
        "max(cpu_percent, 60s)",
        "deviation_avg(ram_percent, 60s)",
        "min(never_sampled, 60s)",
    ]
    assert result.schema["entity"] == pl.String
    assert all(result.schema[column] == pl.Float64 for column in result.columns[1:])
    assert result.rows() == [
        ("B", None, None, None, None, None, None),
        ("c2", None, 10.0, None, 5.0, None, None),
        ("h1", 60.0, 80.0, pytest.approx(50.0), 60.0, pytest.approx(100 * 20 / 70), None),
    ]


def test_only_entities_with_a_retained_sample_are_listed(history: History) -> None:
    history.append(frame([(0.0, "old", CPU, 1.0), (100.0, "new", "ram_percent", 1.0)]))
    assert history.terms(100, 15, [value()])["entity"].to_list() == ["new", "old"]
    assert history.terms(100, 15, [value()], retention=100)["entity"].to_list() == ["new"]
    assert history.terms(50, 15, [value()])["entity"].to_list() == ["old"]  # 100 is after t


def test_a_late_older_sample_does_not_hide_newer_ones(history: History) -> None:
    history.append(frame([(100.0, "c1", CPU, 1.0)]))
    history.append(frame([(0.0, "c1", CPU, 2.0)]))  # a backfill
    assert history.terms(100, 15, [value()], retention=10).rows() == [("c1", 1.0)]
    assert history.terms(50, 15, [avg()], retention=60).rows() == [("c1", 2.0)]


def test_no_terms_gives_the_entity_column_only(series: History) -> None:
    assert series.terms(30, 15, []).rows() == [("c1",)]


def test_empty_history_gives_an_empty_frame_with_the_term_columns(history: History) -> None:
    result = history.terms(30, 15, [value(), avg(60)])
    assert result.height == 0
    assert result.columns == ["entity", CPU, "avg(cpu_percent, 60s)"]


# --- append -----------------------------------------------------------------------------------


def test_append_drops_null_and_nan_values(history: History) -> None:
    stored = history.append(
        frame([(0.0, "c1", CPU, 10.0), (15.0, "c1", CPU, None), (30.0, "c1", CPU, math.nan)])
    )
    assert stored == 1
    assert history.samples(-1, 100)["value"].to_list() == [10.0]
    assert one(history, 30, 15, value()) is None  # a missing sample is no sample
    assert one(history, 30, 30, value()) is None
    assert one(history, 30, 31, value()) == 10.0


def test_append_casts_integer_columns(history: History) -> None:
    stored = history.append(
        pl.DataFrame({"ts": [0, 15], "entity": "c1", "field": CPU, "value": [1, 2]})
    )
    assert stored == 2
    assert one(history, 15, 15, avg()) == 1.5


def test_a_sample_replaces_one_of_the_same_entity_field_and_ts(history: History) -> None:
    history.append(
        frame([(0.0, "c1", CPU, 10.0), (15.0, "c1", CPU, 20.0), (15.0, "c1", CPU, 30.0)])
    )
    assert one(history, 15, 15, value()) == 30.0  # the last of the batch wins
    assert one(history, 15, 15, avg()) == 20.0  # and the other one does not count
    assert history.append(frame([(15.0, "c1", CPU, 40.0), (15.0, "c2", CPU, 1.0)])) == 2
    assert one(history, 15, 15, value()) == 40.0  # a later batch wins too
    assert history.samples(-1, 100).rows() == [
        (0.0, "c1", CPU, 10.0),
        (15.0, "c1", CPU, 40.0),
        (15.0, "c2", CPU, 1.0),
    ]


def test_append_rejects_a_missing_column_or_a_null_key(history: History) -> None:
    with pytest.raises(ValueError, match="value"):
        history.append(pl.DataFrame({"ts": [0.0], "entity": ["c1"], "field": [CPU]}))
    with pytest.raises(ValueError, match="entity"):
        history.append(frame([(0.0, None, CPU, 1.0)]))  # type: ignore[list-item]
    assert history.samples(-1, 100).height == 0


def test_append_of_nothing_stores_nothing(history: History) -> None:
    assert history.append(frame([])) == 0
    assert history.append(frame([(0.0, "c1", CPU, None)])) == 0
    assert history.samples(-1, 100).height == 0


# --- samples, prune, persistence --------------------------------------------------------------


def test_samples_in_a_time_range_ordered_and_by_entity(history: History) -> None:
    history.append(
        frame(
            [
                (30.0, "c2", CPU, 3.0),
                (15.0, "c2", "ram", 2.0),
                (15.0, "c1", CPU, 1.0),
                (15.0, "c2", CPU, 4.0),
                (0.0, "c1", CPU, 0.0),
            ]
        )
    )
    assert history.samples(0, 30).rows() == [
        (15.0, "c1", CPU, 1.0),
        (15.0, "c2", CPU, 4.0),
        (15.0, "c2", "ram", 2.0),
        (30.0, "c2", CPU, 3.0),
    ]
    assert history.samples(-1, 15, ["c1"]).rows() == [(0.0, "c1", CPU, 0.0), (15.0, "c1", CPU, 1.0)]
    assert history.samples(-1, 100, []).height == 0
    assert history.samples(-1, 100).schema == pl.Schema(SAMPLE_SCHEMA)


def test_prune_deletes_samples_up_to_and_including_before(series: History) -> None:
    assert series.prune(15) == 2
    assert series.samples(-1, 100)["ts"].to_list() == [30.0]
    assert series.prune(15) == 0
    assert one(series, 30, 15, dev_last()) is None  # the previous sample is gone
    assert one(series, 30, 15, avg()) == 60.0


def test_an_entity_whose_samples_are_all_pruned_is_no_longer_listed(history: History) -> None:
    history.append(frame([(0.0, "c1", CPU, 1.0), (10.0, "c1", CPU, 2.0), (30.0, "c2", CPU, 3.0)]))
    assert history.terms(30, 15, [value()])["entity"].to_list() == ["c1", "c2"]
    assert history.prune(5) == 1
    assert history.terms(30, 15, [value()])["entity"].to_list() == ["c1", "c2"]
    assert history.prune(10) == 1
    assert history.terms(30, 15, [value()])["entity"].to_list() == ["c2"]
    history.append(frame([(20.0, "c1", CPU, 4.0)]))
    assert history.terms(30, 15, [value()])["entity"].to_list() == ["c1", "c2"]


def test_a_file_backed_history_persists_across_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "history.duckdb")
    with History(path) as history:
        history.append(frame([(0.0, "c1", CPU, 10.0), (15.0, "c1", CPU, 20.0)]))
    with History(path) as history:
        history.append(frame([(30.0, "c1", CPU, 60.0), (30.0, "c2", "ram", 1.0)]))
        assert history.samples(-1, 100).height == 4
        assert one(history, 30, 15, dev_avg()) == pytest.approx(300.0)
    with History(path) as history:
        assert history.terms(30, 15, [Term(Func.VALUE, "ram")]).rows() == [
            ("c1", None),
            ("c2", 1.0),
        ]


def test_a_term_named_entity_is_rejected(series: History) -> None:
    with pytest.raises(ValueError, match="entity"):
        series.terms(30, 15, [Term(Func.VALUE, "entity")])


def test_non_finite_times_are_rejected(series: History) -> None:
    with pytest.raises(ValueError, match="period"):
        series.terms(30, math.inf, [value()])


# --- the reference model ----------------------------------------------------------------------

ENTITIES = ["a", "b", "c"]
FIELDS = ["x", "y"]
SLOTS = [5.0 * n for n in range(13)]  # 0 s to 60 s


def reference(
    batches: Sequence[Sequence[Row]],
    pruned: float | None,
    at: float,
    period: float,
    terms: Sequence[Term],
    retention: float,
) -> dict[str, dict[str, float | None]]:
    """Term values computed the plain way, from the spec's definitions."""
    stored: dict[tuple[str, str, float], float] = {}
    for batch in batches:
        for ts, entity, field, sample in batch:
            if sample is not None:
                stored[(entity, field, ts)] = sample  # the last appended wins
    if pruned is not None:
        stored = {key: sample for key, sample in stored.items() if key[2] > pruned}

    def retained(entity: str, field: str) -> list[tuple[float, float]]:
        return sorted(
            (ts, v)
            for (e, f, ts), v in stored.items()
            if (e, f) == (entity, field) and at - retention < ts <= at
        )

    def compute(entity: str, term: Term) -> float | None:
        points = retained(entity, term.field)
        in_period = [(ts, v) for ts, v in points if ts > at - period]
        current = in_period[-1] if in_period else None
        window = retention if term.window is None else term.window
        in_window = [v for ts, v in points if ts > at - window]
        if term.func is Func.VALUE:
            return current[1] if current else None
        if term.func is Func.AVG:
            return sum(in_window) / len(in_window) if in_window else None
        if term.func is Func.MIN:
            return min(in_window, default=None)
        if term.func is Func.MAX:
            return max(in_window, default=None)
        if current is None:
            return None
        older = [(ts, v) for ts, v in points if ts < current[0]]
        if term.func is Func.DEVIATION_AVG:
            base_values = [v for ts, v in older if ts > at - window]
            base = sum(base_values) / len(base_values) if base_values else None
        else:
            base = older[-1][1] if older else None
        if base is None or base == 0:
            return None
        return (current[1] - base) / base * 100

    present = sorted({e for (e, _, ts) in stored if at - retention < ts <= at})
    return {entity: {term.key: compute(entity, term) for term in terms} for entity in present}


def fives(low: int, high: int) -> st.SearchStrategy[float]:
    """Multiples of 5 seconds in ``[low, high]``."""
    return st.integers(low // 5, high // 5).map(lambda n: 5.0 * n)


values = st.one_of(st.none(), st.integers(-4, 12).map(lambda n: n / 2))  # halves: exact sums
rows = st.tuples(fives(0, 60), st.sampled_from(ENTITIES), st.sampled_from(FIELDS), values)
dense_series = st.lists(values, min_size=len(SLOTS), max_size=len(SLOTS))
dense_batch = st.tuples(*[dense_series for _ in ENTITIES[:2] for _ in FIELDS]).map(
    lambda series: [
        (ts, entity, field, value)
        for (entity, field), column in zip(
            [(entity, field) for entity in ENTITIES[:2] for field in FIELDS], series, strict=True
        )
        for ts, value in zip(SLOTS, column, strict=True)
    ]
)
"""One batch with a value (or null) at every slot of every series of the entities a and b."""
batches = st.tuples(dense_batch, st.lists(st.lists(rows, max_size=10), max_size=2)).map(
    lambda parts: [parts[0], *parts[1]]
)
"""A dense batch, then up to two small batches of random rows (new samples or replacements)."""
all_terms = st.builds(
    Term,
    st.sampled_from(list(Func)),
    st.sampled_from(FIELDS),
    st.one_of(st.none(), fives(5, 60)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=batches,
    pruned=st.one_of(st.none(), fives(0, 60)),
    at=fives(0, 70),
    period=fives(5, 30),
    retention=fives(5, 80),
    terms=st.lists(all_terms, min_size=1, max_size=8),
)
def test_terms_match_the_reference_model(
    batches: list[list[Row]],
    pruned: float | None,
    at: float,
    period: float,
    retention: float,
    terms: list[Term],
) -> None:
    with History() as history:
        for batch in batches:
            history.append(frame(batch))
        if pruned is not None:
            history.prune(pruned)
        result = history.terms(at, period, terms, retention=retention)
    expected = reference(batches, pruned, at, period, terms, retention)
    keys = list(dict.fromkeys(term.key for term in terms))
    assert result.columns == ["entity", *keys]
    assert result["entity"].to_list() == list(expected)
    for row in result.iter_rows(named=True):
        for key in keys:
            got, want = row[key], expected[row["entity"]][key]
            if want is None:
                assert got is None, (row["entity"], key)
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (row["entity"], key)


# --- cycle after cycle: the in-memory tail against the reference ------------------------------

CYCLE_ENTITIES = ["a", "b", "c", "d"]
CYCLE_FIELDS = ["x", "y", "z"]
cycle_rows = st.lists(
    st.tuples(st.sampled_from(CYCLE_ENTITIES), st.sampled_from(CYCLE_FIELDS), values),
    max_size=12,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("cycle"), st.integers(1, 3), cycle_rows),  # a batch at a newer ts
        st.tuples(st.just("late"), st.lists(rows, max_size=6)),  # replacements and backfills
        st.tuples(
            st.just("terms"),
            st.integers(-4, 2).map(lambda n: 5.0 * n),  # at, from the newest ts
            fives(5, 30),  # period
            fives(5, 80),  # retention
            st.lists(all_terms, min_size=1, max_size=6),
        ),
        st.tuples(st.just("prune"), st.integers(-16, 0).map(lambda n: 5.0 * n)),
    ),
    min_size=1,
    max_size=14,
)


def assert_terms_match(
    result: pl.DataFrame, expected: dict[str, dict[str, float | None]], keys: list[str]
) -> None:
    assert result.columns == ["entity", *keys]
    assert result["entity"].to_list() == list(expected)
    for row in result.iter_rows(named=True):
        for key in keys:
            got, want = row[key], expected[row["entity"]][key]
            if want is None:
                assert got is None, (row["entity"], key)
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (row["entity"], key)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=operations,
    limits=st.sampled_from(
        [
            {},  # the defaults: everything fits in the tail
            {"TAIL_EXTENSION": 0},  # the tail only grows with appended batches
            {"TAIL_CELLS": 30},  # a tail this big is dropped: terms come from SQL
            {"DEFERRED_ROWS": 1},  # every batch written at once
        ]
    ),
)
def test_cycle_after_cycle_terms_match_the_reference_model(
    steps: list[tuple], limits: dict[str, int]
) -> None:
    stored: dict[tuple[str, str, float], float] = {}
    newest = 0.0
    with History() as tail, History() as sql:
        sql.use_tail = False
        for name, limit in limits.items():
            setattr(tail, name, limit)
        for step in steps:
            if step[0] in ("cycle", "late"):
                if step[0] == "cycle":
                    newest += 5.0 * step[1]
                    batch = [(newest, entity, field, value) for entity, field, value in step[2]]
                else:
                    batch = step[1]
                for history in (tail, sql):
                    history.append(frame(batch))
                for ts, entity, field, value in batch:
                    if value is not None:
                        stored[(entity, field, ts)] = value
                newest = max([newest, *(ts for ts, *_ in batch)])
            elif step[0] == "terms":
                _, offset, period, retention, terms = step
                at = newest + offset
                stored_rows = [(ts, e, f, v) for (e, f, ts), v in stored.items()]
                expected = reference([stored_rows], None, at, period, terms, retention)
                keys = list(dict.fromkeys(term.key for term in terms))
                for history in (tail, sql):
                    result = history.terms(at, period, terms, retention=retention)
                    assert_terms_match(result, expected, keys)
            else:
                before = newest + step[1]
                gone = [key for key in stored if key[2] <= before]
                assert tail.prune(before) == sql.prune(before) == len(gone)
                for key in gone:
                    del stored[key]
        everything = sorted((ts, e, f, v) for (e, f, ts), v in stored.items())
        assert tail.samples(-1e9, 1e9).rows() == everything
        assert sql.samples(-1e9, 1e9).rows() == everything


def test_a_simulated_run_of_cycles_matches_sql(history: History) -> None:
    """Hundreds of cycles of a dozen entities (some arriving late, some leaving), as the
    simulator appends them: the tail grows, is trimmed and moved, and always agrees with SQL."""
    names = [f"c{i:02d}" for i in range(12)]
    terms = [
        Term(Func.VALUE, "cpu"),
        Term(Func.AVG, "cpu", 60),
        Term(Func.MAX, "ram", 120),
        Term(Func.MIN, "ram", 30),
        Term(Func.DEVIATION_AVG, "cpu", 60),
        Term(Func.DEVIATION_LAST, "ram"),
        Term(Func.AVG, "rx"),
    ]
    with History() as sql:
        sql.use_tail = False
        for cycle in range(300):
            at = 15.0 * cycle
            alive = [n for i, n in enumerate(names) if i * 20 <= cycle < 250 + i]
            batch = frame(
                [
                    (at, name, field, float((cycle * 7 + i * 13 + len(field)) % 23))
                    for i, name in enumerate(alive)
                    for field in ("cpu", "ram", "rx")
                    if (cycle + i) % 5 or field != "rx"  # a missing sample now and then
                ]
            )
            history.append(batch)
            sql.append(batch)
            if cycle % 25 == 24:
                history.prune(at - 300)
                sql.prune(at - 300)
            if cycle % 3 == 0:
                got = history.terms(at, 15, terms, retention=300)
                assert got.height > 0 or not alive
                assert_frame_close(got, sql.terms(at, 15, terms, retention=300))


def assert_frame_close(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns
    assert got["entity"].to_list() == want["entity"].to_list()
    for column in got.columns[1:]:
        for a, b in zip(got[column].to_list(), want[column].to_list(), strict=True):
            assert (a is None) == (b is None), column
            if a is not None:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), column


def test_append_rejects_a_non_finite_ts(history: History) -> None:
    for ts in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="finite"):
            history.append(frame([(0.0, "c1", CPU, 1.0), (ts, "c1", CPU, 2.0)]))
    assert history.append(frame([(math.nan, "c1", CPU, None)])) == 0  # no value: no sample
    assert history.samples(-1e9, 1e9).height == 0


def test_new_entities_and_fields_join_a_running_history(history: History) -> None:
    history.append(frame([(0.0, "c1", CPU, 10.0)]))
    assert history.terms(0, 15, [value(), Term(Func.VALUE, "ram")]).rows() == [("c1", 10.0, None)]
    history.append(frame([(15.0, "c1", CPU, 20.0), (15.0, "c2", "ram", 5.0)]))
    history.append(frame([(30.0, "c2", CPU, 40.0), (30.0, "c3", "disk", 1.0)]))
    result = history.terms(30, 15, [value(), avg(30), Term(Func.MAX, "ram", 30)])
    assert result.rows() == [
        ("c1", None, 20.0, None),
        ("c2", 40.0, 40.0, 5.0),
        ("c3", None, None, None),
    ]


def test_a_late_batch_replaces_samples_the_tail_holds(history: History) -> None:
    for cycle in range(4):
        history.append(frame([(15.0 * cycle, "c1", CPU, 10.0 * cycle)]))
        assert one(history, 15.0 * cycle, 15, avg(60)) == pytest.approx(5.0 * cycle)
    history.append(frame([(15.0, "c1", CPU, 50.0), (20.0, "c1", CPU, 0.0)]))  # one new ts
    assert one(history, 45, 15, avg(60)) == pytest.approx((0 + 50 + 0 + 20 + 30) / 5)
    assert one(history, 45, 15, dev_last()) == pytest.approx(50.0)  # p = 20


def test_a_file_backed_history_reloads_names_and_newest_samples(tmp_path: Path) -> None:
    path = str(tmp_path / "history.duckdb")
    with History(path) as history:
        for cycle in range(10):
            history.append(frame([(15.0 * cycle, "c1", CPU, float(cycle))]))
        history.append(frame([(0.0, "old", CPU, 1.0)]))
    with History(path) as history:
        assert history.terms(135, 15, [value(), avg(45)]).rows() == [
            ("c1", 9.0, 8.0),
            ("old", None, None),
        ]
        assert history.append(frame([(150.0, "c1", CPU, 10.0), (150.0, "new", CPU, 1.0)])) == 2
        assert history.terms(150, 15, [value()], retention=30)["entity"].to_list() == [
            "c1",
            "new",
        ]
        assert history.samples(-1, 1000).height == 13


def test_batches_waiting_to_be_written_are_read_and_pruned(history: History) -> None:
    history.append(frame([(0.0, "c1", CPU, 0.0)]))  # new names: written at once
    for cycle in range(1, 6):  # known names, newer than everything: written later, together
        history.append(frame([(15.0 * cycle, "c1", CPU, float(cycle))]))
    assert history.prune(30) == 3
    assert history.samples(-1, 1000)["value"].to_list() == [3.0, 4.0, 5.0]
    history.append(frame([(90.0, "c1", CPU, 6.0)]))
    assert history.samples(80, 1000)["value"].to_list() == [6.0]
    history.append(frame([(105.0, "c1", CPU, 7.0)]))
    history.append(frame([(105.0, "c1", CPU, 8.0)]))  # replaces one not yet written
    assert history.samples(100, 1000)["value"].to_list() == [8.0]
    assert one(history, 105, 15, avg(30)) == 7.0  # (6 + 8) / 2


def test_steady_cycles_need_no_database_query(history: History) -> None:
    """Once the tail reaches back as far as the terms need, a cycle of append (of known names,
    at a newer ts) and terms is answered from memory."""

    class NoQueries:
        def execute(self, *args: object, **kwargs: object) -> None:
            raise AssertionError(f"a query: {args}")

    names = [f"c{i}" for i in range(20)]
    terms = [value(), avg(60), Term(Func.MAX, "ram", 120), dev_last(), dev_avg(90)]

    def cycle(n: int) -> None:
        history.append(
            frame([(15.0 * n, name, f, float(n % 7)) for name in names for f in (CPU, "ram")])
        )
        assert history.terms(15.0 * n, 15, terms, retention=300).height == len(names)

    history.DEFERRED_ROWS = 10**9
    for n in range(30):
        cycle(n)
    database, history._con = history._con, NoQueries()  # type: ignore[assignment]
    try:
        for n in range(30, 60):
            cycle(n)
    finally:
        history._con = database


def test_the_history_does_not_import_pandas_or_pyarrow_compute() -> None:
    """pyarrow imports pandas (2 s) the first time it converts a numpy array or a list, and
    polars imports pyarrow.compute (0.15 s) for an Arrow array: a simulated run of a few
    minutes would spend more in that than in every cycle together."""
    import subprocess
    import sys

    script = """
import sys
import polars as pl
from usm.collectors.history import History
from usm.engine.terms import Func, Term

before = set(sys.modules)
rows = lambda ts, v: pl.DataFrame(
    {"ts": [ts, ts], "entity": ["a", "b"], "field": ["x", "y"], "value": [v, None]}
)
terms = [Term(Func.VALUE, "x"), Term(Func.AVG, "x", 30), Term(Func.DEVIATION_LAST, "y")]
with History() as history:
    for n in range(5):
        history.append(rows(15.0 * n, float(n)))
        history.terms(15.0 * n, 15, terms)
    history.append(rows(15.0, 9.0))
    history.use_tail = False
    history.terms(60, 15, terms)
    history.samples(0, 100)
    history.prune(15)
slow = ("pandas", "pyarrow.compute")
print(sorted(name for name in set(sys.modules) - before if name.startswith(slow)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.strip() == "[]"


# --- the fast paths against the general ones ----------------------------------------------------

CONTAINER_FIELDS = ("cpu", "ram", "rx")
HOST_FIELDS = ("cpu", "disk")  # cpu repeats: a field in two runs of a batch
FAST_TERMS = [
    Term(Func.VALUE, "cpu"),
    Term(Func.AVG, "cpu", 60),
    Term(Func.AVG, "ram", 120),
    Term(Func.MAX, "rx", 120),
    Term(Func.MIN, "disk", 45),
    Term(Func.DEVIATION_AVG, "cpu", 60),
    Term(Func.DEVIATION_LAST, "ram"),
    Term(Func.AVG, "disk"),
]


def collector_batches(cycles: int, seed: int) -> Iterator[tuple[str, pl.DataFrame]]:
    """Cycles as the simulator sends them: a run of rows per field, each listing the running
    containers (sorted by name) or the hosts, the same Series objects while nothing changes.
    Containers start and stop (new names sort between known ones), a value is null now and
    then, and some cycles are followed by a late batch replacing samples already stored."""
    import random

    rng = random.Random(seed)
    running = {f"c{i:03d}" for i in range(0, 120, 2)}
    hosts = [f"h{i}" for i in range(6)]
    entity = field = None
    for cycle in range(cycles):
        at = 15.0 * cycle
        changed = entity is None or rng.random() < 0.3
        if changed:
            for _ in range(rng.randint(1, 4)):
                running ^= {f"c{rng.randrange(130):03d}"}  # one starts or stops
            names = sorted(running)
            entity = pl.Series("entity", [n for _ in CONTAINER_FIELDS for n in names]
                               + [h for _ in HOST_FIELDS for h in hosts], dtype=pl.String)
            field = pl.Series("field", [f for f in CONTAINER_FIELDS for _ in names]
                              + [f for f in HOST_FIELDS for _ in hosts], dtype=pl.String)
        values = [float(rng.randrange(-40, 400)) / 4 for _ in range(entity.len())]
        if rng.random() < 0.15:
            values[rng.randrange(len(values))] = None  # a missing sample
        if rng.random() < 0.05:
            values[rng.randrange(len(values))] = math.inf
        yield "cycle", pl.DataFrame({"ts": [at] * entity.len(), "entity": entity, "field": field,
                                     "value": pl.Series(values, dtype=pl.Float64)})
        if cycle and rng.random() < 0.1:  # a late batch: replacements of stored samples
            late = [(at - 15.0 * rng.randint(0, 3), rng.choice(sorted(running)), rng.choice(CONTAINER_FIELDS),
                     float(rng.randrange(100))) for _ in range(5)]
            yield "late", frame(late)


def shuffled(batch: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The same samples with their rows in another order: too many runs of a field for the
    by-runs look-up (names are then looked up row by row)."""
    return batch.sample(fraction=1.0, shuffle=True, seed=seed)


def assert_same_bits(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns
    assert got["entity"].to_list() == want["entity"].to_list()
    for column in got.columns[1:]:
        assert got[column].is_null().to_list() == want[column].is_null().to_list(), column
        assert got[column].fill_null(0.0).to_numpy().tobytes() == want[column].fill_null(0.0).to_numpy().tobytes()


@pytest.mark.parametrize("seed", [1, 2])
def test_collector_batches_give_the_same_terms_as_shuffled_ones_and_as_sql(seed: int) -> None:
    """The fast paths (a batch laid out as the last one, or looked up by runs of a field and
    diffed against the last one's; stored in an order found by runs; written to the tail by
    fixed offsets) against the general ones (rows in random order: looked up row by row) and
    against SQL: the same terms, bit for bit between the first two, and the same samples."""
    with History() as fast, History() as rows, History() as sql:
        sql.use_tail = False
        for n, (kind, batch) in enumerate(collector_batches(100, seed)):
            assert fast.append(batch) == rows.append(shuffled(batch, n)) == sql.append(batch)
            if kind == "late":
                continue
            at = batch["ts"][0]
            if n % 40 == 39:
                assert fast.prune(at - 300) == rows.prune(at - 300) == sql.prune(at - 300)
            got = fast.terms(at, 15, FAST_TERMS, retention=300)
            assert_same_bits(got, rows.terms(at, 15, FAST_TERMS, retention=300))
            nan = pl.col(pl.Float64).fill_nan(-1e300)  # inf - inf: NaN on either side
            assert_frame_close(got.with_columns(nan), sql.terms(at, 15, FAST_TERMS, retention=300).with_columns(nan))
        everything = sql.samples(-1e9, 1e9)
        assert fast.samples(-1e9, 1e9).equals(everything)
        assert rows.samples(-1e9, 1e9).equals(everything)


def test_an_average_in_one_pass_adds_as_numpy_adds_the_whole_block() -> None:
    """Averages sum the columns without a gap in one pass and the others again: the same bits
    as summing the block with its gaps taken as 0 (numpy adds the columns of a block of several
    row after row, a lone column pairwise), whatever the block's width and gaps."""
    import numpy as np

    from usm.collectors.history import _average

    rng = np.random.default_rng(7)
    for width in (1, 2, 3, 9, 130):
        for rows in (1, 7, 8, 9, 40, 130):
            block = rng.standard_normal((rows, width)) * 10.0 ** rng.integers(-3, 6, (rows, width))
            block[rng.random((rows, width)) < 0.1] = np.nan  # gaps
            block[:, rng.random(width) < 0.2] = np.nan  # entities without a sample
            sampled = ~np.isnan(block).all(axis=0) | (rng.random(width) < 0.3)
            there = ~np.isnan(block)
            count = there.sum(axis=0)
            want = np.where(there, block, 0.0).sum(axis=0) / np.maximum(count, 1)
            got, valid = _average(block, sampled)
            assert valid.tolist() == (count > 0).tolist()
            assert got[valid].tobytes() == want[count > 0].tobytes(), (width, rows)


def test_a_term_that_is_nan_stays_nan_and_a_missing_one_is_null(history: History) -> None:
    history.append(frame([(0.0, "c1", CPU, math.inf), (0.0, "c2", CPU, 1.0)]))
    history.append(frame([(15.0, "c1", CPU, -math.inf), (15.0, "c3", "ram", 1.0)]))
    result = history.terms(15, 15, [avg(30), value()])
    assert result["entity"].to_list() == ["c1", "c2", "c3"]
    assert math.isnan(result["avg(cpu_percent, 30s)"][0])  # inf - inf: NaN, not null
    assert result["avg(cpu_percent, 30s)"].is_null().to_list() == [False, False, True]
    assert result["cpu_percent"].to_list() == [-math.inf, None, None]


def test_the_tail_reuses_and_drops_the_columns_of_entities_gone(history: History) -> None:
    """Entities come and go in waves: the tail's columns follow those sampled lately, not all
    ever seen, and the terms stay those of SQL."""
    terms = [value(), avg(60), dev_last()]
    with History() as sql:
        sql.use_tail = False
        for cycle in range(120):
            wave = cycle // 20
            names = [f"w{wave}-{i}" for i in range(80)] + ["steady"]
            batch = frame([(15.0 * cycle, name, CPU, float(cycle % 9 + i)) for i, name in enumerate(names)])
            history.append(batch)
            sql.append(batch)
            assert_frame_close(history.terms(15.0 * cycle, 15, terms, retention=600),
                               sql.terms(15.0 * cycle, 15, terms, retention=600))
        assert len(history._entities) == 6 * 80 + 1
        assert history._tail.owner.size <= 3 * 80 + 1  # the waves sampled in the last 600 s


def test_a_prune_older_than_the_waiting_batches_leaves_them_waiting(history: History) -> None:
    history.DEFERRED_ROWS = 10**9
    history.append(frame([(0.0, "c1", CPU, 0.0)]))
    assert history.samples(-1, 1000).height == 1  # written: the database was read
    for cycle in range(1, 5):
        history.append(frame([(15.0 * cycle, "c1", CPU, float(cycle))]))
    assert history._deferred  # these batches wait
    assert history.prune(10) == 1
    assert history._deferred  # still waiting: newer than what was pruned
    assert history.samples(-1, 1000)["value"].to_list() == [1.0, 2.0, 3.0, 4.0]
    assert history.prune(30) == 2

"""The metric history: every sample the collectors gather, and the value terms rules read.

Samples are ``(ts, entity, field, value)`` rows kept in DuckDB, in memory or in a file.
Collectors append whole polars frames; once per cycle the engine asks :meth:`History.terms` for
every term its policy uses, for every entity, and gets one wide frame back (a column per
``Term.key``) from one set-oriented SQL statement (after a look-up of field ids), however many
terms and entities there are.
Time is a float number of seconds and always a parameter: the history never reads the clock.

Term semantics follow policy-spec sections 2 and 7, for field ``f`` of an entity at cycle time
``t`` ("in window W" means ``t - W < ts <= t``):

* ``VALUE``: the *current* sample, the newest with ``t - period < ts <= t``.
* ``AVG`` / ``MIN`` / ``MAX`` over window ``W``, the current sample included; with no window,
  over the retained samples, ``t - retention < ts <= t``.
* ``DEVIATION_AVG``: ``(v - a) / a * 100``, ``v`` the current value and ``a`` the mean of the
  samples in the window (or the retained ones) that are older than the current sample.
* ``DEVIATION_LAST``: ``(v - p) / p * 100``, ``p`` the newest retained sample older than the
  current one.

A term is missing (null) when it has no sample to work on, and a deviation also when its base
(``a`` or ``p``) is 0. Choices the spec leaves open:

* One entity and field have at most one sample per ``ts``: appending a sample for an
  ``(entity, field, ts)`` that is already stored replaces it (the last appended wins), so ties
  never arise in ``VALUE``, ``p`` or an average.
* Only retained samples count: a window (or ``period``) longer than ``retention`` sees the last
  ``retention`` seconds only.
* A null or NaN value is no sample: :meth:`History.append` drops it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import duckdb
import polars as pl

from usm.engine.terms import AGGREGATES, Func, Term

SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(),
    "entity": pl.String(),
    "field": pl.String(),
    "value": pl.Float64(),
}
"""Columns and types of a frame of samples (:meth:`History.append`, :meth:`History.samples`)."""

# Entity and field names are stored once and referred to by integer ids: grouping millions of
# samples by two integers is several times faster than by two strings.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    last_ts DOUBLE  -- the newest stored sample's ts, NULL when none: spares scans in terms()
);
CREATE TABLE IF NOT EXISTS fields (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    ts DOUBLE NOT NULL,
    entity_id INTEGER NOT NULL,
    field_id INTEGER NOT NULL,
    value DOUBLE NOT NULL
);
"""

_ADD_NAMES = """
INSERT INTO {table} (id, name)
SELECT (SELECT coalesce(max(id), -1) FROM {table}) + row_number() OVER (ORDER BY name), name
FROM (SELECT DISTINCT {column} AS name FROM incoming_samples)
WHERE name NOT IN (SELECT name FROM {table})
"""

_UPDATE_LAST_TS = """
UPDATE entities SET last_ts = greatest(coalesce(entities.last_ts, b.ts), b.ts)
FROM (SELECT entity, max(ts) AS ts FROM incoming_samples GROUP BY entity) b
WHERE entities.name = b.entity
"""

_IDENTIFIED = """
SELECT i.ts, e.id AS entity_id, f.id AS field_id, i.value
FROM incoming_samples i
JOIN entities e ON e.name = i.entity
JOIN fields f ON f.name = i.field
"""


class History:
    """Samples of every entity and field, stored in DuckDB, and the value terms computed from them.

    ``path=None`` keeps the history in memory; otherwise it lives in (and persists to) that DuckDB
    file. One instance may be shared by threads: its calls are serialised. Use it as a context
    manager or call :meth:`close`.
    """

    def __init__(self, path: str | None = None) -> None:
        self._con = duckdb.connect(":memory:" if path is None else path)
        self._lock = threading.Lock()
        self._con.execute(_SCHEMA)

    def append(self, samples: pl.DataFrame) -> int:
        """Store a batch of samples in one transaction; return how many rows were stored.

        ``samples`` has the columns ``ts`` (seconds), ``entity``, ``field`` and ``value``; other
        columns are ignored. Rows whose value is null or NaN are dropped: a missing sample is no
        sample. A sample replaces any stored one of the same entity, field and ``ts``, and within
        the batch the last row of an ``(entity, field, ts)`` wins.

        Raises ``ValueError`` when a column is missing or ``ts``, ``entity`` or ``field`` is null.
        """
        missing = [name for name in SAMPLE_SCHEMA if name not in samples.columns]
        if missing:
            raise ValueError(f"samples lack the column(s) {', '.join(missing)}")
        batch = (
            samples.select(pl.col(name).cast(dtype) for name, dtype in SAMPLE_SCHEMA.items())
            .filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
            .unique(subset=["entity", "field", "ts"], keep="last", maintain_order=True)
        )
        if batch.select(pl.any_horizontal(pl.col("ts", "entity", "field").is_null().any())).item():
            raise ValueError("every sample needs a ts, an entity and a field")
        if batch.is_empty():
            return 0
        bounds = {"low": batch["ts"].min(), "high": batch["ts"].max()}
        with self._lock:
            self._con.register("incoming_samples", batch.to_arrow())
            try:
                self._con.execute("BEGIN TRANSACTION")
                self._con.execute(_ADD_NAMES.format(table="entities", column="entity"))
                self._con.execute(_ADD_NAMES.format(table="fields", column="field"))
                self._con.execute(
                    f"""DELETE FROM samples USING ({_IDENTIFIED}) AS fresh
                    WHERE samples.ts BETWEEN $low AND $high AND samples.ts = fresh.ts
                    AND samples.entity_id = fresh.entity_id AND samples.field_id = fresh.field_id""",
                    bounds,
                )
                self._con.execute(
                    f"INSERT INTO samples {_IDENTIFIED} ORDER BY ts, field_id, entity_id"
                )
                self._con.execute(_UPDATE_LAST_TS)
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            finally:
                self._con.unregister("incoming_samples")
        return batch.height

    def terms(
        self, at: float, period: float, terms: Iterable[Term], retention: float = 3600.0
    ) -> pl.DataFrame:
        """The value of every term for every entity at cycle time ``at``.

        One row per entity with any sample (of any field) in ``(at - retention, at]``, sorted by
        entity name (code-point order): the column ``entity``, then one Float64 column per
        distinct term, named ``Term.key`` in the order the terms first appear, null where the
        term is missing. ``period`` is the monitoring cycle, which bounds the current sample.
        Terms with the same key (``VALUE`` ignores its window) give one column.
        """
        by_key: dict[str, Term] = {}
        for term in terms:
            by_key.setdefault(term.key, term)
        if "entity" in by_key:
            raise ValueError("no term may be named 'entity': that column names the entities")
        distinct = list(by_key.values())
        with self._lock:
            field_ids = dict(self._con.sql("SELECT name, id FROM fields").fetchall())
            query = _TermsQuery(float(at), float(period), float(retention), field_ids)
            sql = query.sql(distinct)
            frame = self._con.sql(sql).pl()
        return frame.rename({f"t{index}": term.key for index, term in enumerate(distinct)})

    def samples(
        self, start: float, end: float, entities: Iterable[str] | None = None
    ) -> pl.DataFrame:
        """The raw samples with ``start < ts <= end``, of the given entities (default: all).

        Ordered by ``ts``, ``entity``, ``field``; columns as in :data:`SAMPLE_SCHEMA`.
        """
        sql = """
        SELECT s.ts, e.name AS entity, f.name AS field, s.value
        FROM samples s JOIN entities e ON e.id = s.entity_id JOIN fields f ON f.id = s.field_id
        WHERE s.ts > $start AND s.ts <= $end
        """
        params: dict[str, Any] = {"start": float(start), "end": float(end)}
        if entities is not None:
            sql += " AND list_contains($entities, e.name)"
            params["entities"] = [str(name) for name in entities]
        sql += " ORDER BY s.ts, entity, field"
        with self._lock:
            frame = self._con.sql(sql, params=params).pl()
        return frame.cast(SAMPLE_SCHEMA)  # type: ignore[arg-type]

    def prune(self, before: float) -> int:
        """Delete the samples with ``ts <= before`` (retention housekeeping); return how many."""
        params = {"before": float(before)}
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                rows = self._con.execute("DELETE FROM samples WHERE ts <= $before", params)
                deleted = int(rows.fetchall()[0][0])
                # Entities whose newest sample is gone have no sample left.
                self._con.execute(
                    "UPDATE entities SET last_ts = NULL WHERE last_ts <= $before", params
                )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return deleted

    def close(self) -> None:
        """Close the database; a file-backed history keeps everything appended."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _TermsQuery:
    """Builds the one SELECT that computes a list of terms for every present entity.

    The statement is made of common table expressions, each grouped by ``(entity_id,
    field_id)`` and reading only the samples it needs, so that DuckDB's min/max index on ``ts``
    skips whatever lies outside a short window:

    * ``latest``: the current sample (``cur``, at ``cur_ts``) of each field that needs one;
    * ``earlier``: the samples of the current period older than the current one (deviations);
    * ``w0_3``, ``w1_3``...: one per distinct window start and field (``w<start>_<field id>``):
      the window's aggregates, and the parts of the deviation bases older than the current
      period;
    * ``per_series``: all of them stacked (``UNION ALL BY NAME``); ``per_entity`` pivots them
      to one row per entity with a ``FILTER (WHERE field_id = ...)`` per term.

    A deviation base ``a`` adds a sum over ``earlier`` to a sum over its window and divides by
    the sum of the counts, so no sample is ever subtracted (no cancellation). Only numbers
    (formatted by Python) and integer ids are written into the SQL, never a name.
    """

    def __init__(self, at: float, period: float, retention: float, field_ids: dict[str, int]):
        for name, number in (("at", at), ("period", period), ("retention", retention)):
            if not math.isfinite(number):
                raise ValueError(f"{name} must be finite, not {number}")
        self.at = at
        self.since = at - retention  # retained samples: since < ts <= at
        self.current_since = max(at - period, self.since)  # current sample: after this
        self.field_ids = field_ids
        self.latest: set[int] = set()  # field ids
        self.earlier: dict[int, set[str]] = {}  # field id -> aggregate columns
        self.windows: dict[float, dict[int, set[str]]] = {}  # start -> field id -> columns

    def sql(self, terms: list[Term]) -> str:
        """The statement; its columns are ``entity`` then ``t0``, ``t1``... in term order."""
        # Building the output columns first records which CTEs (and columns) they need.
        outputs = [f"CAST({self._column(term)} AS DOUBLE) AS t{i}" for i, term in enumerate(terms)]
        at, current_since = _number(self.at), _number(self.current_since)
        ctes: dict[str, str] = {}
        if self.latest:
            ctes["latest"] = f"""
            SELECT entity_id, field_id, max(ts) AS cur_ts, arg_max(value, ts) AS cur
            FROM samples WHERE ts > {current_since} AND ts <= {at}
            AND field_id IN ({_ids(self.latest)}) GROUP BY entity_id, field_id"""
        if self.earlier:
            ctes["earlier"] = f"""
            SELECT s.entity_id, s.field_id, {_columns(self.earlier)}
            FROM samples s JOIN latest l ON s.entity_id = l.entity_id AND s.field_id = l.field_id
            WHERE s.ts > {current_since} AND s.ts < l.cur_ts AND s.field_id IN ({_ids(self.earlier)})
            GROUP BY s.entity_id, s.field_id"""
        for slot, (start, per_field) in enumerate(self.windows.items()):
            for field, columns in sorted(per_field.items()):
                ctes[f"w{slot}_{field}"] = f"""
                SELECT entity_id, field_id, {", ".join(sorted(columns))}
                FROM samples WHERE ts > {_number(start)} AND ts <= {at} AND field_id = {field}
                GROUP BY entity_id, field_id"""
        stacked = " UNION ALL BY NAME ".join(f"SELECT * FROM {name}" for name in ctes)
        ctes["per_series"] = (
            stacked or "SELECT NULL::INTEGER AS entity_id, NULL::INTEGER AS field_id"
        )
        # Present: a sample in (since, at]. An entity whose newest sample is at or before ``at``
        # is present when that sample is after ``since``; only entities with samples after
        # ``at`` (a look into the past) need a scan of their samples.
        since = _number(self.since)
        ctes["present"] = f"""
            SELECT id AS entity_id FROM entities WHERE last_ts > {since} AND last_ts <= {at}
            UNION ALL
            SELECT DISTINCT entity_id FROM samples WHERE ts > {since} AND ts <= {at}
            AND entity_id IN (SELECT id FROM entities WHERE last_ts > {at})"""
        ctes["per_entity"] = f"""
            SELECT p.entity_id{"".join(", " + output for output in outputs)}
            FROM present p LEFT JOIN per_series s ON s.entity_id = p.entity_id
            GROUP BY p.entity_id"""
        return f"""
        WITH {", ".join(f"{name} AS ({body})" for name, body in ctes.items())}
        SELECT e.name AS entity, t.* EXCLUDE (entity_id)
        FROM per_entity t JOIN entities e ON e.id = t.entity_id
        ORDER BY e.name"""

    def _column(self, term: Term) -> str:
        """The SQL expression of ``term`` over the ``per_series`` rows of one entity."""
        field = self.field_ids.get(term.field)
        if field is None:  # never sampled: the term is missing everywhere
            return "NULL"
        pick = f"FILTER (WHERE field_id = {field})"
        if term.func is Func.VALUE:
            self.latest.add(field)
            return f"max(cur) {pick}"
        if term.func in AGGREGATES:
            slot, columns = self._window(term.window)
            name = f"{term.func.value}_{slot}"
            self._need(columns, field, f"{term.func.value}(value) AS {name}")
            return f"max({name}) {pick}"
        self.latest.add(field)
        current_since = _number(self.current_since)
        if term.func is Func.DEVIATION_AVG:
            slot, columns = self._window(term.window)
            start = _number(self._start(term.window))
            self._need(
                columns,
                field,
                f"sum(value) FILTER (WHERE ts <= {current_since}) AS base_sum_{slot}",
                f"count(*) FILTER (WHERE ts <= {current_since}) AS base_n_{slot}",
            )
            self._need(
                self.earlier,
                field,
                f"sum(s.value) FILTER (WHERE s.ts > {start}) AS base_sum_{slot}",
                f"count(*) FILTER (WHERE s.ts > {start}) AS base_n_{slot}",
            )
            base = f"(sum(base_sum_{slot}) {pick} / nullif(sum(base_n_{slot}) {pick}, 0))"
        else:  # Func.DEVIATION_LAST: the newest older sample, in this period or before
            self._need(
                self._window(None)[1],
                field,
                f"arg_max(value, ts) FILTER (WHERE ts <= {current_since}) AS prev_old",
            )
            self._need(self.earlier, field, "arg_max(s.value, s.ts) AS prev_recent")
            base = f"coalesce(max(prev_recent) {pick}, max(prev_old) {pick})"
        return f"(max(cur) {pick} - {base}) / nullif({base}, 0) * 100"

    def _start(self, window: float | None) -> float:
        """Where a window starts (exclusive), never before the retained samples."""
        return self.since if window is None else max(self.at - float(window), self.since)

    def _window(self, window: float | None) -> tuple[int, dict[int, set[str]]]:
        """The number and the needed columns of the CTE for ``window`` (added when new)."""
        columns = self.windows.setdefault(self._start(window), {})
        return list(self.windows).index(self._start(window)), columns

    @staticmethod
    def _need(columns: dict[int, set[str]], field: int, *needed: str) -> None:
        """Record that a CTE must compute the ``needed`` columns for ``field``."""
        columns.setdefault(field, set()).update(needed)


def _number(number: float) -> str:
    """A float as an exact SQL DOUBLE literal (``repr`` round-trips)."""
    return f"CAST({float(number)!r} AS DOUBLE)"


def _ids(ids: Iterable[int]) -> str:
    """A SQL list of integer ids."""
    return ", ".join(str(int(i)) for i in sorted(ids))


def _columns(columns: dict[int, set[str]]) -> str:
    """The aggregate columns any field of a CTE needs (a CTE computes them for all its fields)."""
    return ", ".join(sorted(set().union(*columns.values())))

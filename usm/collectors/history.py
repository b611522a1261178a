"""The metric history: every sample the collectors gather, and the value terms rules read.

Samples are ``(ts, entity, field, value)`` rows kept in DuckDB, in memory or in a file.
Collectors append whole polars frames; once per cycle the engine asks :meth:`History.terms` for
every term its policy uses, for every entity, and gets one wide frame back (a column per
``Term.key``), however many terms and entities there are.
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
* A null or NaN value is no sample: :meth:`History.append` drops it. A sample needs a finite
  ``ts``.

How it is fast. The history is called once per cycle with a batch of samples that all share the
cycle's ``ts``, newer than anything stored, and then asked for the same terms over the last few
minutes. DuckDB costs about 0.3 ms per statement, 1 to 4 ms per grouped query however few rows
it groups, and 0.1 µs per row it stores; so that path avoids DuckDB:

* Entity and field names, and each entity's newest sample time, are mirrored in Python, so a
  batch of known names laid out as in the previous batch (as a collector's usually are) needs
  no look-up, nor anything derived from its ids (storage order, Arrow arrays), and one laid out
  in runs of a field looks up each distinct list of entities once, only where it differs from
  the previous batch's. Which entities are present is known without a scan, and a batch newer
  than everything stored is known to replace nothing (no ``DELETE``). Such batches of an
  in-memory history are written together, by one ``INSERT`` once
  :attr:`History.DEFERRED_ROWS` are waiting, or before anything reads the database.
* The *tail*: the samples of the last few minutes (as far back as ``terms`` calls have needed)
  are also kept in memory, as one dense ``field x column`` matrix per distinct ``ts`` (a
  column per entity sampled lately), and the terms are computed from them with numpy, averages
  in one pass over the columns without a gap. The tail is exact: it holds every stored sample
  newer than ``_Tail.start`` (appends, replacements and prunes update it). A ``terms`` call
  that needs older samples extends it from the database; when that would be too much (see
  :attr:`History.TAIL_EXTENSION`, :attr:`History.TAIL_CELLS`) or too sparse (samples at
  scattered times), the call is answered by one set-oriented SQL statement instead. Both give
  the same values, up to the order in which floating-point sums are added.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from usm.engine.terms import AGGREGATES, Func, Term

SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(),
    "entity": pl.String(),
    "field": pl.String(),
    "value": pl.Float64(),
}
"""Columns and types of a frame of samples (:meth:`History.append`, :meth:`History.samples`)."""

# Entity and field names are stored once and referred to by integer ids: grouping millions of
# samples by two integers is several times faster than by two strings. (Files written by the
# first version have a ``last_ts`` column in ``entities``: it is no longer read or written.)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS fields (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    ts DOUBLE NOT NULL,
    entity_id INTEGER NOT NULL,
    field_id INTEGER NOT NULL,
    value DOUBLE NOT NULL
);
"""

_NAN = float("nan")


class History:
    """Samples of every entity and field, stored in DuckDB, and the value terms computed from them.

    ``path=None`` keeps the history in memory; otherwise it lives in (and persists to) that DuckDB
    file. One instance may be shared by threads: its calls are serialised. Use it as a context
    manager or call :meth:`close`.
    """

    TAIL_CELLS = 1 << 25  # 32 M float64 cells (256 MiB): an hour of 7 fields for 10,500 entities fits
    """The most values (float64) the in-memory tail may hold: 128 MiB, and its array leaves
    room for a quarter more. One hour at 15 s of 10,000 entities x 6 fields is 14.4 M."""

    TAIL_SPARSENESS = 4
    """The tail is not extended to slots that would hold more than this many cells per sample."""

    TAIL_EXTENSION = 1_000_000
    """A terms call that needs samples older than the tail's copies at most this many from the
    database (a few tenths of a second); when it needs more, it is answered in SQL, and the
    tail grows as later batches are appended until it reaches back far enough."""

    DEFERRED_ROWS = 1 << 20
    """An in-memory history writes batches newer than everything stored once this many rows
    are waiting (24 MiB of them), or before anything reads the database: DuckDB takes 120 ns
    of CPU time per row written 65,536 at a time, 100 ns 262,144 at a time, 53 ns a million
    at a time (the simulator's batches, one thread). A file-backed history writes every batch
    at once."""

    def __init__(self, path: str | None = None, read_only: bool = False) -> None:
        """An in-memory history, or the one stored at ``path`` (created if need be). ``read_only``
        opens a stored history for reading only (a backtest): appending then raises."""
        if read_only and path is None:
            raise ValueError("only a stored history (a path) can be opened read-only")
        if read_only and not Path(path).is_file():
            raise FileNotFoundError(f"no history at {path}")
        self._con = duckdb.connect(":memory:" if path is None else str(path), read_only=read_only)
        if path is None:
            # An in-memory history serves a simulated run, a cycle at a time: its statements
            # are small, and a second thread adds CPU time (0.75 ms for a batch of 8,700 rows
            # written 8 at a time, 1.2 ms on two threads) and no speed.
            self._con.execute("SET threads = 1")
        self._lock = threading.Lock()
        self._defer = path is None
        self._deferred: list[pa.Table] = []  # batches not yet written, in order
        self._deferred_rows = 0
        self._deferred_low = math.inf  # the oldest ts among them
        self._deferred_names: list[tuple[str, int, str]] = []  # (table, id, name) introduced by them
        if not read_only:
            self._con.execute(_SCHEMA)
        self._entities = _Names(self._con.execute("SELECT id, name FROM entities").fetchall())
        self._fields = _Names(self._con.execute("SELECT id, name FROM fields").fetchall())
        # The newest stored sample's ts per entity id (NaN: none), and the newest of all (or an
        # upper bound of it; -inf when empty): a batch newer than it replaces nothing.
        self._last_ts = np.full(len(self._entities), _NAN)
        for entity, ts in self._con.execute(
            "SELECT entity_id, max(ts) FROM samples GROUP BY entity_id"
        ).fetchall():
            self._last_ts[entity] = ts
        self._max_ts = _nanmax(self._last_ts)
        self._tail = _Tail(self._max_ts)  # nothing stored is newer than the newest sample
        # How far back from the newest sample the tail keeps samples: as far as terms calls
        # have needed, or (until the first) as far as the default retention; never this far.
        self._keep, self._asked, self._too_far = 3600.0, False, math.inf
        self._layout: _Layout | None = None  # the names of the last batch, and their ids
        self.use_tail = True
        """Compute terms from the in-memory tail when it can (``False``: always in SQL; for
        tests and benchmarks)."""

    # --- append ---------------------------------------------------------------------------------

    def append(self, samples: pl.DataFrame) -> int:
        """Store a batch of samples (all or none); return how many rows were stored.

        ``samples`` has the columns ``ts`` (seconds), ``entity``, ``field`` and ``value``; other
        columns are ignored. Rows whose value is null or NaN are dropped: a missing sample is no
        sample. A sample replaces any stored one of the same entity, field and ``ts``, and within
        the batch the last row of an ``(entity, field, ts)`` wins.

        Raises ``ValueError`` when a column is missing or ``ts``, ``entity`` or ``field`` is null
        (or ``ts`` is not finite) in a row with a value.
        """
        missing = [name for name in SAMPLE_SCHEMA if name not in samples.columns]
        if missing:
            raise ValueError(f"samples lack the column(s) {', '.join(missing)}")
        ts_column, entity, field, value_column = (
            _typed(samples.get_column(name), dtype) for name, dtype in SAMPLE_SCHEMA.items()
        )
        value = value_column.to_numpy()  # a null is NaN here
        valid = ~np.isnan(value)
        keep: np.ndarray | None = None if valid.all() else valid  # the rows with a value
        if keep is not None:
            value, ts_column = value[keep], ts_column.filter(keep)
            if entity.null_count() or field.null_count():
                # Names of rows without a value may be null: take the rows with a value only.
                entity, field, keep = entity.filter(valid), field.filter(valid), None
        if not value.size:
            return 0
        if entity.null_count() or field.null_count() or ts_column.null_count():
            raise ValueError("every sample needs a ts, an entity and a field")
        ts = ts_column.to_numpy()
        if not np.isfinite(ts).all():
            raise ValueError("every sample needs a finite ts")
        with self._lock:
            return self._store(ts, entity, field, value, keep)

    def _store(
        self,
        ts: np.ndarray,
        entity: pl.Series,
        field: pl.Series,
        value: np.ndarray,
        keep: np.ndarray | None,
    ) -> int:
        """Store validated samples (``keep`` selects the rows of ``entity`` and ``field``)."""
        layout = self._layout
        if layout is None or not layout.matches(entity, field):
            layout = self._layout = _Layout.of(entity, field, self._entities, self._fields, layout)
        try:
            new_entities, new_fields = layout.resolve(keep, self._entities, self._fields)
            low, high = float(ts.min()), float(ts.max())
            if keep is None and layout.unique and low == high:  # a collector's batch, as a rule
                rows = layout.rows()
            else:
                rows = _sorted_rows(ts, layout, keep, low == high)
            return self._store_rows(ts, value, rows, low, high, new_entities, new_fields)
        except BaseException:
            self._layout = None  # it may number names that were not stored
            raise

    def _store_rows(
        self,
        ts: np.ndarray,
        value: np.ndarray,
        rows: _Rows,
        low: float,
        high: float,
        new_entities: list[str],
        new_fields: list[str],
    ) -> int:
        """Store the samples ``rows`` selects, in its order; ``new_entities`` and
        ``new_fields`` are numbered on from the stored names."""
        ts, value = ts[rows.order], value[rows.order]
        entity_id = rows.entity_id
        fresh = low > self._max_ts  # newer than anything stored: nothing to replace
        _usm_incoming = pa.Table.from_arrays(
            [_doubles(ts), rows.entity_ids, rows.field_ids, _doubles(value)],
            names=["ts", "entity_id", "field_id", "value"],
        )
        if fresh:
            named = [(table, len(names) + i, name)
                     for table, names, new in (("entities", self._entities, new_entities),
                                               ("fields", self._fields, new_fields))
                     for i, name in enumerate(new)]
            if not self._deferred:
                self._deferred_low = low
            self._deferred.append(_usm_incoming)
            self._deferred_rows += len(ts)
            self._deferred_names.extend(named)
            if not self._defer or self._deferred_rows >= self.DEFERRED_ROWS:
                try:
                    self._write()
                except BaseException:  # nothing was written: this batch is not stored
                    self._deferred.pop()
                    self._deferred_rows -= len(ts)
                    del self._deferred_names[len(self._deferred_names) - len(named):]
                    raise
        else:
            con = self._db()
            con.execute("BEGIN TRANSACTION")
            try:
                for table, names, new in (
                    ("entities", self._entities, new_entities),
                    ("fields", self._fields, new_fields),
                ):
                    if new:
                        con.execute(
                            f"INSERT INTO {table} (id, name) SELECT unnest($ids), unnest($names)",
                            {"ids": list(range(len(names), len(names) + len(new))), "names": new},
                        )
                if not fresh:
                    con.execute(
                        """DELETE FROM samples USING _usm_incoming AS fresh
                        WHERE samples.ts BETWEEN $low AND $high AND samples.ts = fresh.ts
                        AND samples.entity_id = fresh.entity_id
                        AND samples.field_id = fresh.field_id""",
                        {"low": low, "high": high},
                    )
                con.execute("INSERT INTO samples SELECT * FROM _usm_incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        # The database has them: mirror them.
        if new_entities or new_fields:
            self._entities.extend(new_entities)
            self._fields.extend(new_fields)
            self._last_ts = np.concatenate(
                [self._last_ts, np.full(len(self._entities) - len(self._last_ts), _NAN)]
            )
        if low == high:
            entities = rows.entities()
            self._last_ts[entities] = np.fmax(self._last_ts[entities], high)
        else:
            np.fmax.at(self._last_ts, entity_id, ts)
        self._max_ts = max(self._max_ts, high)
        shape = (len(self._fields), len(self._entities))
        if not self._tail.put(ts, rows, value, *shape, self.TAIL_SPARSENESS):
            self._tail = _Tail(self._max_ts)  # too sparse: start afresh
        self._trim_tail()
        return len(ts)

    # --- terms ----------------------------------------------------------------------------------

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
        times = {"at": at, "period": period, "retention": retention}
        for name, number in times.items():
            if not math.isfinite(number):
                raise ValueError(f"{name} must be finite, not {number}")
        with self._lock:
            request = _Request(float(at), float(period), float(retention), distinct, self._fields)
            present, later = self._present(request)
            start = request.start
            if later.size:  # their samples after ``at`` do not tell whether they are present
                start = min(start, request.since)
            span = request.at - start
            if 0 < span < self._too_far:  # keep what the next call will need
                self._keep = max(self._keep, span) if self._asked else span
                self._asked = True
            columns: list[_Column | None] | None = None
            tail: _Tail | None = None  # where the columns are the tail's (not entity ids)
            if start >= request.at and not later.size:  # no term has a sampled field
                columns = [None] * len(distinct)
            elif self.use_tail and self._cover(start):
                tail = self._tail
                columns = tail.terms(request)
                if later.size:
                    present |= tail.seen(request.since, request.at, later, len(present))
            if columns is None:
                columns = _sql_terms(self._db(), request, len(self._entities))
                if later.size:
                    present |= self._seen(request.since, request.at, later)
            return self._frame(present, columns, [term.key for term in distinct], tail)

    def _present(self, request: _Request) -> tuple[np.ndarray, np.ndarray]:
        """Entities present by their newest sample (a mask), and those whose newest sample is
        after ``at`` (ids: present only if they have a sample in the retention too)."""
        last = self._last_ts
        present = (last > request.since) & (last <= request.at)  # NaN compares false
        return present, np.flatnonzero(last > request.at)

    def _seen(self, since: float, at: float, entities: np.ndarray) -> np.ndarray:
        """A mask of the ``entities`` with a stored sample in ``(since, at]``."""
        rows = self._db().execute(
            "SELECT DISTINCT entity_id FROM samples WHERE ts > $since AND ts <= $at",
            {"since": since, "at": at},
        ).fetchnumpy()["entity_id"]
        seen = np.zeros(len(self._entities), dtype=bool)
        seen[np.intersect1d(np.asarray(rows, dtype=np.int64), entities)] = True
        return seen

    def _frame(
        self, present: np.ndarray, columns: list[_Column | None], keys: list[str], tail: _Tail | None
    ) -> pl.DataFrame:
        """The result: the present entities by name, and a column per term (``columns`` are per
        entity id, or per column of ``tail``)."""
        order = self._entities.by_name()
        chosen = present[order]
        ids = order[chosen]
        at = ids if tail is None else tail.where(ids)  # -1: none
        # Every column is a row of one matrix, NaN where the term is missing, made one Series
        # (NaN -> null) and cut into columns: a Series per column costs ten times as much.
        # From numpy, not Arrow: polars imports pyarrow.compute (0.15 s) for an Arrow array.
        matrix = np.full((len(keys), ids.size), _NAN)
        there = np.zeros(matrix.shape, dtype=bool)
        for row, valid, column in zip(matrix, there, columns, strict=True):
            if column is not None and column[0].size:
                np.take(column[0], at, out=row)
                np.take(column[1], at, out=valid)
        if tail is not None:
            there[:, at < 0] = False
        nan = np.isnan(matrix)
        matrix[~there] = _NAN
        values = pl.Series("", matrix.reshape(-1), nan_to_null=True)
        kept = np.flatnonzero(nan & there)  # NaN values of terms that are there stay NaN
        if kept.size:
            values = values.scatter(kept, _NAN)
        size = ids.size
        return pl.DataFrame(
            [self._entities.sorted(chosen)]
            + [values.slice(index * size, size).alias(key) for index, key in enumerate(keys)]
        )

    def _db(self) -> duckdb.DuckDBPyConnection:
        """The database, with every sample appended so far written to it."""
        if self._deferred:
            self._write()
        return self._con

    def _write(self) -> None:
        """Write the deferred batches (samples newer than any the database had) and the names
        they introduced, in one transaction."""
        # DuckDB reads a Python variable named in a statement ("replacement scan") from the
        # frame that calls execute(): cheaper than registering a view (0.5 ms) each time.
        _usm_incoming = pa.concat_tables(self._deferred)
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            for table in ("entities", "fields"):
                named = [(id_, name) for t, id_, name in self._deferred_names if t == table]
                if named:
                    con.execute(f"INSERT INTO {table} (id, name) SELECT unnest($ids), unnest($names)",
                                {"ids": [id_ for id_, _ in named], "names": [name for _, name in named]})
            con.execute("INSERT INTO samples SELECT * FROM _usm_incoming")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._deferred.clear()
        self._deferred_names.clear()
        self._deferred_rows = 0

    # --- the tail -------------------------------------------------------------------------------

    def _cover(self, start: float) -> bool:
        """Whether the tail holds every stored sample after ``start``, extending it from the
        database when that is affordable."""
        tail = self._tail
        if start >= tail.start:
            return True
        bounds = {"start": start, "end": tail.start}
        per_ts = self._db().execute(
            """SELECT ts, count(*) AS n FROM samples WHERE ts > $start AND ts <= $end
            GROUP BY ts ORDER BY ts""",
            bounds,
        ).fetchnumpy()
        stamps = np.asarray(per_ts["ts"], dtype=np.float64)
        rows = int(np.asarray(per_ts["n"]).sum())
        slot = len(self._fields) * len(self._entities)
        cells = stamps.size * slot
        if (
            rows > self.TAIL_EXTENSION
            or tail.cells() + cells > self.TAIL_CELLS
            or cells > self.TAIL_SPARSENESS * rows + slot
        ):
            return False
        found = self._db().execute(
            "SELECT ts, entity_id, field_id, value FROM samples WHERE ts > $start AND ts <= $end",
            bounds,
        ).fetchnumpy()
        tail.prepend(
            start,
            stamps,
            np.asarray(found["ts"], dtype=np.float64),
            np.asarray(found["entity_id"]),
            np.asarray(found["field_id"]),
            np.asarray(found["value"], dtype=np.float64),
            len(self._fields),
            len(self._entities),
        )
        return True

    def _trim_tail(self) -> None:
        """Drop from the tail what no recent terms call would read again, or all of it when it
        has grown too big."""
        self._tail.drop_until(self._max_ts - self._keep)
        if self._tail.cells() > self.TAIL_CELLS:  # keep no tail this long any more
            self._tail = _Tail(self._max_ts)
            self._too_far, self._keep = min(self._too_far, self._keep), 0.0

    # --- samples, prune, close ------------------------------------------------------------------

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
            frame = self._db().sql(sql, params=params).pl()
        return frame.cast(SAMPLE_SCHEMA)  # type: ignore[arg-type]

    def prune(self, before: float) -> int:
        """Delete the samples with ``ts <= before`` (retention housekeeping); return how many."""
        before = float(before)
        with self._lock:
            # Batches waiting to be written are newer than any stored sample: they wait on
            # unless some of them are pruned too.
            waiting = self._deferred and self._deferred_low <= before
            con = self._db() if waiting else self._con
            rows = con.execute("DELETE FROM samples WHERE ts <= $before", {"before": before})
            deleted = int(rows.fetchall()[0][0])
            # Entities whose newest sample is gone have no sample left.
            self._last_ts[self._last_ts <= before] = _NAN
            self._max_ts = _nanmax(self._last_ts)
            self._tail.prune(before)
        return deleted

    def close(self) -> None:
        """Close the database; a file-backed history keeps everything appended."""
        with self._lock:
            if self._deferred and not self._defer:  # (in memory, they would vanish anyway)
                self._write()
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


_Column = tuple[np.ndarray, np.ndarray]
"""A term's values per entity id and whether each is there (a missing one is null)."""


class _Names:
    """The names of a table (``entities`` or ``fields``) by id, and the ids by name."""

    def __init__(self, rows: list[tuple[int, str]]) -> None:
        self.names: list[str] = [""] * (max((id_ for id_, _ in rows), default=-1) + 1)
        for id_, name in rows:  # ids are dense; a hole would be "", which no sample uses
            self.names[id_] = name
        self.ids = {name: id_ for id_, name in rows}
        self._series: pl.Series | None = None
        self._sorted = sorted(self.ids)
        self._by_name = np.array([self.ids[name] for name in self._sorted], dtype=np.int64)
        self._sorted_series: pl.Series | None = None
        self._chosen: tuple[np.ndarray, pl.Series] | None = None
        self._mapping: tuple[pl.Series, pl.Series] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def extend(self, names: list[str]) -> None:
        """Add names, numbered on from the last id."""
        added = sorted(names)
        # Where each goes among the names sorted so far (before any of them is inserted).
        positions = [bisect.bisect_left(self._sorted, name) for name in added]
        for name in names:
            self.ids[name] = len(self.names)
            self.names.append(name)
        for name in added:
            bisect.insort(self._sorted, name)
        self._by_name = np.insert(self._by_name, positions, [self.ids[name] for name in added])
        if self._sorted_series is not None and added:  # the new names spliced in
            old, pieces, done = self._sorted_series, [], 0
            for position, name in zip(positions, added, strict=True):
                pieces += [old.slice(done, position - done), pl.Series("entity", [name], dtype=pl.String)]
                done = position
            spliced = pl.concat([*pieces, old.slice(done)], rechunk=False)
            self._sorted_series = spliced.rechunk() if spliced.n_chunks() > 64 else spliced
        self._series = self._chosen = self._mapping = None

    def series(self) -> pl.Series:
        """The names, indexed by id."""
        if self._series is None:
            self._series = pl.Series("entity", self.names, dtype=pl.String)
        return self._series

    def sorted(self, chosen: np.ndarray) -> pl.Series:
        """The names :meth:`by_name` lists where ``chosen`` (a mask in that order) is true (the
        same as last time, as a rule: the same entities). Filtering a column of strings is
        forty times cheaper than gathering from it."""
        if self._chosen is None or not np.array_equal(self._chosen[0], chosen):
            if self._sorted_series is None:
                self._sorted_series = pl.Series("entity", self._sorted, dtype=pl.String)
            self._chosen = (chosen, self._sorted_series.filter(pl.Series(chosen)))
        return self._chosen[1]

    def mapping(self) -> tuple[pl.Series, pl.Series]:
        """The names and their ids, as two aligned series (for ``replace_strict``)."""
        if self._mapping is None:
            self._mapping = (self.series(), pl.Series(np.arange(len(self.names), dtype=np.int32)))
        return self._mapping

    def by_name(self) -> np.ndarray:
        """The ids, sorted by name (code-point order, as Python compares strings)."""
        return self._by_name


@dataclass
class _Layout:
    """The entity and field columns of a batch, and their ids per row (-1: a name not yet known).

    Collectors send the same entities and fields in the same order cycle after cycle: comparing
    two columns is several times cheaper than looking their names up again, and so is
    everything derived from the ids (:meth:`rows`). A collector's batch is also, as a rule, a
    run of rows per field, each listing the same entities (or the previous batch's with a few
    added or gone): ``starts`` (the first row of every run, then the row count; ``None`` when
    there are more than :data:`_RUNS`) lets :meth:`of` look names up once per distinct list,
    and only those not in the previous batch's list at the same place.
    """

    entity: pl.Series
    field: pl.Series
    entity_id: np.ndarray  # int32
    field_id: np.ndarray  # int32
    starts: np.ndarray | None
    unique: bool = False  # no (entity, field) pair repeats
    _rows: _Rows | None = None

    @staticmethod
    def of(entity: pl.Series, field: pl.Series, entities: _Names, fields: _Names,
           last: _Layout | None = None) -> _Layout:
        """The layout of a batch; ``last``, the previous batch's, saves looking up the names
        both have (as a rule all the fields, and all but a few entities)."""
        if last is not None and field.len() == last.field.len() and field.equals(last.field):
            field_id, starts = last.field_id, last.starts
        else:
            starts = _runs(field)
            if starts is None:
                field_id = _lookup(field, fields)
            else:
                run_names = field.gather(starts[:-1]).to_list()
                field_id = np.repeat(_known(run_names, fields), np.diff(starts))
        if starts is None:
            entity_id = _lookup(entity, entities)
        else:
            entity_id = _entity_ids(entity, field_id, starts, entities, last)
        layout = _Layout(entity, field, entity_id, field_id, starts)
        layout.unique = _unique_pairs(entity_id, field_id)
        return layout

    def matches(self, entity: pl.Series, field: pl.Series) -> bool:
        return (
            entity.len() == self.entity.len()
            and entity.equals(self.entity)
            and field.equals(self.field)
        )

    def resolve(
        self, keep: np.ndarray | None, entities: _Names, fields: _Names
    ) -> tuple[list[str], list[str]]:
        """Give every kept row's names an id: the names not yet stored are numbered on from the
        stored ones, in order of appearance, and returned (their ids are final once the batch
        is stored; until then no other call can run). Rows that are not kept may keep -1."""
        if self.entity_id.min(initial=0) >= 0 and self.field_id.min(initial=0) >= 0:
            return [], []
        new_entities = _fill_ids(self.entity, self.entity_id, keep, entities)
        new_fields = _fill_ids(self.field, self.field_id, keep, fields)
        self.unique = _unique_pairs(self.entity_id, self.field_id)
        self._rows = None
        return new_entities, new_fields

    def rows(self) -> _Rows:
        """All the rows in storage order (they must all have ids, and be unique)."""
        if self._rows is None:
            self._rows = _Rows.of(self._order(), self.entity_id, self.field_id)
        return self._rows

    def _order(self) -> np.ndarray:
        """The rows sorted by field id, then entity id (the pairs are unique): by runs, the
        rows of each field (its runs together) sorted by entity id, each distinct list of
        entities once (``np.lexsort`` of all the rows costs ten times as much)."""
        starts = self.starts
        if starts is None:
            return np.lexsort((self.entity_id, self.field_id))
        runs: dict[int, list[np.ndarray]] = {}  # field id -> the rows of its runs
        for begin, end in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
            runs.setdefault(int(self.field_id[begin]), []).append(np.arange(begin, end))
        sorts: dict[bytes, np.ndarray] = {}  # entity ids -> the order that sorts them
        parts = []
        for field in sorted(runs):
            rows = runs[field][0] if len(runs[field]) == 1 else np.concatenate(runs[field])
            ids = self.entity_id[rows]
            key = ids.tobytes()
            if key not in sorts:
                sorts[key] = np.argsort(ids, kind="stable")
            parts.append(rows[sorts[key]])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class _Rows:
    """The rows of a batch in storage order, and what storing them needs: their ids (also as
    Arrow arrays, for DuckDB) and the distinct entities."""

    order: np.ndarray
    entity_id: np.ndarray  # int32, in storage order
    field_id: np.ndarray  # int32
    entity_ids: pa.Array
    field_ids: pa.Array
    _entities: np.ndarray | None = None

    @staticmethod
    def of(order: np.ndarray, entity_id: np.ndarray, field_id: np.ndarray) -> _Rows:
        """The rows ``order`` lists of a batch whose ids are ``entity_id`` and ``field_id``."""
        entity_id = np.ascontiguousarray(entity_id[order], dtype=np.int32)
        field_id = np.ascontiguousarray(field_id[order], dtype=np.int32)
        return _Rows(order, entity_id, field_id, _integers(entity_id), _integers(field_id))

    def entities(self) -> np.ndarray:
        """The distinct entity ids, ascending."""
        if self._entities is None:
            self._entities = _distinct(self.entity_id, int(self.entity_id.max(initial=-1)) + 1)
        return self._entities


_RUNS = 64
"""A batch whose field column changes more often is looked up row by row, not by runs."""


def _sorted_rows(ts: np.ndarray, layout: _Layout, keep: np.ndarray | None, one: bool) -> _Rows:
    """The kept rows of a batch in storage order (by ts, then field and entity id), the last of
    an ``(entity, field, ts)`` only: it wins."""
    entity_id = layout.entity_id if keep is None else layout.entity_id[keep]
    field_id = layout.field_id if keep is None else layout.field_id[keep]
    if one and layout.unique:
        order = np.lexsort((entity_id, field_id))
    else:
        order = (
            pl.DataFrame({"t": ts, "e": entity_id, "f": field_id})
            .with_row_index("i")
            .unique(subset=["t", "e", "f"], keep="last", maintain_order=True)
            .sort("t", "f", "e")["i"]
            .to_numpy()
        )
    return _Rows.of(order, entity_id, field_id)


def _runs(column: pl.Series) -> np.ndarray | None:
    """The rows where a run of equal values starts, then the row count (``None``: more than
    :data:`_RUNS` runs)."""
    size = column.len()
    if size < 2:
        return np.array([0, size][: size + 1], dtype=np.int64)
    changes = np.flatnonzero((column.slice(1) != column.slice(0, size - 1)).to_numpy()) + 1
    if changes.size >= _RUNS:
        return None
    return np.concatenate([[0], changes, [size]]).astype(np.int64)


def _entity_ids(entity: pl.Series, field_id: np.ndarray, starts: np.ndarray, entities: _Names,
                last: _Layout | None) -> np.ndarray:
    """The entity id of every row (-1 where unknown), one run of a field at a time: a run
    listing the same entities as an earlier run copies its ids, and one like the previous
    batch's run of its field looks up only the names where the two differ."""
    ids = np.full(entity.len(), -1, dtype=np.int32)
    done: list[tuple[int, int]] = []  # runs looked up
    previous: dict[int, tuple[int, int]] = {}  # field id -> the previous batch's run
    if last is not None and last.starts is not None:
        for begin, end in zip(last.starts[:-1].tolist(), last.starts[1:].tolist(), strict=True):
            previous.setdefault(int(last.field_id[begin]), (begin, end))
    for begin, end in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
        run = entity.slice(begin, end - begin)
        for other, other_end in done:
            if other_end - other == end - begin and run.equals(entity.slice(other, end - begin)):
                ids[begin:end] = ids[other:other_end]
                break
        else:
            old = previous.get(int(field_id[begin])) if last is not None else None
            if old is None:
                ids[begin:end] = _known(run.to_list(), entities)
            else:
                assert last is not None
                ids[begin:end] = _diff_ids(run, last.entity.slice(old[0], old[1] - old[0]),
                                           last.entity_id[old[0]:old[1]], entities)
            done.append((begin, end))
    return ids


def _diff_ids(run: pl.Series, old: pl.Series, old_ids: np.ndarray, names: _Names) -> np.ndarray:
    """The ids of ``run``'s names, given those of ``old``: the rows before the first and after
    the last where the two differ are copied, the others looked up."""
    size, old_size = run.len(), old.len()
    common = min(size, old_size)
    same = (run.slice(0, common) == old.slice(0, common)).to_numpy()
    head = int(np.argmin(same)) if not same.all() else common
    tail_size = common - head
    same = (run.slice(size - tail_size, tail_size) == old.slice(old_size - tail_size, tail_size)).to_numpy()
    tail = tail_size - 1 - int(np.flatnonzero(~same)[-1]) if not same.all() else tail_size
    middle = _known(run.slice(head, size - head - tail).to_list(), names)
    return np.concatenate([old_ids[:head], middle, old_ids[old_size - tail:]])


def _known(names: list[str], known: _Names) -> np.ndarray:
    """The id of each name (-1 where unknown)."""
    get = known.ids.get
    return np.array([get(name, -1) for name in names], dtype=np.int32)


def _fill_ids(column: pl.Series, ids: np.ndarray, keep: np.ndarray | None, names: _Names) -> list[str]:
    """Fill in the ids of ``column`` that are -1 in the kept rows (in place): the known names',
    and for names not yet stored the ids after the stored ones, in order of appearance, which
    are returned."""
    unknown = ids < 0
    if keep is not None:
        unknown &= keep
    if not unknown.any():
        return []
    rows = np.flatnonzero(unknown)
    new: dict[str, int] = {}
    found = []
    for name in column.filter(pl.Series(unknown)).to_list():  # (cheaper than gather)
        id_ = names.ids.get(name)
        if id_ is None:
            id_ = new.setdefault(name, len(names) + len(new))
        found.append(id_)
    ids[rows] = found
    return list(new)


def _typed(column: pl.Series, dtype: pl.DataType) -> pl.Series:
    """``column`` cast to ``dtype`` (unless it has it)."""
    return column if column.dtype == dtype else column.cast(dtype)


def _unique_pairs(entity_id: np.ndarray, field_id: np.ndarray) -> bool:
    """Whether no (entity, field) pair repeats (``False`` when an id is unknown)."""
    if not entity_id.size:
        return True
    if entity_id.min() < 0 or field_id.min() < 0:
        return False
    pairs = entity_id.astype(np.int64) * (int(field_id.max()) + 1) + field_id
    if pairs.max() < 16 * pairs.size + 65_536:  # counting is cheaper than sorting while it is small
        return bool(np.bincount(pairs).max() <= 1)
    return bool(np.unique(pairs).size == pairs.size)


def _lookup(column: pl.Series, names: _Names) -> np.ndarray:
    """The id of every name of ``column`` (-1 where unknown), looked up row by row."""
    keys, ids = names.mapping()
    found = column.replace_strict(keys, ids, default=-1, return_dtype=pl.Int32).to_numpy()
    return np.array(found, dtype=np.int32)  # writable (polars' may be read-only): ids are filled in

def _doubles(values: np.ndarray) -> pa.Array:
    """A float64 Arrow array of ``values``.

    Made from the buffer: ``pyarrow.array()`` imports pandas (2 s) the first time it is given a
    numpy array or a list.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(values)])


def _integers(values: np.ndarray) -> pa.Array:
    """An int32 Arrow array of ``values`` (see :func:`_doubles`)."""
    values = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(values)])


def _distinct(ids: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of ``ids`` (all below ``size``), ascending: for ids up to a few times
    as many as the values, cheaper than sorting them (``np.unique``)."""
    seen = np.zeros(size, dtype=bool)
    seen[ids] = True
    return np.flatnonzero(seen)


def _nanmax(values: np.ndarray) -> float:
    """The largest non-NaN value, -inf when there is none."""
    found = values[~np.isnan(values)]
    return float(found.max()) if found.size else -math.inf


# --- the request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One distinct term: its function, field id (``None``: never sampled) and window start."""

    func: Func
    field: int | None
    start: float  # the window's exclusive start (``since`` when the term has no window)


class _Request:
    """The times of a ``terms`` call and its distinct terms, resolved to field ids."""

    def __init__(
        self, at: float, period: float, retention: float, terms: list[Term], fields: _Names
    ) -> None:
        self.at = at
        self.since = at - retention  # retained samples: since < ts <= at
        self.current_since = max(at - period, self.since)  # current sample: after this
        self.terms = terms
        self.items = [
            _Item(term.func, fields.ids.get(term.field), self._start(term)) for term in terms
        ]
        # The oldest sample any term may read is after this.
        self.start = min(
            (self.lowest(item) for item in self.items if item.field is not None), default=at
        )

    def _start(self, term: Term) -> float:
        """Where a window starts (exclusive), never before the retained samples."""
        if term.func in (Func.VALUE, Func.DEVIATION_LAST) or term.window is None:
            return self.since
        return max(self.at - float(term.window), self.since)

    def lowest(self, item: _Item) -> float:
        """After which ts ``item`` reads samples."""
        if item.func is Func.VALUE:
            return self.current_since
        if item.func is Func.DEVIATION_AVG:
            return min(item.start, self.current_since)
        return item.start


# --- the tail ---------------------------------------------------------------------------------


class _Tail:
    """The newest samples in memory: every stored sample with ``ts > start``.

    One slot per distinct ``ts``, in ``ts`` order, each a ``field x column`` matrix of values,
    NaN where there is no sample (a stored value is never NaN). A column holds the samples of
    one entity (``column[entity id]``, ``owner[column]``) and passes to another once none of
    them is left in the slots: the columns are as many as the entities sampled lately, not as
    all those ever seen (containers come and go: after a day, three times as many). The slots
    live in one ``field x slot x column`` array, so that one field's samples over a window are
    one contiguous block (a view, not a copy); the live slots are ``lo`` to ``hi`` of its
    capacity, which leaves room for half as many again before the live ones are moved back to
    the front (or into a larger array when columns or fields are added).
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.values = np.full((0, 0, 0), _NAN)
        self.stamps = np.zeros(0)
        self.lo = self.hi = 0
        self.column = np.zeros(0, dtype=np.int64)  # per entity id: its column (-1: none)
        self.owner = np.zeros(0, dtype=np.int64)  # per column in use: its entity id
        self.newest = np.zeros(0)  # per column in use: the newest ts put in it

    @property
    def ts(self) -> np.ndarray:
        """The live slots' times, ascending."""
        return self.stamps[self.lo : self.hi]

    def cells(self) -> int:
        """How many values the live slots take."""
        fields, _, columns = self.values.shape
        return (self.hi - self.lo) * fields * columns

    def put(
        self,
        ts: np.ndarray,
        rows: _Rows,
        value: np.ndarray,
        fields: int,
        entities: int,
        sparseness: float,
    ) -> bool:
        """Mirror stored samples (sorted by ts, at most one per entity, field and ts; ``rows``
        has their ids, of ``fields`` and ``entities``), each replacing the one of its entity,
        field and ts; ``False`` (and nothing done) when they would need more than
        ``sparseness`` cells per sample."""
        entity, field = rows.entity_id, rows.field_id
        if ts.size and ts[0] <= self.start:  # only those after the start belong here
            after = ts > self.start
            ts, entity, field, value = ts[after], entity[after], field[after], value[after]
        if not ts.size:
            return True
        one = ts[0] == ts[-1]  # one ts, as a collector's batch has
        stamps = ts[:1] if one else ts[np.concatenate([[True], ts[1:] != ts[:-1]])]
        live = self.ts
        position = np.searchsorted(live, stamps)
        old = position < live.size
        old[old] = live[position[old]] == stamps[old]
        added = int(stamps.size - np.count_nonzero(old))
        column = self._columns(entity, entities, fields)
        slot = self.values.shape[0] * self.values.shape[2]
        if added * slot > sparseness * ts.size + slot:
            return False
        if added and (not live.size or stamps[0] > live[-1]):  # all after the newest
            self._reserve(added, fields, 0)
            self.values[:, self.hi : self.hi + added, :] = _NAN
            self.stamps[self.hi : self.hi + added] = stamps
            self.hi += added
        elif added:
            self._merge(np.union1d(live, stamps))
        index = self.lo + np.searchsorted(self.ts, stamps[0] if one else ts)
        if one:  # a C-ordered array: the cells of one slot are at fixed offsets
            _, slots, columns = self.values.shape
            cells = field.astype(np.int64) * (slots * columns) + (int(index) * columns + column)
            self.values.reshape(-1)[cells] = value
        else:
            self.values[field, index, column] = value
        if one:
            self.newest[column] = np.fmax(self.newest[column], ts[0])
        else:
            np.fmax.at(self.newest, column, ts)
        return True

    def _columns(self, entity: np.ndarray, entities: int, fields: int) -> np.ndarray:
        """The column of each of ``entity`` (ids of ``entities``; samples of ``fields`` are to be
        put there), given to those without one: a column none of whose samples is left in the
        slots (not one of these entities'), or a new one."""
        if self.column.size < entities:
            self.column = np.concatenate([self.column, np.full(entities - self.column.size, -1)])
        first = self.stamps[self.lo] if self.hi > self.lo else math.inf
        left = ~(self.newest >= first)  # none of their samples is left in the slots
        if self.owner.size >= 64 and 2 * np.count_nonzero(left) > self.owner.size:
            self._compact(~left)
            left = np.zeros(self.owner.size, dtype=bool)
        column = self.column[entity]
        if column.min(initial=0) >= 0:
            self._reserve(0, fields, 0)
            return column
        needing = _distinct(entity[column < 0], entities)
        left[column[column >= 0]] = False  # (nor taken by one of these)
        free = np.flatnonzero(left)
        reused = free[: needing.size]
        self.column[self.owner[reused]] = -1
        fresh = np.arange(self.owner.size, self.owner.size + needing.size - reused.size)
        self.owner = np.concatenate([self.owner, needing[reused.size :]])
        self.owner[reused] = needing[: reused.size]
        self.newest = np.concatenate([self.newest, np.full(fresh.size, -math.inf)])
        self.newest[reused] = -math.inf
        self.column[needing] = np.concatenate([reused, fresh])
        self._reserve(0, fields, self.owner.size)
        return self.column[entity]

    def _compact(self, kept: np.ndarray) -> None:
        """Keep the ``kept`` columns only (a mask; the others have no sample left in the slots),
        when most are not: after many entities have come and gone (a simulated run's first
        minutes), the others would be copied and scanned for nothing."""
        keep = np.flatnonzero(kept)
        self.column[self.owner] = -1
        self.owner, self.newest = self.owner[keep], self.newest[keep]
        self.column[self.owner] = np.arange(keep.size)
        live = self.hi - self.lo
        values = np.full(
            (self.values.shape[0], live + max(8, live // 2), keep.size + keep.size // 4 + 16), _NAN
        )
        values[:, :live, : keep.size] = self.values[:, self.lo : self.hi][:, :, keep]
        stamps = np.zeros(values.shape[1])
        stamps[:live] = self.ts
        self.values, self.stamps, self.lo, self.hi = values, stamps, 0, live

    def prepend(
        self,
        start: float,
        stamps: np.ndarray,
        ts: np.ndarray,
        entity: np.ndarray,
        field: np.ndarray,
        value: np.ndarray,
        fields: int,
        entities: int,
    ) -> None:
        """Add the stored samples with ``start < ts <= self.start`` (all of them, at the
        distinct times ``stamps``)."""
        column = self._columns(entity, entities, fields)
        self._merge(np.concatenate([stamps, self.ts]))
        self.values[field, self.lo + np.searchsorted(self.ts, ts), column] = value
        if column.size:
            np.fmax.at(self.newest, column, ts)
        self.start = start

    def _reserve(self, slots: int, fields: int, columns: int) -> None:
        """Make room for ``slots`` more slots after the live ones, and for ``fields x
        columns`` values per slot."""
        have_fields, capacity, have_columns = self.values.shape
        live = self.hi - self.lo
        if fields <= have_fields and columns <= have_columns:
            if self.hi + slots <= capacity:
                return
            if capacity - live - slots >= max(1, live // 4):  # not so full it is moved again soon
                self.values[:, :live] = self.values[:, self.lo : self.hi]  # to the front
                self.stamps[:live] = self.stamps[self.lo : self.hi]
                self.lo, self.hi = 0, live
                return
        if columns > have_columns:  # room for a quarter more, as entities come and go
            columns = max(columns, have_columns + have_columns // 4 + 16)
        fields = max(fields, have_fields)
        columns = max(columns, have_columns)
        size = live + slots
        values = np.full((fields, size + max(8, size // 2), columns), _NAN)
        values[:have_fields, :live, :have_columns] = self.values[:, self.lo : self.hi]
        stamps = np.zeros(values.shape[1])
        stamps[:live] = self.ts
        self.values, self.stamps, self.lo, self.hi = values, stamps, 0, live

    def _merge(self, stamps: np.ndarray) -> None:
        """Re-lay the slots out as ``stamps`` (a sorted superset of the live ones)."""
        live = self.ts
        values = np.full(
            (self.values.shape[0], stamps.size + max(8, stamps.size // 2), self.values.shape[2]),
            _NAN,
        )
        values[:, np.searchsorted(stamps, live)] = self.values[:, self.lo : self.hi]
        self.values = values
        self.stamps = np.zeros(values.shape[1])
        self.stamps[: stamps.size] = stamps
        self.lo, self.hi = 0, stamps.size

    def drop_until(self, end: float) -> None:
        """Forget the samples with ``ts <= end``."""
        self.lo += int(np.searchsorted(self.ts, end, side="right"))
        self.start = max(self.start, end)

    def prune(self, before: float) -> None:
        """The samples with ``ts <= before`` were deleted from the database."""
        self.lo += int(np.searchsorted(self.ts, before, side="right"))
        if self.start <= before:  # nothing stored is older: the tail holds every sample
            self.start = -math.inf

    def _rows(self, start: float, at: float) -> slice:
        """The slots in ``(start, at]``."""
        live = self.ts
        lo, hi = np.searchsorted(live, [start, at], side="right")
        return slice(self.lo + int(lo), self.lo + int(hi))

    def block(self, field: int, start: float, at: float) -> tuple[np.ndarray, np.ndarray]:
        """The slot times in ``(start, at]`` and the values of ``field`` then, one row per slot
        and one per column in use."""
        rows = self._rows(start, at)
        stamps = self.stamps[rows]
        if field >= self.values.shape[0]:
            return stamps, np.full((stamps.size, self.owner.size), _NAN)
        return stamps, self.values[field, rows, : self.owner.size]

    def seen(self, since: float, at: float, chosen: np.ndarray, entities: int) -> np.ndarray:
        """A mask (over ``entities`` ids) of the ``chosen`` ids with a sample in ``(since, at]``."""
        block = self.values[:, self._rows(since, at), : self.owner.size]
        has = ~np.isnan(block).all(axis=(0, 1))
        mask = np.zeros(entities, dtype=bool)
        chosen = chosen[chosen < self.column.size]
        column = self.column[chosen]
        mine = column >= 0
        mask[chosen[mine]] = has[column[mine]]
        return mask

    def where(self, entities: np.ndarray) -> np.ndarray:
        """The column of each of ``entities`` (ids; -1: none)."""
        column = np.full(entities.size, -1)
        known = entities < self.column.size
        column[known] = self.column[entities[known]]
        return column

    def terms(self, request: _Request) -> list[_Column | None]:
        """Every term of ``request`` per column in use, computed from the slots (which must
        cover it)."""
        by_field: dict[int, list[int]] = {}
        for index, item in enumerate(request.items):
            if item.field is not None:
                by_field.setdefault(item.field, []).append(index)
        columns: list[_Column | None] = [None] * len(request.items)
        with np.errstate(all="ignore"):
            for field, indexes in by_field.items():
                start = min(request.lowest(request.items[index]) for index in indexes)
                stamps, values = self.block(field, start, request.at)
                for index in indexes:
                    columns[index] = _term(request, request.items[index], stamps, values, self.newest)
        return columns


def _term(
    request: _Request, item: _Item, stamps: np.ndarray, values: np.ndarray, newest: np.ndarray
) -> _Column:
    """One term from a block: ``values[i, e]`` is entity ``e``'s sample at ``stamps[i]`` (or
    NaN), for every slot after the oldest time the term needs; ``newest[e]`` is the newest
    sample's ts of entity ``e`` (NaN: none)."""
    entities = values.shape[1]
    if item.func in AGGREGATES:
        first = int(np.searchsorted(stamps, item.start, side="right"))
        rows = values[first:]
        if not rows.shape[0]:
            return np.full(entities, _NAN), np.zeros(entities, dtype=bool)
        if item.func is Func.AVG:
            return _average(rows, newest > item.start)
        reduce = np.fmin if item.func is Func.MIN else np.fmax  # they skip NaN
        extreme = reduce.reduce(rows, axis=0)
        return extreme, ~np.isnan(extreme)  # NaN only where there is no sample
    # The current sample: the newest in (current_since, at].
    first = int(np.searchsorted(stamps, request.current_since, side="right"))
    recent = ~np.isnan(values[first:])
    has_current = recent.any(axis=0)
    if not recent.shape[0]:
        return np.full(entities, _NAN), has_current
    current_row = first + recent.shape[0] - 1 - np.argmax(recent[::-1], axis=0)
    current = values[current_row, np.arange(entities)]
    if item.func is Func.VALUE:
        return current, has_current
    # The base, from the samples older than the current one (rows before its row).
    first = int(np.searchsorted(stamps, item.start, side="right"))
    rows = values[first:]
    older = ~np.isnan(rows) & (np.arange(first, len(stamps))[:, None] < current_row[None, :])
    if item.func is Func.DEVIATION_AVG:
        count = older.sum(axis=0)
        base = np.where(older, rows, 0.0).sum(axis=0) / np.maximum(count, 1)
        has_base = count > 0
    else:  # Func.DEVIATION_LAST: the newest older sample
        has_base = older.any(axis=0)
        if not rows.shape[0]:
            return np.full(entities, _NAN), has_base
        base = rows[rows.shape[0] - 1 - np.argmax(older[::-1], axis=0), np.arange(entities)]
    valid = has_current & has_base & (base != 0)
    return (current - base) / base * 100, valid


def _average(rows: np.ndarray, sampled: np.ndarray) -> _Column:
    """The mean of each column of ``rows`` over its samples (NaN: none); ``sampled`` marks the
    columns that may have one.

    The same numbers, bit for bit, as summing the rows with NaN taken as 0, in one pass where
    there is no NaN, which is most columns: those of entities with a sample in every row, and
    those of entities without any (not ``sampled``); the others are summed again with NaN
    taken as 0. numpy sums the columns of a block of several row after row, but a lone column
    pairwise (another order, other roundings): so are these, whatever their number.
    """
    total = rows.sum(axis=0)
    count = np.full(total.size, rows.shape[0])
    gaps = np.isnan(total)
    count[gaps & ~sampled] = 0
    redo = np.flatnonzero(gaps & sampled)
    if redo.size:
        part = rows[:, redo]
        there = ~np.isnan(part)
        count[redo] = there.sum(axis=0)
        zeroed = np.where(there, part, 0.0)
        one = rows.shape[1] == 1
        total[redo] = zeroed.sum(axis=0) if one else np.add.accumulate(zeroed, axis=0)[-1]
    return total / np.maximum(count, 1), count > 0


# --- the SQL ----------------------------------------------------------------------------------


def _sql_terms(
    con: duckdb.DuckDBPyConnection, request: _Request, entities: int
) -> list[_Column | None]:
    """Every term of ``request``, computed by one SQL statement."""
    query = _TermsQuery(request)
    sql = query.sql()
    if sql is None:
        return [None] * len(request.items)
    found = con.execute(sql).fetchnumpy()
    ids = np.asarray(found["entity_id"], dtype=np.int64)
    columns: list[_Column | None] = []
    for index, item in enumerate(request.items):
        if item.field is None:
            columns.append(None)
            continue
        column = found[f"t{index}"]
        mask = np.ma.getmaskarray(column)
        values = np.full(entities, _NAN)
        valid = np.zeros(entities, dtype=bool)
        values[ids] = np.ma.getdata(column).astype(np.float64)
        valid[ids] = ~mask
        columns.append((values, valid))
    return columns


class _TermsQuery:
    """Builds the one SELECT that computes a list of terms for every entity with samples.

    The statement is made of common table expressions, each grouped by ``(entity_id,
    field_id)`` and reading only the samples it needs, so that DuckDB's min/max index on ``ts``
    skips whatever lies outside a short window:

    * ``latest``: the current sample (``cur``, at ``cur_ts``) of each field that needs one;
    * ``earlier``: the samples of the current period older than the current one (deviations);
    * ``w0_3``, ``w1_3``...: one per distinct window start and field (``w<start>_<field id>``):
      the window's aggregates, and the parts of the deviation bases older than the current
      period;
    * ``per_series``: all of them stacked (``UNION ALL BY NAME``), pivoted to one row per
      entity with a ``FILTER (WHERE field_id = ...)`` per term.

    A deviation base ``a`` adds a sum over ``earlier`` to a sum over its window and divides by
    the sum of the counts, so no sample is ever subtracted (no cancellation). Only numbers
    (formatted by Python) and integer ids are written into the SQL, never a name.
    """

    def __init__(self, request: _Request):
        self.request = request
        self.latest: set[int] = set()  # field ids
        self.earlier: dict[int, set[str]] = {}  # field id -> aggregate columns
        self.windows: dict[float, dict[int, set[str]]] = {}  # start -> field id -> columns

    def sql(self) -> str | None:
        """The statement (``None`` when no term has samples); its columns are ``entity_id``
        then ``t<i>`` for the terms whose field has samples."""
        request = self.request
        outputs = [
            f"CAST({self._column(item)} AS DOUBLE) AS t{i}"
            for i, item in enumerate(request.items)
            if item.field is not None
        ]
        if not outputs:
            return None
        at, current_since = _number(request.at), _number(request.current_since)
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
            WHERE s.ts > {current_since} AND s.ts < l.cur_ts
            AND s.field_id IN ({_ids(self.earlier)})
            GROUP BY s.entity_id, s.field_id"""
        for slot, (start, per_field) in enumerate(self.windows.items()):
            for field, columns in sorted(per_field.items()):
                ctes[f"w{slot}_{field}"] = f"""
                SELECT entity_id, field_id, {", ".join(sorted(columns))}
                FROM samples WHERE ts > {_number(start)} AND ts <= {at} AND field_id = {field}
                GROUP BY entity_id, field_id"""
        stacked = " UNION ALL BY NAME ".join(f"SELECT * FROM {name}" for name in ctes)
        return f"""
        WITH {", ".join(f"{name} AS ({body})" for name, body in ctes.items())}
        SELECT entity_id{"".join(", " + output for output in outputs)}
        FROM ({stacked}) GROUP BY entity_id"""

    def _column(self, item: _Item) -> str:
        """The SQL expression of ``item`` over the stacked rows of one entity."""
        field = item.field
        assert field is not None
        pick = f"FILTER (WHERE field_id = {field})"
        if item.func is Func.VALUE:
            self.latest.add(field)
            return f"max(cur) {pick}"
        if item.func in AGGREGATES:
            slot, columns = self._window(item.start)
            name = f"{item.func.value}_{slot}"
            self._need(columns, field, f"{item.func.value}(value) AS {name}")
            return f"max({name}) {pick}"
        self.latest.add(field)
        current_since = _number(self.request.current_since)
        if item.func is Func.DEVIATION_AVG:
            slot, columns = self._window(item.start)
            start = _number(item.start)
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
                self._window(self.request.since)[1],
                field,
                f"arg_max(value, ts) FILTER (WHERE ts <= {current_since}) AS prev_old",
            )
            self._need(self.earlier, field, "arg_max(s.value, s.ts) AS prev_recent")
            base = f"coalesce(max(prev_recent) {pick}, max(prev_old) {pick})"
        return f"(max(cur) {pick} - {base}) / nullif({base}, 0) * 100"

    def _window(self, start: float) -> tuple[int, dict[int, set[str]]]:
        """The number and the needed columns of the CTE for a window start (added when new)."""
        columns = self.windows.setdefault(start, {})
        return list(self.windows).index(start), columns

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

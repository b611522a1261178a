"""Time ``History.append()`` and ``History.terms()`` and print the timings (no assertion).

Default (fleet) mode: 10,500 entities x 6 fields x 240 samples each (one hour at 15 s), in
memory, appended one cycle at a time as the collectors would; then ten distinct terms at the
last cycle, median of 5.

``--simulation``: the simulator's shape. 1,100 entities x 8 fields, 240 ticks of 15 s appended
first (one hour: ~2.1 M rows), then 100 timed ticks, each an ``append()`` of one new sample per
entity and field followed by ``terms()`` for the default policy's 8 terms (current values and
5 and 10 minute averages and maxima), with ``prune()`` run as the control loop runs it (every
tenth of the retention). Prints the per-tick medians and means (batches are written to DuckDB
several at a time, so a few ticks take longer: the mean is what a whole run costs).

``--sql``: compute the terms in SQL only, without the in-memory tail (DuckDB's own floor).

    PYTHONPATH=. .venv/bin/python bench/history_terms.py [--simulation] [--sql]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import polars as pl

from usm.collectors.history import History
from usm.engine.terms import Func, Term

ENTITIES = 10_500
FIELDS = [
    "cpu_percent",
    "ram_percent",
    "rx_bytes_per_sec",
    "tx_bytes_per_sec",
    "latency",
    "requests_per_sec",
]
PERIOD = 15.0
CYCLES = 240
TERMS = [
    Term(Func.VALUE, "cpu_percent"),
    Term(Func.VALUE, "ram_percent"),
    Term(Func.VALUE, "requests_per_sec"),
    Term(Func.AVG, "cpu_percent", 300.0),
    Term(Func.MAX, "cpu_percent", 300.0),
    Term(Func.MIN, "ram_percent", 60.0),
    Term(Func.AVG, "latency"),
    Term(Func.MAX, "ram_percent", 900.0),
    Term(Func.DEVIATION_AVG, "rx_bytes_per_sec", 300.0),
    Term(Func.DEVIATION_LAST, "tx_bytes_per_sec"),
]

SIM_ENTITIES = 1_100
SIM_FIELDS = [*FIELDS, "disk_percent", "errors_per_sec"]
SIM_TICKS = 100
RETENTION = 3600.0
SIM_TERMS = [  # the terms of the default policy (policies/hosts.yaml, policies/services.yaml)
    Term(Func.VALUE, "cpu_percent"),
    Term(Func.VALUE, "ram_percent"),
    Term(Func.AVG, "cpu_percent", 300.0),
    Term(Func.AVG, "ram_percent", 300.0),
    Term(Func.VALUE, "rx_bytes_per_sec"),
    Term(Func.AVG, "latency", 300.0),
    Term(Func.AVG, "requests_per_sec", 600.0),
    Term(Func.MAX, "rx_bytes_per_sec", 600.0),
]


def cycle_frame(cycle: int, entities: pl.Series, fields: pl.Series) -> pl.DataFrame:
    """One sample per entity and field at cycle ``cycle``, values pseudo-random in [0, 100)."""
    return pl.DataFrame({"entity": entities, "field": fields}).select(
        ts=pl.lit(cycle * PERIOD, dtype=pl.Float64),
        entity="entity",
        field="field",
        value=(pl.int_range(pl.len(), dtype=pl.UInt64).hash(seed=cycle) % 10_000) / 100.0,
    )


def grid(count: int, fields: list[str]) -> tuple[pl.Series, pl.Series]:
    """The entity and field columns of one sample per entity and field."""
    names = [f"container-{i:05d}" for i in range(count)]
    entities = pl.Series("entity", [name for name in names for _ in fields])
    return entities, pl.Series("field", fields * count)


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def fleet(sql: bool) -> None:
    entities, fields = grid(ENTITIES, FIELDS)
    with History() as history:
        if sql:
            history.use_tail = False
        start = time.perf_counter()
        for cycle in range(CYCLES):
            history.append(cycle_frame(cycle, entities, fields))
        print(
            f"appended {CYCLES} x {len(entities):,} samples in {time.perf_counter() - start:.1f} s"
        )
        at = (CYCLES - 1) * PERIOD
        timings, cpu = [], []  # wall clock; CPU time of all threads (less sensitive to load)
        for _ in range(5):
            start, start_cpu = time.perf_counter(), time.process_time()
            frame = history.terms(at, PERIOD, TERMS)
            timings.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        print(
            f"terms(): {frame.height:,} entities x {len(TERMS)} terms, "
            f"median of 5 = {statistics.median(timings) * 1000:.0f} ms "
            f"(all: {', '.join(f'{t * 1000:.0f}' for t in timings)} ms; "
            f"CPU {statistics.median(cpu) * 1000:.0f} ms); {load()}"
        )


def simulation(sql: bool) -> None:
    entities, fields = grid(SIM_ENTITIES, SIM_FIELDS)
    frames = [cycle_frame(cycle, entities, fields) for cycle in range(CYCLES + SIM_TICKS)]
    horizon = max([RETENTION] + [term.window for term in SIM_TERMS if term.window])
    last_pruned = 0.0
    appends, terms, cpu, prunes = [], [], [], []
    with History() as history:
        if sql:
            history.use_tail = False
        start = time.perf_counter()
        for cycle in range(CYCLES):
            history.append(frames[cycle])
        print(
            f"pre-filled {CYCLES} ticks x {len(entities):,} samples "
            f"in {time.perf_counter() - start:.1f} s{' (terms in SQL only)' if sql else ''}"
        )
        for cycle in range(CYCLES, CYCLES + SIM_TICKS):
            at = cycle * PERIOD
            start, start_cpu = time.perf_counter(), time.process_time()
            history.append(frames[cycle])
            middle = time.perf_counter()
            frame = history.terms(at, PERIOD, SIM_TERMS, RETENTION)
            end = time.perf_counter()
            cpu.append(time.process_time() - start_cpu)
            appends.append(middle - start)
            terms.append(end - middle)
            if at - last_pruned >= horizon / 10:  # as ControlLoop._housekeeping does
                start = time.perf_counter()
                history.prune(at - horizon)
                prunes.append(time.perf_counter() - start)
                last_pruned = at
        stored = history.samples(-1, at).height
    assert frame.height == SIM_ENTITIES, frame.height
    print(
        f"{SIM_TICKS} ticks of append + terms ({frame.height:,} entities x {len(SIM_TERMS)} "
        f"terms; {stored:,} rows stored at the end), per tick in ms:"
    )
    print(f"  {'':14}{'median':>8}{'mean':>8}{'p90':>8}{'max':>8}")
    both = [a + t for a, t in zip(appends, terms, strict=True)]
    for name, times in (("append", appends), ("terms", terms), ("append+terms", both)):
        print(
            f"  {name:14}{statistics.median(times) * 1000:8.1f}{statistics.mean(times) * 1000:8.1f}"
            f"{statistics.quantiles(times, n=10)[-1] * 1000:8.1f}{max(times) * 1000:8.1f}"
        )
    print(
        f"  CPU time of append + terms: median {statistics.median(cpu) * 1000:.1f} ms; "
        f"prune: {len(prunes)} calls, median {statistics.median(prunes) * 1000:.1f} ms; {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--simulation", action="store_true", help="the simulator's shape: per-tick append + terms"
    )
    parser.add_argument(
        "--sql", action="store_true", help="compute terms in SQL only (no in-memory tail)"
    )
    arguments = parser.parse_args()
    if arguments.simulation:
        simulation(arguments.sql)
    else:
        fleet(arguments.sql)


if __name__ == "__main__":
    main()

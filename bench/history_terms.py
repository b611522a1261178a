"""Time one ``History.terms()`` call at fleet scale and print it (no assertion).

10,500 entities x 6 fields x 240 samples each (one hour at 15 s), in memory, appended one
cycle at a time as the collectors would; then ten distinct terms at the last cycle, median of 5.

    PYTHONPATH=. .venv/bin/python bench/history_terms.py
"""

from __future__ import annotations

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


def cycle_frame(cycle: int, entities: pl.Series, fields: pl.Series) -> pl.DataFrame:
    """One sample per entity and field at cycle ``cycle``, values pseudo-random in [0, 100)."""
    return pl.DataFrame({"entity": entities, "field": fields}).select(
        ts=pl.lit(cycle * PERIOD, dtype=pl.Float64),
        entity="entity",
        field="field",
        value=(pl.int_range(pl.len(), dtype=pl.UInt64).hash(seed=cycle) % 10_000) / 100.0,
    )


def main() -> None:
    names = [f"container-{i:05d}" for i in range(ENTITIES)]
    entities = pl.Series("entity", [name for name in names for _ in FIELDS])
    fields = pl.Series("field", FIELDS * ENTITIES)
    with History() as history:
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
            f"CPU {statistics.median(cpu) * 1000:.0f} ms); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()

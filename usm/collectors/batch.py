"""What a live collector hands back: the samples it read and what it could not read.

A collector never turns a value it could not read into a number: the entity simply has no row
for that field, so the engine sees the term as missing (three-valued logic) rather than as 0,
which a rule such as ``cpu_percent < 10`` would take for an idle host. What went wrong is
reported beside the samples, one :class:`Problem` per host, so that the control loop can count
and show collection errors without reading logs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from usm.collectors.history import SAMPLE_SCHEMA

Row = tuple[str, str, float | None]
"""(entity, field, value) of one sample; a value of None is a value that could not be read."""


@dataclass(frozen=True)
class Problem:
    """A source a collector could not read (a usm host, or the metrics server), and why."""

    subject: str
    reason: str


@dataclass(frozen=True)
class Batch:
    """One collection: samples ready for ``History.append`` and the problems met reading them."""

    samples: pl.DataFrame  # ts, entity, field, value (SAMPLE_SCHEMA)
    problems: tuple[Problem, ...] = field(default=())

    @property
    def failed(self) -> dict[str, str]:
        """Subject -> reason (several joined by "; "), for the loop's error metric and log."""
        reasons: dict[str, list[str]] = {}
        for problem in self.problems:
            reasons.setdefault(problem.subject, []).append(problem.reason)
        return {subject: "; ".join(texts) for subject, texts in reasons.items()}


def samples_frame(at: float, rows: Iterable[Row]) -> pl.DataFrame:
    """The rows as a frame of samples at time ``at``; unreadable (None or non-finite) values are left out."""
    kept = [(entity, name, value) for entity, name, value in rows if value is not None and math.isfinite(value)]
    return pl.DataFrame(
        {
            "ts": [float(at)] * len(kept),
            "entity": [r[0] for r in kept],
            "field": [r[1] for r in kept],
            "value": [float(r[2]) for r in kept],
        },
        schema=SAMPLE_SCHEMA,
    )


__all__ = ["Batch", "Problem", "Row", "samples_frame"]

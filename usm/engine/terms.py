"""Value terms: what a rule reads from the metric history.

A term is a field plus a function over a time window. The engine asks the history for the
values of every term a policy uses, for every entity, in one set-oriented call per cycle;
the history answers with a frame of one column per term, named by ``Term.key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Func(str, Enum):
    VALUE = "value"  # the current sample: newest with t - period < ts <= t
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    DEVIATION_AVG = "deviation_avg"  # (v - a) / a * 100, a over samples older than v
    DEVIATION_LAST = "deviation_last"  # (v - p) / p * 100, p the newest sample older than v


AGGREGATES = (Func.AVG, Func.MIN, Func.MAX)


@dataclass(frozen=True)
class Term:
    """One value term. ``window`` is in seconds; ``None`` means "all retained samples"."""

    func: Func
    field: str
    window: float | None = None

    @property
    def key(self) -> str:
        """The canonical column name, e.g. ``cpu_percent`` or ``avg(cpu_percent, 300s)``."""
        if self.func is Func.VALUE:
            return self.field
        if self.window is None:
            return f"{self.func.value}({self.field})"
        return f"{self.func.value}({self.field}, {format_seconds(self.window)})"


def format_seconds(seconds: float) -> str:
    """``300.0`` -> ``"300s"``; whole seconds print without a decimal point."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds}s"

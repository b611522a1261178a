"""The action journal: every plan step written before and after it runs, so a restart never repeats or loses one.

``JournaledActuator`` wraps the real actuators. For each step it appends ``begun`` to the journal (flushed and
fsynced) before acting, ``retrying`` after each transient failure, and ``done`` or ``failed`` at the end. A step is
known by its identity (its content and its cycle time), and the actuators derive what they create from the same
identity (``usm.actuators.containersteps.step_name``), so carrying a step out again finds what the first attempt
created instead of making a second one. That is what recovery relies on: at start, ``recover()`` carries out
again every step the journal shows begun but never ended, which finishes it (the copy of a half-done migration is
found running, and the original is then stopped) or ends it as failed with its cause.

Transient failures (a host that does not answer, a connection reset) are retried with exponential backoff on an
injected ``sleep``; permanent ones (refused credentials, an unknown image, a changed host key) end the step at
once. The journal is JSON Lines: one object per event, readable with ``jq``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from usm.geo.sphere import Coordinates
from usm.manager.ports import Actuator, Outcome
from usm.placement import plans

BEGUN, RETRYING, DONE, FAILED = "begun", "retrying", "done", "failed"
ENDED = frozenset({DONE, FAILED})
_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in vars(plans).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == plans.__name__
} | {"Coordinates": Coordinates}


def step_id(step: Any, at: float) -> str:
    """The identity of a step carried out at cycle time ``at``: the same for the same step and time."""
    return hashlib.blake2b(f"{step!r}@{at!r}".encode(), digest_size=8).hexdigest()


def encode(value: Any) -> Any:
    """A plan step (or any value in it) as JSON-ready data, with each dataclass's type named."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **{f.name: encode(getattr(value, f.name))
                                                  for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(data: Any) -> Any:
    """The inverse of :func:`encode` for plan steps (lists come back as tuples)."""
    if isinstance(data, dict) and "type" in data:
        cls = _TYPES.get(data["type"])
        if cls is None:
            raise ValueError(f"the journal names an unknown step type {data['type']!r}")
        return cls(**{f.name: decode(data[f.name]) for f in dataclasses.fields(cls) if f.name in data})
    if isinstance(data, list):
        return tuple(decode(v) for v in data)
    return data


@dataclass(frozen=True)
class Entry:
    id: str
    state: str
    at: float  # the cycle time of the step
    step: dict[str, Any]
    attempt: int = 0
    detail: str = ""


class Journal:
    """An append-only JSON Lines file of :class:`Entry`; every append reaches the disk before it returns."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.last: dict[str, Entry] = {}  # each step's latest entry, in the order steps began
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                entry = Entry(raw["id"], raw["state"], raw["at"], raw["step"], raw.get("attempt", 0),
                              raw.get("detail", ""))
            except (ValueError, KeyError, TypeError):
                if number == len(lines):
                    break  # a last line cut short by a crash: its step stays as last recorded (begun, say)
                raise ValueError(f"{self.path}:{number}: not a journal entry; the journal was edited or "
                                 "damaged - fix or remove that line") from None
            self.last[entry.id] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def append(self, entry: Entry) -> None:
        record = {**dataclasses.asdict(entry), "written": self.clock()}
        self._file.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.last[entry.id] = entry

    def unfinished(self) -> list[Entry]:
        """The steps begun and never ended, in the order they began."""
        return [e for e in self.last.values() if e.state not in ENDED]

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    first_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.first_delay * self.factor ** (attempt - 1), self.max_delay)


class JournaledActuator:
    def __init__(self, inner: Actuator, journal: Journal, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self.journal = journal
        self.retry = retry
        self.sleep = sleep

    def execute(self, step: Any, at: float) -> Outcome:
        identity = step_id(step, at)
        ended = self.journal.last.get(identity)
        if ended is not None and ended.state in ENDED:  # carried out already: never twice
            return Outcome(step, ended.state == DONE, f"already {ended.state}: {ended.detail}")
        return self._carry_out(identity, step, at)

    def recover(self) -> list[Outcome]:
        """Carry out again every step the journal shows begun and never ended (at start, before any cycle)."""
        outcomes = []
        for entry in self.journal.unfinished():
            outcomes.append(self._carry_out(entry.id, decode(entry.step), entry.at, entry.attempt))
        return outcomes

    def _carry_out(self, identity: str, step: Any, at: float, attempted: int = 0) -> Outcome:
        plain = encode(step)
        self.journal.append(Entry(identity, BEGUN, at, plain, attempted))
        attempt = attempted
        while True:
            attempt += 1
            try:
                outcome = self.inner.execute(step, at)
            except Exception as error:  # noqa: BLE001 - an actuator that raises is a permanent failure, reported
                outcome = Outcome(step, False, f"{type(error).__name__}: {error}")
            if outcome.ok:
                self.journal.append(Entry(identity, DONE, at, plain, attempt, outcome.detail))
                return outcome
            if not outcome.transient or attempt - attempted >= self.retry.attempts:
                reason = outcome.detail if not outcome.transient else \
                    f"{outcome.detail} (still failing after {attempt - attempted} attempts)"
                self.journal.append(Entry(identity, FAILED, at, plain, attempt, reason))
                return Outcome(step, False, reason, outcome.transient)
            self.journal.append(Entry(identity, RETRYING, at, plain, attempt, outcome.detail))
            self.sleep(self.retry.delay(attempt - attempted))

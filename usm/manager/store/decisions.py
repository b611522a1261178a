"""An index of the decision log (``usm.manager.decisionlog``): the log stays the record, as JSON Lines, and the
store keeps one row per record with where it is (file and byte offset) and what the hub looks decisions up by:
time, entity, target, decision, rule and policy version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Index, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from usm.manager.store.base import NAME_LENGTH, Base
from usm.manager.store.errors import Invalid


class DecisionRecord(Base):
    """One record of a decision log: ``kind`` is its type (evaluation, action, suppressed, step), ``at`` the cycle
    time, ``entity`` what was judged (a container or host; for an action, its container if any, else its target),
    ``target`` the service or host acted on, ``decision`` the decision or action."""

    __tablename__ = "decision_records"
    __table_args__ = (
        UniqueConstraint("log", "offset"),
        Index("ix_decision_records_entity_at", "entity", "at"),
        Index("ix_decision_records_target_at", "target", "at"),
    )
    key = "id"

    id: Mapped[int] = mapped_column(primary_key=True)
    log: Mapped[str] = mapped_column(String(1024))
    offset: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[float] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    entity: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    target: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    decision: Mapped[str | None] = mapped_column(String(32))
    rule: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    policy: Mapped[str | None] = mapped_column(String(64))


def index_log(session: Session, path: Path | str) -> int:
    """Index the records of the log at ``path`` that are not indexed yet; return how many were added.

    Indexing resumes after the last indexed record, so calling it after every cycle costs only the new lines. A
    last line without its newline is being written: it is left for the next call.
    """
    log = str(Path(path).resolve())
    last = session.scalar(select(func.max(DecisionRecord.offset)).where(DecisionRecord.log == log))
    added = 0
    with open(log, "rb") as stream:
        if last is not None:
            stream.seek(last)
            previous = stream.readline()
            if not previous.endswith(b"\n"):
                raise Invalid(f"the decision log {log} is shorter than its index (it was truncated or replaced); "
                              "delete its records from the index before indexing it again")
        while True:
            offset = stream.tell()
            line = stream.readline()
            if not line.endswith(b"\n"):
                break
            session.add(_row(log, offset, _parsed(line, log, offset)))
            added += 1
    session.flush()
    return added


def read_record(record: DecisionRecord) -> dict[str, Any]:
    """The full log record a row indexes."""
    with open(record.log, "rb") as stream:
        stream.seek(record.offset)
        return _parsed(stream.readline(), record.log, record.offset)


def _parsed(line: bytes, log: str, offset: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as wrong:
        raise Invalid(f"{log}: the line at byte {offset} is not JSON ({wrong}); is this a decision log?") from None
    if not isinstance(record, dict) or "type" not in record or "at" not in record:
        raise Invalid(f"{log}: the line at byte {offset} is not a decision record (no type or at)")
    return record


def _row(log: str, offset: int, record: dict[str, Any]) -> DecisionRecord:
    """The index row of a record; a plan step's container, host, service and step type stand for the entity,
    target and decision it has none of."""
    step = record["step"] if isinstance(record.get("step"), dict) else {}
    return DecisionRecord(
        log=log, offset=offset, at=float(record["at"]), kind=str(record["type"]),
        entity=(record.get("entity") or record.get("container") or step.get("container") or step.get("host")
                or record.get("target") or step.get("service")),
        target=record.get("target") or step.get("service") or step.get("host"),
        decision=record.get("decision") or record.get("action") or step.get("type"),
        rule=record.get("rule"), policy=record.get("policy"),
    )


__all__ = ["DecisionRecord", "index_log", "read_record"]

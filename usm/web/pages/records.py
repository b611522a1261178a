"""Pages of what happened: the decision log (the store's index, filtered and paged as the API does it, each record
read back from its log with its explanation) and the logs (the hub process's own log records and the audit log
of who did what).

The hub's log is kept in memory (``LogBuffer``, the last ``LOG_RECORDS`` records of the ``usm`` and ``waitress``
loggers at INFO and above) so the page needs no file; the audit log is the store's.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, g, render_template, request
from pydantic import ValidationError
from sqlalchemy import func, select

from usm.manager.store import AuditEntry, DecisionRecord, read_record
from usm.manager.store.errors import StoreError
from usm.web.api.accounts import AuditFilters, audit_item, audit_matching
from usm.web.api.decisions import DecisionFilters, index_item, matching
from usm.web.hub import transaction
from usm.web.security import login_required

PAGE_SIZE = 50
LOG_RECORDS = 2000
LOGGERS = ("usm", "waitress")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DECISION_FILTERS = ("entity", "target", "decision", "rule", "kind", "policy")
AUDIT_FILTERS = ("user", "action", "target", "outcome")

bp = Blueprint("records", __name__)


@dataclass(frozen=True)
class LogLine:
    at: datetime
    level: str
    logger: str
    message: str


class LogBuffer(logging.Handler):
    """The last records logged in this process, for the logs page."""

    def __init__(self, capacity: int = LOG_RECORDS) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[LogLine] = deque(maxlen=capacity)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # noqa: BLE001 - a record that cannot be formatted must not break the caller
            text = str(record.msg)
        with self._guard:
            self.lines.append(LogLine(datetime.fromtimestamp(record.created, UTC), record.levelname, record.name,
                                      text))

    def newest_first(self) -> list[LogLine]:
        with self._guard:
            return list(reversed(self.lines))


_buffer: LogBuffer | None = None
_installing = threading.Lock()


def log_buffer() -> LogBuffer:
    """The process's buffer, attached to the hub's loggers on first use (once, however many apps are made)."""
    global _buffer
    with _installing:
        if _buffer is None:
            _buffer = LogBuffer()
            for name in LOGGERS:
                logger = logging.getLogger(name)
                logger.addHandler(_buffer)
                if logger.getEffectiveLevel() > logging.INFO:
                    logger.setLevel(logging.INFO)
        return _buffer


def cycle_time(at: float | None) -> str:
    """A record's cycle time: a date for the wall clock, seconds from the start for a simulated run."""
    if at is None:
        return ""
    if at >= 1e9:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"t = {at:g} s"


bp.add_app_template_filter(cycle_time, "cycle_time")


def _problems(error: ValidationError) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        found.setdefault(str(item["loc"][0]) if item["loc"] else "body", []).append(item["msg"])
    return found


def _number() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


@bp.get("/decisions")
@login_required
def decisions() -> Any:
    """The decision log, newest first, with the API's filters."""
    given = {k: request.args[k].strip() for k in DECISION_FILTERS if request.args.get(k, "").strip()}
    number = _number()
    items: list[dict[str, Any]] = []
    total, problems = 0, {}
    try:
        filters = DecisionFilters.model_validate({**given, "limit": PAGE_SIZE, "offset": (number - 1) * PAGE_SIZE})
    except ValidationError as error:
        problems = _problems(error)
    else:
        query = matching(filters)
        with transaction() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(DecisionRecord.at.desc(), DecisionRecord.id.desc())
                                   .limit(PAGE_SIZE).offset((number - 1) * PAGE_SIZE)).all()
            items = [index_item(row) for row in rows]
    return render_template("records/decisions.html", items=items, total=total, number=number, size=PAGE_SIZE,
                           given=given, problems=problems, kinds=DecisionFilters.model_fields["kind"]), \
        422 if problems else 200


@bp.get("/decisions/<int(max=2147483647):record>")
@login_required
def decision(record: int) -> Any:
    """One record with its explanation, as the log holds it."""
    with transaction() as session:
        row = session.get(DecisionRecord, record)
        if row is None:
            return render_template("message.html", title="No such decision record",
                                   message=f"there is no decision record with id {record}"), 404
        item = index_item(row)
        try:
            body, problem = read_record(row), ""
        except OSError as error:
            body, problem = None, f"its log {row.log} cannot be read ({error.strerror}); was the log moved?"
        except StoreError as error:
            body, problem = None, str(error)
    return render_template("records/decision.html", item=item, record=body, problem=problem)


@bp.get("/logs")
@login_required
def logs() -> Any:
    """The hub's log records (by level and text) and the audit log (admins only, with the API's filters)."""
    level = request.args.get("level", "INFO")
    level = level if level in LEVELS else "INFO"
    text = request.args.get("q", "").strip()
    lowest = logging.getLevelName(level)
    lines = [line for line in log_buffer().newest_first()
             if logging.getLevelName(line.level) >= lowest and (not text or text.lower() in line.message.lower())]
    audit, total, problems = [], 0, {}
    given = {k: request.args[k].strip() for k in AUDIT_FILTERS if request.args.get(k, "").strip()}
    number = _number()
    if g.identity.admin:
        try:
            filters = AuditFilters.model_validate({**given, "limit": PAGE_SIZE, "offset": (number - 1) * PAGE_SIZE})
        except ValidationError as error:
            problems = _problems(error)
        else:
            query = audit_matching(filters)
            with transaction() as session:
                total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
                audit = [audit_item(e) for e in session.scalars(
                    query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(PAGE_SIZE)
                    .offset((number - 1) * PAGE_SIZE))]
    auto = request.args.get("auto") == "on"
    return render_template("records/logs.html", lines=lines[:PAGE_SIZE * 4], shown_total=len(lines), level=level,
                           levels=LEVELS, text=text, audit=audit, total=total, number=number, size=PAGE_SIZE,
                           given=given, problems=problems, auto=auto)


__all__ = ["LogBuffer", "bp", "cycle_time", "log_buffer"]

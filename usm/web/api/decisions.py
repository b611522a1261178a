"""The decision log over the API: the store's index of it, filtered (entity, target, decision, rule, policy,
record type, time range) and paged, newest first; and one full record, read back from the log file."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field
from spectree import Response as Responses
from spectree import SpecTree
from sqlalchemy import func, select

from usm.manager.store import DecisionRecord, read_record
from usm.manager.store.errors import StoreError
from usm.web.api.schemas import STRICT, Page
from usm.web.errors import ApiError, ErrorBody
from usm.web.hub import transaction

Kind = Literal["cycle", "inventory", "evaluation", "action", "suppressed", "step"]


class DecisionFilters(Page):
    """Which records: every filter given must hold."""

    model_config = STRICT

    entity: str | None = Field(None, description="the container or host judged")
    target: str | None = Field(None, description="the service or host acted on")
    decision: str | None = Field(None, description="the decision or action, e.g. replicate")
    rule: str | None = Field(None, description="the rule that decided")
    policy: str | None = Field(None, description="the policy version (digest)")
    kind: Kind | None = Field(None, description="the record type")
    since: float | None = Field(None, description="at or after this cycle time (seconds since the epoch)")
    until: float | None = Field(None, description="before this cycle time")


class DecisionIndexItem(BaseModel):
    id: int
    at: float
    kind: str
    entity: str | None
    target: str | None
    decision: str | None
    rule: str | None
    policy: str | None


class DecisionListing(BaseModel):
    items: list[DecisionIndexItem]
    total: int
    limit: int
    offset: int


class DecisionRecordBody(BaseModel):
    """A record as the log holds it, with its index id."""

    id: int
    record: dict[str, Any]


EQUAL = ("entity", "target", "decision", "rule", "policy", "kind")


def matching(filters: DecisionFilters) -> Any:
    """The records the filters select, as a query (the hub's decision log page pages through it too)."""
    query = select(DecisionRecord)
    for name in EQUAL:
        if (value := getattr(filters, name)) is not None:
            query = query.where(getattr(DecisionRecord, name) == value)
    if filters.since is not None:
        query = query.where(DecisionRecord.at >= filters.since)
    if filters.until is not None:
        query = query.where(DecisionRecord.at < filters.until)
    return query


def index_item(row: DecisionRecord) -> dict[str, Any]:
    return {"id": row.id, "at": row.at, "kind": row.kind, "entity": row.entity, "target": row.target,
            "decision": row.decision, "rule": row.rule, "policy": row.policy}


def blueprint(spec: SpecTree) -> Blueprint:
    bp = Blueprint("decisions", __name__)

    @bp.get("/decisions")
    @spec.validate(query=DecisionFilters, resp=Responses(HTTP_200=DecisionListing), tags=["decisions"])
    def decisions() -> Response:
        """List decision records\n\nFrom the store's index of the decision log, newest first."""
        filters: DecisionFilters = request.context.query  # type: ignore[attr-defined]
        if filters.since is not None and filters.until is not None and filters.until <= filters.since:
            raise ApiError(422, "until must be after since", {"until": ["must be after since"]})
        query = matching(filters)
        with transaction() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(DecisionRecord.at.desc(), DecisionRecord.id.desc())
                                   .limit(filters.limit).offset(filters.offset)).all()
            items = [index_item(row) for row in rows]
        return jsonify({"items": items, "total": total, "limit": filters.limit, "offset": filters.offset})

    @bp.get("/decisions/<int(max=2147483647):record>")
    @spec.validate(resp=Responses(HTTP_200=DecisionRecordBody, HTTP_404=ErrorBody), tags=["decisions"])
    def decision(record: int) -> Response:
        """Get one decision record\n\nThe whole record, as written in the decision log."""
        with transaction() as session:
            row = session.get(DecisionRecord, record)
            if row is None:
                raise ApiError(404, f"there is no decision record with id {record}")
            try:
                body = read_record(row)
            except OSError as error:
                raise ApiError(404, f"decision record {record} is indexed but its log {row.log} cannot be read "
                                    f"({error.strerror}); was the log moved?") from None
            except StoreError as error:
                raise ApiError(404, str(error)) from None
        return jsonify({"id": record, "record": body})

    return bp


__all__ = ["DecisionFilters", "blueprint", "index_item", "matching"]

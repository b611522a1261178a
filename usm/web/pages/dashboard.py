"""The dashboard: the world map of hosts, containers and swarm nodes (refreshed every 15 s by the page's script,
from ``/map/markers``), counts of what is stored, the latest decisions, and the launch form the map fills in
when a place is clicked."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, request
from sqlalchemy import func, select

from usm.manager.store import App, Container, DecisionRecord, Host, Node, Service
from usm.web.hub import now, transaction
from usm.web.pages import worldmap
from usm.web.security import login_required

REFRESH_SECONDS = 15
RECENT_DECISIONS = 8

bp = Blueprint("dashboard", __name__)


def _counts(session: Any) -> dict[str, Any]:
    def by_state(model: Any) -> dict[str, int]:
        return {state.value: n for state, n in session.execute(select(model.state, func.count())
                                                                .group_by(model.state))}

    return {"hosts": by_state(Host), "containers": by_state(Container),
            "nodes": session.scalar(select(func.count()).select_from(Node)) or 0,
            "services": session.scalar(select(func.count()).select_from(Service)) or 0,
            "apps": session.scalar(select(func.count()).select_from(App)) or 0}


@bp.get("/")
@login_required
def index() -> Any:
    with transaction() as session:
        view = worldmap.map_view(session)
        counts = _counts(session)
        services = session.scalars(select(Service.name).order_by(Service.name)).all()
        apps = session.scalars(select(App.name).order_by(App.name)).all()
        recent = session.scalars(select(DecisionRecord).where(DecisionRecord.kind.in_(("action", "evaluation")))
                                 .order_by(DecisionRecord.at.desc(), DecisionRecord.id.desc())
                                 .limit(RECENT_DECISIONS)).all()
        decisions = [{"id": r.id, "at": r.at, "kind": r.kind, "entity": r.entity, "decision": r.decision,
                      "rule": r.rule} for r in recent]
    return render_template("dashboard.html", view=view, countries=worldmap.countries(),
                           view_box=worldmap.VIEW_BOX, legend=worldmap.legend(), counts=counts, services=services, apps=apps,
                           hosts=[h.name for h in view.hosts], decisions=decisions, refresh=REFRESH_SECONDS,
                           updated=now(), chosen=request.args.get("service", ""))


@bp.get("/map/markers")
@login_required
def markers() -> Response:
    """The map's markers alone, as an SVG group, for the page's refresh."""
    with transaction() as session:
        view = worldmap.map_view(session)
    body = render_template("map_markers.svg", view=view, updated=now())
    return Response(body, mimetype="image/svg+xml")


__all__ = ["REFRESH_SECONDS", "bp"]

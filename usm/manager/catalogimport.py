"""Putting the demo app catalogue (``usm.catalog``) into the inventory store: ``usm catalog import``.

Like the original's seeding, an import gets by name or else creates: a service or an app already stored under a
catalogue name is left exactly as it is (an operator may have changed it since), so importing again changes and
loses nothing. Services are created in launch order, each after the services it depends on, through the store's
service layer (``usm.manager.store.crud``) and its checks; an app's services are stored in launch order too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from usm.catalog import CatalogApp, CatalogService
from usm.manager.store import App, NotFound, Service, crud


@dataclass(frozen=True)
class Imported:
    """What an import did for one app: the services it created and those it found stored already."""

    app: str
    app_created: bool
    created: tuple[str, ...]
    kept: tuple[str, ...]


def import_app(session: Session, app: CatalogApp) -> Imported:
    """Store ``app`` and its services, keeping whatever is stored under their names already. The caller owns the
    transaction: a refusal (a ``StoreError``) leaves it as it was."""
    order = app.launch_plan().services
    created, kept = [], []
    for name in order:
        if _stored(session, Service, name):
            kept.append(name)
            continue
        crud.create(session, Service, **_service_fields(app.service_by_name[name]))
        created.append(name)
    app_created = not _stored(session, App, app.name)
    if app_created:
        crud.create(session, App, name=app.name, description=app.description, services=list(order))
    return Imported(app.name, app_created, tuple(created), tuple(kept))


def _service_fields(service: CatalogService) -> dict[str, object]:
    return {"name": service.name, "image": service.image, "kind": service.kind,
            "internal_port": service.internal_port, "external_port": service.external_port,
            "min_replicas": service.min_replicas, "max_replicas": service.max_replicas,
            "expected_memory": int(service.memory), "dependencies": list(service.dependencies)}


def _stored(session: Session, model: type[App | Service], name: str) -> bool:
    try:
        crud.get(session, model, name)
    except NotFound:
        return False
    return True


__all__ = ["Imported", "import_app"]

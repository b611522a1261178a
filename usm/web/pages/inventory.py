"""Pages of the stored inventory: for every entity the API manages (``usm.web.api.inventory.ENTITIES``) a list
with filters and paging, a detail page with what refers to the row, and create, edit and delete forms.

The pages call what the API calls: ``crud.find/get/create/update/delete`` in one transaction per request, with
the API's models checking a form first (``usm.web.pages.forms``) and the store's refusals shown beside the
fields they concern (``usm.web.errors.from_store``); a refused change changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy import inspect

from usm.manager.store import crud
from usm.manager.store.base import Base
from usm.manager.store.errors import NotFound, StoreError
from usm.web.api import schemas
from usm.web.api.inventory import ENTITIES
from usm.web.api.resources import Entity, preload
from usm.web.errors import from_store
from usm.web.hub import transaction
from usm.web.pages import admin_only
from usm.web.pages.forms import FormField, FormProblems, field_label, for_create, for_update, form_fields, shown
from usm.web.security import login_required

PAGE_SIZE = 50
CHOICES_SHOWN = 500
"""At most this many keys are offered for a reference input (it still takes any key typed)."""

COLUMNS: dict[str, tuple[str, ...]] = {
    "apps": ("description", "services"),
    "services": ("image", "kind", "min_replicas", "max_replicas", "dependencies"),
    "event-predictions": ("service", "starts_at", "ends_at", "weekly", "min_replicas"),
    "containers": ("service", "host", "state", "port"),
    "cloud-hosts": ("region", "cloud_region", "instance_type", "state", "cpu", "ram"),
    "edge-hosts": ("region", "state", "public_ip", "username", "cpu", "ram"),
    "nodes": ("host", "role", "availability", "state", "worker"),
    "regions": ("title", "latitude", "longitude"),
    "elastic-ips": ("public_ip", "region", "cloud_region", "host"),
    "load-balancers": ("region",),
    "registration-servers": ("region",),
    "workers": ("region", "address", "port", "state", "heartbeat_at"),
    "host-assignments": ("worker",),
}
"""The columns a list shows beside each row's key (its detail page shows every field)."""

TITLES = {"elastic-ips": "Elastic IPs"}


@dataclass(frozen=True)
class Page:
    path: str
    entity: Entity

    @property
    def model(self) -> type[Base]:
        return self.entity.model

    @property
    def title(self) -> str:
        return TITLES.get(self.path, self.path.replace("-", " ").capitalize())

    @property
    def noun(self) -> str:
        return self.model.noun()

    @property
    def key(self) -> str:
        return self.model.key

    @property
    def fields(self) -> tuple[FormField, ...]:
        return form_fields(self.model)

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS.get(self.path, ())

    @property
    def filters(self) -> tuple[FormField, ...]:
        return tuple(f for f in self.fields if f.widget != "references" or f.target)


PAGES: dict[str, Page] = {entity.path: Page(entity.path, entity) for entity in ENTITIES}

bp = Blueprint("inventory", __name__)
bp.add_app_template_filter(field_label, "field_label")


def page_of(path: str) -> Page:
    if path not in PAGES:
        abort(404)
    return PAGES[path]


@cache
def model_named(name: str) -> type[Base]:
    for mapper in Base.registry.mappers:
        if mapper.class_.__name__ == name:
            return mapper.class_
    raise KeyError(name)


def link_for(target: str, key: str) -> str:
    """The page of the row of entity ``target`` (a class name) named ``key``."""
    if target == "Host":
        return url_for("inventory.host", key=key)
    for page in PAGES.values():
        if page.model.__name__ == target:
            return url_for("inventory.detail", path=page.path, key=key)
    return ""


@bp.app_template_global()
def reference_link(field: FormField | None, key: str) -> str:
    return link_for(field.target, key) if field is not None and field.target else ""


def _choices(session: Any, fields: tuple[FormField, ...]) -> dict[str, list[str]]:
    """The keys offered for each reference input."""
    return {target: _keys(session, target) for target in {f.target for f in fields if f.target}}


def _items(session: Any, page: Page, rows: list[Base]) -> list[dict[str, Any]]:
    labels = preload(session, page.entity, rows)
    return [page.entity.show(row, labels) for row in rows]


@bp.get("/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>")
@login_required
def listing(path: str) -> Any:
    """A page of rows, with the filters of the API's listing."""
    page = page_of(path)
    number = max(1, request.args.get("page", 1, type=int) or 1)
    given = {f.name: request.args[f.name].strip() for f in page.filters if request.args.get(f.name, "").strip()}
    problems: dict[str, list[str]] = {}
    items: list[dict[str, Any]] = []
    total = 0
    try:
        query = schemas.filter_schema(page.model).model_validate(
            {**given, "limit": PAGE_SIZE, "offset": (number - 1) * PAGE_SIZE})
    except ValidationError as error:
        for item in error.errors(include_url=False):
            problems.setdefault(str(item["loc"][0]), []).append(item["msg"])
        query = None
    with transaction() as session:
        if query is not None:
            filters = query.model_dump(exclude_none=True, exclude={"limit", "offset"})
            try:
                found = crud.find(session, page.model, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE, **filters)
            except StoreError as error:
                problems = from_store(error, page.entity.fields).errors
            else:
                items, total = _items(session, page, found.items), found.total
        choices = _choices(session, page.filters)
    status = 422 if problems else 200
    return render_template("inventory/list.html", page=page, items=items, total=total, number=number,
                           size=PAGE_SIZE, given=given, problems=problems, choices=choices), status


@bp.get("/hosts/<path:key>")
@login_required
def host(key: str) -> Any:
    """A host's page, whichever kind it is."""
    with transaction() as session:
        from usm.manager.store import Host

        try:
            row = crud.get(session, Host, key)
        except NotFound as missing:
            return render_template("message.html", title="No such host", message=str(missing)), 404
        path = "cloud-hosts" if row.kind.value == "cloud" else "edge-hosts"
    return redirect(url_for("inventory.detail", path=path, key=key))


def _related(session: Any, page: Page, key: str) -> list[tuple[Page, str, list[dict[str, Any]], int]]:
    """The rows of other entities that name this row in a reference: (their page, the reference, rows, total)."""
    found = []
    parents = {m.class_.__name__ for m in inspect(page.model).iterate_to_root()}
    for other in PAGES.values():
        mapper = inspect(other.model)
        for name, target in other.model.refs.items():
            relationship = mapper.relationships.get(name)
            if target not in parents or relationship is None or relationship.uselist or name == other.key:
                continue
            rows = crud.find(session, other.model, limit=PAGE_SIZE, **{name: key})
            if rows.total:
                found.append((other, name, _items(session, other, rows.items), rows.total))
    return found


@bp.get("/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>/<path:key>")
@login_required
def detail(path: str, key: str) -> Any:
    page = page_of(path)
    with transaction() as session:
        try:
            row = crud.get(session, page.model, key)
        except NotFound as missing:
            return render_template("message.html", title=f"No such {page.noun}", message=str(missing)), 404
        item, key = page.entity.show(row), crud.label(row)
        related = _related(session, page, key)
        services = _keys(session, "Service") if path in ("cloud-hosts", "edge-hosts") else []
        hosts = _keys(session, "Host") if path == "services" else []
    return render_template("inventory/detail.html", page=page, item=item, key=key, related=related,
                           services=services, hosts=hosts)


def _keys(session: Any, target: str) -> list[str]:
    return [crud.label(row) for row in crud.find(session, model_named(target), limit=CHOICES_SHOWN).items]


def _form(page: Page, values: dict[str, Any], problems: dict[str, list[str]], message: str, key: str | None,
          status: int = 200) -> Any:
    with transaction() as session:
        choices = _choices(session, page.fields)
    return render_template("inventory/form.html", page=page, values=values, problems=problems, message=message,
                           key=key, choices=choices), status


@bp.get("/new/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>")
@login_required
@admin_only
def create_form(path: str) -> Any:
    page = page_of(path)
    return _form(page, {f.name: shown(request.args.get(f.name), f) for f in page.fields}, {}, "", None)


@bp.post("/new/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>")
@login_required
@admin_only
def create(path: str) -> Any:
    page = page_of(path)
    try:
        values = for_create(page.model, request.form)
        with transaction() as session:
            row = crud.create(session, page.model, **values)
            key = crud.label(row)
    except FormProblems as refused:
        return _form(page, _echo(page), refused.errors, refused.message, None, 422)
    except StoreError as error:
        refusal = from_store(error, page.entity.fields)
        return _form(page, _echo(page), refusal.errors, refusal.message, None, refusal.status)
    flash(f"Created {page.noun} {key}.", "ok")
    return redirect(url_for("inventory.detail", path=path, key=key))


@bp.get("/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>/<path:key>/edit")
@login_required
@admin_only
def edit_form(path: str, key: str) -> Any:
    page = page_of(path)
    with transaction() as session:
        try:
            item = page.entity.show(crud.get(session, page.model, key))
        except NotFound as missing:
            return render_template("message.html", title=f"No such {page.noun}", message=str(missing)), 404
    return _form(page, {f.name: shown(item.get(f.name), f) for f in page.fields}, {}, "", key)


@bp.post("/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>/<path:key>/edit")
@login_required
@admin_only
def edit(path: str, key: str) -> Any:
    page = page_of(path)
    try:
        with transaction() as session:
            current = page.entity.show(crud.get(session, page.model, key))
            changes = for_update(page.model, request.form, current)
            if changes:
                row = crud.update(session, page.model, key, **changes)
                key = crud.label(row)
    except FormProblems as refused:
        return _form(page, _echo(page), refused.errors, refused.message, key, 422)
    except NotFound as missing:
        return render_template("message.html", title=f"No such {page.noun}", message=str(missing)), 404
    except StoreError as error:
        refusal = from_store(error, page.entity.fields)
        return _form(page, _echo(page), refusal.errors, refusal.message, key, refusal.status)
    flash(f"Saved {page.noun} {key}: changed {', '.join(sorted(changes))}." if changes
          else f"Nothing to save: {page.noun} {key} is as it was.", "ok")
    return redirect(url_for("inventory.detail", path=path, key=key))


@bp.get("/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>/<path:key>/delete")
@login_required
@admin_only
def delete_form(path: str, key: str) -> Any:
    page = page_of(path)
    return render_template("inventory/delete.html", page=page, key=key, message="")


@bp.post("/<any(" + ", ".join(f'"{p}"' for p in PAGES) + "):path>/<path:key>/delete")
@login_required
@admin_only
def delete(path: str, key: str) -> Any:
    page = page_of(path)
    try:
        with transaction() as session:
            crud.delete(session, page.model, key)
    except StoreError as error:
        refusal = from_store(error, page.entity.fields)
        return render_template("inventory/delete.html", page=page, key=key, message=refusal.message), \
            refusal.status
    flash(f"Deleted {page.noun} {key}.", "ok")
    return redirect(url_for("inventory.listing", path=path))


def _echo(page: Page) -> dict[str, Any]:
    """The form as it was submitted, to show it again with its problems."""
    return {f.name: (request.form.getlist(f.name) if f.widget == "references"
                     else (f.name in request.form) if f.widget == "checkbox" else request.form.get(f.name, ""))
            for f in page.fields}


__all__ = ["PAGES", "Page", "bp", "link_for", "page_of"]

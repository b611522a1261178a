"""Forms of stored entities, derived from the same models as the API's bodies (``usm.web.api.schemas``): which
inputs a create or edit form shows, and the submitted form turned into the values ``crud.create`` and
``crud.update`` take, checked by the API's own pydantic models first.

A form sends text; what the store takes is typed. An empty input means "not given" when creating (the store
fills its default) and "none" when editing a field that may be empty. An edit sends only the fields whose value
changed, so a form left as it was changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import BigInteger, Boolean, Float, Integer, String, inspect
from werkzeug.datastructures import MultiDict

from usm.manager.store.base import Base, UtcDateTime
from usm.web.api import schemas

Widget = Literal["text", "integer", "number", "checkbox", "select", "datetime", "reference", "references"]


@dataclass(frozen=True)
class FormField:
    """One input of an entity's form."""

    name: str
    widget: Widget
    required: bool
    nullable: bool
    choices: tuple[str, ...] = ()
    target: str = ""  # the class name of the entity a reference names
    max_length: int | None = None

    @property
    def label(self) -> str:
        return field_label(self.name)


LABELS = {"cpu": "CPU (cores)", "ram": "RAM (bytes)", "disk": "Disk (bytes)", "expected_memory": "Expected memory (bytes)",
          "public_ip": "Public IP", "private_ip": "Private IP", "public_dns_name": "Public DNS name",
          "ssh_port": "SSH port", "docker_id": "Docker ID", "swarm_id": "Swarm ID", "allocation_id": "Allocation ID",
          "association_id": "Association ID", "instance_id": "Instance ID", "image_id": "Image ID",
          "heartbeat_at": "Last heartbeat", "starts_at": "Starts at", "ends_at": "Ends at"}
"""How a field is named for people where its name alone would not say it well (units, acronyms)."""


def field_label(name: str) -> str:
    return LABELS.get(name) or name.replace("_", " ").capitalize()


class FormProblems(Exception):
    """A submitted form the models refuse: a message and the problems by field (``body`` for the whole)."""

    def __init__(self, message: str, errors: Mapping[str, list[str]]) -> None:
        super().__init__(message)
        self.message = message
        self.errors = dict(errors)


def form_fields(model: type[Base]) -> tuple[FormField, ...]:
    """The inputs of ``model``'s form, in the order of the API's create body."""
    columns = schemas.value_columns(model)
    mapper = inspect(model)
    found = []
    for name, field in schemas.create_schema(model).model_fields.items():
        if name in model.refs:
            relationship = mapper.relationships.get(name)
            many = relationship is None or relationship.uselist
            nullable = not many and all(c.nullable for c in relationship.local_columns)
            found.append(FormField(name, "references" if many else "reference", field.is_required(),
                                   nullable or many, target=model.refs[name]))
        else:
            column = columns[name]
            widget, choices = _widget(column)
            found.append(FormField(name, widget, field.is_required(), bool(column.nullable), choices,
                                   max_length=getattr(column.type, "length", None)))
    return tuple(found)


def _widget(column: Any) -> tuple[Widget, tuple[str, ...]]:
    kind = column.type
    enum: type[Enum] | None = getattr(kind, "enum_class", None)
    if enum is not None:
        return "select", tuple(str(m.value) for m in enum)
    if isinstance(kind, Boolean):
        return "checkbox", ()
    if isinstance(kind, (Integer, BigInteger)):
        return "integer", ()
    if isinstance(kind, Float):
        return "number", ()
    if isinstance(kind, UtcDateTime):
        return "datetime", ()
    if isinstance(kind, String):
        return "text", ()
    return "text", ()


def submitted(form: MultiDict[str, str], fields: tuple[FormField, ...]) -> dict[str, Any]:
    """What the form says for each field, as the API's body would carry it (text still text, "" as ``None``)."""
    values: dict[str, Any] = {}
    for field in fields:
        if field.widget == "checkbox":
            values[field.name] = field.name in form
        elif field.widget == "references":
            values[field.name] = [v for v in form.getlist(field.name) if v.strip()]
        else:
            text = form.get(field.name, "")
            values[field.name] = text.strip() if text.strip() else None
    return values


def for_create(model: type[Base], form: MultiDict[str, str]) -> dict[str, Any]:
    """The values of a new row, checked by the API's create model; ``FormProblems`` otherwise."""
    given = {k: v for k, v in submitted(form, form_fields(model)).items() if v is not None}
    return _checked(schemas.create_schema(model), given).model_dump(exclude_unset=True)


def for_update(model: type[Base], form: MultiDict[str, str], current: Mapping[str, Any]) -> dict[str, Any]:
    """The changes the form makes to a row shown as ``current`` (``schemas.dump``), checked by the API's update
    model; ``FormProblems`` otherwise."""
    fields = form_fields(model)
    values = submitted(form, fields)
    for f in fields:
        if values[f.name] is None and f.widget == "text" and not f.nullable and not f.required:
            values[f.name] = ""  # text that has a default may be emptied (a region's title)
    emptied = {f.name: ["cannot be empty; give a value"] for f in fields
               if values[f.name] is None and not f.nullable and f.widget not in ("checkbox", "references")}
    if emptied:
        raise FormProblems(f"some fields are not right: {', '.join(sorted(emptied))}", emptied)
    new = _checked(schemas.update_schema(model), values)
    old = schemas.update_schema(model).model_validate({f.name: current.get(f.name) for f in fields})
    changes = {}
    for field in fields:
        before, after = getattr(old, field.name), getattr(new, field.name)
        if field.widget == "references":
            if set(before or ()) != set(after or ()):
                changes[field.name] = after or []
        elif after != before:
            changes[field.name] = after
    return changes


def _checked(schema: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        errors: dict[str, list[str]] = {}
        for item in error.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else "body"
            errors.setdefault(name, []).append(item["msg"])
        raise FormProblems(f"some fields are not right: {', '.join(sorted(errors))}", errors) from None


def shown(value: Any, field: FormField) -> Any:
    """A stored value as its input shows it."""
    if value is None:
        return [] if field.widget == "references" else ""
    if field.widget == "datetime" and isinstance(value, (str, datetime)):
        return value if isinstance(value, str) else value.isoformat()
    return value


__all__ = ["FormField", "FormProblems", "field_label", "for_create", "for_update", "form_fields", "shown", "submitted"]

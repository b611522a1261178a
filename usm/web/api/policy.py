"""The policy's rules and simulated metrics over the API, read from and written to the policy files
(``usm.web.policyfiles``): an edit the engine would refuse answers 422 with its ``FILE:LINE:COLUMN`` problems
(under ``errors``, keyed by location) and leaves the files as they were."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel, Field
from spectree import Response as Responses
from spectree import SpecTree

from usm.engine import InvalidSource
from usm.manager.store.errors import StoreError
from usm.web.api.schemas import STRICT
from usm.web.audit import record
from usm.web.errors import ApiError, ErrorBody, from_store
from usm.web.hub import state
from usm.web.policyfiles import Entry, PolicyFiles, Section

Scope = Literal["host", "app", "service", "container"]
Then = Literal["none", "replicate", "migrate", "stop", "overwork", "underwork"]
NAME = {"min_length": 1, "max_length": 255, "pattern": r"^\S(.*\S)?$", "description": "unique across the policy"}
Target = Field(description='"*" for every entity of the scope, one name, or a list of names')
FileName = Field(None, description="the policy file to add it to (default: where items of the same scope are)")


class RuleNew(BaseModel):
    """A rule (policy-spec §2): when ``when`` holds for an entity of ``scope`` named by ``target``, propose
    ``then``."""

    model_config = STRICT
    name: str = Field(**NAME)
    scope: Scope
    target: str | list[str] = Target
    priority: int | None = Field(None, description="higher wins inside a level (default 0)")
    when: str | bool = Field(description="a condition, e.g. cpu_percent > 90 and avg(ram_percent, 5m) > 80")
    then: Then
    file: str | None = FileName


class RuleChange(BaseModel):
    """Changes to a rule: only the keys given change; ``priority: null`` removes it."""

    model_config = STRICT
    name: str | None = Field(None, **NAME)
    scope: Scope | None = None
    target: str | list[str] | None = None
    priority: int | None = None
    when: str | bool | None = None
    then: Then | None = None


class MetricNew(BaseModel):
    """A simulated metric: each cycle draws ``field`` uniformly in [min, max] for the entities targeted."""

    model_config = STRICT
    name: str = Field(**NAME)
    scope: Scope
    target: str | list[str] = Target
    field: str = Field(min_length=1, max_length=255)
    min: float
    max: float
    override: bool | None = None
    active: bool | None = None
    file: str | None = FileName


class MetricChange(BaseModel):
    model_config = STRICT
    name: str | None = Field(None, **NAME)
    scope: Scope | None = None
    target: str | list[str] | None = None
    field: str | None = Field(None, min_length=1, max_length=255)
    min: float | None = None
    max: float | None = None
    override: bool | None = None
    active: bool | None = None


class PolicyItem(BaseModel):
    """A rule or simulated metric as written in the policy files."""

    name: str
    file: str
    line: int
    values: dict[str, Any]


class PolicyItems(BaseModel):
    items: list[PolicyItem]
    digest: str = Field(description="the version of the policy on disk")


class PolicyState(BaseModel):
    digest: str
    files: list[str]
    rules: int
    simulated_metrics: int
    period: float


@dataclass(frozen=True)
class Part:
    section: Section
    path: str
    new: type[BaseModel]
    change: type[BaseModel]


PARTS = (Part("rules", "rules", RuleNew, RuleChange),
         Part("simulated_metrics", "simulated-metrics", MetricNew, MetricChange))


def files() -> PolicyFiles:
    return state().policy


@contextmanager
def policy_errors() -> Iterator[None]:
    try:
        yield
    except InvalidSource as invalid:
        found: dict[str, list[str]] = {}
        for problem in invalid.problems:
            text = f"{problem.message} (hint: {problem.hint})" if problem.hint else problem.message
            found.setdefault(str(problem.location), []).append(text)
        raise ApiError(422, f"the policy would not load ({len(invalid.problems)} problem"
                            f"{'s' if len(invalid.problems) != 1 else ''}); nothing was changed", found) from None
    except StoreError as error:
        raise from_store(error, ("name", "file")) from None


def _item(entry: Entry) -> dict[str, Any]:
    return {"name": entry.values.get("name", ""), "file": entry.file, "line": entry.line, "values": entry.values}


def _digest() -> str:
    try:
        return files().load().digest
    except InvalidSource:
        return ""


def _views(bp: Blueprint, spec: SpecTree, part: Part) -> None:
    noun, section, tag = part.section.replace("_", " ").rstrip("s"), part.section, part.path
    endpoint = part.path.replace("-", "_")

    def listing() -> Response:
        with policy_errors():
            items = [_item(e) for e in files().entries(section)]
        return jsonify({"items": items, "digest": _digest()})

    def create() -> Any:
        body = request.context.json  # type: ignore[attr-defined]
        values = body.model_dump(exclude_none=True, exclude={"file"})
        with policy_errors():
            entry = files().add(section, values, body.file)
        record(f"policy.{endpoint}.create", "ok", entry.values["name"], {"file": entry.file})
        return jsonify(_item(entry)), 201, {"Location": url_for(f".{endpoint}_one", name=entry.values["name"])}

    def one(name: str) -> Response:
        with policy_errors():
            return jsonify(_item(files().get(section, name)))

    def change(name: str) -> Response:
        changes = request.context.json.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
        if changes.get("name", "") is None:
            raise ApiError(422, "a name cannot be removed", {"name": ["cannot be null"]})
        with policy_errors():
            entry = files().change(section, name, changes)
        record(f"policy.{endpoint}.change", "ok", name, changes)
        return jsonify(_item(entry))

    def remove(name: str) -> Any:
        with policy_errors():
            files().remove(section, name)
        record(f"policy.{endpoint}.delete", "ok", name)
        return "", 204

    docs: dict[str, tuple[Callable[..., Any], str, str, dict[str, Any]]] = {
        "listing": (listing, "GET", "", {"resp": Responses(HTTP_200=PolicyItems, HTTP_422=ErrorBody)}),
        "create": (create, "POST", "", {"json": part.new, "resp": Responses(HTTP_201=PolicyItem, HTTP_409=ErrorBody)}),
        "one": (one, "GET", "/<name>", {"resp": Responses(HTTP_200=PolicyItem, HTTP_404=ErrorBody)}),
        "change": (change, "PATCH", "/<name>", {"json": part.change, "resp": Responses(HTTP_200=PolicyItem,
                                                                                           HTTP_404=ErrorBody)}),
        "remove": (remove, "DELETE", "/<name>", {"resp": Responses("HTTP_204", HTTP_404=ErrorBody)}),
    }
    listing.__doc__ = f"List the policy's {noun}s\n\nAs written in the policy files, in loading order."
    create.__doc__ = f"Add a {noun}\n\nChecked with the whole policy before the file is written."
    one.__doc__ = f"Get a {noun}"
    change.__doc__ = f"Change a {noun}\n\nChecked with the whole policy before the file is written."
    remove.__doc__ = f"Delete a {noun}"
    for name, (view, method, suffix, declaration) in docs.items():
        view.__name__ = f"{endpoint}_{name}"
        validated = spec.validate(tags=[tag], operation_id=view.__name__, **declaration)(view)
        bp.add_url_rule(f"/{part.path}{suffix}", endpoint=view.__name__, view_func=validated, methods=[method])


def blueprint(spec: SpecTree) -> Blueprint:
    bp = Blueprint("policy", __name__)

    @bp.get("/policy")
    @spec.validate(resp=Responses(HTTP_200=PolicyState, HTTP_422=ErrorBody), tags=["policy"])
    def policy() -> Response:
        """The policy on disk\n\nIts version and size; 422 with its problems when it does not load."""
        with policy_errors():
            loaded = files().load()
            names = [f.name for f in files().files()]
        return jsonify({"digest": loaded.digest, "files": names, "rules": len(loaded.rules),
                        "simulated_metrics": len(loaded.simulated_metrics), "period": loaded.settings.period})

    for part in PARTS:
        _views(bp, spec, part)
    return bp


__all__ = ["blueprint"]

"""The rule and simulated-metric editors: the policy's items as written in its files, and forms that add, change
and delete them through ``PolicyFiles``, exactly as the API's policy endpoints do (the API's models check the
form; the whole policy is loaded with the edit before anything is written; the file is replaced atomically).

An edit the engine refuses is shown with each problem at its line, in the file as the edit would have written it
(``RefusedEdit.text``), and beside the input it concerns; the files stay as they were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from pydantic import BaseModel, ValidationError

from usm.engine import InvalidSource, Problem
from usm.manager.store.errors import StoreError
from usm.web.api.policy import MetricChange, MetricNew, RuleChange, RuleNew
from usm.web.audit import record
from usm.web.hub import state
from usm.web.pages import admin_only
from usm.web.policyfiles import RefusedEdit, Section
from usm.web.security import login_required

CONTEXT_LINES = 6
"""Lines shown before the first and after the last problem of a refused edit."""
SCOPES = ("host", "app", "service", "container")
DECISIONS = ("none", "replicate", "migrate", "stop", "overwork", "underwork")
KEY_LINE = re.compile(r"^\s*(?:-\s+)?([a-z_]+)\s*:")


@dataclass(frozen=True)
class Part:
    path: str
    section: Section
    title: str
    noun: str
    new: type[BaseModel]
    change: type[BaseModel]
    defaults: tuple[tuple[str, Any], ...]


PARTS = {
    "rules": Part("rules", "rules", "Rules", "rule", RuleNew, RuleChange, ()),
    "simulated-metrics": Part("simulated-metrics", "simulated_metrics", "Simulated metrics", "simulated metric",
                              MetricNew, MetricChange, (("override", False), ("active", True))),
}

bp = Blueprint("policy", __name__, url_prefix="/policy")


def part_of(path: str) -> Part:
    if path not in PARTS:
        abort(404)
    return PARTS[path]


@dataclass(frozen=True)
class Refusal:
    """Why an edit was not made: a message, problems by form field, and the file to show them in."""

    message: str
    errors: dict[str, list[str]]
    file: str = ""
    first: int = 1
    lines: tuple[str, ...] = ()
    marks: dict[int, list[Problem]] | None = None
    others: tuple[Problem, ...] = ()


def target_of(text: str) -> str | list[str]:
    """A form's target: "*", one name, or names separated by commas."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    return names[0] if len(names) == 1 else names


def target_text(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value or "")


def _form_values(part: Part) -> dict[str, Any]:
    """The form as the API's body would carry it: text inputs left out when empty, checkboxes as booleans."""
    form = request.form
    values: dict[str, Any] = {}
    for name in ("name", "scope", "field", "when", "then", "file"):
        if form.get(name, "").strip():
            values[name] = form[name].strip()
    if form.get("target", "").strip():
        values["target"] = target_of(form["target"])
    for name in ("priority", "min", "max"):
        if form.get(name, "").strip():
            values[name] = form[name].strip()
    if part.section == "simulated_metrics":
        values["override"] = "override" in form
        values["active"] = "active" in form
    return values


def _problems(error: ValidationError) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        found.setdefault(str(item["loc"][0]) if item["loc"] else "body", []).append(item["msg"])
    return found


def refusal_of(refused: RefusedEdit) -> Refusal:
    """The problems of a refused edit placed at their lines of the file it would have written, and beside the
    input whose key is written on that line."""
    lines = refused.text.splitlines()
    here = [p for p in refused.problems if p.location.file == refused.file]
    marks: dict[int, list[Problem]] = {}
    errors: dict[str, list[str]] = {}
    for problem in here:
        marks.setdefault(problem.location.line, []).append(problem)
        if 1 <= problem.location.line <= len(lines) and (key := KEY_LINE.match(lines[problem.location.line - 1])):
            errors.setdefault(key.group(1), []).append(f"line {problem.location.line}: {problem.message}")
    numbers = [p.location.line for p in here] or [1]
    first = max(1, min(numbers) - CONTEXT_LINES)
    last = min(len(lines), max(numbers) + CONTEXT_LINES)
    count = len(refused.problems)
    return Refusal(f"The policy would not load with this edit ({count} problem{'s' if count != 1 else ''}); "
                   "nothing was changed.", errors, refused.file, first, tuple(lines[first - 1:last]), marks,
                   tuple(p for p in refused.problems if p not in here))


def _policy_state() -> tuple[Any, list[str], tuple[Problem, ...]]:
    """The policy as loaded (or ``None``), its files, and its problems when it does not load."""
    files = state().policy
    try:
        names = [f.name for f in files.files()]
        return files.load(), names, ()
    except InvalidSource as invalid:
        try:
            names = [f.name for f in files.files()]
        except InvalidSource:
            names = []
        return None, names, invalid.problems


@bp.get("/<path>")
@login_required
def listing(path: str) -> Any:
    part = part_of(path)
    loaded, names, problems = _policy_state()
    try:
        entries = state().policy.entries(part.section)
    except InvalidSource as invalid:
        entries, problems = [], invalid.problems
    return render_template("policy/list.html", part=part, entries=entries, policy=loaded, files=names,
                           problems=problems, target_text=target_text)


@bp.get("/files/<name>")
@login_required
def file(name: str) -> Any:
    """A policy file with numbered lines (the editors link their items' lines here)."""
    files = state().policy
    try:
        known = {f.name: f for f in files.files()}
    except InvalidSource as invalid:
        return render_template("message.html", title="No policy", message=str(invalid)), 404
    if name not in known:
        return render_template("message.html", title="No such policy file",
                               message=f"the policy has no file {name!r}; it has {', '.join(sorted(known))}"), 404
    _, _, problems = _policy_state()
    marks: dict[int, list[Problem]] = {}
    for problem in problems:
        if problem.location.file.endswith(name):
            marks.setdefault(problem.location.line, []).append(problem)
    lines = known[name].read_text(encoding="utf-8").splitlines()
    return render_template("policy/file.html", name=name, lines=lines, marks=marks, files=sorted(known))


def _editor(part: Part, values: dict[str, Any], name: str | None, refusal: Refusal | None = None,
            status: int = 200) -> Any:
    _, names, _ = _policy_state()
    return render_template("policy/form.html", part=part, values=values, name=name, refusal=refusal,
                           files=names, scopes=SCOPES, decisions=DECISIONS), status


def _echo() -> dict[str, Any]:
    values: dict[str, Any] = {k: request.form.get(k, "") for k in ("name", "scope", "target", "priority", "when",
                                                                   "then", "field", "min", "max", "file")}
    values.update(override="override" in request.form, active="active" in request.form)
    return values


@bp.get("/<path>/new")
@login_required
@admin_only
def create_form(path: str) -> Any:
    part = part_of(path)
    return _editor(part, {"scope": "service", "target": "*", "then": "replicate", "active": True, "override": False},
                   None)


@bp.post("/<path>/new")
@login_required
@admin_only
def create(path: str) -> Any:
    part = part_of(path)
    try:
        body = part.new.model_validate(_form_values(part))
    except ValidationError as error:
        return _editor(part, _echo(), None, Refusal("Some fields are not right.", _problems(error)), 422)
    values = body.model_dump(exclude_none=True, exclude={"file"})
    try:
        entry = state().policy.add(part.section, values, getattr(body, "file", None))
    except RefusedEdit as refused:
        return _editor(part, _echo(), None, refusal_of(refused), 422)
    except (InvalidSource, StoreError) as error:
        return _editor(part, _echo(), None, Refusal(str(error), {}), 409)
    record(f"policy.{part.path.replace('-', '_')}.create", "ok", entry.values["name"], {"file": entry.file})
    flash(f"Added {part.noun} {entry.values['name']} to {entry.file} (line {entry.line}).", "ok")
    return redirect(url_for("policy.listing", path=path))


def _current(part: Part, name: str) -> dict[str, Any] | None:
    try:
        entry = state().policy.get(part.section, name)
    except (InvalidSource, StoreError):
        return None
    return {**dict(part.defaults), **entry.values, "file": entry.file, "line": entry.line}


@bp.get("/<path>/<name>/edit")
@login_required
@admin_only
def edit_form(path: str, name: str) -> Any:
    part = part_of(path)
    current = _current(part, name)
    if current is None:
        return render_template("message.html", title=f"No such {part.noun}",
                               message=f"the policy has no {part.noun} named {name!r}"), 404
    return _editor(part, {**current, "target": target_text(current.get("target"))}, name)


@bp.post("/<path>/<name>/edit")
@login_required
@admin_only
def edit(path: str, name: str) -> Any:
    part = part_of(path)
    current = _current(part, name)
    if current is None:
        return render_template("message.html", title=f"No such {part.noun}",
                               message=f"the policy has no {part.noun} named {name!r}"), 404
    submitted = _form_values(part)
    submitted.pop("file", None)
    if "priority" in current and "priority" not in submitted:
        submitted["priority"] = None  # emptied: the rule goes back to the default priority
    try:
        checked = part.change.model_validate(submitted)
    except ValidationError as error:
        return _editor(part, _echo(), name, Refusal("Some fields are not right.", _problems(error)), 422)
    changes = {k: v for k, v in checked.model_dump(exclude_unset=True).items()
               if (v != current.get(k)) and (v is not None or k in current)}
    if not changes:
        flash(f"Nothing to save: {part.noun} {name} is as it was.", "ok")
        return redirect(url_for("policy.listing", path=path))
    try:
        entry = state().policy.change(part.section, name, changes)
    except RefusedEdit as refused:
        return _editor(part, _echo(), name, refusal_of(refused), 422)
    except (InvalidSource, StoreError) as error:
        return _editor(part, _echo(), name, Refusal(str(error), {}), 409)
    record(f"policy.{part.path.replace('-', '_')}.change", "ok", name, changes)
    flash(f"Saved {part.noun} {entry.values['name']} in {entry.file}: changed {', '.join(sorted(changes))}.", "ok")
    return redirect(url_for("policy.listing", path=path))


@bp.get("/<path>/<name>/delete")
@login_required
@admin_only
def delete_form(path: str, name: str) -> Any:
    return render_template("policy/delete.html", part=part_of(path), name=name, message="")


@bp.post("/<path>/<name>/delete")
@login_required
@admin_only
def delete(path: str, name: str) -> Any:
    part = part_of(path)
    try:
        state().policy.remove(part.section, name)
    except RefusedEdit as refused:
        return render_template("policy/delete.html", part=part, name=name, message=refusal_of(refused).message,
                               refusal=refusal_of(refused)), 422
    except (InvalidSource, StoreError) as error:
        return render_template("policy/delete.html", part=part, name=name, message=str(error)), 404
    record(f"policy.{part.path.replace('-', '_')}.delete", "ok", name)
    flash(f"Deleted {part.noun} {name}.", "ok")
    return redirect(url_for("policy.listing", path=path))


__all__ = ["PARTS", "bp", "refusal_of", "target_of", "target_text"]

"""YAML documents that remember where each value was written.

Policy files and policy test files are read with ruamel.yaml's round-trip loader, which keeps
the line and column of every key, value and list item. Errors, whether from YAML itself, from
the JSON Schema or from the semantic checks, are reported as :class:`Problem` at
``FILE:LINE:COLUMN`` (1-based), with a hint on how to fix them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

PathItem = str | int


@dataclass(frozen=True)
class Location:
    """Where something was written: a file and a 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    location: Location
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class InvalidSource(ValueError):
    """One or more problems in policy or test files; nothing of them was used."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.location.file, p.location.line,
                                                              p.location.column)))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: its data (ruamel containers) and its name for messages."""

    file: str
    data: Any
    lines: tuple[str, ...] = ()

    def at(self, path: Sequence[PathItem], key: bool = False) -> Location:
        """The location of the value at ``path`` (or of its key, with ``key=True``).
        Falls back to the nearest enclosing container that has a position."""
        node, line, column = self.data, 0, 0
        for item in path:
            if isinstance(node, CommentedMap) and item in node:
                line, column = node.lc.key(item) if key and item == path[-1] else node.lc.value(item)
            elif isinstance(node, CommentedSeq) and isinstance(item, int) and 0 <= item < len(node):
                line, column = node.lc.item(item)
            else:
                break
            node = node[item]
        return Location(self.file, line + 1, column + 1)

    def problem(self, path: Sequence[PathItem], message: str, hint: str = "", key: bool = False) -> Problem:
        return Problem(self.at(path, key=key), message, hint)

    def text_location(self, path: Sequence[PathItem], offset: int) -> Location:
        """Where character ``offset`` of the scalar string at ``path`` stands in the file.
        Exact for single-line plain and quoted scalars; block scalars point at their line."""
        start = self.at(path)
        value = self.value(path)
        if isinstance(value, (LiteralScalarString, FoldedScalarString)):
            before = str(value)[:offset]
            return Location(self.file, start.line + 1 + before.count("\n"), 1)
        quoted = type(value).__name__ in ("DoubleQuotedScalarString", "SingleQuotedScalarString")
        column = start.column + offset + (1 if quoted else 0)
        source = self.lines[start.line - 1] if start.line <= len(self.lines) else ""
        if column > len(source) + 1 or "\n" in str(value):  # a scalar folded over several lines
            return start
        return Location(self.file, start.line, column)

    def value(self, path: Sequence[PathItem]) -> Any:
        node = self.data
        for item in path:
            node = node[item]
        return node


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.allow_duplicate_keys = False
    return yaml


def load(path: Path, shown_as: str | None = None) -> Document:
    """Read and parse one YAML file. Raises :class:`InvalidSource` with the YAML error's position."""
    name = shown_as or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidSource([Problem(Location(name, 1, 1), f"cannot read the file: {error}")]) from None
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(x for x in (error.context, error.problem) if x)
        hint = "keys must be unique within a mapping" if "duplicate" in message else \
            "check the indentation and quoting at this place"
        raise InvalidSource([Problem(Location(name, line, column), f"invalid YAML: {message}", hint)]) from None
    except Exception as error:  # noqa: BLE001 - ruamel raises a few unmarked errors (e.g. several documents)
        raise InvalidSource([Problem(Location(name, 1, 1), f"invalid YAML: {error}")]) from None
    return Document(name, data, tuple(text.splitlines()))


# --- JSON Schema ------------------------------------------------------------------------------------


@cache
def schema(name: str, package: str = "usm.engine") -> dict[str, Any]:
    """A JSON Schema shipped in a package of usm."""
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


@cache
def _validator(name: str, package: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name, package))


def schema_problems(document: Document, schema_name: str, package: str = "usm.engine") -> list[Problem]:
    """Validate a document against a shipped schema; every violation becomes a Problem."""
    errors = sorted(_validator(schema_name, package).iter_errors(document.data),
                    key=lambda e: list(map(str, e.path)))
    return [p for error in errors for p in _translate(document, error, schema(schema_name, package))]


def _describe(path: Iterable[PathItem]) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "the file"


def _translate(document: Document, error: ValidationError, root: dict[str, Any]) -> list[Problem]:
    path = list(error.absolute_path)
    where = _describe(path)
    description = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    validator = error.validator
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        hint = f"allowed keys: {', '.join(allowed)}" if allowed else description
        return [document.problem(path + [k], f"unknown key '{k}' in {where}", hint, key=True) for k in extra]
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [document.problem(path, f"{where} is missing the required key '{missing}'",
                                 _property_description(error, missing, root))]
    if "propertyNames" in error.absolute_schema_path:
        return [document.problem(path + [error.instance], f"unknown key '{error.instance}' in {where}",
                                 "use one of: " + ", ".join(map(str, error.validator_value)), key=True)]
    if validator == "enum":
        options = ", ".join(map(str, error.validator_value))
        return [document.problem(path, f"'{error.instance}' is not allowed for {where}", f"use one of: {options}")]
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    title = title if title == "duration" else None
    if validator == "type":
        expected = error.validator_value
        expected = title or (" or ".join(expected) if isinstance(expected, list) else expected)
        return [document.problem(path, f"{where} must be {_article(expected)}, not {_json_type(error.instance)}",
                                 description)]
    if validator == "pattern":
        what = f"a valid {title}" if title else "valid"
        return [document.problem(path, f"'{error.instance}' is not {what} for {where}", description)]
    return [document.problem(path, f"{where}: {error.message}", description)]


def _property_description(error: ValidationError, key: str, root: dict[str, Any]) -> str:
    prop = error.schema.get("properties", {}).get(key, {})
    if "$ref" in prop:
        prop = root.get("$defs", {}).get(prop["$ref"].rsplit("/", 1)[-1], {})
    return prop.get("description", "")


def _article(kind: str) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
             "number": "a number", "boolean": "true or false", "string or array": "a string or a list",
             "string or boolean": "a string or true/false", "duration": "a duration"}
    return names.get(kind, kind)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, list):
        return "a list"
    return "a mapping"

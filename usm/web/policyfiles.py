"""Editing the rules and simulated metrics of a policy directory, as an operator would in an editor.

Every edit is made on the YAML documents with ruamel.yaml's round-trip mode, so comments, key order, quoting and
the files' layout stay as people wrote them. Before anything is written, the whole policy as it would be after
the edit is loaded with ``usm.engine.load_policy`` (in a scratch copy of the directory): an edit that the
engine would refuse raises ``InvalidSource`` with its ``FILE:LINE:COLUMN`` problems and changes nothing. A
valid edit replaces the one file it touches atomically (a temporary file in the same directory, flushed to
disk, then renamed over it), so the engine's hot reload never reads half a file.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from usm.engine import InvalidSource, Policy, Problem, load_policy
from usm.engine.loader import policy_files
from usm.engine.policy import Location
from usm.manager.store.errors import Duplicate, Invalid, NotFound

Section = Literal["rules", "simulated_metrics"]
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.ya?ml")
ORDER: dict[Section, tuple[str, ...]] = {
    "rules": ("name", "scope", "target", "priority", "when", "then"),
    "simulated_metrics": ("name", "scope", "target", "field", "min", "max", "override", "active"),
}
"""The order of keys in a new item, as the shipped policy writes them."""
NOUN = {"rules": "rule", "simulated_metrics": "simulated metric"}


class RefusedEdit(InvalidSource):
    """An edit the engine refused: its problems, and the file as the edit would have written it (``file``,
    ``text``), so an editor can show each problem at its line. Nothing was written."""

    def __init__(self, problems: list[Problem], file: str, text: str) -> None:
        super().__init__(problems)
        self.file = file
        self.text = text


@dataclass(frozen=True)
class Entry:
    """A rule or simulated metric as written: its file, its position in that file's list, its line, its keys."""

    file: str
    index: int
    line: int
    values: dict[str, Any]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a long condition onto a second line
    return yaml


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


class PolicyFiles:
    """The editable parts of the policy at ``root`` (a directory, or a single file). One edit at a time."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self.root if self.root.is_dir() or not self.root.suffix else self.root.parent

    def files(self) -> list[Path]:
        if not self.root.exists():
            raise InvalidSource([Problem(Location(str(self.root), 1, 1), f"no such policy directory: {self.root}",
                                         "set USM_POLICY (usm serve --policy) to the policy directory")])
        return policy_files(self.root)

    def load(self) -> Policy:
        """The policy as the engine loads it (``InvalidSource`` when it is broken on disk)."""
        return load_policy(self.root)

    def entries(self, section: Section) -> list[Entry]:
        found = []
        for file in self.files():
            data = self._read(file)
            items = data.get(section) if isinstance(data, CommentedMap) else None
            if not isinstance(items, CommentedSeq):
                continue
            for index, item in enumerate(items):
                if isinstance(item, CommentedMap):
                    found.append(Entry(file.name, index, items.lc.item(index)[0] + 1, _plain(item)))
        return found

    def get(self, section: Section, name: str) -> Entry:
        for entry in self.entries(section):
            if entry.values.get("name") == name:
                return entry
        raise NotFound(f"the policy has no {NOUN[section]} named {name!r}")

    def add(self, section: Section, values: Mapping[str, Any], file: str | None = None) -> Entry:
        with self._lock:
            if any(e.values.get("name") == values["name"] for e in self.entries(section)):
                raise Duplicate(f"the policy has a {NOUN[section]} named {values['name']!r} already; choose another "
                                "name or change that one")
            target = self._target_file(section, values, file)
            data = self._read(target) if target.exists() else CommentedMap()
            if data is None:
                data = CommentedMap()
            items = data.get(section)
            if not isinstance(items, CommentedSeq):
                items = data[section] = CommentedSeq()
            item = CommentedMap()
            for key in ORDER[section]:
                if key in values and values[key] is not None:
                    item[key] = values[key]
            items.append(item)
            self._commit(target, data)
        return self.get(section, values["name"])

    def change(self, section: Section, name: str, changes: Mapping[str, Any]) -> Entry:
        with self._lock:
            entry = self.get(section, name)
            file = self.directory / entry.file
            data = self._read(file)
            item = data[section][entry.index]
            for key, value in changes.items():
                if value is None:
                    item.pop(key, None)
                else:
                    item[key] = value
            self._commit(file, data)
        return self.get(section, changes.get("name") or name)

    def remove(self, section: Section, name: str) -> None:
        with self._lock:
            entry = self.get(section, name)
            file = self.directory / entry.file
            data = self._read(file)
            del data[section][entry.index]
            self._commit(file, data)

    def _target_file(self, section: Section, values: Mapping[str, Any], file: str | None) -> Path:
        """The file a new item goes to: the one named, else the file of the last item of the same scope, else
        of the same section, else ``rules.yaml`` / ``simulated_metrics.yaml``."""
        if file is not None:
            if not FILE_NAME.fullmatch(file):
                raise Invalid(f"file {file!r} is not a policy file name such as services.yaml (letters, digits, "
                              "_ . -, ending in .yaml or .yml, no directory)", (f"file {file!r} is not allowed",))
            return self.directory / file
        entries = self.entries(section)
        same_scope = [e for e in entries if e.values.get("scope") == values.get("scope")]
        chosen = (same_scope or entries)
        return self.directory / (chosen[-1].file if chosen else f"{section}.yaml")

    def _read(self, file: Path) -> Any:
        try:
            return _yaml().load(file.read_text(encoding="utf-8"))
        except Exception as error:  # noqa: BLE001 - the loader below says where and why
            problems = _load_problems(file)
            raise InvalidSource(problems or [Problem(Location(file.name, 1, 1), f"cannot read the file: {error}")]
                                ) from None

    def _commit(self, file: Path, data: Any) -> None:
        """Check the policy with ``data`` as ``file``, then write it atomically; ``RefusedEdit`` otherwise."""
        stream = io.StringIO()
        _yaml().dump(data, stream)
        text = stream.getvalue()
        with _scratch_copy(self.directory, self.files(), file.name, text) as scratch:
            try:
                load_policy(scratch if self.root.is_dir() else scratch / file.name)
            except InvalidSource as invalid:
                raise RefusedEdit([_relocated(p, scratch) for p in invalid.problems], file.name, text) from None
        _write_atomically(file, text)


@contextmanager
def _scratch_copy(directory: Path, files: list[Path], name: str, text: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="usm-policy-") as scratch:
        for source in files:
            if source.name != name:
                shutil.copyfile(source, Path(scratch) / source.name)
        (Path(scratch) / name).write_text(text, encoding="utf-8")
        yield Path(scratch)


def _relocated(problem: Problem, scratch: Path) -> Problem:
    """A problem found in the scratch copy, told against the policy file's own name."""
    file = problem.location.file
    if file.startswith(str(scratch)):
        file = Path(file).name
    return Problem(Location(file, problem.location.line, problem.location.column), problem.message, problem.hint)


def _load_problems(file: Path) -> list[Problem]:
    from usm.engine.yamldoc import load

    try:
        load(file, shown_as=file.name)
    except InvalidSource as invalid:
        return list(invalid.problems)
    return []


def _write_atomically(file: Path, text: str) -> None:
    mode = file.stat().st_mode & 0o777 if file.exists() else 0o644
    descriptor, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(file.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


__all__ = ["Entry", "PolicyFiles", "RefusedEdit", "Section"]

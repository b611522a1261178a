"""Policy drafts of the workbench: copies of a policy that an operator edits as text (a draft may not load while
it is being written), validates, tests and simulates, without touching the live policy.

A draft is a folder under the hub's instance folder with its policy files directly in it and its tests in
``tests/`` (each with ``policy: ..``), the layout of the shipped ``policies/``. Files are named as
``services.yaml`` or ``tests/streaks_test.yaml``; every write replaces the file atomically. Bounded: at most
``MAX_DRAFTS`` drafts of ``MAX_FILES`` files of ``MAX_BYTES`` each.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from usm.engine import InvalidSource, Policy, Problem, load_policy
from usm.engine.loader import policy_files
from usm.web.policyfiles import FILE_NAME

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
TESTS = "tests"
MAX_DRAFTS = 20
MAX_FILES = 30
MAX_BYTES = 256 * 1024


class DraftError(ValueError):
    """A draft operation refused; the message says what is wrong and how to fix it."""


class NoDraft(DraftError):
    """No draft or file of that name."""


@dataclass(frozen=True)
class DraftFile:
    name: str  # "services.yaml" or "tests/x_test.yaml"
    size: int

    @property
    def test(self) -> bool:
        return self.name.startswith(f"{TESTS}/")


def tests_of(policy: Path) -> list[Path]:
    """The test files in ``policy``'s ``tests/`` folder that test that policy (``policy: ..``)."""
    folder = policy / TESTS
    if not folder.is_dir():
        return []
    return [file for file in sorted(folder.glob("*.y*ml")) if policy_named(file) == ".."]


def policy_named(test: Path) -> str | None:
    """The policy a test file names (``None`` when it names none or does not parse)."""
    try:
        data = YAML(typ="safe").load(test.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - the test runner reports a file that does not parse, at its line
        return None
    named = data.get("policy") if isinstance(data, dict) else None
    return str(named).rstrip("/") if named is not None else None


def copy_policy(source: Path, target: Path) -> None:
    """Copy the policy at ``source`` (its files and its own tests) into the new folder ``target``."""
    target.mkdir(parents=True)
    for file in policy_files(source):
        shutil.copyfile(file, target / file.name)
    tests = tests_of(source)
    if tests:
        (target / TESTS).mkdir()
        for file in tests:
            shutil.copyfile(file, target / TESTS / file.name)


def file_name(name: str) -> str:
    """``name`` if it names a draft file; ``DraftError`` saying what a name looks like otherwise."""
    base = name.removeprefix(f"{TESTS}/")
    if not FILE_NAME.fullmatch(base) or "/" in base:
        raise DraftError(f"{name!r} is not a file name such as services.yaml or tests/streaks_test.yaml (letters, "
                         "digits, _ . -, ending in .yaml or .yml)")
    return name


def text_of(content: bytes) -> str:
    if len(content) > MAX_BYTES:
        raise DraftError(f"the file has {len(content)} bytes; a draft file has at most {MAX_BYTES}")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise DraftError("the file is not UTF-8 text; save it as UTF-8") from None


class Drafts:
    """The drafts under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME.fullmatch(p.name))

    def folder(self, name: str) -> Path:
        if not NAME.fullmatch(name) or not (self.root / name).is_dir():
            raise NoDraft(f"there is no draft named {name!r}")
        return self.root / name

    def _new(self, name: str) -> Path:
        if not NAME.fullmatch(name):
            raise DraftError(f"{name!r} is not a draft name: use 1 to 40 lower-case letters, digits and -, "
                             "starting with a letter or digit")
        if (self.root / name).exists():
            raise DraftError(f"a draft named {name!r} exists already; choose another name")
        if len(self.names()) >= MAX_DRAFTS:
            raise DraftError(f"there are {MAX_DRAFTS} drafts already; delete one first")
        return self.root / name

    def create(self, name: str, source: Path) -> None:
        """A draft holding a copy of the policy at ``source`` and its tests."""
        copy_policy(source, self._new(name))

    def create_from(self, name: str, file: str, content: bytes) -> None:
        """A draft holding one uploaded policy file."""
        text = text_of(content)
        folder = self._new(name)
        folder.mkdir()
        self.write(name, file_name(file.removeprefix(f"{TESTS}/")), text)

    def files(self, name: str) -> list[DraftFile]:
        folder = self.folder(name)
        found = [DraftFile(p.name, p.stat().st_size) for p in sorted(folder.glob("*.y*ml"))]
        found += [DraftFile(f"{TESTS}/{p.name}", p.stat().st_size) for p in sorted((folder / TESTS).glob("*.y*ml"))]
        return found

    def read(self, name: str, file: str) -> str:
        path = self.folder(name) / file_name(file)
        if not path.is_file():
            raise NoDraft(f"draft {name!r} has no file {file!r}")
        return path.read_text(encoding="utf-8")

    def write(self, name: str, file: str, text: str) -> None:
        """Save ``text`` as ``file`` (replacing it atomically), whether the policy loads with it or not."""
        folder = self.folder(name)
        path = folder / file_name(file)
        if len(text.encode("utf-8")) > MAX_BYTES:
            raise DraftError(f"the text has more than {MAX_BYTES} bytes; a draft file has at most that")
        if not path.exists() and len(self.files(name)) >= MAX_FILES:
            raise DraftError(f"draft {name!r} has {MAX_FILES} files already; delete one first")
        path.parent.mkdir(exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as stream:
            stream.write(text.replace("\r\n", "\n"))
        os.replace(temporary, path)

    def remove_file(self, name: str, file: str) -> None:
        path = self.folder(name) / file_name(file)
        if not path.is_file():
            raise NoDraft(f"draft {name!r} has no file {file!r}")
        path.unlink()

    def remove(self, name: str) -> None:
        shutil.rmtree(self.folder(name))

    def check(self, name: str) -> tuple[Policy | None, tuple[Problem, ...]]:
        """The draft's policy as the engine loads it, or its problems (files named as the draft names them)."""
        folder = self.folder(name)
        try:
            return load_policy(folder), ()
        except InvalidSource as invalid:
            return None, tuple(_shown(p, folder) for p in invalid.problems)


def _shown(problem: Problem, folder: Path) -> Problem:
    file = problem.location.file
    if file.startswith(str(folder)):
        file = str(Path(file).relative_to(folder))
    return Problem(type(problem.location)(file, problem.location.line, problem.location.column), problem.message,
                   problem.hint)


__all__ = ["MAX_BYTES", "MAX_DRAFTS", "MAX_FILES", "DraftError", "DraftFile", "Drafts", "NoDraft", "copy_policy",
           "file_name", "policy_named", "tests_of", "text_of"]

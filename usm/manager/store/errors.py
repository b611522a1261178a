"""What the store refuses, as exceptions whose message tells the operator what is wrong and how to fix it.

The hub maps them to HTTP statuses (``NotFound`` 404, ``Invalid`` 400, ``Duplicate`` and ``InUse`` 409,
``NotMigrated`` 503) and the CLI prints them; nothing was changed when one is raised.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class: the message is meant for people."""


class NotFound(StoreError, LookupError):
    """No row has the given key (or id)."""


class Invalid(StoreError, ValueError):
    """Input the store cannot accept (a missing or unknown field, a value out of range, a broken reference)."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class Duplicate(StoreError):
    """A unique field (a name, an instance id, ...) already belongs to another row."""


class InUse(StoreError):
    """A delete that other rows still depend on; ``dependants`` maps what kind of rows to their keys."""

    def __init__(self, message: str, dependants: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.dependants = dependants


class NotMigrated(StoreError):
    """The database schema is not the one this code expects: ``usm db upgrade`` brings it there."""


__all__ = ["Duplicate", "InUse", "Invalid", "NotFound", "NotMigrated", "StoreError"]

"""Hot reload: an edited policy directory is validated and swapped in between cycles.

``PolicyWatcher.poll()`` reads the policy files (a directory's ``*.yaml``/``*.yml``, a few KB)
and compares their content with what it saw last: nothing changed, a valid new policy, or an
invalid edit, which is reported once per distinct content while the policy in force stays.
Content, not modification times: an edit within the file system's time granularity still counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from usm.engine import InvalidSource, Policy, load_policy
from usm.engine.loader import policy_files


@dataclass(frozen=True)
class Reloaded:
    policy: Policy


@dataclass(frozen=True)
class Rejected:
    """An edit that does not load; ``problems`` are ``FILE:LINE:COLUMN: message`` lines."""

    problems: tuple[str, ...]


def content_digest(directory: Path) -> str:
    """A digest of the policy files' names and contents (the files ``load_policy`` would read)."""
    digest = hashlib.sha256()
    for path in policy_files(directory) if directory.exists() else []:
        digest.update(path.name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as error:  # removed or unreadable while we looked: count it as content
            digest.update(f"<{error.strerror}>".encode())
        digest.update(b"\0")
    return digest.hexdigest()


class PolicyWatcher:
    def __init__(self, directory: Path, period: float | None = None) -> None:
        self.directory = Path(directory)
        self.period = period  # replaces the policy's own period when given (as load_policy's)
        self._seen = content_digest(self.directory)

    def load(self) -> Policy:
        """The policy as it is now (raises ``InvalidSource``); what later polls compare with."""
        self._seen = content_digest(self.directory)
        return load_policy(self.directory, period=self.period)

    def poll(self) -> Reloaded | Rejected | None:
        """``None`` when the files are as last seen; else the new policy, or why it was rejected."""
        now = content_digest(self.directory)
        if now == self._seen:
            return None
        self._seen = now
        try:
            return Reloaded(load_policy(self.directory, period=self.period))
        except InvalidSource as invalid:
            return Rejected(tuple(str(p) for p in invalid.problems))

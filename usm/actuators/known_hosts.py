"""usm's own record of the SSH host keys it trusts, in OpenSSH ``known_hosts`` format.

The original accepted any host key (a promiscuous verifier, §13 item 23). Here a host key is trusted once, on
first use, which is when an operator adds the host with its password; the key is written to usm's known_hosts file
and from then on only that key is accepted. A host that presents another key is refused with both fingerprints,
and a host missing from the file is refused too rather than trusted again silently: a lost or edited file must not
turn into automatic trust. The file is OpenSSH's own format, so ``ssh -o UserKnownHostsFile=<file>`` agrees.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey


class HostKeyChanged(paramiko.SSHException):
    """The host presented a key other than the one recorded for it: possibly a man in the middle."""

    def __init__(self, name: str, recorded: paramiko.PKey, presented: paramiko.PKey, known_hosts: Path):
        self.name = name
        self.recorded = recorded
        self.presented = presented
        super().__init__(
            f"host key of {name} changed: usm recorded {recorded.get_name()} {recorded.fingerprint}, the host "
            f"now presents {presented.get_name()} {presented.fingerprint}. The connection was refused. If the host "
            f"was reinstalled or its key rotated on purpose, check the new fingerprint on the host "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), remove its line from {known_hosts} "
            f"(ssh-keygen -R '{name}' -f {known_hosts}) and add the host again.")


class HostKeyUnknown(paramiko.SSHException):
    """The host has no recorded key and this connection may not trust one."""

    def __init__(self, name: str, presented: paramiko.PKey, known_hosts: Path):
        self.name = name
        self.presented = presented
        super().__init__(
            f"{name} is not in {known_hosts} (it presents {presented.get_name()} {presented.fingerprint}); usm "
            f"trusts a host key only when the host is added with its password. Add the host again.")


class KnownHosts:
    """The known_hosts file: read on every check, appended to one whole line at a time, safe to share between
    threads."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def recorded(self, name: str) -> dict[str, paramiko.PKey]:
        """The keys recorded for ``name`` (``host`` or ``[host]:port``), by key type; empty when unknown."""
        with self._lock:
            return dict(self._load().lookup(name) or {})

    def policy(self, first_use: bool) -> paramiko.MissingHostKeyPolicy:
        """What a connection does with a host that has no recorded key: trust and record it, or refuse."""
        return _TrustOnFirstUse(self) if first_use else _RefuseUnknown(self)

    def changed(self, name: str, presented: paramiko.PKey) -> HostKeyChanged:
        """The error for a host that presents ``presented`` although another key is recorded."""
        recorded = self.recorded(name)
        same_type = recorded.get(presented.get_name())
        return HostKeyChanged(name, same_type or next(iter(recorded.values())), presented, self.path)

    def record(self, name: str, key: paramiko.PKey) -> None:
        """Trust ``key`` for ``name`` unless another key was recorded meanwhile (then refuse)."""
        with self._lock:
            keys = self._load()
            known = keys.lookup(name)
            if known:
                if known.get(key.get_name()) == key:
                    return
                raise HostKeyChanged(name, known.get(key.get_name()) or next(iter(known.values())), key, self.path)
            self._append(HostKeyEntry([name], key).to_line())

    def _load(self) -> paramiko.HostKeys:
        """The plain host entries, line by line: paramiko's own loader gives up on the whole file at an OpenSSH
        marker line (``@cert-authority``, ``@revoked``), which only OpenSSH acts on, so those are skipped here."""
        keys = paramiko.HostKeys()
        if not self.path.exists():
            return keys
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith(("#", "@")):
                continue
            try:
                entry = HostKeyEntry.from_line(line, number)
            except (InvalidHostKey, ValueError, paramiko.SSHException):
                continue  # a line usm cannot read is left to the tools that wrote it
            for name in entry.hostnames if entry is not None else ():
                keys.add(name, entry.key.get_name(), entry.key)
        return keys

    def _append(self, line: str) -> None:
        """Add one line, leaving every other line as it was: the file may be shared with other tools (and with
        usm's Docker-over-SSH access), and may hold comments or entries paramiko does not parse."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "r+b") as file:
            size = file.seek(0, os.SEEK_END)
            if size and os.pread(descriptor, 1, size - 1) != b"\n":
                line = "\n" + line
            file.write(line.encode())  # one write in append mode: a concurrent writer cannot interleave


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    def __init__(self, known: KnownHosts):
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known.record(hostname, key)


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known: KnownHosts):
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyUnknown(hostname, key, self.known.path)

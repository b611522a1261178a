"""A real OpenSSH server on a loopback port (usm's lab sshd, `usm.lab.sshd`), with what tests add to it.

`Sshd(workdir).start()` listens on 127.0.0.1:<free port>. `authorize(public_key_line)` lets a key in for any
user; `add_user()` creates a system user with a fresh random password (password logins need a real user and
PAM) and removes it at stop. `env` becomes `SetEnv` lines, e.g. DOCKER_HOST for a private dockerd.
A user's own `~/.ssh/authorized_keys` is read too, as on a real host (the edge actuator installs its key there).
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from usm.lab import sshd as lab

from . import Service, need


class Sshd(lab.Sshd):
    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        need("sshd")
        super().__init__(workdir, env)
        self.users: list[str] = []

    def add_user(self, name: str | None = None) -> tuple[str, str]:
        """Create a system user with a random password; return (name, password)."""
        name = name or f"usm{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(18)
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        self.users.append(name)
        return name, password

    def rotate_host_key(self) -> None:
        """Give the server a new host key (it takes effect for new connections after a restart)."""
        self.new_host_key()

    def restart(self) -> Sshd:
        """Stop the server and start it again on the same port, keeping its users (e.g. after `rotate_host_key`).
        Established connections survive, as with a real sshd; only new ones meet the new server."""
        Service.stop(self)
        return self.start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        for user in self.users:
            subprocess.run(["userdel", "-r", user], check=False, capture_output=True)
        self.users.clear()

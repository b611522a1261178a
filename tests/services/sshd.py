"""A real OpenSSH server on a loopback port, with its own host key, config and authorized keys.

`Sshd(workdir).start()` listens on 127.0.0.1:<free port>. `authorize(public_key_line)` lets a key in for any
user; `add_user()` creates a system user with a fresh random password (password logins need a real user and
PAM) and removes it at stop. `env` becomes `SetEnv` lines, e.g. DOCKER_HOST for a private dockerd.
A user's own `~/.ssh/authorized_keys` is read too, as on a real host (the edge actuator installs its key there).
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from . import Service, free_port, need, port_open


class Sshd(Service):
    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.root = Path(workdir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = self.root / "ssh_host_ed25519_key"
        self.authorized_keys = self.root / "authorized_keys"
        self.config = self.root / "sshd_config"
        self.users: list[str] = []
        if not self.host_key.exists():
            subprocess.run([need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)],
                           check=True)
        self.authorized_keys.touch(mode=0o600)
        lines = [
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}", f"AuthorizedKeysFile {self.authorized_keys} .ssh/authorized_keys",
            "PubkeyAuthentication yes", "PasswordAuthentication yes", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "UsePAM yes", "StrictModes no",
            "Subsystem sftp internal-sftp", "MaxStartups 100:30:200", "MaxSessions 50",
        ]
        lines += [f"SetEnv {key}={value}" for key, value in (env or {}).items()]
        self.config.write_text("\n".join(lines) + "\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        sshd = need("sshd")
        subprocess.run([sshd, "-t", "-f", str(self.config)], check=True)
        super().__init__("sshd", [sshd, "-D", "-e", "-f", str(self.config)], self.root)

    def start(self, ready=None, timeout: float = 20.0) -> "Sshd":
        super().start(ready or (lambda: port_open(self.port)), timeout)
        return self

    @property
    def host_public_key(self) -> str:
        """The server's host key as an OpenSSH public key line ("ssh-ed25519 AAAA... comment")."""
        return Path(f"{self.host_key}.pub").read_text().strip()

    def authorize(self, public_key_line: str) -> None:
        with self.authorized_keys.open("a") as keys:
            keys.write(public_key_line.strip() + "\n")

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
        for path in (self.host_key, Path(f"{self.host_key}.pub")):
            path.unlink(missing_ok=True)
        subprocess.run([need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)

    def restart(self) -> "Sshd":
        """Stop the server and start it again on the same port, keeping its users (e.g. after `rotate_host_key`).
        Established connections survive, as with a real sshd; only new ones meet the new server."""
        Service.stop(self)
        return self.start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        for user in self.users:
            subprocess.run(["userdel", "-r", user], capture_output=True)
        self.users.clear()

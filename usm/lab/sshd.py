"""A real OpenSSH server on a loopback port, with its own host key, config and authorized keys.

``Sshd(workdir).start()`` listens on 127.0.0.1:<free port>. ``authorize(public_key_line)`` lets a key in
for any user; ``env`` becomes ``SetEnv`` lines, e.g. DOCKER_HOST for a private dockerd. A user's own
``~/.ssh/authorized_keys`` is read too, as on a real host (the edge actuator installs its key there).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Self

from usm.actuators.edge import new_key_pair
from usm.lab.process import Process, find_binary, free_port, port_open


class Sshd(Process):
    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.root = Path(workdir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = self.root / "ssh_host_ed25519_key"
        self.authorized_keys = self.root / "authorized_keys"
        self.config = self.root / "sshd_config"
        if not self.host_key.exists():
            new_key_pair(self.host_key)
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
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd refuses to start without its privilege-separation directory
        sshd = find_binary("sshd")
        checked = subprocess.run([sshd, "-t", "-f", str(self.config)], check=False, capture_output=True,
                                 text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"sshd refused its configuration {self.config}: {checked.stderr.strip()}")
        super().__init__("sshd", [sshd, "-D", "-e", "-f", str(self.config)], self.root)

    def start(self, ready=None, timeout: float = 20.0) -> Self:
        super().start(ready or (lambda: port_open(self.port)), timeout)
        return self

    @property
    def host_public_key(self) -> str:
        """The server's host key as an OpenSSH public key line ("ssh-ed25519 AAAA... comment")."""
        return Path(f"{self.host_key}.pub").read_text().strip()

    @property
    def known_as(self) -> str:
        """Its name in a known_hosts file, as OpenSSH writes it."""
        return f"[127.0.0.1]:{self.port}"

    def authorize(self, public_key_line: str) -> None:
        with self.authorized_keys.open("a") as keys:
            keys.write(public_key_line.strip() + "\n")

    def new_host_key(self) -> None:
        """Give the server a new host key (it takes effect for new connections after a restart)."""
        for path in (self.host_key, Path(f"{self.host_key}.pub")):
            path.unlink(missing_ok=True)
        new_key_pair(self.host_key)


__all__ = ["Sshd"]

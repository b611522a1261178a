"""A pseudo-host's Docker side: a private dockerd, and an sshd whose sessions reach it.

The sshd's ``SetEnv DOCKER_HOST=unix://<dockerd socket>`` makes ``docker system dial-stdio`` (what the Docker SDK
runs over SSH) talk to this host's own dockerd, so several pseudo-hosts on one machine are separate Docker hosts,
each reached at ``ssh://<user>@127.0.0.1:<its port>`` as a real remote host would be.
"""

from __future__ import annotations

import getpass
import tempfile
from pathlib import Path
from typing import Self

from usm.actuators.edge import new_key_pair
from usm.lab.dockerd import Dockerd, remove_tree
from usm.lab.process import find_binary
from usm.lab.sshd import Sshd


def short_tempdir(prefix: str) -> Path:
    """A fresh directory under /tmp: dockerd's containerd socket path must stay short (pytest's temporary paths
    are too long for it)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def client_key(directory: Path) -> tuple[Path, str]:
    """A new ed25519 key pair for usm's SSH client: (private key file, public key line)."""
    private = Path(directory) / "usm_ed25519"
    key = new_key_pair(private)
    return private, f"{key.get_name()} {key.get_base64()}"


class DockerHost:
    """dockerd + sshd in ``workdir``, the client key ``authorized`` for every user."""

    def __init__(self, workdir: Path, authorized: str, dockerd_args: tuple[str, ...] = ()):
        find_binary("docker")  # what the sshd sessions run (docker system dial-stdio)
        self.root = Path(workdir)
        self.dockerd = Dockerd(self.root / "d", extra_args=dockerd_args)
        self.sshd = Sshd(self.root / "s", env={"DOCKER_HOST": self.dockerd.url})
        self.sshd.authorize(authorized)

    def start(self) -> Self:
        self.dockerd.start()
        try:
            self.sshd.start()
        except Exception:
            self.dockerd.stop()
            raise
        return self

    def stop(self) -> None:
        self.sshd.stop()
        self.dockerd.stop()
        remove_tree(self.root)

    @property
    def url(self) -> str:
        """The host's Docker endpoint over SSH, as the current user."""
        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.sshd.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"{self.sshd.known_as} {self.sshd.host_public_key}"

    def engine(self):
        """A Docker client straight to the dockerd socket: how a test looks at the host behind usm's back."""
        return self.dockerd.client()


__all__ = ["DockerHost", "client_key", "short_tempdir"]

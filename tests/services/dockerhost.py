"""A pseudo-host for the Docker actuator (usm's lab pseudo-host, `usm.lab.dockerhost`): a private dockerd, and
an sshd whose sessions reach it.

The sshd's `SetEnv DOCKER_HOST=unix://<dockerd socket>` makes `docker system dial-stdio` (what the Docker SDK runs
over SSH) talk to this host's own dockerd, so several pseudo-hosts on one machine are separate Docker hosts, each
reached at `ssh://root@127.0.0.1:<its port>` as a real remote host would be.
"""

from __future__ import annotations

from pathlib import Path

from usm.lab import dockerhost as lab
from usm.lab.dockerhost import client_key, short_tempdir

from . import need


class DockerHost(lab.DockerHost):
    """dockerd + sshd in `workdir`, the client key `authorized` for every user."""

    def __init__(self, workdir: Path, authorized: str, dockerd_args: tuple[str, ...] = ()):
        for binary in ("dockerd", "docker", "sshd"):
            need(binary)
        super().__init__(workdir, authorized, dockerd_args)


__all__ = ["DockerHost", "client_key", "short_tempdir"]

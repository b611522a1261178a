"""A pseudo-host for the Docker actuator (usm's lab pseudo-host, `usm.lab.dockerhost`): a private dockerd, and
an sshd whose sessions reach it.

The sshd's `SetEnv DOCKER_HOST=unix://<dockerd socket>` makes `docker system dial-stdio` (what the Docker SDK runs
over SSH) talk to this host's own dockerd, so several pseudo-hosts on one machine are separate Docker hosts, each
reached at `ssh://root@127.0.0.1:<its port>` as a real remote host would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class PseudoHosts:
    """Started pseudo-hosts by name, with the known_hosts file and client key usm reaches them with."""

    hosts: dict[str, DockerHost]
    known_hosts: Path
    identity: Path
    workdir: Path


@contextmanager
def pseudo_hosts(*names: str, prefix: str = "usm-hosts-") -> Iterator[PseudoHosts]:
    """Start one pseudo-host per name (usm's client key authorized, host keys recorded in a known_hosts file),
    and stop them all, whatever happens."""
    from .dockerd import remove_tree

    workdir = short_tempdir(prefix)
    identity, public = client_key(workdir)
    started: dict[str, DockerHost] = {}
    try:
        for name in names:
            started[name] = DockerHost(workdir / name, public).start()
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text("".join(f"{host.known_hosts_line}\n" for host in started.values()))
        yield PseudoHosts(started, known_hosts, identity, workdir)
    finally:
        for host in started.values():
            host.stop()
        remove_tree(workdir)


__all__ = ["DockerHost", "PseudoHosts", "client_key", "pseudo_hosts", "short_tempdir"]

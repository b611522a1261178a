"""A real etcd cluster on loopback ports: one member per region, as usm runs it.

`EtcdCluster(workdir, ["europe", "asia", "africa"]).start()` starts one `etcd` process per name (Debian
`etcd-server`), peered over loopback, and waits until every member serves its v3 JSON gateway. Heartbeat and
election timeouts are short so that leases of one second are allowed (etcd refuses TTLs below about 1.5 election
timeouts) and expire promptly. `endpoints` are the members' client URLs; `member(name)` one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import httpx

from . import Service, free_port, need, wait_until

HEARTBEAT_MS = 50
ELECTION_MS = 500


class EtcdMember(Service):
    def __init__(self, workdir: Path, name: str, client_port: int, peer_port: int, initial_cluster: str,
                 token: str):
        self.member_name = name
        self.client_port = client_port
        self.peer_port = peer_port
        argv = [
            need("etcd"), "--name", name, "--data-dir", str(Path(workdir) / f"{name}.etcd"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
            "--log-outputs", "stderr", "--logger", "zap",
        ]
        super().__init__(f"etcd-{name}", argv, Path(workdir))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def healthy(self) -> bool:
        answer = httpx.get(f"{self.url}/health", timeout=1.0)
        return answer.status_code == 200 and answer.json().get("health") == "true"


class EtcdCluster:
    """Several members started together (a new cluster needs its peers to elect a leader)."""

    def __init__(self, workdir: Path, names: list[str]):
        root = Path(workdir)
        root.mkdir(parents=True, exist_ok=True)
        ports = {name: (free_port(), free_port()) for name in names}
        initial = ",".join(f"{name}=http://127.0.0.1:{peer}" for name, (_, peer) in ports.items())
        token = f"usm-test-{root.name}"
        self.members = [EtcdMember(root, name, client, peer, initial, token) for name, (client, peer) in ports.items()]

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    def member(self, name: str) -> EtcdMember:
        return next(m for m in self.members if m.member_name == name)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        try:
            for member in self.members:
                member.start()
            for member in self.members:
                wait_until(lambda m=member: m._alive() and m.healthy(), timeout, member.name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

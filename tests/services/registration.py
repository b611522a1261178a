"""The registration sidecar (`usm registration-client`) as a real process on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import httpx

from . import Service, free_port
from .locationmonitor import usm_command


class RegistrationSidecar(Service):
    """`options` go to the command as they are (--service, --service-port, --latitude, ...)."""

    def __init__(self, workdir: Path, etcd: list[str], *options: str, name: str = "registration-client"):
        self.port = free_port()
        argv = [usm_command(), "registration-client", "--host", "127.0.0.1", "--port", str(self.port),
                "--etcd", ",".join(etcd), *options]
        super().__init__(name, argv, Path(workdir))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=1.0).json()

    def start(self, ready=None, timeout: float = 30.0) -> RegistrationSidecar:
        super().start(ready or (lambda: self.health()["status"] == "ok"), timeout)
        return self

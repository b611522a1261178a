"""The request-location monitor (`usm location-monitor`) as a real server process on a free loopback port."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx

from . import Service, free_port, need


def usm_command() -> str:
    """The `usm` console script of the running interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).with_name("usm")
    return str(beside) if beside.exists() else shutil.which("usm") or need("usm")


class LocationMonitor(Service):
    def __init__(self, workdir: Path, *options: str):
        self.port = free_port()
        argv = [usm_command(), "location-monitor", "--host", "127.0.0.1", "--port", str(self.port), *options]
        super().__init__("location-monitor", argv, Path(workdir))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready=None, timeout: float = 30.0) -> LocationMonitor:
        def answers() -> bool:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200

        super().start(ready or answers, timeout)
        return self

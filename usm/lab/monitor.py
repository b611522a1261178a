"""The request-location monitor (``usm location-monitor``) as a server process on a free loopback port."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Self

import httpx

from usm.lab.process import MissingBinary, Process, free_port


def usm_command() -> str:
    """The ``usm`` console script of the running interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).with_name("usm")
    found = str(beside) if beside.exists() else shutil.which("usm")
    if not found:
        raise MissingBinary("the usm command is not installed: install usm (uv pip install -e .)")
    return found


class LocationMonitor(Process):
    def __init__(self, workdir: Path, *options: str):
        self.port = free_port()
        argv = [usm_command(), "location-monitor", "--host", "127.0.0.1", "--port", str(self.port), *options]
        super().__init__("location-monitor", argv, Path(workdir))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready=None, timeout: float = 30.0) -> Self:
        def answers() -> bool:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200

        super().start(ready or answers, timeout)
        return self


__all__ = ["LocationMonitor", "usm_command"]

"""Real services for the integration tests, started and stopped by PID.

Each service module here (dockerd, prometheus, sshd, moto, ...) builds on `Service`: it starts the real
binary on loopback ports in a private directory, waits until it answers, and stops it by its PID.
`need()` finds a binary; when it is missing the test is skipped on a developer machine and fails in CI
(`CI=true`), where `.ci/run` must have installed it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(binary: str) -> str:
    """The path of `binary`, or skip the test (fail it in CI) when it is not installed."""
    path = shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(SBIN))
    if path:
        return path
    message = f"{binary} is not installed (.ci/run installs the Debian package that provides it)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `ready` until it returns true; fail with `what` after `timeout` seconds.

    Only for waiting on real processes to come up; behaviour under test never waits on the wall clock.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready after {timeout:g} s")
        time.sleep(0.05)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


class Service:
    """One background process with its log file, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / f"{name}.log"
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self, ready: Callable[[], bool] | None = None, timeout: float = 30.0) -> "Service":
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=None if self.env is None else {**os.environ, **self.env},
                start_new_session=True,
            )
        if ready is not None:
            try:
                wait_until(lambda: self._alive() and ready(), timeout, self.name)
            except TimeoutError:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise TimeoutError(f"{self.name} did not become ready; its log ends with:\n{tail}") from None
        return self

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited; its log ends with:\n{tail}")
        return True

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

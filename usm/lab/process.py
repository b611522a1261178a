"""Background processes on loopback ports, started in a private directory and stopped by PID.

The lab (``usm lab up``) and the integration tests' services (``tests/services``) start their
daemons through :class:`Process`. A process that outlives the command that started it (the lab's)
is stopped later from its :class:`ProcessRecord`: the PID *and* the time the process started, so
that a PID the kernel has since given to another process is never signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import psutil

SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")

DEBIAN_PACKAGES = {
    "dockerd": "docker.io", "docker": "docker.io", "sshd": "openssh-server", "busybox": "busybox-static",
    "prometheus": "prometheus", "prometheus-node-exporter": "prometheus-node-exporter", "etcd": "etcd-server",
    "nginx": "nginx", "postgres": "postgresql",
}
"""The Debian package that provides each binary the lab or the tests start."""

START_TIME_SLACK = 0.05
"""Seconds two readings of one process's start time may differ by (psutil derives it from clock ticks)."""


class MissingBinary(Exception):
    """A program the lab needs is not installed; the message names the package that provides it."""


def find_binary(name: str) -> str:
    """The path of the program ``name`` on PATH or in the sbin directories; :class:`MissingBinary` otherwise."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if path:
        return path
    package = DEBIAN_PACKAGES.get(name)
    how = f"install the Debian package {package} (apt-get install {package})" if package else "install it"
    raise MissingBinary(f"{name} is not installed: {how}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``ready`` until it returns true; raise ``TimeoutError`` naming ``what`` after ``timeout`` seconds.

    Only for waiting on real processes to come up or go away; behaviour under test never waits on the wall clock.
    """
    deadline = time.monotonic() + timeout
    while True:
        with suppress(Exception):  # not ready yet, whatever the reason
            if ready():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready after {timeout:g} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class ProcessRecord:
    """A started process as a later command finds it again: its name, PID and start time (seconds since the
    epoch, as psutil reports it)."""

    name: str
    pid: int
    started: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": self.started}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(str(data["name"]), int(data["pid"]), float(data["started"]))

    def _process(self) -> psutil.Process | None:
        """The recorded process if it still exists (and is the same one), else None."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) > START_TIME_SLACK:
                return None  # the PID was reused by another process
            return process
        except psutil.NoSuchProcess:
            return None

    def running(self) -> bool:
        """Whether the process still runs (an exited process its parent has not reaped yet does not)."""
        process = self._process()
        return process is not None and not _ended(process)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then after ``timeout`` seconds SIGKILL to its whole process group; nothing if it is gone."""
        process = self._process()
        if process is None or _ended(process):
            return
        with suppress(psutil.NoSuchProcess):
            process.terminate()
        with suppress(TimeoutError):
            wait_until(lambda: _ended(process), timeout, f"{self.name} (pid {self.pid}) to stop")
            return
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        wait_until(lambda: _ended(process), timeout, f"{self.name} (pid {self.pid}) to die after SIGKILL")


def _ended(process: psutil.Process) -> bool:
    """Gone, or a zombie: it has exited and only waits for its parent to collect its status (a daemon left to a
    PID 1 that does not reap stays a zombie for good)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def side_by_side(tasks: Iterable[Callable[[], object]]) -> None:
    """Run ``tasks`` in threads (they wait on processes, not on the CPU); once all have ended, raise the first
    failure."""
    tasks = list(tasks)
    with ThreadPoolExecutor(max(1, len(tasks)), thread_name_prefix="usm-lab") as pool:
        futures = [pool.submit(task) for task in tasks]
    for future in futures:
        future.result()


def record_of(name: str, pid: int) -> ProcessRecord:
    return ProcessRecord(name, pid, psutil.Process(pid).create_time())


class Process:
    """One background process with its log file in ``workdir``, in a session of its own (so that it outlives the
    command that started it, and its whole process group can be killed)."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / f"{name}.log"
        self.env = env
        self.process: subprocess.Popen | None = None
        self._record: ProcessRecord | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    @property
    def record(self) -> ProcessRecord:
        """How to find this process again from another command (``usm lab down``)."""
        assert self._record is not None, f"{self.name} was not started"
        return self._record

    def start(self, ready: Callable[[], bool] | None = None, timeout: float = 30.0) -> Self:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=None if self.env is None else {**os.environ, **self.env},
                start_new_session=True,
            )
        try:
            self._record = record_of(self.name, self.process.pid)
        except psutil.NoSuchProcess:  # exited at once: _alive() reports it with its log
            self._record = ProcessRecord(self.name, self.process.pid, 0.0)
        if ready is not None:
            try:
                wait_until(lambda: self._alive() and ready(), timeout, self.name)
            except TimeoutError:
                tail = self.log_tail()
                self.stop()
                raise TimeoutError(f"{self.name} did not become ready; its log ({self.log}) ends with:\n{tail}") \
                    from None
        return self

    def log_tail(self, size: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited; its log ({self.log}) ends with:\n{self.log_tail()}")
        return True

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.record.stop(timeout)
        self.process.wait(timeout)  # collect its exit status (no zombie left behind)

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "MissingBinary",
    "Process",
    "ProcessRecord",
    "find_binary",
    "free_port",
    "port_open",
    "record_of",
    "side_by_side",
    "wait_until",
]

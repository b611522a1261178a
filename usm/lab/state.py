"""A lab's directory and what it records: its files, and every process it started (``lab.json``).

``down`` stops exactly the recorded processes, by PID and start time, even after a failed ``up``;
it then stops what an engine killed hard may have left (its containerd and their shims), unmounts
what the engines left mounted, and removes the directory. ``status`` says which still run.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from usm.lab.dockerd import unmount_under
from usm.lab.process import Process, ProcessRecord, side_by_side

STOP_TIMEOUT = 20.0  # seconds a process gets between SIGTERM and SIGKILL (a dockerd stops its containers first)


class LabError(Exception):
    """The lab cannot be brought up, read or taken down; the message says why and what to do."""


@dataclass(frozen=True)
class LabFiles:
    """Where a lab keeps what it writes (absolute paths: the env and site files are used from anywhere)."""

    directory: Path

    @property
    def state(self) -> Path:
        return self.directory / "lab.json"

    @property
    def site(self) -> Path:
        return self.directory / "site.yaml"

    @property
    def env(self) -> Path:
        return self.directory / "env"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def policy(self) -> Path:
        return self.directory / "policy"


@dataclass
class LabState:
    """What ``lab.json`` holds: the lab's hosts, its services' URLs and every process it started."""

    hosts: list[dict[str, str]] = field(default_factory=list)  # name, docker (ssh URL), engine (socket), node_exporter
    urls: dict[str, str] = field(default_factory=dict)  # prometheus, location_monitor, ec2
    processes: list[ProcessRecord] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"hosts": self.hosts, "urls": self.urls,
                           "processes": [p.as_dict() for p in self.processes]}, indent=2) + "\n"

    @classmethod
    def load(cls, files: LabFiles) -> LabState:
        if not files.state.is_file():
            raise LabError(f"there is no lab in {files.directory} (no {files.state.name}); start one with "
                           f"`usm lab up --dir {files.directory}`")
        try:
            data = json.loads(files.state.read_text())
            return cls(list(data["hosts"]), dict(data["urls"]),
                       [ProcessRecord.from_dict(p) for p in data["processes"]])
        except (ValueError, KeyError, TypeError) as error:
            raise LabError(f"{files.state} is not a lab state file ({error}); stop its processes by hand") from None


class Recorder:
    """Adds each started process to the state and saves the state at once (from several threads)."""

    def __init__(self, files: LabFiles, state: LabState):
        self.files = files
        self.state = state
        self._lock = threading.Lock()

    def started(self, process: Process, name: str) -> None:
        record = process.record
        with self._lock:
            self.state.processes.append(ProcessRecord(name, record.pid, record.started))
            self.save()

    def save(self) -> None:
        temporary = self.files.state.with_suffix(".tmp")
        temporary.write_text(self.state.to_json())
        temporary.replace(self.files.state)


def status(directory: Path) -> tuple[LabState, list[tuple[ProcessRecord, bool]]]:
    """The lab's state and, for each of its processes, whether it runs."""
    state = LabState.load(LabFiles(Path(directory).absolute()))
    return state, [(record, record.running()) for record in state.processes]


@dataclass(frozen=True)
class Stopped:
    processes: tuple[ProcessRecord, ...]  # the recorded processes that were still running
    leftovers: tuple[str, ...]  # other processes of the lab's directory that had to be stopped too


def down(directory: Path, keep: bool = False) -> Stopped:
    """Stop every process of the lab by PID, unmount what its engines left mounted, and remove the directory
    (``keep``: leave its files, e.g. the logs)."""
    files = LabFiles(Path(directory).absolute())
    state = LabState.load(files)
    running = tuple(r for r in state.processes if r.running())
    stop_all(state.processes)
    strays = [ProcessRecord(" ".join(p.info["cmdline"]), p.pid, p.info["create_time"])
              for p in leftovers(files.directory)]
    stop_all(strays)
    unmount_under(files.directory)
    if not keep:
        shutil.rmtree(files.directory)
    return Stopped(running, tuple(s.name for s in strays))


def stop_all(records: Iterable[ProcessRecord]) -> None:
    """Stop ``records`` side by side (each dockerd takes a second or two to stop its containers)."""
    side_by_side([lambda r=r: r.stop(STOP_TIMEOUT) for r in records])


LAB_PROGRAMS = frozenset({"dockerd", "containerd", "containerd-shim-runc-v2", "sshd", "prometheus"})
"""The programs whose command line names the lab's directory: its daemons and what dockerd starts."""


def leftovers(directory: Path) -> list[psutil.Process]:
    """Running lab programs that name the lab's directory in their command line but were not recorded: what an
    engine killed hard leaves behind (its containerd and their shims). None after a clean ``down``."""
    inside = re.compile(re.escape(str(Path(directory).absolute())) + r"(/|$)")
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status", "create_time"]):
        words = process.info["cmdline"] or []
        if (process.info["status"] != psutil.STATUS_ZOMBIE and words and Path(words[0]).name in LAB_PROGRAMS
                and any(inside.search(word) for word in words)):
            found.append(process)
    return found


__all__ = ["LabError", "LabFiles", "LabState", "Recorder", "Stopped", "down", "leftovers", "status", "stop_all"]

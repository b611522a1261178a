"""Per-region support components of a single-node install: local processes on loopback ports, found again by PID.

Each region that has application containers gets, on the manager's machine:

* an **etcd** of its own, a single-member cluster (its registry: the region's registration clients use it).
  Joining one cluster member by member at run time was not chosen: regions come and go with their containers,
  and a cluster whose members are stopped with their regions loses its quorum as soon as half of them are gone
  (two regions, one emptied: the other stops serving), and its data with the last member. One cluster per region
  has no quorum to lose; what a region registers matters only in that region.
* a **load balancer**: ``usm lb-api`` with the nginx it starts and stops itself.
* a **worker**: the federation's ``usm worker --region R`` when the site names a ``worker_store``; otherwise it
  is recorded only (:class:`usm.manager.support.RecordingComponent`).

A component's ports are allocated from the site's base port upward and kept in ``ports.json`` (a region gets the
same ports back, which etcd's data directory needs: it holds its peer URL). Its process is recorded with its start
time in ``<component>-<region>.json`` (``usm.lab.process.ProcessRecord``, so a reused PID is never signalled).
Starting what the record shows running adopts it: a restarted manager does not start a second one, and
:func:`support_lifecycle` counts the regions with a running component as running, so that an empty region's
components are stopped after the delay even across a restart.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from usm.lab.monitor import usm_command
from usm.lab.process import Process, ProcessRecord, find_binary, port_open
from usm.manager.sitesupport import SiteSupport
from usm.manager.support import RecordingComponent, RegionComponent, RegionSupportLifecycle
from usm.placement.support import RegionSupport, SupportState

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # seconds a component has to answer on its ports


@dataclass(frozen=True)
class Launch:
    """How to run one region's component: its command line and when it counts as up."""

    argv: list[str]
    ready: Callable[[], bool]


Launcher = Callable[[str, tuple[int, ...], Path], Launch]
"""(region, its ports, its working directory) -> how to run it."""


def _answers(url: str, check: Callable[[httpx.Response], bool]) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return check(httpx.get(url, timeout=1.0))
        except httpx.HTTPError:
            return False

    return ready


def etcd_launch(region: str, ports: tuple[int, ...], workdir: Path) -> Launch:
    """A single-member etcd cluster named after the region: ports (client, peer)."""
    client, peer = (f"http://127.0.0.1:{p}" for p in ports)
    argv = [find_binary("etcd"), "--name", region, "--data-dir", str(workdir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{region}={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"usm-{region}", "--log-outputs", "stderr", "--logger", "zap"]
    return Launch(argv, _answers(f"{client}/health",
                                 lambda r: r.status_code == 200 and r.json().get("health") == "true"))


def load_balancer_launch(region: str, ports: tuple[int, ...], workdir: Path) -> Launch:
    """``usm lb-api`` for the region: ports (nginx's, the API's); up when both answer."""
    balancer, api = ports
    find_binary("nginx")  # a clear error now rather than a lb-api that exits
    argv = [usm_command(), "lb-api", "--prefix", str(workdir / "nginx"), "--listen", f"127.0.0.1:{balancer}",
            "--host", "127.0.0.1", "--port", str(api), "--region", region]
    api_ok = _answers(f"http://127.0.0.1:{api}/health", lambda r: r.json().get("status") == "ok")
    return Launch(argv, lambda: api_ok() and port_open(balancer))


def worker_launch(store: str) -> Launcher:
    """``usm worker --region R --live`` on the federation's ``store``; up once it runs (it has no port)."""

    def launch(region: str, ports: tuple[int, ...], workdir: Path) -> Launch:
        argv = [usm_command(), "worker", "--region", region, "--live", "--db", store, "--data", str(workdir)]
        return Launch(argv, lambda: True)

    return launch


def file_name(region: str) -> str:
    """A region's name as a file-name part (regions are names such as europe or north-america)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", region)


class PortBook:
    """Loopback ports per (component, region), allocated once from ``base`` upward and kept in ``path``."""

    def __init__(self, path: Path, base: int) -> None:
        self.path = path
        self.base = base

    def _read(self) -> dict[str, list[int]]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def ports(self, component: str, region: str, count: int) -> tuple[int, ...]:
        """The recorded ports of ``component`` in ``region``, else ``count`` new ones nothing listens on."""
        book = self._read()
        key = f"{component}/{region}"
        if key not in book:
            taken = {p for ports in book.values() for p in ports}
            fresh: list[int] = []
            candidate = self.base
            while len(fresh) < count:
                if candidate > 65535:
                    raise RuntimeError(f"no free port above {self.base} for {component} in {region}: lower "
                                       "support.base_port in the site file")
                if candidate not in taken and not port_open(candidate):
                    fresh.append(candidate)
                candidate += 1
            book[key] = fresh
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(book, indent=1, sort_keys=True))
        return tuple(book[key])


@dataclass
class LocalComponent:
    """One kind of component run as a local process per region, started and stopped by its recorded PID."""

    name: str
    state: Path  # the state directory: records, ports and each region's working directory
    book: PortBook
    launcher: Launcher
    port_count: int = 0
    timeout: float = START_TIMEOUT
    _started: dict[str, Process] = field(default_factory=dict)  # by this manager: stopped and reaped by it

    def record_file(self, region: str) -> Path:
        return self.state / f"{self.name}-{file_name(region)}.json"

    def record(self, region: str) -> ProcessRecord | None:
        """The recorded process of ``region``'s component, if one was recorded and still runs."""
        file = self.record_file(region)
        if not file.exists():
            return None
        record = ProcessRecord.from_dict(json.loads(file.read_text())["process"])
        return record if record.running() else None

    def regions(self) -> set[str]:
        """The regions whose component runs (as recorded, so after a restart too)."""
        found = set()
        for file in self.state.glob(f"{self.name}-*.json"):
            region = json.loads(file.read_text())["region"]
            if self.record(region) is not None:
                found.add(region)
        return found

    def start(self, region: str) -> None:
        if self.record(region) is not None:
            return  # it runs: adopted, not started twice
        ports = self.book.ports(self.name, region, self.port_count)
        busy = [p for p in ports if port_open(p)]
        if busy:
            raise RuntimeError(f"port {busy[0]} of {self.name} in {region} is used by another process: free it, or "
                               f"delete the entry {self.name}/{region} of {self.book.path} to get new ports")
        workdir = self.state / f"{self.name}-{file_name(region)}"
        launch = self.launcher(region, ports, workdir)
        process = Process(f"{self.name}-{file_name(region)}", launch.argv, workdir)
        process.start(launch.ready, self.timeout)
        self._started[region] = process
        self.record_file(region).write_text(json.dumps(
            {"region": region, "ports": list(ports), "process": process.record.as_dict()}, indent=1))
        log.info("started %s in %s (pid %d, ports %s)", self.name, region, process.pid, ports)

    def stop(self, region: str) -> None:
        process = self._started.pop(region, None)
        if process is not None:
            process.stop()  # and reap it
        else:
            record = self.record(region)
            if record is not None:
                record.stop()
        self.record_file(region).unlink(missing_ok=True)


PORT_COUNTS = {"etcd": 2, "load-balancer": 2, "worker": 0}


def local_components(support: SiteSupport, state: Path) -> list[RegionComponent]:
    """The site's components as local processes (the worker recorded only when no store is named)."""
    state.mkdir(parents=True, exist_ok=True)
    book = PortBook(state / "ports.json", support.base_port)
    launchers: dict[str, Launcher] = {"etcd": etcd_launch, "load-balancer": load_balancer_launch}
    if support.worker_store:
        launchers["worker"] = worker_launch(support.worker_store)
    return [LocalComponent(name, state, book, launchers[name], PORT_COUNTS[name]) if name in launchers
            else RecordingComponent(name) for name in support.components]


def support_lifecycle(support: SiteSupport, data: Path, dry_run: bool) -> RegionSupportLifecycle:
    """The lifecycle ``usm run`` steps every cycle: recording components in a dry run (decided, not started),
    local processes otherwise, with the regions whose components run already counted as running."""
    if dry_run:
        components: list[RegionComponent] = [RecordingComponent(name) for name in support.components]
    else:
        components = local_components(support, data / support.state_dir)
    running = {region for c in components if isinstance(c, LocalComponent) for region in c.regions()}
    state = SupportState({r: RegionSupport(running=True) for r in running}, stop_delay_s=support.stop_delay)
    return RegionSupportLifecycle(components, state)


__all__ = ["Launch", "LocalComponent", "PortBook", "etcd_launch", "load_balancer_launch", "local_components",
           "support_lifecycle", "worker_launch"]

"""``usm master`` and ``usm worker``: a start sequence, the federated loop until stopped, a stop sequence.

The master is given the site file and (optionally) a policy; it prepares the store and holds every region no live
worker holds. A worker is given only the store and its region: the site, the policy and its region's lease all
come from the store. Each keeps its records (history, decision log, journal, the policy versions it loaded) in its
own data directory.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from usm.actuators.docker import DockerContainers
from usm.actuators.dockerhosts import DockerAccess
from usm.actuators.ec2 import Ec2, Ec2Settings
from usm.actuators.journal import Journal
from usm.manager.federation.coordinator import Coordinator
from usm.manager.federation.live import SiteCollector, hosts_in, regions_of, site_actuator, site_regions
from usm.manager.federation.manager import Member, Pulse, federated_loop
from usm.manager.federation.ports import CloudSteps, RegionContainers, StoreSteps
from usm.manager.federation.sequences import (
    AllocateElasticIps,
    Deployment,
    Role,
    StepResult,
    carry_out,
    shutdown_plan,
    startup_plan,
)
from usm.manager.federation.supervision import Timing
from usm.manager.metrics import serve
from usm.manager.site import Site, load_site
from usm.manager.store.configs import ConfigKind, file_bytes
from usm.manager.store.database import open_engine, sessions

log = logging.getLogger("usm.federation")


@dataclass(frozen=True)
class Options:
    """What ``usm master`` and ``usm worker`` share."""

    database: str
    data: Path
    dry_run: bool = False
    timing: Timing = field(default_factory=Timing)
    metrics_port: int = 0  # 0: not served (a worker registers the port it would serve on anyway)
    address: str = "127.0.0.1"
    cycles: int | None = None
    cloud_regions: tuple[str, ...] = ()
    await_workers: float = 60.0
    wait: float = 300.0  # worker: how long to wait for the master to prepare the store


class StartFailed(Exception):
    """The start sequence could not complete: the message lists the steps that failed."""


def assemble(coordinator: Coordinator, site: Site, options: Options, data: Path,
             stack: ExitStack) -> tuple[Member, DockerContainers]:
    """The federated loop of one manager over the live hosts of ``site``, with what must be closed registered on
    ``stack``; and the containers' handle for the stop sequence."""
    data.mkdir(parents=True, exist_ok=True)
    access = DockerAccess.from_environment()
    collector = SiteCollector(site, access)
    stack.callback(collector.close)
    journal = None
    if not options.dry_run:
        journal = Journal(data / "journal.jsonl")
        stack.callback(journal.close)
    actuator, containers = site_actuator(site, access, options.dry_run, journal, stack)
    member = federated_loop(coordinator, collector, actuator, site_regions(site), data, stack,
                            retarget=lambda held: collector.retarget(hosts_in(site, held)))
    return member, containers


def _failed(results: tuple[StepResult, ...], optional: tuple[type, ...] = ()) -> list[str]:
    return [f"{type(r.step).__name__}: {r.detail}" for r in results if not r.ok and not isinstance(r.step, optional)]


def _on_signals(stop: Callable[[], None]) -> None:
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stop())


def _cloud(options: Options, site: Site) -> CloudSteps | None:
    return CloudSteps(Ec2(Ec2Settings(options.cloud_regions)), site) if options.cloud_regions else None


def run_master(options: Options, site_file: Path, policy_dir: Path | None,
               announce: Callable[[str], None] = print) -> int:
    """Start the master, run until stopped (SIGTERM, SIGINT, or ``options.cycles``), stop the federation."""
    site = load_site(site_file)  # InvalidSource for the caller to show
    engine = open_engine(options.database)
    coordinator = Coordinator(sessions(engine), None, options.timing)
    ports = StoreSteps(engine, coordinator, site_file=Path(site_file), policy_dir=policy_dir)
    deployment = Deployment(Role.MASTER, "master", site.default_region, regions_of(site), options.cloud_regions,
                            options.await_workers, options.dry_run)
    cloud = _cloud(options, site)
    try:
        failed = _failed(carry_out(startup_plan(deployment), ports, None, cloud), optional=(AllocateElasticIps,))
        if failed:
            raise StartFailed("the master did not start: " + "; ".join(failed))
        with ExitStack() as stack:
            member, containers = assemble(coordinator, site, options, options.data / "master", stack)
            runner = member.runner
            assert runner is not None
            _on_signals(runner.scheduler.stop)
            if options.metrics_port:
                serve(runner.metrics, options.metrics_port, options.address)
            announce(f"usm master: regions {', '.join(deployment.regions)}, {len(site.hosts)} hosts, policy "
                     f"{runner.loop.engine.policy.digest}, heartbeats every {options.timing.heartbeat:g}s, down "
                     f"after {options.timing.countdown:g}s; records in {options.data / 'master'}")
            pulse = Pulse(lambda at: coordinator.supervise(at), options.timing.heartbeat).start()
            try:
                ran = runner.run(options.cycles)
            finally:
                pulse.stop()
            announce(f"usm master: stopped after {ran} cycles; stopping the federation")
            results = carry_out(shutdown_plan(deployment), ports, RegionContainers(containers, site, coordinator),
                                cloud)
        for result in results:
            announce(f"  {'ok' if result.ok else 'FAILED'} {type(result.step).__name__}: {result.detail}")
        return 0 if all(r.ok for r in results) else 1
    finally:
        engine.dispose()


def run_worker(options: Options, region: str, name: str | None = None,
               announce: Callable[[str], None] = print) -> int:
    """Start a worker for ``region``, run until stopped (a stop request, SIGTERM, SIGINT, ``options.cycles``, or its
    registration cleared by a stopping master), then stop its region."""
    name = name or f"worker-{region}-{socket.gethostname()}"
    engine = open_engine(options.database)
    coordinator = Coordinator(sessions(engine), name, options.timing)
    ports = StoreSteps(engine, coordinator, address=options.address, port=options.metrics_port or 9465)
    deployment = Deployment(Role.WORKER, name, region, (region,), options.cloud_regions, dry_run=options.dry_run)
    try:
        site = _await_master(coordinator, ports, deployment, options)
        data = options.data / name
        with ExitStack() as stack:
            member, containers = assemble(coordinator, site, options, data, stack)
            runner = member.runner
            assert runner is not None
            _on_signals(runner.scheduler.stop)
            if options.metrics_port:
                serve(runner.metrics, options.metrics_port, options.address)
            announce(f"usm worker {name}: region {region}, policy {runner.loop.engine.policy.digest}, heartbeats "
                     f"every {options.timing.heartbeat:g}s; records in {data}")

            def beat(at: float) -> None:
                if not coordinator.beat(at):  # the master cleared the store: this worker is no longer one
                    log.warning("%s: its registration is gone (the master stopped): stopping", name)
                    runner.scheduler.stop()

            pulse = Pulse(beat, options.timing.heartbeat).start()
            try:
                ran = runner.run(options.cycles)
            finally:
                pulse.stop()
            why = f" ({member.stopped_by})" if member.stopped_by else ""
            announce(f"usm worker {name}: stopped after {ran} cycles{why}; stopping its region")
            results = carry_out(shutdown_plan(deployment), ports, RegionContainers(containers, site, coordinator),
                                _cloud(options, site))
        for result in results:
            announce(f"  {'ok' if result.ok else 'FAILED'} {type(result.step).__name__}: {result.detail}")
        return 0 if all(r.ok for r in results) else 1
    finally:
        engine.dispose()


def _await_master(coordinator: Coordinator, ports: StoreSteps, deployment: Deployment, options: Options,
                  sleep: Callable[[float], None] = time.sleep) -> Site:
    """Register, and load the site the master stored, retrying every heartbeat interval while the master has not
    prepared the store yet (a worker may start first), at most ``options.wait`` seconds."""
    deadline = time.monotonic() + options.wait
    while True:
        problems = _failed(carry_out(startup_plan(deployment), ports))
        row = coordinator.version(ConfigKind.SITE) if not problems else None
        if not problems and row is None:
            problems = ["the store holds no site yet (the master stores its site file when it starts)"]
        if not problems and coordinator.newest(ConfigKind.POLICY) == 0:
            problems = ["the store holds no policy yet (usm policy apply DIR, or usm master --policy DIR)"]
        if not problems and row is not None:
            path = options.data / deployment.name / "site.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(file_bytes(row)["site.yaml"])
            return load_site(path)
        if time.monotonic() >= deadline:
            raise StartFailed(f"worker {deployment.name} did not start within {options.wait:g}s: "
                              + "; ".join(problems))
        log.warning("waiting for the master: %s", "; ".join(problems))
        sleep(options.timing.heartbeat)


__all__ = ["Options", "StartFailed", "assemble", "run_master", "run_worker"]

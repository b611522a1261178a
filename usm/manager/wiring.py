"""Live mode assembled from a site file: collectors, actuators, history, decision log, runner.

``usm run`` calls :func:`live_runner`; tests call it too, with the site of a local lab. A dry run gets
the recording actuator and touches nothing; a live run gets the Docker actuator (the container steps
of a plan; host steps are reported as not carried out until a cloud or edge actuator is configured),
behind the action journal: steps a previous run began and did not end are finished first.

A site with a ``cloud:`` section also gets the EC2 sync (every 45 s by default) and, in a live run, EC2 for the
host part of plans (``usm.actuators.cloudsteps``); one with a ``swarm:`` section gets the swarm's nodes synced
(every 10 s by default). Both syncs run on threads of their own (``usm.manager.syncs``), in a dry run too: they
only read.

A site with a ``support:`` section gets its per-region support components (``usm.manager.regional``) stepped
every cycle: started as local processes in a live run, only recorded in a dry run. They outlive the run: the next
one adopts them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usm.actuators.containersteps import ContainerSteps
from usm.actuators.docker import ContainerSpec, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts, connect
from usm.actuators.journal import Journal, JournaledActuator
from usm.actuators.recording import RecordingActuator, StepRouter
from usm.collectors.docker import DockerStatsCollector
from usm.collectors.history import History
from usm.collectors.prometheus import PrometheusCollector
from usm.collectors.requests import RequestLocationsClient
from usm.engine import Engine
from usm.geo.regions import cloud_region
from usm.manager.decisionlog import DecisionLog
from usm.manager.live import LiveCollector
from usm.manager.loop import ControlLoop
from usm.manager.metrics import ManagerMetrics
from usm.manager.regional import support_lifecycle
from usm.manager.reload import PolicyWatcher
from usm.manager.runner import LiveRunner
from usm.manager.scheduler import Scheduler
from usm.manager.site import Site
from usm.manager.syncs import CloudView, PeriodicSync, cloud_fetch, swarm_fetch
from usm.placement.plans import (
    DrainHost,
    MoveContainer,
    PlaceReplica,
    RestoreContainer,
    StopContainer,
    StopHost,
    TerminateHost,
)

if TYPE_CHECKING:
    from usm.actuators.ec2 import CloudInstance, Ec2
    from usm.actuators.swarm import SwarmNode

logger = logging.getLogger("usm.run")


@dataclass(frozen=True)
class DataFiles:
    """Where a live run keeps its records: the history (DuckDB) and the decision log (JSON Lines)."""

    directory: Path

    @property
    def history(self) -> Path:
        return self.directory / "history.duckdb"

    @property
    def decisions(self) -> Path:
        return self.directory / "decisions.jsonl"

    @property
    def journal(self) -> Path:
        return self.directory / "journal.jsonl"


def container_specs(site: Site) -> dict[str, ContainerSpec]:
    return {s.name: ContainerSpec(s.name, s.image, site.app_of(s.name), s.command, s.environment,
                                  memory_bytes=int(s.demand.ram) or None)
            for s in site.services}


@dataclass(frozen=True)
class SyncTime:
    """The time the background syncs run on (tests pass a virtual one): ``wait(seconds)`` returns true to stop;
    ``None`` waits on the sync's own stop event."""

    clock: Callable[[], float] = time.monotonic
    wait: Callable[[float], bool] | None = None


def ec2_of(site: Site) -> Ec2 | None:
    """The EC2 actuator of the site's ``cloud:`` section (credentials: boto3's chain), its clients made now."""
    if site.cloud is None:
        return None
    from usm.actuators.ec2 import Ec2, Ec2Settings  # boto3 loads only for a site with cloud hosts

    c = site.cloud
    ec2 = Ec2(Ec2Settings(regions=c.regions, image_tag=c.image_tag, instance_type=c.instance_type,
                          endpoint_url=c.endpoint_url, key_name=c.key_name, security_groups=c.security_groups,
                          sync_interval=c.sync_interval))
    for region in c.regions:
        ec2.client(region)  # here, on one thread: boto3 sessions are not thread-safe, its clients are
    return ec2


def start_syncs(site: Site, ec2: Ec2 | None, hosts: DockerHosts, containers: DockerContainers, stack: ExitStack,
                time_: SyncTime) -> tuple[PeriodicSync[CloudView] | None, PeriodicSync[tuple[SwarmNode, ...]] | None]:
    """The EC2 and swarm syncs the site asks for, started, each stopped when ``stack`` closes."""
    cloud = swarm = None
    if ec2 is not None:
        cloud = PeriodicSync("ec2", cloud_fetch(ec2), ec2.settings.sync_interval, time_.clock, time_.wait)
        stack.callback(cloud.stop)
        cloud.start()
    if site.swarm is not None:
        from usm.actuators.swarm import Swarm

        nodes = Swarm(hosts, site.swarm.manager, containers)
        swarm = PeriodicSync("swarm", swarm_fetch(nodes), site.swarm.sync_interval, time_.clock, time_.wait)
        stack.callback(swarm.stop)
        swarm.start()
    return cloud, swarm


def live_runner(site: Site, policy_dir: Path, data: DataFiles, dry_run: bool, stack: ExitStack,
                access: DockerAccess | None = None, metrics: ManagerMetrics | None = None,
                clock: Callable[[], float] = time.time, sync_time: SyncTime = SyncTime()) -> LiveRunner:
    """Everything a live (or dry) run needs, with what must be closed registered on ``stack``."""
    access = access or DockerAccess.from_environment()
    endpoints = {h.name: h.docker for h in site.hosts}
    hosts = DockerHosts(endpoints, access)
    containers = DockerContainers(hosts)
    stats = stack.enter_context(DockerStatsCollector(endpoints, connect=lambda url: connect(url, access)))
    prometheus = None
    targets = {h.node_exporter: h.name for h in site.hosts if h.node_exporter}
    if site.prometheus and targets:
        prometheus = stack.enter_context(PrometheusCollector(site.prometheus, targets))
    locations = None
    if site.location_monitors:
        locations = stack.enter_context(RequestLocationsClient(site.location_monitors))
    ec2 = ec2_of(site)
    cloud, swarm = start_syncs(site, ec2, hosts, containers, stack, sync_time)
    collector = LiveCollector(site, prometheus, stats, containers, locations, cloud=cloud, swarm=swarm,
                              cloud_regions=tuple(cloud_region(r) for r in site.cloud.regions) if site.cloud else ())
    stack.callback(collector.close)
    data.directory.mkdir(parents=True, exist_ok=True)
    actuator: RecordingActuator | JournaledActuator
    if dry_run:
        actuator = RecordingActuator()
    else:
        steps = ContainerSteps(containers, container_specs(site))
        routes: dict[type, Any] = {kind: steps for kind in (PlaceReplica, MoveContainer, RestoreContainer,
                                                             StopContainer)}
        if ec2 is not None:
            from usm.actuators.cloudsteps import CloudHostSteps

            hosted = CloudHostSteps(ec2, steps, {h.name: h.kind for h in site.hosts}, seen=_amend(cloud))
            routes |= {kind: hosted for kind in (PlaceReplica, MoveContainer, RestoreContainer, DrainHost,
                                                  StopHost, TerminateHost)}
        router = StepRouter(routes)
        journal = Journal(data.journal)
        stack.callback(journal.close)
        actuator = JournaledActuator(router, journal)
        for outcome in actuator.recover():  # steps a previous run began and did not end
            logger.warning("recovered an unfinished step from %s: %s", data.journal, outcome.detail)
    watcher = PolicyWatcher(policy_dir)
    engine = Engine(watcher.load())
    history = stack.enter_context(History(str(data.history)))
    log = DecisionLog(stack.enter_context(data.decisions.open("a", encoding="utf-8")))
    support = None if site.support is None else support_lifecycle(site.support, data.directory, dry_run)
    loop = ControlLoop(engine, history, collector, actuator, log, support=support)
    scheduler = Scheduler(engine.policy.settings.period, clock=clock)
    return LiveRunner(loop, watcher, scheduler, metrics or ManagerMetrics())


def _amend(cloud: PeriodicSync[CloudView] | None) -> Callable[[CloudInstance], None]:
    """Show an instance a host step changed in the EC2 snapshot at once, not at the next sync."""

    def seen(instance: CloudInstance) -> None:
        if cloud is not None:
            cloud.amend(lambda view: view.with_instance(instance))

    return seen

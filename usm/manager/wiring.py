"""Live mode assembled from a site file: collectors, actuators, history, decision log, runner.

``usm run`` calls :func:`live_runner`; tests call it too, with the site of a local lab. A dry run gets
the recording actuator and touches nothing; a live run gets the Docker actuator (the container steps
of a plan; host steps are reported as not carried out until a cloud or edge actuator is configured),
behind the action journal: steps a previous run began and did not end are finished first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

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
from usm.manager.decisionlog import DecisionLog
from usm.manager.live import LiveCollector
from usm.manager.loop import ControlLoop
from usm.manager.metrics import ManagerMetrics
from usm.manager.reload import PolicyWatcher
from usm.manager.runner import LiveRunner
from usm.manager.scheduler import Scheduler
from usm.manager.site import Site
from usm.placement.plans import MoveContainer, PlaceReplica, RestoreContainer, StopContainer

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


def live_runner(site: Site, policy_dir: Path, data: DataFiles, dry_run: bool, stack: ExitStack,
                access: DockerAccess | None = None, metrics: ManagerMetrics | None = None,
                clock: Callable[[], float] = time.time) -> LiveRunner:
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
    collector = LiveCollector(site, prometheus, stats, containers, locations)
    stack.callback(collector.close)
    data.directory.mkdir(parents=True, exist_ok=True)
    actuator: RecordingActuator | JournaledActuator
    if dry_run:
        actuator = RecordingActuator()
    else:
        steps = ContainerSteps(containers, container_specs(site))
        router = StepRouter({kind: steps for kind in (PlaceReplica, MoveContainer, RestoreContainer,
                                                       StopContainer)})
        journal = Journal(data.journal)
        stack.callback(journal.close)
        actuator = JournaledActuator(router, journal)
        for outcome in actuator.recover():  # steps a previous run began and did not end
            logger.warning("recovered an unfinished step from %s: %s", data.journal, outcome.detail)
    watcher = PolicyWatcher(policy_dir)
    engine = Engine(watcher.load())
    history = stack.enter_context(History(str(data.history)))
    log = DecisionLog(stack.enter_context(data.decisions.open("a", encoding="utf-8")))
    loop = ControlLoop(engine, history, collector, actuator, log)
    scheduler = Scheduler(engine.policy.settings.period, clock=clock)
    return LiveRunner(loop, watcher, scheduler, metrics or ManagerMetrics())

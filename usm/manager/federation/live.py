"""A federated manager's live edges: the collectors of the hosts it holds (made again when the regions it holds
change), and the actuators it acts through (scoped to its regions, under their leases).

The collectors are those of ``usm run`` (``usm.manager.live.LiveCollector`` over Prometheus, the hosts' Docker
stats and the location monitors), over the part of the site that lies in the manager's regions, so a worker reads
the hosts and containers of its region only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import polars as pl

from usm.actuators.containersteps import ContainerSteps
from usm.actuators.docker import DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts, connect
from usm.actuators.journal import Journal, JournaledActuator
from usm.actuators.recording import RecordingActuator, StepRouter
from usm.collectors.docker import DockerStatsCollector
from usm.collectors.history import SAMPLE_SCHEMA
from usm.collectors.prometheus import PrometheusCollector
from usm.collectors.requests import RequestLocationsClient
from usm.engine.inventory import Inventory
from usm.geo.regions import AREAS
from usm.manager.federation.partition import Regions
from usm.manager.live import LiveCollector
from usm.manager.ports import Actuator, Observation
from usm.manager.site import Site
from usm.manager.wiring import container_specs
from usm.placement.model import Cluster
from usm.placement.plans import MoveContainer, PlaceReplica, RestoreContainer, StopContainer

log = logging.getLogger("usm.federation")


def site_regions(site: Site) -> Regions:
    """The regions of a site's hosts and services (a service that names none belongs to the site's region)."""
    centres = {a.name: a.location for a in AREAS}
    for host in site.hosts:  # a region that is not a world area is centred on its first host
        centres.setdefault(host.region, host.location)
    return Regions(hosts={h.name: h.region for h in site.hosts},
                   services={s.name: s.region or site.default_region for s in site.services},
                   default=site.default_region, centres=centres)


def regions_of(site: Site) -> tuple[str, ...]:
    """Every region the site names (its hosts' and services', and its own)."""
    regions = site_regions(site)
    return tuple(sorted({*regions.hosts.values(), *regions.services.values(), site.default_region} - {""}))


def hosts_in(site: Site, regions: Iterable[str]) -> tuple[str, ...]:
    wanted = set(regions)
    return tuple(h.name for h in site.hosts if h.region in wanted)


class SiteCollector:
    """The live collector over the hosts of the regions held, made again when they change (``retarget``)."""

    def __init__(self, site: Site, access: DockerAccess, timeout: float = 10.0) -> None:
        self.site = site
        self.access = access
        self.timeout = timeout
        self.hosts: tuple[str, ...] = ()
        self._collector: LiveCollector | None = None
        self._stack = ExitStack()

    def retarget(self, hosts: Iterable[str]) -> None:
        hosts = tuple(sorted(hosts))
        if hosts == self.hosts and (self._collector is not None or not hosts):
            return
        self.close()
        self.hosts = hosts
        if not hosts:
            return
        part = replace(self.site, hosts=tuple(h for h in self.site.hosts if h.name in set(hosts)))
        self._collector = self._build(part)
        log.info("collecting from %s", ", ".join(hosts))

    def _build(self, site: Site) -> LiveCollector:
        stack, access = self._stack, self.access
        endpoints = {h.name: h.docker for h in site.hosts}
        lister = DockerContainers(stack.enter_context(DockerHosts(endpoints, access)))
        stats = stack.enter_context(DockerStatsCollector(endpoints, timeout=self.timeout,
                                                         connect=lambda url: connect(url, access)))
        targets = {h.node_exporter: h.name for h in site.hosts if h.node_exporter}
        prometheus = None
        if site.prometheus and targets:
            prometheus = stack.enter_context(PrometheusCollector(site.prometheus, targets))
        locations = stack.enter_context(RequestLocationsClient(site.location_monitors)) \
            if site.location_monitors else None
        collector = LiveCollector(site, prometheus, stats, lister, locations, timeout=self.timeout)
        stack.callback(collector.close)
        return collector

    def observe(self, at: float) -> Observation:
        if self._collector is None:
            return Observation(Inventory(), Cluster(), pl.DataFrame(schema=SAMPLE_SCHEMA), {})
        return self._collector.observe(at)

    def close(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self._collector = None


def site_actuator(site: Site, access: DockerAccess, dry_run: bool, journal: Journal | None,
                  stack: ExitStack) -> tuple[Actuator, DockerContainers]:
    """What carries container steps out on the site's hosts (every host: the lease and scope decide which may be
    touched), behind the action journal; or the recording actuator of a dry run. Also the containers' handle,
    for the stop sequence."""
    hosts = stack.enter_context(DockerHosts({h.name: h.docker for h in site.hosts}, access))
    containers = DockerContainers(hosts)
    if dry_run:
        return RecordingActuator(), containers
    steps = ContainerSteps(containers, container_specs(site))
    router: Any = StepRouter({kind: steps for kind in (PlaceReplica, MoveContainer, RestoreContainer,
                                                        StopContainer)})
    return (JournaledActuator(router, journal) if journal is not None else router), containers


__all__ = ["SiteCollector", "hosts_in", "regions_of", "site_actuator", "site_regions"]

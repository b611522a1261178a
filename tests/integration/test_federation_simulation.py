"""A world of 10 regions x 1,000 containers, managed by one node and by a federation (a master and regional
workers, each with its own engine, history and planner): the same actions, engine state and plan steps at every
cycle, and the same world at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from usm.engine import load_policy
from usm.geo.sphere import Coordinates
from usm.manager.federation.partition import Regions
from usm.manager.federation.simulation import differences, run_federated, run_one_node
from usm.placement.model import HostKind, Resources
from usm.simulator.scenario import (
    HostDefinition,
    InitialContainer,
    Scenario,
    ServiceDefinition,
    WorkloadSource,
)
from usm.simulator.workload import Constant, FlashCrowd, Ramp, Stage

CENTRES = {  # far apart: each region's callers are closest to its own hosts
    "lisbon": Coordinates(38.72, -9.14), "frankfurt": Coordinates(50.11, 8.68),
    "new-york": Coordinates(40.71, -74.01), "portland": Coordinates(45.52, -122.68),
    "sao-paulo": Coordinates(-23.55, -46.63), "nairobi": Coordinates(-1.29, 36.82),
    "mumbai": Coordinates(19.08, 72.88), "singapore": Coordinates(1.35, 103.82),
    "tokyo": Coordinates(35.68, 139.69), "sydney": Coordinates(-33.87, 151.21),
}
GiB = 2.0**30

POLICY = """
settings:
  period: 15s
  retention: 10m
  streak: {replicate: 1, migrate: 2, stop: 2, overwork: 2, underwork: 3}
  cooldown: {replicate: 30s, stop: 30s}
rules:
  - name: busy-replica
    scope: service
    target: "*"
    when: requests_per_sec > 15
    then: replicate
  - name: far-callers
    scope: service
    target: "*"
    when: avg(latency, 30s) > 40
    then: migrate
  - name: quiet-replica
    scope: container
    target: "*"
    when: avg(requests_per_sec, 30s) < 0.5
    then: stop
  - name: hot-host
    scope: host
    target: "*"
    when: cpu_percent > 60
    then: overwork
"""


def fleet(regions: int = 10, containers: int = 1000, hosts: int = 10, services: int = 10,
          minutes: float = 4.0) -> tuple[Scenario, Regions]:
    """``regions`` regions, each with ``hosts`` hosts around its centre, ``services`` services of its own (the
    first calling the next two) and ``containers`` containers, and callers near its centre whose load rises,
    spikes or stays flat."""
    rng = np.random.default_rng(7)
    host_defs, service_defs, container_defs, sources = [], [], [], []
    host_region, service_region = {}, {}
    share = containers // services
    for r, (region, centre) in enumerate(sorted(CENTRES.items())[:regions]):
        names = [f"{region}-h{i}" for i in range(hosts)]
        for name in names:
            place = Coordinates(centre.latitude + float(rng.uniform(-1, 1)),
                                centre.longitude + float(rng.uniform(-1, 1)))
            host_defs.append(HostDefinition(name, HostKind.EDGE, place, Resources(64, 512 * GiB, 2000 * GiB)))
            host_region[name] = region
        for k in range(services):
            service = f"{region}-s{k}"
            calls = tuple(f"{region}-s{j}" for j in (2 * k + 1, 2 * k + 2) if j < services)
            service_defs.append(ServiceDefinition(service, "img", 64 * 2**20, 0.002, dependencies=calls,
                                                  min_replicas=share * 9 // 10, max_replicas=share * 11 // 10))
            service_region[service] = region
            for i in range(share):
                container_defs.append(InitialContainer(f"{service}-{i + 1}", service, names[(i * 3 + k) % hosts]))
        profiles = [Constant(2 + 4 * r), Ramp((Stage(60, 2), Stage(120, 5 + 100 * (r % 3))), 1, 0.5, False),
                    FlashCrowd(1, 2000 if r % 2 else 1, 90, 30, 60, 60)]
        for p, profile in enumerate(profiles):
            place = Coordinates(centre.latitude + float(rng.uniform(-2, 2)),
                                centre.longitude + float(rng.uniform(-2, 2)))
            sources.append(WorkloadSource(f"{region}-u{p}", f"{region}-s0", place, profile, noise=0.15))
    scenario = Scenario("federation", minutes * 60.0, 15.0, tuple(host_defs), tuple(service_defs), tuple(sources),
                        containers=tuple(container_defs), seed=3)
    return scenario, Regions(host_region, service_region, default=min(CENTRES), centres=CENTRES)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    directory: Path = tmp_path_factory.mktemp("policy")
    (directory / "rules.yaml").write_text(POLICY)
    return load_policy(directory)


def test_ten_regions_split_among_workers_decide_what_one_node_decides(policy):
    scenario, regions = fleet()
    assert len(scenario.containers) == 10_000
    names = sorted(CENTRES)
    owners = {"master": names[:2], "worker-a": names[2:5], "worker-b": names[5:8], "worker-c": names[8:]}
    one, world_one = run_one_node(scenario, policy)
    split, world_split = run_federated(scenario, policy, owners, regions)
    assert differences(one, split) == []
    acted = [r for r in one if r.actions]
    kinds = {a.action.value for r in one for a in r.actions}
    assert len(acted) >= 3 and {"replicate", "stop"} <= kinds, kinds  # the regions had decisions to make
    assert sum(r.executed for r in split) > 0
    assert world_one.snapshot() == world_split.snapshot()
    touched = {a.target.rsplit("-", 1)[0] for r in one for a in r.actions if a.container is not None}
    assert len(touched) >= 5  # decisions were spread over many regions, so the split had work to divide

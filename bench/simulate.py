"""The simulator at fleet scale: hours of simulated time per second of wall time.

A seeded world of ``--hosts`` hosts spread over the inhabited latitudes, ``--services``
services (each calling two others), ``--containers`` containers and ``--sources`` request
sources with constant, ramp, diurnal and flash-crowd profiles runs for ``--hours`` under the
default policy, through the real control loop (world -> history -> engine -> placement ->
world). Prints the wall time, the time per tick and the speed-up over real time.

    .venv/bin/python bench/simulate.py --hours 24 --containers 1000 --hosts 100
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from usm.engine import load_policy
from usm.geo.sphere import Coordinates
from usm.placement.model import HostKind, Resources
from usm.simulator.run import simulate
from usm.simulator.scenario import HostDefinition, InitialContainer, Scenario, ServiceDefinition, WorkloadSource
from usm.simulator.workload import Constant, Diurnal, FlashCrowd, Ramp, Stage

ROOT = Path(__file__).resolve().parents[1]


def world(containers: int, hosts: int, services: int, sources: int, hours: float, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)

    def somewhere() -> Coordinates:
        return Coordinates(float(rng.uniform(-40, 65)), float(rng.uniform(-180, 180)))

    host_defs = tuple(HostDefinition(f"h{i:04d}", HostKind.EDGE, somewhere(), Resources(16, 64 * 2**30, 500 * 2**30))
                      for i in range(hosts))
    # Replica bounds keep the fleet near its size (each service within -20% / +20% of its share): without them
    # the default policy's replicate-on-rx keeps adding replicas for a day and the benchmark would measure a
    # world several times larger than the one it names.
    share = containers // services
    service_defs = tuple(
        ServiceDefinition(f"s{i:03d}", "bench/image", 256 * 2**20, 0.002,
                          dependencies=tuple(f"s{j:03d}" for j in (2 * i + 1, 2 * i + 2) if j < services),
                          min_replicas=max(1, share * 4 // 5), max_replicas=max(1, share * 6 // 5))
        for i in range(services))
    container_defs = tuple(InitialContainer(f"s{i % services:03d}-{i // services + 1}", f"s{i % services:03d}",
                                            f"h{(i * 7) % hosts:04d}") for i in range(containers))
    profiles = [Constant(20), Ramp((Stage(60, 1), Stage(90, 100), Stage(120, 100), Stage(90, 1)), 1, 0.5, True),
                Diurnal(50, 5, 20), FlashCrowd(5, 200, 3600, 300, 1800, 600)]
    workloads = tuple(WorkloadSource(f"w{i}", f"s{i % 3:03d}", somewhere(), profiles[i % 4], noise=0.1)
                      for i in range(sources))
    return Scenario("bench", hours * 3600.0, 15.0, host_defs, service_defs, workloads, containers=container_defs,
                    seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scenario = world(args.containers, args.hosts, args.services, args.sources, args.hours, args.seed)
    policy = load_policy(ROOT / "policies", period=scenario.tick)
    started, cpu = time.perf_counter(), time.process_time()
    result = simulate(scenario, policy)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"world: {args.containers} containers, {args.hosts} hosts, {args.services} services, "
          f"{args.sources} sources; {args.hours:g} h at a 15 s tick = {result.ticks} ticks")
    print(f"wall {wall:.1f} s (cpu {cpu:.1f} s): {1000 * wall / result.ticks:.1f} ms per tick, "
          f"{scenario.duration / wall:,.0f}x real time; {result.actions.height} actions, {result.steps} steps")


if __name__ == "__main__":
    main()

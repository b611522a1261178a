"""Time the placement planners on a simulator-sized cluster and print a table (no assertion).

A seeded generator builds 100 hosts around the world (edge and cloud, four sizes, a few stopped, a few nearly
full) and 1,000 containers of 20 services spread over the running hosts (some starting, some system). Every
planner is then timed on that cluster, median of ``--runs`` runs:

* **cold**: on a freshly built ``Cluster`` each run (what the simulator and the control loop do every tick: any
  per-cluster index is built inside the timed call), wall clock and CPU time;
* **warm**: on one cluster reused across runs (indexes already built), CPU time.

CPU time is the steadier measure on a shared machine (wall clock also counts the time other processes run).

The ``result`` column is a short digest of what each planner returned, so two versions of the code can be checked
for identical plans (same hosts, distances, tie-breaks) as well as compared for speed.

    PYTHONPATH=. .venv/bin/python bench/placement.py
    PYTHONPATH=. .venv/bin/python bench/placement.py --runs 21 --seed 7
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from usm.geo import Coordinates
from usm.geo.regions import nearest_cloud_region
from usm.placement import (
    Cluster,
    ContainerDemand,
    HostCapacity,
    HostKind,
    HostState,
    PlacementOptions,
    RecoveryTracker,
    Resources,
    ServiceSpec,
    choose_host,
    plan_migration,
    plan_minimum_replicas,
    plan_overwork,
    plan_recovery,
    plan_replica,
    plan_stop,
    plan_underwork,
)

GiB = 2**30
HOSTS = 100
CONTAINERS = 1_000
SERVICES = 20
STOPPED_HOSTS = 6
NEARLY_FULL_HOSTS = 5
SIZES = (  # cpu cores, ram GiB, disk GiB
    (4, 8, 200),
    (8, 16, 400),
    (16, 32, 800),
    (32, 64, 1_600),
)


@dataclass(frozen=True)
class World:
    """The generated inventory, as plain tuples so that a fresh ``Cluster`` can be built for every run."""

    hosts: tuple[HostCapacity, ...]
    containers: tuple[ContainerDemand, ...]
    services: tuple[ServiceSpec, ...]
    callers: dict[str, Coordinates]

    def cluster(self) -> Cluster:
        return Cluster(self.hosts, self.containers)


def _point(rng: random.Random) -> Coordinates:
    return Coordinates(round(rng.uniform(-50.0, 65.0), 4), round(rng.uniform(-180.0, 180.0), 4))


def _hosts(rng: random.Random) -> list[HostCapacity]:
    hosts = []
    for i in range(HOSTS):
        at = _point(rng)
        cpu, ram, disk = rng.choice(SIZES)
        cloud = rng.random() < 0.3
        region = nearest_cloud_region(at)
        hosts.append(
            HostCapacity(
                f"host-{i:03d}",
                at,
                Resources(float(cpu), ram * GiB, disk * GiB),
                kind=HostKind.CLOUD if cloud else HostKind.EDGE,
                state=HostState.STOPPED if i < STOPPED_HOSTS else HostState.RUNNING,
                cloud_region=region.code if cloud and region else "",
            )
        )
    return hosts


def _services(rng: random.Random) -> list[ServiceSpec]:
    return [
        ServiceSpec(
            f"service-{i:02d}",
            Resources(round(rng.uniform(0.1, 1.0), 2), rng.uniform(0.25, 2.0) * GiB, rng.uniform(1.0, 5.0) * GiB),
        )
        for i in range(SERVICES)
    ]


def _measured(host: HostCapacity, containers: list[ContainerDemand], nearly_full: bool) -> HostCapacity:
    """The host with its measured use: what its running containers need plus a small base, or ~88 % of its
    capacity when it is one of the nearly full hosts."""
    if nearly_full:
        used = Resources(host.total.cpu * 0.88, host.total.ram * 0.88, host.total.disk * 0.5)
    else:
        running = [c.demand for c in containers if not c.starting]
        used = Resources(
            0.2 + sum(d.cpu for d in running),
            0.5 * GiB + sum(d.ram for d in running),
            10 * GiB + sum(d.disk for d in running),
        )
    return replace(host, used=used)


def build(seed: int) -> World:
    """The seeded inventory: hosts, containers spread over the running hosts (weighted by size), services with
    ``min_replicas`` two above their current count (so minimum replicas has 40 replicas to place), callers."""
    rng = random.Random(seed)
    hosts = _hosts(rng)
    services = _services(rng)
    running = [h for h in hosts if h.state is HostState.RUNNING]
    weights = [h.total.cpu for h in running]
    per_host: dict[str, list[ContainerDemand]] = {h.name: [] for h in hosts}
    for i in range(CONTAINERS):
        spec = services[i % SERVICES]
        on = rng.choices(running, weights)[0]
        per_host[on.name].append(
            ContainerDemand(
                f"{spec.name}-{i:04d}",
                spec.name,
                on.name,
                spec.demand,
                starting=rng.random() < 0.05,
                system=i % 97 == 0,
            )
        )
    nearly_full = {h.name for h in rng.sample(running, NEARLY_FULL_HOSTS)}
    hosts = [_measured(h, per_host[h.name], h.name in nearly_full) for h in hosts]
    containers = [c for h in hosts for c in per_host[h.name]]
    rng.shuffle(containers)
    counts = {s.name: sum(1 for c in containers if c.service == s.name) for s in services}
    services = [ServiceSpec(s.name, s.demand, counts[s.name] + 2) for s in services]
    callers = {s.name: _point(rng) for s in services}
    return World(tuple(hosts), tuple(containers), tuple(services), callers)


def cases(world: World) -> dict[str, Callable[[Cluster], object]]:
    """The timed calls, each a function of the cluster. Default options, as the simulator uses them, except the
    two ``closer_host_factor`` rows, where every tier of ``choose_host`` is weighed (stopped hosts, launch)."""
    closer = PlacementOptions(closer_host_factor=1.5)
    by_load = sorted((h for h in world.hosts if h.state is HostState.RUNNING), key=lambda h: h.used.cpu / h.total.cpu)
    full = by_load[-1].name
    per_host = {h.name: sum(1 for c in world.containers if c.host == h.name) for h in world.hosts}
    drained = max(by_load[: len(by_load) // 2], key=lambda h: (per_host[h.name], h.name)).name
    moving = next(c for c in world.containers if not c.system and not c.starting)
    failed = next(c for c in world.containers if c.host != moving.host and not c.system)
    spec = world.services[3]
    near = world.callers[spec.name]
    missing = sum(s.min_replicas for s in world.services) - len(world.containers)
    return {
        "choose_host": lambda c: choose_host(c, spec.demand, near),
        "choose_host (closer_host_factor)": lambda c: choose_host(c, spec.demand, near, closer),
        "plan_replica": lambda c: plan_replica(c, spec.name, spec.demand, near),
        "plan_migration": lambda c: plan_migration(c, moving.name, world.callers[moving.service]),
        "plan_stop": lambda c: plan_stop(c, spec.name, near),
        "plan_recovery": lambda c: plan_recovery(c, RecoveryTracker(), failed, 0.0),
        f"plan_overwork ({per_host[full]} on host)": lambda c: plan_overwork(c, full, callers=world.callers),
        f"plan_underwork ({per_host[drained]} moves)": lambda c: plan_underwork(c, drained, callers=world.callers),
        f"plan_minimum_replicas ({missing})": lambda c: plan_minimum_replicas(c, world.services, callers=world.callers),
        f"plan_minimum_replicas ({missing}, closer_host_factor)": lambda c: plan_minimum_replicas(
            c, world.services, closer, world.callers
        ),
    }


def digest(result: object) -> str:
    """A short, stable fingerprint of a planner's answer (its repr: hosts, distances, reasons)."""
    return hashlib.sha256(repr(result).encode()).hexdigest()[:12]


def _timed(call: Callable[[Cluster], object], cluster: Cluster) -> tuple[float, float, str]:
    """One run: wall-clock and CPU milliseconds, and the digest of the answer."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = call(cluster)
    return (time.perf_counter() - start) * 1000, (time.process_time() - start_cpu) * 1000, digest(result)


def time_case(world: World, call: Callable[[Cluster], object], runs: int) -> tuple[float, float, float, str]:
    """Median milliseconds cold (fresh cluster per run: wall clock, CPU) and warm (one cluster: CPU), and the
    answer's digest (the same in every run, or this raises)."""
    cold = [_timed(call, world.cluster()) for _ in range(runs)]
    cluster = world.cluster()
    call(cluster)
    warm = [_timed(call, cluster) for _ in range(runs)]
    digests = {d for _, _, d in cold + warm}
    if len(digests) != 1:
        raise AssertionError(f"the planner answered differently across runs: {sorted(digests)}")
    return (
        statistics.median(w for w, _, _ in cold),
        statistics.median(c for _, c, _ in cold),
        statistics.median(c for _, c, _ in warm),
        digests.pop(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per planner (median reported)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    world = build(args.seed)
    build_ms = statistics.median(_timed(lambda _: world.cluster(), Cluster())[0] for _ in range(args.runs))
    print(
        f"{len(world.hosts)} hosts, {len(world.containers)} containers, {len(world.services)} services, "
        f"seed {args.seed}, median of {args.runs}; Cluster() itself: {build_ms:.2f} ms"
    )
    rows = [(name, *time_case(world, call, args.runs)) for name, call in cases(world).items()]
    width = max(len(name) for name, *_ in rows)
    print(f"{'planner':<{width}}  {'cold wall':>9}  {'cold CPU':>9}  {'warm CPU':>9}  result")
    for name, cold_wall, cold_cpu, warm_cpu, result in rows:
        print(f"{name:<{width}}  {cold_wall:9.3f}  {cold_cpu:9.3f}  {warm_cpu:9.3f}  {result}")
    print(f"(milliseconds; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()

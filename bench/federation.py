"""What federation costs: the store's part of a cycle and of a plan step on a private PostgreSQL, and the simulated
world of 10 regions x 1,000 containers managed by one node and by a master with three workers (no assertion).

* **per cycle**: what a manager asks the store before each cycle (stop request, regions held, newest policy
  version), and a worker's heartbeat; the master's supervision of ``--workers`` workers;
* **per step**: the transaction that locks a region's lease at its epoch around a plan step (empty step);
* **hand-over**: the master moving one region (lease, epoch, host assignments);
* **simulation**: wall time per tick of the world of tests/integration/test_federation_simulation.py, run by one
  node and split among four managers in one process (the same decisions; the split's managers run one after the
  other here, where separate processes would run side by side).

Medians of ``--runs``; wall clock (PostgreSQL runs in its own processes).

    PYTHONPATH=. .venv/bin/python bench/federation.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tests.integration.test_federation_simulation import CENTRES, POLICY, fleet
from tests.services.postgres import Postgres
from usm.engine import load_policy
from usm.geo.regions import AREAS
from usm.manager.federation.coordinator import Coordinator
from usm.manager.federation.simulation import differences, run_federated, run_one_node
from usm.manager.federation.supervision import Timing
from usm.manager.store import EdgeHost, crud
from usm.manager.store import federation as fed
from usm.manager.store.configs import ConfigKind
from usm.manager.store.database import open_engine, sessions, upgrade

GiB = 2**30


def median_ms(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def store_costs(runs: int, workers: int, hosts: int) -> None:
    with tempfile.TemporaryDirectory() as scratch, Postgres(Path(scratch)).start() as server:
        os.environ["PGPASSWORD"] = server.password
        engine = open_engine(server.url("postgres"))
        upgrade(engine)
        regions = sorted(a.name for a in AREAS)
        with sessions(engine).begin() as session:
            for i in range(hosts):
                crud.create(session, EdgeHost, name=f"h{i}", region=regions[i % len(regions)], latitude=0.0,
                            longitude=float(i % 170), cpu=4.0, ram=8 * GiB, disk=64 * GiB, username="usm",
                            public_ip="127.0.0.2")
            fed.ensure_leases(session, regions, _now())
        coordinators = []
        for i in range(workers):
            worker = Coordinator(sessions(engine), f"w{i}", Timing())
            worker.register(regions[i % len(regions)], "127.0.0.1", 9465)
            coordinators.append(worker)
        master = Coordinator(sessions(engine), None, Timing())
        master.supervise()
        worker = coordinators[0]
        held = worker.held()

        def cycle_reads() -> None:
            worker.stop_requested()
            worker.held()
            worker.newest(ConfigKind.POLICY)

        def step() -> None:
            with worker.acting(held) as lost:
                assert not lost

        def hand_over() -> None:
            with sessions(engine).begin() as session:
                fed.hand_over(session, regions[1 % len(regions)], f"w{1 % workers}", _now())

        print(f"store (PostgreSQL, {hosts} hosts, {workers} workers, {len(regions)} regions), median of {runs}:")
        print(f"  per cycle, a manager's reads (stop request, regions held, policy version): "
              f"{median_ms(cycle_reads, runs):.2f} ms")
        print(f"  heartbeat: {median_ms(worker.beat, runs):.2f} ms")
        print(f"  master's supervision (nothing to change): {median_ms(master.supervise, runs):.2f} ms")
        print(f"  per plan step, the lease lock transaction: {median_ms(step, runs):.2f} ms")
        print(f"  a hand-over ({hosts // len(regions)} hosts reassigned): {median_ms(hand_over, runs):.2f} ms")
        engine.dispose()


def simulation_costs(minutes: float) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        (directory / "rules.yaml").write_text(POLICY)
        policy = load_policy(directory)
    scenario, regions = fleet(minutes=minutes)
    names = sorted(CENTRES)
    owners = {"master": names[:2], "worker-a": names[2:5], "worker-b": names[5:8], "worker-c": names[8:]}
    started = time.perf_counter()
    one, _ = run_one_node(scenario, policy)
    single = time.perf_counter() - started
    started = time.perf_counter()
    split, _ = run_federated(scenario, policy, owners, regions)
    federated = time.perf_counter() - started
    actions = sum(len(r.actions) for r in one)
    print(f"simulation: 10 regions x 1,000 containers, {len(one)} ticks, {actions} actions "
          f"(differences: {len(differences(one, split))}):")
    print(f"  one node: {1000 * single / len(one):.0f} ms per tick")
    print(f"  master + 3 workers, one after the other: {1000 * federated / len(one):.0f} ms per tick "
          f"(the slowest manager alone bounds a cycle when they run side by side)")


def _now() -> datetime:
    return datetime.now(UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=7)
    parser.add_argument("--hosts", type=int, default=700)
    parser.add_argument("--minutes", type=float, default=4.0, help="simulated minutes (15 s ticks)")
    parser.add_argument("--skip-simulation", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    store_costs(args.runs, args.workers, args.hosts)
    if not args.skip_simulation:
        simulation_costs(args.minutes)


if __name__ == "__main__":
    main()

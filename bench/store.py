"""Time the inventory store on a fleet-sized inventory, on SQLite and on a private PostgreSQL (no assertion).

A seeded generator stores ``--hosts`` hosts (edge and cloud, a few stopped), ``--services`` services with a few
dependencies and event predictions, ``--apps`` apps and ``--containers`` containers spread over the running hosts
(a few starting or down). Then, median of ``--runs`` runs, each in a new session (nothing cached):

* **inventory**, **cluster**, **specs**: what the control loop reads every cycle (``usm.manager.store.views``);
* **find page**: one page of 100 containers of a host, found by the host's name (a hub listing);
* **get**: one container by name;
* **create** and **update**: one container through the service layer, committed (the hub's writes; every
  check the layer makes included). Each run creates a new row and updates it.

The first ``--timed-creates`` containers are created one by one through the service layer and timed (rows/s);
the rest are added in bulk. Wall clock and CPU time are printed: CPU time is the steadier measure on a shared
machine, and the gap between them is mostly the database server's share (PostgreSQL runs in other processes).

    PYTHONPATH=. .venv/bin/python bench/store.py
    PYTHONPATH=. .venv/bin/python bench/store.py --backends sqlite --containers 1000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from tests.services.postgres import Postgres
from usm.manager.store import App, CloudHost, Container, EdgeHost, EventPrediction, Host, Service, crud, views
from usm.manager.store.database import open_engine, sessions, upgrade

GiB = 2**30
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def fill(engine, args) -> float:
    """Store the generated fleet; return the service layer's create rate (rows/s) over the timed creates."""
    rng = random.Random(args.seed)
    Session = sessions(engine)
    with Session.begin() as session:
        services = [f"svc-{i:04d}" for i in range(args.services)]
        for i, name in enumerate(services):
            earlier = services[max(0, i - 20):i]
            crud.create(session, Service, name=name, image=f"shop/{name}", min_replicas=rng.randint(1, 3),
                        expected_memory=rng.choice((128, 256, 512)) * 2**20,
                        dependencies=rng.sample(earlier, min(len(earlier), rng.randint(0, 2))))
        for i in range(args.services // 10):
            start = AT + timedelta(hours=rng.randint(-48, 48))
            crud.create(session, EventPrediction, name=f"event-{i}", service=rng.choice(services), starts_at=start,
                        ends_at=start + timedelta(hours=rng.randint(1, 12)), weekly=rng.random() < 0.5,
                        min_replicas=rng.randint(2, 6))
        for i in range(args.apps):
            crud.create(session, App, name=f"app-{i:03d}", services=rng.sample(services, 10))
        hosts = []
        for i in range(args.hosts):
            cloud = i % 3 == 0
            values = {"name": f"host-{i:04d}", "latitude": rng.uniform(-50, 60), "longitude": rng.uniform(-120, 150),
                      "cpu": float(rng.choice((2, 4, 8))), "ram": rng.choice((4, 8, 16)) * GiB, "disk": 100 * GiB,
                      "state": "stopped" if rng.random() < 0.05 else "running"}
            if cloud:
                crud.create(session, CloudHost, **values, instance_id=f"i-{i:06d}", instance_type="t2.large",
                            cloud_region="eu-west-1")
            else:
                crud.create(session, EdgeHost, **values, username="usm", public_ip=f"127.0.{i // 250}.{i % 250 + 2}")
            if values["state"] == "running":
                hosts.append(values["name"])
    rows = [{"name": f"c-{i:06d}", "service": rng.choice(services), "host": rng.choice(hosts),
             "state": rng.choices(("running", "starting", "down"), (0.95, 0.03, 0.02))[0]}
            for i in range(args.containers)]
    timed, bulk = rows[:args.timed_creates], rows[args.timed_creates:]
    started = time.perf_counter()
    with Session.begin() as session:
        for row in timed:
            crud.create(session, Container, **row)
    rate = len(timed) / (time.perf_counter() - started) if timed else float("nan")
    with Session.begin() as session:
        ids = {m.__name__: dict(session.execute(select(m.name, m.id)).all()) for m in (Service, Host)}
        session.execute(Container.__table__.insert(), [
            {"name": r["name"], "service_id": ids["Service"][r["service"]], "host_id": ids["Host"][r["host"]],
             "state": r["state"]} for r in bulk])
    return rate


def timed(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall clock and CPU time of ``run``, in milliseconds."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def measure(engine, args) -> list[tuple[str, float, float]]:
    Session = sessions(engine)
    counter = iter(range(10**9))

    def in_session(read: Callable) -> Callable[[], object]:
        def run() -> object:
            with Session() as session:
                return read(session)
        return run

    def create_and_update() -> None:
        name = f"new-{next(counter)}"
        with Session.begin() as session:
            crud.create(session, Container, name=name, service="svc-0000", host="host-0001")
        with Session.begin() as session:
            crud.update(session, Container, name, state="running")

    def create() -> None:
        with Session.begin() as session:
            crud.create(session, Container, name=f"one-{next(counter)}", service="svc-0000", host="host-0001")

    results = [
        ("inventory", *timed(in_session(lambda s: views.inventory(s, AT)), args.runs)),
        ("cluster", *timed(in_session(views.cluster), args.runs)),
        ("specs", *timed(in_session(lambda s: views.service_specs(s, AT)), args.runs)),
        ("find page", *timed(in_session(lambda s: crud.find(s, Container, host="host-0001")), args.runs)),
        ("get", *timed(in_session(lambda s: crud.get(s, Container, "c-000100")), args.runs)),
        ("create", *timed(create, args.runs)),
        ("create + update", *timed(create_and_update, args.runs)),
    ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=400)
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--timed-creates", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.hosts} hosts, {args.containers} containers, {args.services} services, {args.apps} apps; "
          f"median of {args.runs} runs; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        for backend in args.backends.split(","):
            server = None
            if backend == "postgresql":
                server = Postgres(Path(scratch) / "postgres").start()
                with server.connect() as connection:
                    connection.execute("CREATE DATABASE usm")
                target = server.url("usm")
                os.environ["PGPASSWORD"] = server.password
            else:
                target = Path(scratch) / "usm.db"
            engine = open_engine(target)
            try:
                upgrade(engine)
                rate = fill(engine, args)
                print(f"\n{backend}: service-layer creates {rate:,.0f} containers/s (one transaction)")
                print(f"{'operation':<16} {'wall ms':>9} {'cpu ms':>9}")
                for name, wall, cpu in measure(engine, args):
                    print(f"{name:<16} {wall:>9.1f} {cpu:>9.1f}")
            finally:
                engine.dispose()
                if server is not None:
                    server.stop()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

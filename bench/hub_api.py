"""Load the hub's API: 200 concurrent clients listing containers, a page at a time, out of 10,000.

Builds a SQLite store with ``--containers`` containers (of 50 services on 100 hosts) and an API token, serves
the hub with waitress (``--server waitress``, one process, ``--threads`` threads) or gunicorn (``--server
gunicorn``, ``--workers`` processes) on a free loopback port, then drives it with wrk (Debian's ``wrk``) and
``hub_api.lua`` beside this file: ``--connections`` keep-alive connections, each sending its next request as soon
as the last one is answered, for ``--seconds``. Each request asks for one page (``limit=--page``) at a random
offset, with the token. Prints throughput, latency percentiles (p50, p95, p99, max), non-2xx answers, and the CPU
the server and wrk used (the two share this machine's cores with whatever else runs; the load average is
printed too). ``--writes N`` changes one container N times a second from another process during the run (every
change makes the hub's kept listings of containers stale); ``--baseline`` serves a fixed answer from a bare WSGI
function instead of the hub, with the same server settings: the most the server and the machine allow right now.

Why wrk: a Python client would need about as much CPU per request as the server, on the same two cores.

    PYTHONPATH=. .venv/bin/python bench/hub_api.py [--server waitress] [--seconds 30] [--connections 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

SCRIPT = Path(__file__).with_suffix(".lua")
TICKS = os.sysconf("SC_CLK_TCK")
GiB = 2**30

SERVE = """
import sys
from usm.web import create_app
from usm.web.hub import state
settings = {{"INSTANCE_PATH": {instance!r}, "USM_DATABASE": {database!r}, "USM_POLICY": "policies"}}
app = create_app(settings)
with app.app_context():
    state().engine.dispose()  # no connection opened here is carried into gunicorn's forked workers
if {baseline!r}:
    PAGE = b"x" * {page_bytes}
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(PAGE)))])
        return [PAGE]
if {server!r} == "waitress":
    import waitress
    waitress.serve(app, host="127.0.0.1", port={port}, threads={threads}, connection_limit=1000, backlog=2048,
                   ident="usm")
"""


def build_store(folder: Path, containers: int) -> tuple[Path, str]:
    """A migrated store with ``containers`` containers and an admin's token; the file and the token."""
    from usm.manager import accounts
    from usm.manager.store import Container, EdgeHost, Host, Service, crud
    from usm.manager.store.database import open_engine, sessions, upgrade

    database = folder / "usm.db"
    engine = open_engine(database)
    upgrade(engine)
    now = datetime.now(UTC)
    with sessions(engine).begin() as session:
        for number in range(50):
            crud.create(session, Service, name=f"service-{number:02d}", image=f"bench/service-{number}",
                        expected_memory=GiB // 4)
        for number in range(100):
            crud.create(session, EdgeHost, name=f"host-{number:03d}", latitude=-60 + number, longitude=-170 + 3 * number,
                        cpu=8.0, ram=64 * GiB, disk=512 * GiB, username="usm", public_ip=f"127.0.1.{number + 1}")
        services = session.execute(select(Service.id)).scalars().all()
        hosts = session.execute(select(Host.id)).scalars().all()
        session.execute(insert(Container), [
            {"name": f"container-{number:05d}", "service_id": services[number % len(services)],
             "host_id": hosts[number % len(hosts)], "state": "running", "port": 20000 + number % 40000}
            for number in range(containers)])
        user = accounts.create_user(session, "bench", "a password for the benchmark", now, admin=True)
        token = accounts.issue_token(session, user, "bench", now).text
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return database, token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


WRITE = """
import sys, time
from datetime import UTC, datetime
from usm.manager.store import Container, crud
from usm.manager.store.database import open_engine, sessions
engine, interval, count = open_engine(sys.argv[1]), 1 / float(sys.argv[2]), int(sys.argv[3])
made, due = 0, time.monotonic()
while True:
    with sessions(engine).begin() as session:
        crud.update(session, Container, f"container-{made * 7919 % count:05d}", port=20000 + made % 40000)
    made += 1
    print(made, flush=True)
    due += interval
    time.sleep(max(0.0, due - time.monotonic()))
"""


def start(server: str, folder: Path, database: Path, port: int, threads: int, workers: int,
          baseline: bool = False) -> subprocess.Popen:
    code = SERVE.format(instance=str(folder / "instance"), database=str(database), server=server, port=port,
                        threads=threads, baseline=baseline, page_bytes=6_000)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()),
                                                                             os.environ.get("PYTHONPATH")]))}
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed with the process
    if server == "waitress":
        argv = [sys.executable, "-c", code]
    else:
        (folder / "hubapp.py").write_text(code)
        argv = [sys.executable, "-m", "gunicorn", "--chdir", str(Path.cwd()), "--pythonpath", str(folder),
                "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", "gthread", "--threads", str(threads),
                "--backlog", "2048", "--keep-alive", "120", "--preload", "hubapp:app"]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the hub did not start; see {folder / 'server.log'}")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICKS
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def family(pid: int) -> list[int]:
    """``pid`` and its children (gunicorn's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found += family(int(child))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--page", type=int, default=50, help="containers per page (limit)")
    parser.add_argument("--rate", type=float, default=0,
                        help="requests a second in all, spread over the connections (0: each connection sends "
                             "its next request as soon as the last is answered)")
    parser.add_argument("--server", choices=("waitress", "gunicorn"), default="waitress")
    parser.add_argument("--threads", type=int, default=16, help="waitress threads, or gunicorn threads per worker")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--writes", type=float, default=0,
                        help="changes to one container a second, through the store from another process, during "
                             "the run (each one makes every kept listing of containers stale)")
    parser.add_argument("--baseline", action="store_true",
                        help="serve a fixed 6 kB answer from a bare WSGI function instead of the hub, with the same "
                             "server settings: what the server and this machine allow at best right now")
    options = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    with tempfile.TemporaryDirectory(prefix="usm-hub-bench-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        database, token = build_store(folder, options.containers)
        print(f"store: {options.containers:,} containers in {time.perf_counter() - started:.1f} s")
        port = free_port()
        server = start(options.server, folder, database, port, options.threads, options.workers, options.baseline)
        writer = None
        try:
            url = f"http://127.0.0.1:{port}/api/containers"
            def wrk_args(connections: int, seconds: int, rate: float) -> list[str]:
                return [wrk, "-t", str(options.wrk_threads), "-c", str(connections), "-d", f"{seconds}s",
                        "--timeout", "10s", "-s", str(SCRIPT), url, "--", token, str(options.page),
                        str(options.containers), str(rate), str(options.wrk_threads)]

            # a short warm-up (imports, caches, SQLite pages), not counted
            warm = subprocess.run(wrk_args(10, 3, 0), check=False, capture_output=True, text=True)
            if warm.returncode != 0:
                raise SystemExit(f"wrk failed: {warm.stdout}{warm.stderr}")
            pids = family(server.pid)
            if options.writes:
                writer = subprocess.Popen([sys.executable, "-c", WRITE, str(database), str(options.writes),
                                           str(options.containers)], stdout=subprocess.PIPE, text=True,
                                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})
            server_before, load_before, wrk_before = cpu_seconds(pids), os.getloadavg()[0], children_cpu()
            clock = time.perf_counter()
            run = subprocess.run(wrk_args(options.connections, options.seconds, options.rate), check=True,
                                 capture_output=True, text=True)
            wall = time.perf_counter() - clock
            server_cpu = cpu_seconds(pids) - server_before
            wrk_cpu = children_cpu() - wrk_before
        finally:
            if writer is not None:
                writer.terminate()
                written = writer.communicate(timeout=10)[0].split()
            for pid in reversed(family(server.pid)):
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass
            server.wait(10)
        summary = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"server: {options.server}" + (f", {options.workers} workers x {options.threads} threads"
                                          if options.server == "gunicorn" else f", {options.threads} threads")
          + (" (baseline: a fixed answer, not the hub)" if options.baseline else ""))
    if writer is not None:
        print(f"writes: {written[-1] if written else 0} changes to containers during the run "
              f"({options.writes:g} a second asked)")
    pace = f"{options.rate:g} requests/s in all" if options.rate else "closed loop"
    print(f"load: {options.connections} connections, {pace}, for {options.seconds} s, pages of {options.page}")
    print(f"requests: {summary['requests']:,} ({summary['requests'] / wall:,.0f}/s), non-2xx {summary['non2xx']}, "
          f"socket errors {summary['errors']}")
    print(f"latency ms: p50 {summary['p50']:.1f}, p95 {summary['p95']:.1f}, p99 {summary['p99']:.1f}, "
          f"max {summary['max']:.1f}")
    if options.rate:
        print(f"sent late (all connections busy): {summary['late']:,} requests, at most {summary['late_max']:.0f} ms")
    print(f"cpu: server {server_cpu:.1f} s ({server_cpu / wall:.2f} cores), wrk {wrk_cpu:.1f} s; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()

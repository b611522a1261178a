"""Endpoint look-ups per second through the registration sidecar (`usm registration-client`).

Starts a 3-member etcd cluster on loopback (tests/services/etcd.py), registers ``--instances`` instances of
``orders`` spread over the world, starts the sidecar as its own process and drives it with wrk (Debian's ``wrk``)
and ``registration.lua``: GET /services/orders/endpoint, ?number=3 and ?range=500 in turn, over
``--connections`` keep-alive connections as fast as the sidecar answers, ``--runs`` runs of ``--seconds``.
Prints each run's rate, latency percentiles, the CPU the sidecar and wrk used, how long the sidecar waited for
a CPU while ready to run (other processes on the machine had both cores), and the sidecar's CPU time per look-up
(its rate on a core of its own is about the inverse). Request locations are counted
as in production but not forwarded (no location monitor), so only the sidecar is measured.

Why wrk: a Python load generator costs more CPU per request than the sidecar itself on this 2-core machine.

    PYTHONPATH=. .venv/bin/python bench/registration.py [--seconds 10] [--runs 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.services import free_port, wait_until
from tests.services.etcd import EtcdCluster
from usm.geo.sphere import Coordinates
from usm.registration.etcd import Etcd
from usm.registration.instance import Instance
from usm.registration.registry import Registry

SCRIPT = Path(__file__).with_suffix(".lua")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_wait_seconds(pid: int) -> float:
    """Time the process was ready to run but waited for a CPU (other processes had both cores)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--instances", type=int, default=50)
    args = parser.parse_args()
    wrk = shutil.which("wrk") or sys.exit("wrk is not installed (apt-get install wrk)")
    usm = str(Path(sys.executable).with_name("usm"))
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="usm-bench-registration-") as work, \
            EtcdCluster(Path(work), ["europe", "asia", "america"]).start() as cluster:
        registry = Registry(Etcd(cluster.endpoints))
        registrations = [registry.register(Instance("orders", f"127.0.{n // 250}.{n % 250 + 1}", 8080,
                                                    Coordinates(rng.uniform(-60, 70), rng.uniform(-180, 180))),
                                           ttl=600) for n in range(args.instances)]
        port = free_port()
        sidecar = subprocess.Popen([usm, "registration-client", "--port", str(port), "--etcd",
                                    ",".join(cluster.endpoints), "--latitude", "38.72", "--longitude", "-9.14",
                                    "--monitor", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: httpx.get(f"{url}/health").json()["status"] == "ok", 60, "the sidecar")
            wait_until(lambda: len(httpx.get(f"{url}/services/orders/endpoints").json()) == args.instances, 30,
                       "every instance in the sidecar's cache")
            print(f"sidecar pid {sidecar.pid}, {args.instances} instances of orders, wrk -c {args.connections} "
                  f"for {args.seconds} s x {args.runs} ({os.cpu_count()} cores)")
            print(f"{'run':>3} {'look-ups/s':>10} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
                  f"{'max ms':>7} {'errors':>6} {'sidecar CPU':>11} {'waited':>6} {'CPU/look-up':>11} {'wrk CPU':>7}")
            for run in range(1, args.runs + 1):
                before, waited, wrk_before = cpu_seconds(sidecar.pid), cpu_wait_seconds(sidecar.pid), children_cpu()
                done = subprocess.run([wrk, "-t", "1", "-c", str(args.connections), "-d", f"{args.seconds}s",
                                       "--timeout", "5s", "-s", str(SCRIPT), url], capture_output=True, text=True,
                                      check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                span = result["duration_us"] / 1e6
                used = cpu_seconds(sidecar.pid) - before
                print(f"{run:>3} {result['requests'] / span:>10,.0f} {result['p50_us'] / 1e3:>7.2f} "
                      f"{result['p90_us'] / 1e3:>7.2f} {result['p99_us'] / 1e3:>7.2f} {result['p999_us'] / 1e3:>8.2f} "
                      f"{result['max_us'] / 1e3:>7.1f} {result['errors'] + result['non2xx']:>6} "
                      f"{used / span:>11.0%} {(cpu_wait_seconds(sidecar.pid) - waited) / span:>6.0%} "
                      f"{used / result['requests'] * 1e3:>8.3f} ms {(children_cpu() - wrk_before) / span:>7.0%}")
        finally:
            sidecar.terminate()
            sidecar.wait(30)
            for registration in registrations:
                registration.deregister()
            registry.etcd.close()
    load = os.getloadavg()
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

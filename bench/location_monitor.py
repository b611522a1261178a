"""Load the request-location monitor at a constant POST rate and print latency, throughput and memory.

Starts ``usm location-monitor`` on a free loopback port, then sends ``--rate`` POST/s (default 2,000) for
``--seconds`` (default 300) over ``--connections`` keep-alive connections, each POST a list of ``--items``
items for ``--services`` services at ``--locations`` distinct places (``--locations 0``: a new random place in
every item, to drive the table into its points cap). Prints, every ``--every`` seconds and for the whole run:
the achieved rate, latency percentiles, the server's RSS and CPU, and the generator's own CPU and lateness.
At the end it checks that the monitor counted exactly what was posted (when the run fits in the retention and
no location was merged, the totals must match).

The generator is open-loop: request i is due at ``start + i / rate`` whatever happened to earlier ones, and its
latency is measured from that due time, so a slow server cannot slow the generator down and hide its own
slowness (no coordinated omission). The generator reports how late it sent requests and how much CPU it used,
so a run where it, not the server, fell behind is visible.

    PYTHONPATH=. .venv/bin/python bench/location_monitor.py [--seconds 300] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Record:
    due: list[float] = field(default_factory=list)  # seconds after the start
    latency: list[float] = field(default_factory=list)  # seconds from due to the answer
    lateness: list[float] = field(default_factory=list)  # seconds from due to the send
    failures: int = 0
    counted: int = 0  # items the monitor accepted
    merged: int = 0


@dataclass
class Sample:
    at: float
    rss_mib: float
    server_cpu: float  # seconds of CPU so far
    generator_cpu: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_monitor(port: int, options: list[str]) -> subprocess.Popen:
    usm = Path(sys.executable).with_name("usm")
    argv = [str(usm), "location-monitor", "--host", "127.0.0.1", "--port", str(port), *options]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bodies(args: argparse.Namespace, rng: random.Random) -> tuple[list[bytes], list[int]]:
    """Distinct POST bodies to cycle through, and the items counted in each."""
    places = [(rng.uniform(-60, 70), rng.uniform(-170, 170)) for _ in range(max(args.locations, 1))]
    made, counts = [], []
    for _ in range(1000):
        items = []
        for _ in range(args.items):
            latitude, longitude = (rng.uniform(-60, 70), rng.uniform(-170, 170)) if args.locations == 0 else \
                rng.choice(places)
            items.append({"service": f"service-{rng.randrange(args.services)}", "latitude": round(latitude, 4),
                          "longitude": round(longitude, 4), "count": rng.randint(1, 20)})
        made.append(json.dumps(items).encode())
        counts.append(sum(i["count"] for i in items))
    return made, counts


async def load(url: str, args: argparse.Namespace, pid: int) -> tuple[Record, list[Sample], float, int]:
    rng = random.Random(args.seed)
    posts, item_counts = bodies(args, rng)
    record = Record()
    samples: list[Sample] = []
    total = int(args.rate * args.seconds)
    posted = 0
    connector = aiohttp.TCPConnector(limit=args.connections)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = time.perf_counter()

        async def post(index: int, due: float) -> None:
            sent = time.perf_counter()
            try:
                async with session.post(f"{url}/metrics", data=posts[index % len(posts)]) as response:
                    body = await response.json()
                    if response.status != 200:
                        record.failures += 1
                    else:
                        record.counted += body["accepted"]
                        record.merged += body["merged"]
            except (TimeoutError, aiohttp.ClientError):
                record.failures += 1
            done = time.perf_counter()
            record.due.append(due - start)
            record.latency.append(done - due)
            record.lateness.append(sent - due)

        async def sampler() -> None:
            while True:
                samples.append(Sample(time.perf_counter() - start, rss_mib(pid), cpu_seconds(pid), own_cpu()))
                await asyncio.sleep(args.every)

        sampling = asyncio.create_task(sampler())
        tasks: set[asyncio.Task] = set()
        for index in range(total):
            due = start + index / args.rate
            wait = due - time.perf_counter()
            if wait > 0.0005:
                await asyncio.sleep(wait)
            task = asyncio.create_task(post(index, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            posted += item_counts[index % len(posts)]
        if tasks:
            await asyncio.wait(tasks)
        elapsed = time.perf_counter() - start
        sampling.cancel()
        samples.append(Sample(elapsed, rss_mib(pid), cpu_seconds(pid), own_cpu()))
    return record, samples, elapsed, posted


def percentiles(values: np.ndarray) -> str:
    if values.size == 0:
        return "-"
    p50, p95, p99 = np.percentile(values, [50, 95, 99]) * 1000
    return f"p50 {p50:6.1f}  p95 {p95:6.1f}  p99 {p99:6.1f}  max {values.max() * 1000:7.1f} ms"


def report(record: Record, samples: list[Sample], elapsed: float, args: argparse.Namespace) -> None:
    due, latency, lateness = (np.asarray(v) for v in (record.due, record.latency, record.lateness))
    print(f"\n{'time':>6} {'POST/s':>7}  latency (from due time){'':28} {'RSS MiB':>8} {'server CPU':>10} "
          f"{'generator CPU':>13}")
    for before, after in itertools.pairwise(samples):
        span = after.at - before.at
        mask = (due >= before.at) & (due < after.at)
        print(f"{after.at:6.0f} {mask.sum() / span:7.0f}  {percentiles(latency[mask]):51} {after.rss_mib:8.1f} "
              f"{(after.server_cpu - before.server_cpu) / span:10.0%} "
              f"{(after.generator_cpu - before.generator_cpu) / span:13.0%}")
    rss = np.asarray([s.rss_mib for s in samples])
    settled = rss[len(rss) // 5:] if len(rss) > 5 else rss
    print(f"\nrequests: {len(latency):,} in {elapsed:.1f} s = {len(latency) / elapsed:,.0f} POST/s "
          f"(target {args.rate:,.0f}), {args.items} items each; failures {record.failures}")
    print(f"latency from due time: {percentiles(latency)}")
    print(f"generator lateness (send - due): {percentiles(lateness)}; generator CPU "
          f"{(samples[-1].generator_cpu - samples[0].generator_cpu) / elapsed:.0%} of a core")
    print(f"server CPU {(samples[-1].server_cpu - samples[0].server_cpu) / elapsed:.0%} of a core; "
          f"RSS start {rss[0]:.1f} MiB, min/max after the first fifth {settled.min():.1f}/{settled.max():.1f} MiB, "
          f"end {rss[-1]:.1f} MiB")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")


def check_totals(url: str, posted: int, record: Record) -> None:
    async def fetch() -> dict:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
            return await response.json()

    window = asyncio.run(fetch())
    counted = sum(p["count"] for points in window["services"].values() for p in points)
    points = sum(len(points) for points in window["services"].values())
    print(f"monitor holds {counted:,} requests at {points:,} points; the generator posted {posted:,} "
          f"(accepted {record.counted:,} items, {record.merged:,} merged into nearby points)")
    if record.failures == 0 and counted != posted:
        print("MISMATCH: the monitor's totals differ from what was posted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="POST requests per second")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--items", type=int, default=3, help="items per POST")
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--locations", type=int, default=2000, help="distinct places (0: a new one each item)")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--monitor", nargs=argparse.REMAINDER, default=[],
                        help="options for usm location-monitor, e.g. --monitor --max-points 5000")
    args = parser.parse_args()

    port = free_port()
    server = start_monitor(port, args.monitor)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the monitor did not start: {server.stderr.read().decode()}") from None
                time.sleep(0.05)
        print(f"monitor pid {server.pid} on {url} ({' '.join(args.monitor) or 'default options'}); "
              f"{args.rate:,.0f} POST/s for {args.seconds:g} s over {args.connections} connections")
        record, samples, elapsed, posted = asyncio.run(load(url, args, server.pid))
        report(record, samples, elapsed, args)
        check_totals(url, posted, record)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()

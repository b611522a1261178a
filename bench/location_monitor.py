"""Load the request-location monitor at a constant POST rate; print latency, throughput, CPU and memory.

Starts ``usm location-monitor`` on a free loopback port and drives it with wrk (Debian's ``wrk``) and
``location_monitor.lua`` beside this file: ``--rate`` POST/s (default 2,000) for ``--seconds`` (default 300)
over ``--connections`` keep-alive connections, each POST a list of ``--items`` items for ``--services`` services
at ``--locations`` distinct places (``--locations 0``: a new random place in every item, which drives the table
into its points cap and its merge policy). The run is cut into chunks of ``--every`` seconds, one wrk run each,
and every chunk prints its achieved rate, latency percentiles, how late wrk sent requests, the CPU of the server
and of wrk, how long the server waited for a CPU while ready to run (other processes had both cores: the
share of latency this machine's other load caused), and the server's RSS (sampled every second; the chunk's
highest). At the end the monitor's total is
checked against what wrk saw answered.

Why wrk: a Python client (aiohttp) needed 0.3-0.4 ms of CPU per POST, more than the server (0.2-0.25 ms), so at
2,000 POST/s it would take most of one of the two cores; wrk needs a small fraction of that. The Lua script
keeps a fixed schedule (request k due at start + k / rate) and records how late each request left, so a run
where the generator, not the server, fell behind shows it; wrk's latency counts from the send.

    PYTHONPATH=. .venv/bin/python bench/location_monitor.py [--seconds 300] [--rate 2000] [--locations 0]
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
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_suffix(".lua")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Chunk:
    end: float  # seconds since the start of the run
    result: dict  # wrk's summary (location_monitor.lua's done())
    server_cpu: float  # seconds of CPU in this chunk
    server_wait: float  # seconds the server was ready to run but waited for a CPU
    wrk_cpu: float
    rss_mib: float  # the highest RSS sampled in this chunk


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def cpu_wait_seconds(pid: int) -> float:
    """Time the process spent runnable but waiting for a CPU (other processes had them)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class RssSampler(threading.Thread):
    """The server's RSS every second; ``take()`` returns the highest since the last call."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.highest = rss_mib(pid)
        self.first = self.highest
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.highest = max(self.highest, rss_mib(self.pid))

    def take(self) -> float:
        highest, self.highest = max(self.highest, rss_mib(self.pid)), 0.0
        return highest


def start_monitor(port: int, options: list[str]) -> subprocess.Popen:
    usm = Path(sys.executable).with_name("usm")
    argv = [str(usm), "location-monitor", "--host", "127.0.0.1", "--port", str(port), *options]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit(f"the monitor did not start: {server.stderr.read().decode()}") from None
            time.sleep(0.1)


def chunk_lengths(seconds: float, every: float) -> list[int]:
    """Whole seconds per wrk run (wrk takes whole seconds), adding up to ``seconds``."""
    total, step = max(1, round(seconds)), max(1, round(every))
    return [step] * (total // step) + ([total % step] if total % step else [])


def run_wrk(wrk: str, url: str, seconds: int, args: argparse.Namespace) -> dict:
    argv = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s", "--timeout", "5s",
            "-s", str(SCRIPT), url, "--", str(args.rate), str(args.items), str(args.services), str(args.locations),
            str(args.seed), str(args.threads)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1])


def errors_of(result: dict) -> int:
    return sum(result[k] for k in ("non_200", "connect_errors", "read_errors", "write_errors", "timeouts"))


def row(chunk: Chunk, span: float) -> str:
    result, latency, late = chunk.result, chunk.result["latency_us"], chunk.result["late_ms"]
    return (f"{chunk.end:6.0f} {result['requests'] / (result['duration_us'] / 1e6):7.0f} "
            f"{latency['p50'] / 1000:6.1f} {latency['p95'] / 1000:6.1f} {latency['p99'] / 1000:6.1f} "
            f"{latency['max'] / 1000:7.1f} {late['p99']:7d} {late['max']:7.1f} {errors_of(result):6d} "
            f"{chunk.server_cpu / span:7.0%} {chunk.server_wait / span:6.0%} {chunk.wrk_cpu / span:6.0%} "
            f"{chunk.rss_mib:8.1f}")


def report(chunks: list[Chunk], elapsed: float, first_rss: float, args: argparse.Namespace) -> None:
    requests = sum(c.result["requests"] for c in chunks)
    p99s = [c.result["latency_us"]["p99"] / 1000 for c in chunks]
    weighted = sum(p * c.result["requests"] for p, c in zip(p99s, chunks)) / max(requests, 1)
    rss = [c.rss_mib for c in chunks]
    print(f"\nrequests answered: {requests:,} in {elapsed:.1f} s = {requests / elapsed:,.0f} POST/s "
          f"(target {args.rate:,.0f}); errors {sum(errors_of(c.result) for c in chunks)}")
    print(f"latency p99 per chunk: worst {max(p99s):.1f} ms, mean {weighted:.1f} ms (target < 50 ms); "
          f"worst max {max(c.result['latency_us']['max'] for c in chunks) / 1000:.1f} ms")
    print(f"wrk late p99 per chunk: worst {max(c.result['late_ms']['p99'] for c in chunks)} ms; "
          f"CPU: server {sum(c.server_cpu for c in chunks) / elapsed:.0%}, "
          f"wrk {sum(c.wrk_cpu for c in chunks) / elapsed:.0%} of a core; the server waited for a CPU "
          f"{sum(c.server_wait for c in chunks) / elapsed:.0%} of the time")
    print(f"server RSS: {first_rss:.1f} MiB before the load, highest per chunk {min(rss):.1f} to {max(rss):.1f} "
          f"MiB, last chunk {rss[-1]:.1f} MiB")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")


def check_totals(url: str, chunks: list[Chunk], args: argparse.Namespace) -> None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        window = json.load(answer)
    with urllib.request.urlopen(f"{url}/health", timeout=10) as answer:
        health = json.load(answer)
    held = sum(p["count"] for points in window["services"].values() for p in points)
    answered = sum(c.result["requests"] - errors_of(c.result) for c in chunks) * chunks[0].result["count_per_post"]
    in_flight = args.connections * len(chunks) * chunks[0].result["count_per_post"]
    print(f"monitor: {held:,} requests counted at {health['points']:,} points ({health['merged']:,} items merged "
          f"into nearby points, {health['refused']:,} refused); wrk saw {answered:,} answered")
    if health["refused"] == 0 and not 0 <= held - answered <= in_flight:
        print("MISMATCH: the monitor's total differs from what wrk saw answered by more than the requests still "
              "in flight when each chunk ended")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="POST requests per second")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--items", type=int, default=3, help="items per POST")
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--locations", type=int, default=300, help="distinct places (0: a new one each item)")
    parser.add_argument("--every", type=int, default=30, help="seconds per chunk (one wrk run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--monitor", nargs=argparse.REMAINDER, default=[],
                        help="options for usm location-monitor, e.g. --monitor --max-points 5000 (last)")
    args = parser.parse_args()
    wrk = shutil.which("wrk") or sys.exit("wrk is not installed (apt-get install wrk)")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_monitor(port, args.monitor)
    try:
        sampler = RssSampler(server.pid)
        sampler.start()
        first_rss = sampler.first
        print(f"monitor pid {server.pid} on {url} ({' '.join(args.monitor) or 'default options'}); "
              f"{args.rate:,.0f} POST/s of {args.items} items for {args.seconds:g} s, {args.connections} connections, "
              f"{args.threads} wrk thread(s), {args.services} services, "
              f"{args.locations or 'a new place for every item:'} places; RSS before {first_rss:.1f} MiB")
        print(f"\n{'time':>6} {'POST/s':>7} {'p50':>6} {'p95':>6} {'p99':>6} {'max ms':>7} {'late99':>7} "
              f"{'latemax':>7} {'errors':>6} {'server':>7} {'waited':>6} {'wrk':>6} {'RSS MiB':>8}")
        chunks: list[Chunk] = []
        start = time.monotonic()
        for span in chunk_lengths(args.seconds, args.every):
            server_before, wait_before = cpu_seconds(server.pid), cpu_wait_seconds(server.pid)
            wrk_before, began = children_cpu(), time.monotonic()
            result = run_wrk(wrk, url, span, args)
            took = time.monotonic() - began
            chunk = Chunk(time.monotonic() - start, result, cpu_seconds(server.pid) - server_before,
                          cpu_wait_seconds(server.pid) - wait_before, children_cpu() - wrk_before, sampler.take())
            chunks.append(chunk)
            print(row(chunk, took), flush=True)
        elapsed = time.monotonic() - start
        sampler.stopped.set()
        report(chunks, elapsed, first_rss, args)
        check_totals(url, chunks, args)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()

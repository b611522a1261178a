"""Time the live collectors against real services and print a table (no assertion).

* **docker**: one private dockerd with N managed busybox containers (``sleep``); the wall time of
  ``DockerStatsCollector.collect`` (second and later calls: the first also opens the client), median of
  ``--runs``, for ``parallel_stats`` 1 and the default. A stats read waits for the daemon's next sampling tick
  (~1 s), so the time is about ``ceil(N / parallel_stats)`` ticks.
* **docker, frozen host**: the same engine plus a second one stopped with SIGSTOP (it accepts connections and
  never answers): the collection's wall time is bounded by its ``timeout``.
* **prometheus**: ``PrometheusCollector.collect`` for two node_exporter targets scraped every second: eight
  instant queries, sent side by side.

    PYTHONPATH=. .venv/bin/python bench/collectors.py [--runs 5] [--containers 1,8,32]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from tests.services import wait_until
from tests.services.dockerd import Dockerd, busybox_image, remove_tree
from tests.services.prometheus import NodeExporter, Prometheus
from usm.actuators.docker import LABEL_MANAGED
from usm.collectors.docker import DockerStatsCollector
from usm.collectors.prometheus import PrometheusCollector


def timed(collect, runs: int) -> tuple[float, object]:
    collect()  # warm: the client connects and asks the engine's API version
    times, batch = [], None
    for _ in range(runs):
        start = time.perf_counter()
        batch = collect()
        times.append(time.perf_counter() - start)
    return statistics.median(times), batch


def engine() -> Dockerd:
    return Dockerd(Path(tempfile.mkdtemp(prefix="usm-b", dir="/tmp"))).start()


def scale_to(client, image: str, count: int) -> None:
    running = len(client.containers.list(filters={"label": f"{LABEL_MANAGED}=true"}))
    for _ in range(count - running):
        client.containers.run(image, ["sleep", "3600"], detach=True, network_mode="none",
                              labels={LABEL_MANAGED: "true"}, stop_signal="SIGKILL")


def bench_docker(counts: list[int], runs: int) -> None:
    live, frozen = engine(), engine()
    client = live.client()
    try:
        image = busybox_image(client)
        print("docker: containers  parallel_stats  median collect (s)  samples")
        for count in counts:
            scale_to(client, image, count)
            for parallel in (1, 8, 16):
                if parallel == 1 and count > 8:
                    continue  # a tick per container: too slow to be worth waiting for
                with DockerStatsCollector({"edge-a": live.url}, parallel_stats=parallel, timeout=120) as collector:
                    median, batch = timed(lambda: collector.collect(0.0), runs)
                print(f"        {count:10d}  {parallel:14d}  {median:18.2f}  {batch.samples.height:7d}")
        os.kill(frozen.pid, signal.SIGSTOP)
        hosts = {"edge-a": live.url, "edge-frozen": frozen.url}
        with DockerStatsCollector(hosts, timeout=6) as collector:
            start = time.perf_counter()
            batch = collector.collect(0.0)
            took = time.perf_counter() - start
        print(f"docker, one frozen host, timeout 6 s: collect {took:.2f} s, {batch.samples.height} samples, "
              f"failed: {batch.failed}")
    finally:
        client.close()
        os.kill(frozen.pid, signal.SIGCONT)
        for engine_ in (live, frozen):
            cleanup = engine_.client()
            for container in cleanup.containers.list(all=True):
                container.remove(force=True)
            cleanup.close()
            engine_.stop()
            remove_tree(engine_.root)


def bench_prometheus(runs: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="usm-bp", dir="/tmp"))
    exporters = [NodeExporter(root, f"ne{n}").start() for n in range(2)]
    prometheus = Prometheus(root, [e.instance for e in exporters]).start()
    try:
        targets = {e.instance: f"edge-{n}" for n, e in enumerate(exporters)}
        with PrometheusCollector(prometheus.url, targets, rate_window=5) as collector:
            wait_until(lambda: collector.collect(0.0).samples.height == 14, 30, "rates")
            median, batch = timed(lambda: collector.collect(0.0), runs)
        print(f"prometheus: 2 targets, 8 queries side by side: median collect {median * 1000:.1f} ms, "
              f"{batch.samples.height} samples")
    finally:
        prometheus.stop()
        for exporter in exporters:
            exporter.stop()
        remove_tree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--containers", default="1,8,32")
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    bench_prometheus(args.runs)
    bench_docker([int(n) for n in args.containers.split(",")], args.runs)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

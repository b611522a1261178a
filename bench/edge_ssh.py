"""Time the edge actuator's SSH operations against a real sshd on loopback, and print them (no assertion).

Starts an OpenSSH server (tests/services/sshd.py, needs root for its users) and times, median of ``--runs``:

* ``add``: password login, an ed25519 key made here, the public key installed over SFTP, a key-only login;
* ``connect``: a new key-only connection (host key checked against usm's known_hosts) and one ``true``;
* ``run``: one ``true`` on the kept connection (the floor of every command);
* ``upload``: the 13.7 MB node_exporter binary by SFTP, written to a temporary name and renamed;
* ``metrics``: one GET /metrics from node_exporter on the host's loopback, through a direct-tcpip channel;
* ``install``: ``install_node_exporter`` (upload, restart in the background, wait until /metrics answers).

    PYTHONPATH=. .venv/bin/python bench/edge_ssh.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.services import free_port, wait_until
from tests.services.sshd import Sshd
from usm.actuators.edge import EdgeConfig, EdgeHost, EdgeHosts
from usm.actuators.node_exporter import (
    MANAGER_BINARY,
    install_node_exporter,
    job_name,
    metrics,
)


def has_processes(user: str) -> bool:
    return subprocess.run(["pgrep", "-u", user], capture_output=True, check=False).returncode == 0


def median_ms(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    root = Path(tempfile.mkdtemp(prefix="usm-bench-edge-"))
    sshd = Sshd(root / "sshd").start()
    edge = EdgeHosts(EdgeConfig(root / "keys"))
    hosts: list[EdgeHost] = []
    try:
        accounts = [sshd.add_user() for _ in range(runs)]
        added = []
        for user, password in accounts:
            hosts.append(EdgeHost("127.0.0.1", user, sshd.port))
            started = time.perf_counter()
            edge.add(hosts[-1], password)
            added.append(time.perf_counter() - started)
        host = hosts[0]

        def connect() -> None:
            with EdgeHosts(EdgeConfig(root / "keys")) as fresh:
                fresh.run(host, "true")

        size = MANAGER_BINARY.stat().st_size
        port = free_port()
        rows = [
            ("add", statistics.median(added) * 1000, ""),
            ("connect", median_ms(connect, runs), ""),
            ("run", median_ms(lambda: edge.run(host, "true"), runs * 4), ""),
        ]
        upload = median_ms(lambda: edge.upload(host, MANAGER_BINARY, "bench/node_exporter", 0o755), runs)
        rows.append(("upload", upload, f"{size / 1e6:.1f} MB, {size / 1e6 / (upload / 1000):.0f} MB/s"))
        install = median_ms(lambda: install_node_exporter(edge, host, port), runs)
        rows.append(("metrics", median_ms(lambda: metrics(edge, host, port), runs * 4), ""))
        rows.append(("install", install, "upload + restart + first answer"))
        edge.stop_background(host, job_name(port))

        print(f"sshd on 127.0.0.1:{sshd.port}, {runs} runs, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print("| operation | median ms | note |\n|---|---|---|")
        for name, ms, note in rows:
            print(f"| {name} | {ms:.0f} | {note} |")
    finally:
        edge.close()
        for each in hosts:
            wait_until(lambda user=each.user: not has_processes(user), 10, f"{each.user}'s processes to end")
        sshd.stop()


if __name__ == "__main__":
    main()

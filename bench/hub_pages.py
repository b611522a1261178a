"""How long the hub's pages take to render on a large inventory: the dashboard (world map with every host, its
containers and node), the markers the dashboard refreshes every 15 s, a page of the container list, a filtered
list, a host's detail page (with the containers on it) and a page of the decision log.

Builds the store of ``bench/hub_api.py`` (``--containers`` containers of 50 services on 100 hosts) and renders
each page ``--repeat`` times through Flask's test client, in this process: the time is the server's (routing,
queries, templates), without the network. Prints the first dashboard (which reads the Natural Earth countries
once per process) apart, then the median and p95 of each page, and the load average (the machine is shared).

    PYTHONPATH=. .venv/bin/python bench/hub_pages.py [--containers 10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.hub_api import build_store

PAGES = ("/", "/map/markers", "/containers", "/containers?host=host-001", "/edge-hosts/host-001", "/decisions")


def signed_in(app):
    client = app.test_client()
    token = re.search(rb'name="csrf_token" value="([^"]+)"', client.get("/login").data).group(1).decode()
    answer = client.post("/login", data={"name": "bench", "password": "a password for the benchmark",
                                         "csrf_token": token})
    assert answer.status_code == 302, answer.data
    return client


def timed(client, url: str) -> float:
    start = time.perf_counter()
    answer = client.get(url)
    elapsed = time.perf_counter() - start
    assert answer.status_code == 200, (url, answer.status_code)
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    from usm.web import create_app

    with tempfile.TemporaryDirectory(prefix="usm-bench-pages-") as folder:
        database, _ = build_store(Path(folder), options.containers)
        app = create_app({"INSTANCE_PATH": str(Path(folder) / "instance"), "USM_DATABASE": str(database),
                          "USM_POLICY": "policies"})
        client = signed_in(app)
        print(f"{options.containers} containers on 100 hosts; load average {os.getloadavg()[0]:.1f}")
        print(f"first dashboard (reads the countries): {timed(client, '/'):.0f} ms")
        print(f"{'page':32} {'median ms':>10} {'p95 ms':>8} {'bytes':>8}")
        for url in PAGES:
            times = sorted(timed(client, url) for _ in range(options.repeat))
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            size = len(client.get(url).data)
            print(f"{url:32} {statistics.median(times):10.1f} {p95:8.1f} {size:8d}")
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

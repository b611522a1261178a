"""Prometheus and node_exporter as background processes on free loopback ports (usm's lab launchers,
`usm.lab.prometheus`), skipped where they are not installed.

`NodeExporter(workdir).start()` serves /metrics on 127.0.0.1:<port> (`instance` is the target's label).
`Prometheus(workdir, targets).start()` scrapes those targets every second with a generated config and keeps
its data in the work directory; `up(instance)` reads the target state back and `wait_up()` waits for it.
"""

from __future__ import annotations

from pathlib import Path

from usm.lab import prometheus as lab

from . import need

SCRAPE_INTERVAL = "1s"


class NodeExporter(lab.NodeExporter):
    """node_exporter without its systemd collector (no systemd here: it only logs errors)."""

    def __init__(self, workdir: Path, name: str = "node_exporter"):
        need("prometheus-node-exporter")
        super().__init__(workdir, name)


class Prometheus(lab.Prometheus):
    """Prometheus scraping `targets` (host:port) as job `node`, every SCRAPE_INTERVAL."""

    def __init__(self, workdir: Path, targets: list[str]):
        need("prometheus")
        super().__init__(workdir, targets, SCRAPE_INTERVAL)


__all__ = ["SCRAPE_INTERVAL", "NodeExporter", "Prometheus"]

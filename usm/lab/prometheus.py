"""Prometheus and node_exporter as background processes on free loopback ports.

``NodeExporter(workdir).start()`` serves /metrics on 127.0.0.1:<port> (``instance`` is the target's label).
``Prometheus(workdir, targets).start()`` scrapes those targets as job ``node`` with a generated config and keeps
its data in the work directory.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Self

from usm.lab.process import Process, find_binary, free_port, wait_until


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read()


class NodeExporter(Process):
    """node_exporter without its systemd collector (no systemd here: it only logs errors)."""

    def __init__(self, workdir: Path, name: str = "node_exporter"):
        self.port = free_port()
        argv = [find_binary("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{self.port}",
                "--no-collector.systemd"]
        super().__init__(name, argv, workdir)

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, ready=None, timeout: float = 30.0) -> Self:
        super().start(ready or (lambda: b"node_cpu_seconds_total" in http_get(f"http://{self.instance}/metrics")),
                      timeout)
        return self


class Prometheus(Process):
    """Prometheus scraping ``targets`` (host:port) as job ``node``, every ``scrape_interval``."""

    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s"):
        root = Path(workdir)
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = root / "prometheus.yml"
        # JSON is YAML: no YAML writer needed for a generated config.
        self.config.write_text(json.dumps({
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": targets}]}],
        }, indent=2))
        argv = [find_binary("prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]
        super().__init__("prometheus", argv, root)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready=None, timeout: float = 30.0) -> Self:
        super().start(ready or (lambda: http_get(f"{self.url}/-/ready") is not None), timeout)
        return self

    def query(self, promql: str) -> list[dict]:
        answer = json.loads(http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
        return answer["data"]["result"]

    def up(self, instance: str) -> float | None:
        """The target's last ``up`` value, or None before its first scrape."""
        result = self.query(f'up{{instance="{instance}"}}')
        return float(result[0]["value"][1]) if result else None

    def wait_up(self, instance: str, value: float = 1.0, timeout: float = 30.0) -> None:
        wait_until(lambda: self.up(instance) == value, timeout, f"up{{instance={instance!r}}} == {value:g}")


__all__ = ["NodeExporter", "Prometheus", "http_get"]

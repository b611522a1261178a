"""The Docker stats collector against real private Docker engines, each standing for one host.

edge-a runs a busy managed container, an idle one and a busy unmanaged one; edge-b's engine is stopped and
edge-c's is frozen (SIGSTOP: it accepts connections and never answers) half-way through a test.
"""

from __future__ import annotations

import os
import signal
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import polars as pl
import pytest

from tests.services import wait_until
from tests.services.dockerd import Dockerd, busybox_image, remove_tree
from usm.actuators.docker import LABEL_MANAGED, LABEL_NAME
from usm.actuators.dockerhosts import AccessError, DockerAccess
from usm.collectors.docker import DockerStatsCollector

MANAGED = {LABEL_MANAGED: "true"}
BUSY = ["sh", "-c", "yes > /dev/null"]
IDLE = ["sleep", "3600"]


def start_engine() -> Dockerd:
    return Dockerd(Path(tempfile.mkdtemp(prefix="usm-d", dir="/tmp"))).start()  # short path: see Dockerd


def run(engine: Dockerd, command: list[str], labels: dict[str, str], name: str, network: str = "none") -> None:
    client = engine.client()
    try:
        # SIGKILL as stop signal: busybox as PID 1 ignores SIGTERM, and an engine that waits for it to stop is
        # killed before its containers are, leaving them behind.
        client.containers.run(busybox_image(client), command, detach=True, network_mode=network, labels=labels,
                              name=name, stop_signal="SIGKILL")
    finally:
        client.close()


def remove_containers(engine: Dockerd) -> None:
    client = engine.client()
    try:
        for container in client.containers.list(all=True):
            container.remove(force=True)
    finally:
        client.close()


@pytest.fixture(scope="module")
def engines():
    with ThreadPoolExecutor(3) as starting:
        a, b, c = starting.map(lambda _: start_engine(), range(3))
    try:
        run(a, BUSY, {**MANAGED, LABEL_NAME: "front-1"}, "docker-name-of-front-1")
        run(a, IDLE, MANAGED, "stock-1", network="host")
        run(a, BUSY, {"usm.service": "front"}, "not-managed")
        run(a, IDLE, {LABEL_MANAGED: "false"}, "managed-false")
        run(b, IDLE, {**MANAGED, LABEL_NAME: "stock-2"}, "b1")
        run(c, IDLE, {**MANAGED, LABEL_NAME: "stock-3"}, "c1")
        yield a, b, c
    finally:
        for engine in (a, b, c):
            if engine.process is not None and engine.process.poll() is None:
                os.kill(engine.pid, signal.SIGCONT)
                remove_containers(engine)
            engine.stop()
            remove_tree(engine.root)


def until(collect, done, timeout: float = 60):
    """Collect until `done` holds for the batch (a thawed engine first finishes the read it had pending)."""
    batches = []
    wait_until(lambda: done(batches[-1]) if batches.append(collect()) is None else False, timeout, "recovery")
    return batches[-1]


def values(samples: pl.DataFrame, entity: str) -> dict[str, float]:
    rows = samples.filter(pl.col("entity") == entity)
    return dict(zip(rows["field"], rows["value"]))


def test_managed_containers_get_cpu_and_memory_and_the_busy_one_uses_cpu(engines):
    a, _, _ = engines
    with DockerStatsCollector({"edge-a": a.url}, timeout=20) as collector:
        first = collector.collect(100.0)
        second = collector.collect(115.0)

    assert first.problems == () and second.problems == ()
    assert set(second.samples["entity"]) == {"front-1", "stock-1"}  # unmanaged ones are not read
    assert set(second.samples["ts"]) == {115.0}
    # One read gives levels; cpu and rates need two reads of the same container: missing, not zero, before.
    assert {"cpu", "cpu_percent"} & set(values(first.samples, "front-1")) == set()
    busy, idle = values(second.samples, "front-1"), values(second.samples, "stock-1")
    assert busy["cpu"] > 0.02  # `yes` wants a whole core, but other jobs share the machine
    assert busy["cpu_percent"] == pytest.approx(busy["cpu"] / os.cpu_count() * 100)
    assert 0 < busy["cpu_percent"] <= 100
    assert idle["cpu"] < busy["cpu"] / 10
    for got in (busy, idle):
        assert got["ram"] > 0
        assert 0 < got["ram_percent"] < 100
        # --network none / host: no interface of its own, so no traffic figures at all
        assert not {"rx_bytes", "tx_bytes", "rx_bytes_per_sec", "tx_bytes_per_sec"} & got.keys()


def test_a_dead_and_a_hung_host_lose_their_values_only(engines):
    a, b, c = engines
    hosts = {"edge-a": a.url, "edge-b": b.url, "edge-c": c.url}
    # Requests may take longer than the collection waits, so that edge-c's read is still pending next time.
    slow = lambda url: docker.DockerClient(base_url=url, timeout=60)
    with DockerStatsCollector(hosts, timeout=3, connect=slow) as collector:
        before = collector.collect(0.0)
        assert before.problems == ()
        assert {"front-1", "stock-1", "stock-2", "stock-3"} <= set(before.samples["entity"])

        b.stop()
        os.kill(c.pid, signal.SIGSTOP)
        during = collector.collect(15.0)
        still = collector.collect(30.0)
        os.kill(c.pid, signal.SIGCONT)
        after = until(lambda: collector.collect(45.0), lambda batch: "edge-c" not in batch.failed)

    for batch in (during, still):
        entities = set(batch.samples["entity"])
        assert {"front-1", "stock-1"} <= entities
        assert not {"stock-2", "stock-3"} & entities
        assert set(batch.failed) == {"edge-b", "edge-c"}
        assert "cannot read Docker" in batch.failed["edge-b"] and b.url in batch.failed["edge-b"]
    assert "no answer" in during.failed["edge-c"] and "within 3 s" in during.failed["edge-c"]
    assert "still busy" in still.failed["edge-c"]
    assert set(after.failed) == {"edge-b"}
    assert "cpu_percent" in values(after.samples, "stock-3")  # edge-c is back, its earlier read kept


@pytest.mark.parametrize("url, message", [
    ("tcp://127.0.0.1:2375", "plain TCP"), ("http://127.0.0.1:2375", "plain HTTP"), ("127.0.0.1:2375", "scheme"),
])
def test_an_endpoint_without_ssh_or_tls_is_refused_when_the_collector_is_made(url, message, tmp_path):
    with pytest.raises(AccessError, match=f"host edge-a: .*{message}.*ssh://"):
        DockerStatsCollector({"edge-a": url}, access=DockerAccess(known_hosts=tmp_path / "known_hosts"))

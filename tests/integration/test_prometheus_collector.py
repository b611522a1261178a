"""The Prometheus collector against a real Prometheus scraping real node_exporters on loopback ports."""

from __future__ import annotations

import os

import polars as pl
import pytest

from tests.services import free_port, wait_until
from tests.services.prometheus import NodeExporter, Prometheus
from usm.collectors.prometheus import PrometheusCollector

HOST_FIELDS = {"cpu", "cpu_percent", "ram", "ram_percent", "filesystem_available"}
RATE_WINDOW = 5.0  # five scrapes at 1 s


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("prom")
    exporters = [NodeExporter(root, f"node_exporter_{n}").start() for n in ("a", "b")]
    never_up = f"127.0.0.1:{free_port()}"  # a target nothing listens on
    prometheus = Prometheus(root, [e.instance for e in exporters] + [never_up]).start()
    try:
        for exporter in exporters:
            prometheus.wait_up(exporter.instance)
        prometheus.wait_up(never_up, 0.0)
        targets = {exporters[0].instance: "edge-a", exporters[1].instance: "edge-b", never_up: "edge-dead"}
        yield prometheus, exporters, targets
    finally:
        prometheus.stop()
        for exporter in exporters:
            exporter.stop()


def values(samples: pl.DataFrame, host: str) -> dict[str, float]:
    rows = samples.filter(pl.col("entity") == host)
    return dict(zip(rows["field"], rows["value"]))


def wait_for_rates(collector: PrometheusCollector, hosts: list[str]) -> None:
    """Rates need two scrapes inside the window: wait until Prometheus has them for every host."""
    wait_until(lambda: all("cpu_percent" in values(collector.collect(0.0).samples, h) for h in hosts),
               30, "cpu rates in Prometheus")


def meminfo_total() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_values_arrive_for_every_live_host_and_are_plausible(world):
    prometheus, _, targets = world
    with PrometheusCollector(prometheus.url, targets, rate_window=RATE_WINDOW, timeout=5) as collector:
        wait_for_rates(collector, ["edge-a", "edge-b"])
        batch = collector.collect(1234.5)

    assert batch.samples.schema == {"ts": pl.Float64, "entity": pl.String, "field": pl.String, "value": pl.Float64}
    assert set(batch.samples["ts"]) == {1234.5}
    statvfs = os.statvfs("/")
    for host in ("edge-a", "edge-b"):  # both exporters run on this machine: the values describe it
        got = values(batch.samples, host)
        assert HOST_FIELDS <= got.keys(), f"{host}: {sorted(got)}"
        assert 0 <= got["cpu_percent"] <= 100
        assert 0 <= got["cpu"] <= os.cpu_count()
        assert got["cpu"] == pytest.approx(got["cpu_percent"] / 100 * os.cpu_count(), abs=0.05)
        assert 0 < got["ram"] < meminfo_total()
        assert got["ram_percent"] == pytest.approx(got["ram"] / meminfo_total() * 100, rel=1e-6)
        assert got["filesystem_available"] == pytest.approx(statvfs.f_bavail * statvfs.f_frsize, rel=0.05)
        for rate in ("rx_bytes_per_sec", "tx_bytes_per_sec"):
            assert got.get(rate, 0.0) >= 0
    assert values(batch.samples, "edge-dead") == {}


def test_a_target_that_is_down_loses_its_values_only(world):
    prometheus, exporters, targets = world
    unscraped = {**targets, f"127.0.0.1:{free_port()}": "edge-unknown"}
    with PrometheusCollector(prometheus.url, unscraped, rate_window=RATE_WINDOW) as collector:
        wait_for_rates(collector, ["edge-a", "edge-b"])
        exporters[1].stop()  # edge-b's node_exporter dies; its rates still have samples in the window
        prometheus.wait_up(exporters[1].instance, 0.0)
        batch = collector.collect(10.0)

    assert HOST_FIELDS <= values(batch.samples, "edge-a").keys()
    for host in ("edge-b", "edge-dead", "edge-unknown"):
        assert values(batch.samples, host) == {}, f"{host} must be missing, not zero"
    failed = batch.failed
    assert set(failed) == {"edge-b", "edge-dead", "edge-unknown"}
    assert "down" in failed["edge-b"] and exporters[1].instance in failed["edge-b"]
    assert "down" in failed["edge-dead"]
    assert "not a target" in failed["edge-unknown"]


def test_a_prometheus_that_does_not_answer_gives_no_samples_and_says_why():
    url = f"http://127.0.0.1:{free_port()}"
    with PrometheusCollector(url, {"127.0.0.1:9100": "edge-a"}, timeout=1) as collector:
        batch = collector.collect(1.0)
    assert batch.samples.is_empty()
    assert set(batch.failed) == {url}
    assert "ConnectError" in batch.failed[url]


def test_a_query_prometheus_rejects_is_reported_with_its_error(world):
    prometheus, _, targets = world
    with PrometheusCollector(prometheus.url, targets, selector='job=~"("', rate_window=RATE_WINDOW) as collector:
        batch = collector.collect(1.0)
    assert batch.samples.is_empty()
    assert "bad_data" in batch.failed[prometheus.url]


@pytest.mark.parametrize("targets, message", [
    ({"127.0.0.1:9100": "edge-a", "127.0.0.1:9101": "edge-a"}, "mapped from two instances"),
    ({"127.0.0.1:9100": ""}, "empty instance or host name"),
])
def test_a_bad_target_mapping_is_refused_with_a_hint(targets, message):
    with pytest.raises(ValueError, match=message):
        PrometheusCollector("http://127.0.0.1:9090", targets)


def test_a_url_without_scheme_is_refused():
    with pytest.raises(ValueError, match="must start with http"):
        PrometheusCollector("127.0.0.1:9090", {})

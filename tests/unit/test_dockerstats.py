"""Container fields from two Docker stats answers (shaped as dockerd 20.10 sends them, cgroup v1 and v2).

The live collector is tested against real engines in tests/integration/test_docker_collector.py; here are the
cases a test engine cannot produce on demand: container networks (tests use --network none or host), block I/O
accounting, counters that went backwards, cgroup v2 names.
"""

from __future__ import annotations

import math

import pytest

from usm.collectors.batch import samples_frame
from usm.collectors.dockerstats import container_rows, snapshot

NS = 1e9


def stats(second: float, cpu_ns: float, system_ns: float, *, ram: int = 50 << 20, inactive: int = 10 << 20,
          limit: int = 200 << 20, networks: dict | None = None, blkio: list | None = None, v2: bool = False) -> dict:
    """A stats answer at `second` past 12:00:00 UTC (nanosecond timestamp, as dockerd writes it)."""
    cache = {"inactive_file": inactive} if v2 else {"total_inactive_file": inactive, "inactive_file": 1}
    answer = {
        "read": f"2026-11-26T12:00:{second:012.9f}Z",
        "preread": "0001-01-01T00:00:00Z",
        "cpu_stats": {"cpu_usage": {"total_usage": cpu_ns, "percpu_usage": [cpu_ns / 2] * 2},
                      "system_cpu_usage": system_ns, "online_cpus": 2},
        "memory_stats": {"usage": ram, "limit": limit, "stats": cache},
        "blkio_stats": {"io_service_bytes_recursive": blkio},
    }
    if networks is not None:
        answer["networks"] = networks
    return answer


def fields(entity: str, now: dict, before: dict | None) -> dict[str, float | None]:
    previous = None if before is None else snapshot(before)
    return {name: value for _, name, value in container_rows(entity, snapshot(now), previous)}


def net(rx: int, tx: int) -> dict:
    return {"eth0": {"rx_bytes": rx, "tx_bytes": tx}, "eth1": {"rx_bytes": 2 * rx, "tx_bytes": 0}}


def io(read: int, write: int, op_case=str.title) -> list[dict]:
    return [{"major": 8, "minor": 0, "op": op_case("read"), "value": read},
            {"major": 8, "minor": 0, "op": op_case("write"), "value": write},
            {"major": 8, "minor": 0, "op": op_case("total"), "value": read + write},
            {"major": 8, "minor": 16, "op": op_case("write"), "value": write}]


def test_cpu_and_rates_come_from_two_reads_of_the_same_container():
    before = stats(0.25, 10 * NS, 1000 * NS, networks=net(1000, 500), blkio=io(4096, 8192))
    now = stats(15.25, 13 * NS, 1030 * NS, networks=net(61000, 3500), blkio=io(4096 * 3, 8192 * 2))
    got = fields("front-1", now, before)

    share = (13 - 10) / (1030 - 1000)  # of all the host's cpu time in the interval
    assert got["cpu_percent"] == pytest.approx(share * 100)
    assert got["cpu"] == pytest.approx(share * 2)
    assert got["rx_bytes"] == 61000 * 3 and got["tx_bytes"] == 3500  # summed over interfaces
    assert got["rx_bytes_per_sec"] == pytest.approx((61000 - 1000) * 3 / 15)
    assert got["tx_bytes_per_sec"] == pytest.approx((3500 - 500) / 15)
    assert got["block_read_bytes"] == 4096 * 3 and got["block_write_bytes"] == 8192 * 2 * 2  # both devices
    assert got["block_write_bytes_per_sec"] == pytest.approx(8192 * 2 / 15)
    assert got["ram"] == (50 << 20) - (10 << 20)  # without the inactive page cache
    assert got["ram_percent"] == pytest.approx(40 / 200 * 100)


def test_a_first_read_has_levels_but_no_cpu_or_rates():
    got = fields("front-1", stats(1.0, 10 * NS, 1000 * NS, networks=net(1, 2)), None)
    assert {"cpu", "cpu_percent", "rx_bytes_per_sec"} & got.keys() == set()
    assert got["ram"] > 0 and got["rx_bytes"] == 3


def test_a_counter_that_went_backwards_gives_no_rate_rather_than_a_negative_or_zero_one():
    before = stats(0.0, 50 * NS, 1000 * NS, networks=net(9000, 9000))
    now = stats(15.0, 1 * NS, 1030 * NS, networks=net(100, 9100))  # restarted: cpu and rx counters reset
    got = fields("front-1", now, before)
    assert got["cpu_percent"] is None and got["cpu"] is None and got["rx_bytes_per_sec"] is None
    assert got["tx_bytes_per_sec"] == pytest.approx(100 / 15)


def test_what_docker_does_not_report_is_missing_not_zero():
    got = fields("stock-1", stats(15.0, 2 * NS, 1030 * NS, blkio=[]), stats(0.0, 1 * NS, 1000 * NS, blkio=None))
    for name in ("rx_bytes", "tx_bytes", "rx_bytes_per_sec", "block_read_bytes", "block_write_bytes_per_sec"):
        assert got[name] is None, name
    frame = samples_frame(15.0, [("stock-1", n, v) for n, v in got.items()] + [("stock-1", "x", math.nan)])
    assert set(frame["field"]) == {"cpu", "cpu_percent", "ram", "ram_percent"}


def test_cgroup_v2_names_are_read_too():
    now = stats(3.0, 2 * NS, 1010 * NS, v2=True, blkio=io(100, 200, str.lower), ram=30 << 20, inactive=5 << 20)
    got = fields("front-1", now, stats(2.0, 1 * NS, 1000 * NS, v2=True, blkio=io(0, 0, str.lower)))
    assert got["ram"] == 25 << 20
    assert got["block_read_bytes_per_sec"] == pytest.approx(100.0)


def test_a_container_that_is_not_running_has_no_snapshot():
    answer = stats(0.0, 0, 0)
    answer["read"] = "0001-01-01T00:00:00Z"
    assert snapshot(answer) is None

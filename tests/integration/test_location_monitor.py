"""The request-location monitor as a real server process on a loopback port, and the control loop's client
against it: concurrent multi-item posts (the original deadlocked on them), bad input, the points cap, dead and
silent monitors. Windows and pruning on a virtual clock are tested on the in-process app at the end (and on the
pure counts in tests/unit/test_location_counts.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import test_utils

from tests.services.locationmonitor import LocationMonitor
from usm.collectors.requests import MonitorUnavailable, RequestLocationsClient
from usm.geo.sphere import Coordinates
from usm.locationmonitor.counts import LocationCounts
from usm.locationmonitor.server import make_app

CITIES = [(38.72, -9.14), (40.42, -3.7), (48.86, 2.35), (52.52, 13.4), (-1.29, 36.82), (0.0, 0.0)]


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocationMonitor]:
    with LocationMonitor(tmp_path_factory.mktemp("monitor"), "--retention", "15m").start() as started:
        yield started


def window(url: str, interval: float | None = None) -> dict:
    params = {} if interval is None else {"interval": str(interval)}
    response = httpx.get(f"{url}/metrics", params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def service_totals(body: dict, service: str) -> dict[tuple[float, float], int]:
    return {(p["latitude"], p["longitude"]): p["count"] for p in body["services"].get(service, [])}


def test_concurrent_multi_item_posts_are_all_counted_exactly(monitor: LocationMonitor) -> None:
    threads, posts, per_post = 8, 40, 6
    expected: Counter[tuple[float, float]] = Counter()
    for thread in range(threads):
        for post in range(posts):
            for i in range(per_post):
                expected[CITIES[(thread + post + i) % len(CITIES)]] += 1 + (thread * post + i) % 5
    failures: list[str] = []

    def poster(thread: int) -> None:
        with httpx.Client(base_url=monitor.url, timeout=10) as client:
            for post in range(posts):
                items = [{"service": "concurrent", "latitude": CITIES[(thread + post + i) % len(CITIES)][0],
                          "longitude": CITIES[(thread + post + i) % len(CITIES)][1],
                          "count": 1 + (thread * post + i) % 5} for i in range(per_post)]
                response = client.post("/metrics", json=items)
                if response.status_code != 200 or response.json() != {"accepted": per_post, "merged": 0}:
                    failures.append(f"{response.status_code} {response.text}")

    workers = [threading.Thread(target=poster, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers), "a poster hung"
    assert failures == []
    assert service_totals(window(monitor.url), "concurrent") == dict(expected)


def test_one_item_may_be_posted_alone(monitor: LocationMonitor) -> None:
    response = httpx.post(f"{monitor.url}/metrics", json={"service": "alone", "latitude": 10.004,
                                                          "longitude": -20.006, "count": 3})
    assert response.json() == {"accepted": 1, "merged": 0}
    assert service_totals(window(monitor.url, 60), "alone") == {(10.0, -20.01): 3}


def test_a_bad_item_gets_400_with_its_index_and_field_and_nothing_is_kept(monitor: LocationMonitor) -> None:
    before = httpx.get(f"{monitor.url}/health").json()["accepted"]
    items = [{"service": "rejected", "latitude": 1, "longitude": 1, "count": 1},
             {"service": "rejected", "latitude": 100, "longitude": 1, "count": 1},
             {"service": "rejected", "latitude": 1, "longitude": 1}]
    response = httpx.post(f"{monitor.url}/metrics", json=items)
    assert response.status_code == 400
    body = response.json()
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "latitude"), (2, "count")]
    assert "nothing of this request was kept" in body["error"]
    assert "rejected" not in window(monitor.url)["services"]
    assert httpx.get(f"{monitor.url}/health").json()["accepted"] == before


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b"null"])
def test_a_body_that_is_not_items_gets_400(monitor: LocationMonitor, body: bytes) -> None:
    response = httpx.post(f"{monitor.url}/metrics", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]


@pytest.mark.parametrize("interval", ["0", "-1", "abc", "nan", "901"])
def test_an_invalid_interval_gets_400_saying_what_is_allowed(monitor: LocationMonitor, interval: str) -> None:
    response = httpx.get(f"{monitor.url}/metrics", params={"interval": interval})
    assert response.status_code == 400
    assert "at most the retention (900)" in response.json()["error"]


def test_health_reports_the_table(monitor: LocationMonitor) -> None:
    health = httpx.get(f"{monitor.url}/health").json()
    assert health["status"] == "ok"
    assert (health["max_points"], health["retention"], health["resolution"]) == (10_000, 900.0, 5.0)
    assert health["memory_bound_bytes"] == 10_000 * 181 * 8


def test_the_client_reads_the_window_as_request_locations(monitor: LocationMonitor) -> None:
    httpx.post(f"{monitor.url}/metrics", json=[
        {"service": "client", "latitude": 0.0, "longitude": 0.0, "count": 2},
        {"service": "client", "latitude": 38.72, "longitude": -9.14, "count": 5}])
    with RequestLocationsClient(monitor.url, timeout=5) as client:
        locations = client.locations(60)
    assert locations["client"] == ((Coordinates(0.0, 0.0), 2.0), (Coordinates(38.72, -9.14), 5.0))


def test_a_window_longer_than_the_monitors_retention_is_a_clear_error(monitor: LocationMonitor) -> None:
    with RequestLocationsClient(monitor.url) as client, pytest.raises(MonitorUnavailable, match="HTTP 400.*900"):
        client.locations(3600)


def test_the_points_cap_refuses_a_new_service_with_503(tmp_path: Path) -> None:
    with LocationMonitor(tmp_path, "--max-points", "2").start() as small:
        first = httpx.post(f"{small.url}/metrics", json=[
            {"service": "cart", "latitude": 38.72, "longitude": -9.14, "count": 1},
            {"service": "cart", "latitude": 52.52, "longitude": 13.4, "count": 1}])
        merged = httpx.post(f"{small.url}/metrics",
                            json={"service": "cart", "latitude": 48.86, "longitude": 2.35, "count": 4})
        refused = httpx.post(f"{small.url}/metrics", json=[
            {"service": "cart", "latitude": 38.72, "longitude": -9.14, "count": 100},
            {"service": "stock", "latitude": 1, "longitude": 1, "count": 1}])
        assert first.json() == {"accepted": 2, "merged": 0}
        assert merged.json() == {"accepted": 1, "merged": 1}
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert "service 'stock'" in refused.json()["error"]
        assert service_totals(window(small.url), "cart") == {(38.72, -9.14): 1, (52.52, 13.4): 5}


def test_several_monitors_are_added_up_and_a_dead_one_is_an_error(monitor: LocationMonitor, tmp_path: Path) -> None:
    with LocationMonitor(tmp_path).start() as west:
        httpx.post(f"{monitor.url}/metrics", json={"service": "merged", "latitude": 1, "longitude": 1, "count": 2})
        httpx.post(f"{west.url}/metrics", json=[{"service": "merged", "latitude": 1, "longitude": 1, "count": 3},
                                                {"service": "merged", "latitude": 2, "longitude": 2, "count": 1}])
        with RequestLocationsClient([monitor.url, west.url]) as both, RequestLocationsClient(west.url) as alone:
            assert both.locations(60)["merged"] == ((Coordinates(1, 1), 5.0), (Coordinates(2, 2), 1.0))
            assert alone.locations(60) == {"merged": ((Coordinates(1, 1), 3.0), (Coordinates(2, 2), 1.0))}
            west.kill()
            with pytest.raises(MonitorUnavailable, match=f"{west.url}.*cannot be reached"):
                both.locations(60)
            with pytest.raises(MonitorUnavailable, match="cannot be reached"):  # not {} posing as "no requests"
                alone.locations(60)


def test_a_silent_monitor_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with RequestLocationsClient(url, timeout=0.3) as client, pytest.raises(MonitorUnavailable,
                                                                                 match="no answer within 0.3 s"):
            client.locations(60)


# --- the app in process, on a virtual clock ------------------------------------------------------------

class VirtualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_windows_and_pruning_over_http_follow_the_injected_clock() -> None:
    clock = VirtualClock(10_000.0)
    app = make_app(LocationCounts(retention=60, max_points=100, resolution=5), clock)

    async def scenario() -> list[dict]:
        async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as client:
            seen = []
            await client.post("/metrics", json={"service": "cart", "latitude": 1, "longitude": 1, "count": 1})
            clock.now += 30
            await client.post("/metrics", json={"service": "cart", "latitude": 1, "longitude": 1, "count": 10})
            for interval, advance in ((10, 0), (None, 0), (None, 36), (None, 60)):
                clock.now += advance
                query = "" if interval is None else f"?interval={interval}"
                seen.append(await (await client.get(f"/metrics{query}")).json())
            seen.append(await (await client.get("/health")).json())
            return seen

    recent, whole, after_first_expired, after_all_expired, health = asyncio.run(scenario())
    assert recent["services"] == {"cart": [{"latitude": 1.0, "longitude": 1.0, "count": 10}]}
    assert (recent["since"], recent["until"]) == (10_020.0, 10_030.0)
    assert whole["services"]["cart"][0]["count"] == 11
    assert after_first_expired["services"]["cart"][0]["count"] == 10
    assert after_all_expired["services"] == {}
    assert health["points"] == 0 and health["accepted"] == 2

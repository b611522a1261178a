"""The service registry on a real 3-member etcd cluster, and the registration sidecar as a real process."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web

from tests.services import Service, free_port, port_open, wait_until
from tests.services.etcd import EtcdCluster
from tests.services.locationmonitor import LocationMonitor
from tests.services.registration import RegistrationSidecar
from usm.geo.sphere import Coordinates
from usm.registration.buffer import RequestBuffer
from usm.registration.client import NoInstance, RegistrationClient, RegistrationError
from usm.registration.etcd import Etcd, EtcdUnavailable, LeaseNotFound
from usm.registration.instance import Instance
from usm.registration.registry import InstanceCache, Registry
from usm.registration.sidecar import Sidecar, forward, make_app

LISBON = Coordinates(38.72, -9.14)
MADRID = Coordinates(40.42, -3.70)
PARIS = Coordinates(48.86, 2.35)
TOKYO = Coordinates(35.68, 139.69)
PORTO = Coordinates(41.15, -8.61)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd"), ["europe", "asia", "africa"]).start() as started:
        yield started


@pytest.fixture
def etcd(cluster: EtcdCluster) -> Iterator[Etcd]:
    with Etcd(cluster.endpoints) as client:
        yield client


def unique(service: str, request: pytest.FixtureRequest) -> str:
    """A service name of this test's own, so tests sharing the cluster do not see each other's instances."""
    return f"{service}-{request.node.name.split('[')[0][-40:].replace('_', '-')}".lower()


def test_an_instance_registered_in_one_region_is_seen_from_every_member(cluster, etcd, request) -> None:
    service = unique("orders", request)
    europe = Registry(Etcd([cluster.member("europe").url]))
    europe.register(Instance(service, "127.0.0.5", 8080, LISBON, "europe"), ttl=30)
    for member in ("europe", "asia", "africa"):
        seen = Registry(Etcd([cluster.member(member).url])).instances(service)
        assert [(i.endpoint, i.coordinates, i.region) for i in seen] == [("127.0.0.5:8080", LISBON, "europe")]


def test_an_instance_vanishes_when_its_lease_expires(etcd, request) -> None:
    service = unique("orders", request)
    registry = Registry(etcd)
    registration = registry.register(Instance(service, "127.0.0.6", 8080, MADRID), ttl=1)
    assert [i.endpoint for i in registry.instances(service)] == ["127.0.0.6:8080"]
    # nobody renews the lease: etcd deletes the key once its second is up (waiting on the real etcd)
    wait_until(lambda: registry.instances(service) == [], 10, "the expiry of the instance's lease")
    assert etcd.time_to_live(registration.lease) == -1
    with pytest.raises(LeaseNotFound, match="expired"):
        etcd.keepalive(registration.lease)


def test_refresh_renews_the_lease_and_registers_again_after_an_expiry(etcd, request) -> None:
    service = unique("orders", request)
    registry = Registry(etcd)
    registration = registry.register(Instance(service, "127.0.0.7", 8080, PARIS), ttl=30)
    first = registration.lease
    assert registration.refresh() == 30
    assert registration.lease == first
    etcd.revoke(first)  # as if the lease had run out while the process was paused
    assert registry.instances(service) == []
    registration.refresh()
    assert registration.lease != first
    assert [i.endpoint for i in registry.instances(service)] == ["127.0.0.7:8080"]
    registration.deregister()
    assert registry.instances(service) == []


def test_registering_the_same_instance_again_replaces_it(etcd, request) -> None:
    service = unique("orders", request)
    registry = Registry(etcd)
    registration = registry.register(Instance(service, "127.0.0.8", 8080, PARIS), ttl=30)
    old = registration.lease
    registration.register()
    assert len(registry.instances(service)) == 1
    assert etcd.time_to_live(old) == -1  # the old lease was revoked, not left to linger
    registration.deregister()


def test_a_member_that_is_down_is_passed_over(cluster, request) -> None:
    service = unique("orders", request)
    africa = cluster.member("africa")
    dead = f"http://127.0.0.1:{free_port()}"
    registry = Registry(Etcd([dead, africa.url, cluster.member("europe").url]))
    registry.register(Instance(service, "127.0.0.9", 8080, LISBON), ttl=30)
    africa.stop()
    try:
        assert [i.endpoint for i in registry.instances(service)] == ["127.0.0.9:8080"]
    finally:
        africa.start()
        wait_until(africa.healthy, 30, "etcd africa back")
    with pytest.raises(EtcdUnavailable, match=f"no etcd member answered.*{dead}"):
        Registry(Etcd([dead])).instances(service)


def test_the_cache_follows_registrations_and_expiries_through_the_watch(etcd, request) -> None:
    service = unique("orders", request)
    cache = InstanceCache(Registry(Etcd(etcd.endpoints)))
    thread = cache.start(retry_s=0.1)
    try:
        wait_until(cache.synced.is_set, 10, "the first read of the registry")
        registry = Registry(etcd)
        lisbon = registry.register(Instance(service, "127.0.1.1", 8080, LISBON), ttl=30)
        registry.register(Instance(service, "127.0.1.2", 8080, MADRID), ttl=1)
        wait_until(lambda: len(cache.services.get(service, ())) == 2, 10, "both instances in the cache")
        wait_until(lambda: [i.endpoint for i in cache.services.get(service, ())] == ["127.0.1.1:8080"], 10,
                   "Madrid's expiry seen through the watch")
        lisbon.deregister()
        wait_until(lambda: service not in cache.services, 10, "Lisbon's deregistration seen through the watch")
    finally:
        cache.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_a_stray_key_under_the_prefix_does_not_break_lookups(etcd, request) -> None:
    service = unique("orders", request)
    registry = Registry(etcd)
    etcd.put(f"/usm/services/{service}/garbage", "not json")
    registry.register(Instance(service, "127.0.1.3", 8080, LISBON), ttl=30)
    try:
        assert [i.endpoint for i in registry.instances(service)] == ["127.0.1.3:8080"]
    finally:
        etcd.delete(f"/usm/services/{service}/garbage")


# -- the sidecar ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orders(cluster: EtcdCluster) -> Iterator[str]:
    """Four instances of `orders-e2e` registered for the whole module."""
    etcd = Etcd(cluster.endpoints)
    registry = Registry(etcd)
    registrations = [registry.register(Instance("orders-e2e", f"127.0.2.{n}", 8080, place, region), ttl=60)
                     for n, (place, region) in enumerate([(LISBON, "lisbon"), (MADRID, "madrid"),
                                                          (PARIS, "paris"), (TOKYO, "tokyo")], start=1)]
    yield "orders-e2e"
    for registration in registrations:
        registration.deregister()
    etcd.close()


@pytest.fixture(scope="module")
def monitor(tmp_path_factory) -> Iterator[LocationMonitor]:
    with LocationMonitor(tmp_path_factory.mktemp("monitor")).start() as started:
        yield started


@pytest.fixture(scope="module")
def sidecar(cluster: EtcdCluster, orders: str, monitor: LocationMonitor,
            tmp_path_factory) -> Iterator[RegistrationSidecar]:
    process = RegistrationSidecar(
        tmp_path_factory.mktemp("sidecar"), cluster.endpoints, "--service", "shipping-e2e", "--service-port", "9000",
        "--latitude", str(PORTO.latitude), "--longitude", str(PORTO.longitude), "--region", "europe",
        "--monitor", monitor.url, "--interval", "0.2s")
    with process.start():
        yield process


@contextmanager
def served(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on a free loopback port from a thread of its own; its URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_the_sidecar_answers_the_closest_instance(sidecar, orders) -> None:
    with RegistrationClient(sidecar.url) as client:
        chosen = client.endpoint(orders)
        assert chosen.endpoint == "127.0.2.1:8080"  # Lisbon, 274 km from Porto
        assert chosen.distance_km == pytest.approx(274.0, abs=1.0)
        assert client.endpoint(orders, near=(35.0, 135.0)).endpoint == "127.0.2.4:8080"  # Tokyo from Osaka
        assert sorted(i["endpoint"] for i in client.endpoints(orders)) == [
            "127.0.2.1:8080", "127.0.2.2:8080", "127.0.2.3:8080", "127.0.2.4:8080"]


def test_the_sidecars_random_choices_follow_its_seed(cluster, orders) -> None:
    """A sidecar seeded 23 makes these choices in this order: each draws from the seeded stream."""
    sidecar = Sidecar(Registry(Etcd(cluster.endpoints)), PORTO, rng=random.Random(23))
    rng = random.Random(23)
    expected = [rng.choice(["127.0.2.1:8080", "127.0.2.2:8080", "127.0.2.3:8080"]),  # number=3
                rng.choice(["127.0.2.1:8080", "127.0.2.2:8080"]),  # range=250 -> 500 km: Lisbon, Madrid
                rng.choice(["127.0.2.1:8080"]),  # range=100 -> 400 km: Lisbon only
                rng.choice(["127.0.2.1:8080", "127.0.2.2:8080", "127.0.2.3:8080"])]  # number=3 again
    with served(make_app(sidecar)) as url, RegistrationClient(url) as client:
        wait_until(lambda: client.endpoints(orders), 10, "the sidecar's first read of the registry")
        got = [client.endpoint(orders, number=3).endpoint, client.endpoint(orders, range_km=250).endpoint,
               client.endpoint(orders, range_km=100).endpoint, client.endpoint(orders, number=3).endpoint]
    assert got == expected


def test_the_sidecar_refuses_bad_queries_and_unknown_services(sidecar) -> None:
    with RegistrationClient(sidecar.url) as client:
        with pytest.raises(NoInstance, match="no instance of service 'nobody-here' is registered"):
            client.endpoint("nobody-here")
        with pytest.raises(RegistrationError, match="400: give either number=X .* not both"):
            client.endpoint("orders-e2e", number=2, range_km=10)
        with pytest.raises(RegistrationError, match="400: number='0' is not valid"):
            client.endpoint("orders-e2e", number=0)
        with pytest.raises(RegistrationError, match="400: service name 'Bad Name' is not valid"):
            client.endpoint("Bad Name")
        with pytest.raises(RegistrationError, match="400: .*latitude must be a number in"):
            client.endpoint("orders-e2e", near=(95.0, 0.0))
        with pytest.raises(RegistrationError, match="400: 1 problem.*nothing of this request was kept"):
            client.report("orders-e2e", 91.0, 0.0)


def test_the_sidecar_registers_itself_and_deregisters_when_stopped(cluster, sidecar, etcd, tmp_path) -> None:
    registry = Registry(etcd)
    assert [(i.endpoint, i.region) for i in registry.instances("shipping-e2e")] == [("127.0.0.1:9000", "europe")]
    with RegistrationClient(sidecar.url) as client:
        assert client.register()["endpoint"] == "127.0.0.1:9000"
    assert len(registry.instances("shipping-e2e")) == 1
    other = RegistrationSidecar(tmp_path, cluster.endpoints, "--service", "billing-e2e", "--service-port", "9100",
                                "--latitude", "0", "--longitude", "0", "--ttl", "600", "--monitor", "")
    other.start()
    assert [i.endpoint for i in registry.instances("billing-e2e")] == ["127.0.0.1:9100"]
    other.process.send_signal(signal.SIGTERM)
    other.process.wait(20)
    assert registry.instances("billing-e2e") == []  # revoked at exit: no waiting for the 600 s lease


def test_a_sidecar_without_an_instance_cannot_register(cluster) -> None:
    sidecar = Sidecar(Registry(Etcd(cluster.endpoints)), PORTO)
    with served(make_app(sidecar)) as url, RegistrationClient(url) as client, \
            pytest.raises(RegistrationError, match="409: this sidecar has no instance to register"):
        client.register()


def test_lookups_and_posted_locations_reach_the_location_monitor(sidecar, orders, monitor) -> None:
    with RegistrationClient(sidecar.url) as client:
        for _ in range(3):
            client.endpoint(orders, near=(10.5, 20.25))
        client.report("frontend-e2e", 38.72, -9.14, 5)

    def counts() -> dict:
        return get_json(f"{monitor.url}/metrics")["services"]

    wait_until(lambda: "frontend-e2e" in counts() and orders in counts(), 20, "the forwarded locations")
    assert {"latitude": 10.5, "longitude": 20.25, "count": 3} in counts()[orders]
    assert counts()["frontend-e2e"] == [{"latitude": 38.72, "longitude": -9.14, "count": 5}]


def get_json(url: str) -> dict:
    return httpx.get(url, timeout=2).json()


def test_a_failed_forward_keeps_the_locations_for_the_next_one(etcd, monitor) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    sidecar = Sidecar(Registry(etcd), PORTO, monitor=down, buffer=RequestBuffer())
    sidecar.buffer.add("orders-forward", 41.15, -8.61, 4)

    async def send() -> bool:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            return await forward(sidecar, session)

    assert asyncio.run(send()) is False
    sidecar.buffer.add("orders-forward", 41.15, -8.61, 1)
    sidecar.monitor = monitor.url
    assert asyncio.run(send()) is True
    assert len(sidecar.buffer) == 0
    assert get_json(f"{monitor.url}/metrics")["services"]["orders-forward"] == [
        {"latitude": 41.15, "longitude": -8.61, "count": 5}]


def test_the_example_service_finds_its_dependency_through_the_sidecar(cluster, tmp_path) -> None:
    """examples/registration/service.py: frontend calls backend, found through a sidecar, over real HTTP."""
    example = Path(__file__).resolve().parents[2] / "examples" / "registration" / "service.py"
    backend_port, frontend_port = free_port(), free_port()
    registry = Registry(Etcd(cluster.endpoints))
    backend = registry.register(Instance("backend-example", "127.0.0.1", backend_port, LISBON), ttl=30)
    sidecar = Sidecar(Registry(Etcd(cluster.endpoints)), PORTO)
    with served(make_app(sidecar)) as url:
        processes = [Service("backend", [sys.executable, str(example), "--name", "backend", "--port",
                                         str(backend_port)], tmp_path),
                     Service("frontend", [sys.executable, str(example), "--name", "frontend", "--port",
                                          str(frontend_port), "--calls", "backend-example", "--sidecar", url],
                             tmp_path)]
        try:
            for process, port in zip(processes, (backend_port, frontend_port), strict=True):
                process.start(lambda p=port: port_open(p))
            wait_until(lambda: get_json(f"{url}/services/backend-example/endpoints"), 10, "backend in the cache")
            answer = get_json(f"http://127.0.0.1:{frontend_port}/call")
        finally:
            for process in processes:
                process.stop()
            backend.deregister()
    assert answer["called"] == f"127.0.0.1:{backend_port}"
    assert answer["answer"] == {"service": "backend"}
    assert answer["distanceKm"] == pytest.approx(274.0, abs=1.0)

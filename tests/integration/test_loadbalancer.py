"""The load balancer on a real nginx: changes checked and reloaded under continuous requests, and usm lb-api."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, wait_until
from tests.services.nginx import LbApi, NamedServer, NginxServer
from usm.actuators.nginx import Nginx, NginxConfigError
from usm.loadbalancer.api import LoadBalancer, load_table
from usm.loadbalancer.config import Settings
from usm.loadbalancer.servers import InvalidServer, Server, ServerTable


class Load(threading.Thread):
    """GETs through nginx, one after another, until stopped; counts answers and failures.

    ``keepalive=False``: a new connection for every request. ``keepalive=True``: one kept connection, and a GET
    whose kept connection was closed under it is sent again once, as browsers and HTTP libraries do for
    idempotent requests (RFC 9112 §9.3.1): a reload closes idle kept connections, and a request already on its
    way on one meets the close. Such retries are counted apart; a request that fails twice is a failure.
    """

    def __init__(self, url: str, keepalive: bool) -> None:
        super().__init__(name=f"load-{'keepalive' if keepalive else 'new-connections'}", daemon=True)
        self.url = url
        self.keepalive = keepalive
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.retried = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        headers = {} if self.keepalive else {"Connection": "close"}
        with httpx.Client(timeout=10, headers=headers) as client:
            while not self.stopped.is_set():
                self.one(client)

    def one(self, client: httpx.Client) -> None:
        for attempt in (1, 2):
            try:
                response = client.get(self.url)
            except (httpx.ReadError, httpx.RemoteProtocolError) as error:
                if self.keepalive and attempt == 1:
                    self.retried += 1
                    continue
                self.failures.append(f"{type(error).__name__}: {error}")
                return
            except httpx.HTTPError as error:
                self.failures.append(f"{type(error).__name__}: {error}")
                return
            if response.status_code == 200:
                self.answers[response.text] += 1
            else:
                self.failures.append(f"HTTP {response.status_code}: {response.text[:100]}")
            return

    @property
    def total(self) -> int:
        return sum(self.answers.values())


def answered_by(url: str, count: int = 20) -> set[str]:
    with httpx.Client(timeout=5) as client:
        return {client.get(url).text for _ in range(count)}


def test_servers_change_under_continuous_requests_without_a_failed_request(tmp_path: Path) -> None:
    port = free_port()
    balancer = LoadBalancer(Nginx(tmp_path / "nginx"), Settings(listen=f"127.0.0.1:{port}", workers=2))
    with NamedServer("a") as a, NamedServer("b") as b:
        balancer.apply(ServerTable().add("orders", [Server(a.address)]), reload=False)
        with NginxServer(balancer.nginx, port).start() as nginx:
            url = f"{nginx.url}/orders/"
            loads = [Load(url, keepalive=False), Load(url, keepalive=True)]
            for load in loads:
                load.start()

            def total() -> int:
                return sum(load.total for load in loads)

            try:
                wait_until(lambda: min(load.total for load in loads) >= 20, 20, "the first requests through nginx")
                steps = [
                    lambda t: t.add("orders", [Server(b.address)]),
                    lambda t: t.with_weight("orders", b.address, 5),
                    lambda t: t.remove("orders", a.address),
                    lambda t: t.add("orders", [Server(a.address, 3)]),
                    lambda t: t.remove("orders", b.address),
                    lambda t: t.add("orders", [Server(b.address)]),
                ]
                for step in steps:
                    before = total()
                    balancer.apply(step(balancer.table))
                    wait_until(lambda b=before: total() >= b + 40, 20, "requests after the reload")
                balancer.apply(balancer.table.remove("orders", a.address))
                wait_until(lambda: answered_by(url) == {"b"}, 20, "only b answering once a is removed")
            finally:
                for load in loads:
                    load.stopped.set()
                    load.join(20)
    for load in loads:
        assert load.failures == [], load.name
        assert load.answers["a"] > 0 and load.answers["b"] > 0
    assert total() >= 40 + 40 * len(steps)
    print(f"{total()} requests, {loads[1].retried} kept-connection retries, over {len(steps) + 1} reloads")


def test_a_configuration_nginx_refuses_changes_nothing(tmp_path: Path) -> None:
    port = free_port()
    balancer = LoadBalancer(Nginx(tmp_path / "nginx"), Settings(listen=f"127.0.0.1:{port}", workers=1),
                            state=tmp_path / "servers.json")
    with NamedServer("a") as a:
        balancer.apply(ServerTable().add("orders", [Server(a.address)]), reload=False)
        live = balancer.nginx.config.read_text()
        with NginxServer(balancer.nginx, port).start() as nginx:
            unresolvable = balancer.table.add("orders", [Server("no-such-host.invalid:80")])
            with pytest.raises(NginxConfigError, match="host not found in upstream"):
                balancer.apply(unresolvable)
            assert balancer.nginx.config.read_text() == live
            assert [s.address for s in balancer.table.servers("orders")] == [a.address]
            assert answered_by(f"{nginx.url}/orders/") == {"a"}
            assert list(balancer.nginx.prefix.glob(".nginx.conf.*")) == []  # no temporary file left behind


@pytest.fixture(scope="module")
def lb(tmp_path_factory) -> LbApi:
    with LbApi(tmp_path_factory.mktemp("lb"), "--region", "europe", "--workers", "1").start() as started:
        yield started
    assert not Nginx(started.prefix).running(), "usm lb-api left its nginx running"


def test_the_api_adds_weights_and_removes_servers_and_nginx_follows(lb: LbApi) -> None:
    with NamedServer("one") as one, NamedServer("two") as two, httpx.Client(base_url=lb.url, timeout=10) as api:
        added = api.post("/api/cart/servers", json=[{"server": one.address, "latitude": 38.7, "longitude": -9.1,
                                                     "region": "europe"}])
        assert added.status_code == 200, added.text
        assert answered_by(f"{lb.nginx_url}/cart/") == {"one"}
        assert api.post("/api/cart/servers", json={"server": two.address, "weight": 2}).status_code == 200
        assert answered_by(f"{lb.nginx_url}/cart/", 40) == {"one", "two"}
        assert api.put(f"/api/cart/servers/{two.address}", json={"weight": 7}).json()[1]["weight"] == 7
        assert api.get("/api/servers").json() == [{"service": "cart", "servers": [
            {"server": one.address, "weight": 1, "latitude": 38.7, "longitude": -9.1, "region": "europe"},
            {"server": two.address, "weight": 7, "latitude": None, "longitude": None, "region": ""}]}]
        assert api.delete(f"/api/cart/servers/{one.address}").status_code == 200
        assert answered_by(f"{lb.nginx_url}/cart/") == {"two"}
        assert api.delete(f"/api/cart/servers/{two.address}").json() == []
        assert httpx.get(f"{lb.nginx_url}/cart/").status_code == 404
    saved = (lb.prefix / "servers.json").read_text()
    assert "cart" not in saved


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("post", "/api/cart/servers", {"server": "127.0.0.1"}, 400, "give host:port"),
    ("post", "/api/cart/servers", {"server": "127.0.0.1:99999"}, 400, "port must be a number from 1 to 65535"),
    ("post", "/api/cart/servers", {"server": "127.0.0.1:80; evil"}, 400, "is not valid"),
    ("post", "/api/cart/servers", {"server": "127.0.0.1:80", "weight": 0}, 400, "whole number from 1 to 1000"),
    ("post", "/api/cart/servers", {"server": "127.0.0.1:80", "colour": "red"}, 400, "unknown field"),
    ("post", "/api/cart/servers", [], 400, "the list of servers is empty"),
    ("post", "/api/Cart!/servers", {"server": "127.0.0.1:80"}, 400, "service name 'Cart!' is not valid"),
    ("post", "/api/_/servers", {"server": "127.0.0.1:80"}, 400, "service name '_' is not valid"),
    ("delete", "/api/cart/servers/127.0.0.1:1", None, 404, "127.0.0.1:1 is not a server of 'cart'"),
    ("put", "/api/cart/servers/127.0.0.1:1", {"weight": 2}, 404, "is not a server of 'cart'"),
])
def test_the_api_refuses_bad_changes_with_what_to_fix(lb: LbApi, method, path, body, status, message) -> None:
    response = httpx.request(method.upper(), f"{lb.url}{path}", json=body, timeout=10)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert httpx.get(f"{lb.url}/api/servers").json() == []


def test_an_address_serves_one_service(lb: LbApi) -> None:
    with httpx.Client(base_url=lb.url, timeout=10) as api:
        assert api.post("/api/left/servers", json={"server": "127.0.0.1:7001"}).status_code == 200
        conflict = api.post("/api/right/servers", json={"server": "127.0.0.1:7001"})
        assert conflict.status_code == 409
        assert "already serves 'left'" in conflict.json()["error"]
        assert api.delete("/api/left/servers/127.0.0.1:7001").status_code == 200


def test_a_restarted_load_balancer_serves_its_saved_servers(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "servers.json"
    settings = Settings(listen=f"127.0.0.1:{port}", workers=1)
    with NamedServer("kept") as kept:
        first = LoadBalancer(Nginx(tmp_path / "nginx"), settings, state)
        first.apply(ServerTable().add("kept", [Server(kept.address, 4, 38.7, -9.1, "europe")]), reload=False)
        restarted = LoadBalancer(Nginx(tmp_path / "nginx"), settings, state, load_table(state))
        assert restarted.table == first.table
        restarted.apply(restarted.table, reload=False)
        with NginxServer(restarted.nginx, port).start() as nginx:
            assert answered_by(f"{nginx.url}/kept/") == {"kept"}


def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "servers.json"
    state.write_text('[{"service": "x", "servers": [{"server": "nowhere"}]}]')
    with pytest.raises(InvalidServer, match="servers.json does not hold a valid table of servers .*fix or remove it"):
        load_table(state)

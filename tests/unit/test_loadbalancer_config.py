"""The load balancer's table of servers and the nginx configuration rendered from it (pure)."""

from __future__ import annotations

import pytest

from usm.loadbalancer.config import ApiRoute, Settings, render
from usm.loadbalancer.servers import (
    InvalidServer,
    Server,
    ServerConflict,
    ServerTable,
    UnknownServer,
    check_address,
    server_from_json,
)


def table() -> ServerTable:
    return ServerTable().add("orders", [Server("10.0.0.1:8080", 2, region="europe"), Server("10.0.0.2:8080")])


def test_adding_an_address_again_updates_it_in_place() -> None:
    updated = table().add("orders", [Server("10.0.0.1:8080", 5)])
    assert [(s.address, s.weight) for s in updated.servers("orders")] == [("10.0.0.1:8080", 5), ("10.0.0.2:8080", 1)]


def test_an_address_serves_one_service() -> None:
    with pytest.raises(ServerConflict, match="10.0.0.1:8080 already serves 'orders'"):
        table().add("cart", [Server("10.0.0.1:8080")])


def test_removing_the_last_server_removes_the_service_and_unknown_ones_are_refused() -> None:
    left = table().remove("orders", "10.0.0.1:8080").remove("orders", "10.0.0.2:8080")
    assert dict(left.services) == {}
    with pytest.raises(UnknownServer, match="is not a server of 'orders'"):
        left.remove("orders", "10.0.0.1:8080")
    with pytest.raises(UnknownServer):
        table().with_weight("orders", "10.0.0.9:1", 3)


def test_a_table_is_never_changed_in_place() -> None:
    before = table()
    before.add("cart", [Server("10.0.0.3:80")])
    before.with_weight("orders", "10.0.0.1:8080", 9)
    assert before == table()


def test_json_round_trips() -> None:
    assert ServerTable.from_json(table().to_json()) == table()


@pytest.mark.parametrize("address", ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:80;", "a b:80",
                                     "host_name:80", "[::1]:80", "999.1.1.1:80", ":80", "x:80:90", 8080])
def test_bad_addresses_are_refused(address) -> None:
    with pytest.raises(InvalidServer):
        check_address(address)


@pytest.mark.parametrize("address", ["10.0.0.1:80", "orders.internal:8080", "localhost:1"])
def test_good_addresses_pass(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize(("body", "message"), [
    ({"server": "10.0.0.1:80", "weight": 1.5}, "weight 1.5"),
    ({"server": "10.0.0.1:80", "weight": True}, "weight True"),
    ({"server": "10.0.0.1:80", "latitude": 91}, "latitude 91"),
    ({"server": "10.0.0.1:80", "region": "Eu rope"}, "region"),
    ({"weight": 2}, "'server' is missing"),
    ("10.0.0.1:80", "must be an object"),
])
def test_bad_server_bodies_say_what_is_wrong(body, message: str) -> None:
    with pytest.raises(InvalidServer, match=message):
        server_from_json(body)


def test_the_configuration_has_one_upstream_and_location_per_service_with_weights() -> None:
    text = render(table().add("cart", [Server("10.0.0.3:80")]), Settings(listen="127.0.0.1:8081", region="europe"))
    assert "upstream orders {\n        least_conn;\n        server 10.0.0.1:8080 weight=2 max_fails=1 " in text
    assert "server 10.0.0.2:8080 weight=1 " in text
    assert "upstream cart {" in text and "location /cart/ {\n            proxy_pass http://cart/;" in text
    assert "listen 127.0.0.1:8081;" in text
    assert "# The europe load balancer" in text
    assert "/_/api/" not in text


def test_the_api_route_is_behind_basic_auth() -> None:
    text = render(table(), Settings(api=ApiRoute("http://127.0.0.1:1906", "/etc/usm/lb.htpasswd")))
    assert "auth_basic_user_file /etc/usm/lb.htpasswd;" in text
    assert "proxy_pass http://127.0.0.1:1906/api/;" in text


@pytest.mark.parametrize("settings", [{"listen": "127.0.0.1:80; evil"}, {"listen": "8080"},
                                      {"region": "Europe!"},
                                      {"api": ApiRoute("http://127.0.0.1:1906", "/x; evil")}])
def test_settings_that_would_inject_configuration_are_refused(settings: dict) -> None:
    with pytest.raises(InvalidServer):
        Settings(**settings)

"""The inventory over the API: every entity created, read, found, changed and deleted; paging; and bad input
answered with 4xx, field errors, and nothing changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pytest

GiB = 2**30


@dataclass(frozen=True)
class Case:
    path: str
    values: dict[str, Any]
    filters: dict[str, Any]
    changes: dict[str, Any]
    key: str = ""  # the row's key when it is not values["name"]
    key_after: str = ""  # its key after the changes, when they change it
    before: tuple[tuple[str, dict[str, Any]], ...] = field(default=())


CASES = [
    Case("regions", {"name": "antarctica", "title": "Antarctica", "latitude": -82.0, "longitude": 0.0},
         {"latitude": -82.0}, {"title": "The far south"}),
    Case("apps", {"name": "blog", "description": "a blog", "services": ["sock-shop-user", "sock-shop-user-db"]},
         {"description": "a blog"}, {"services": ["sock-shop-user-db", "sock-shop-payment"]}),
    Case("services", {"name": "cache", "image": "redis:7", "kind": "database", "dependencies": ["sock-shop-user-db"],
                      "min_replicas": 2, "max_replicas": 4, "expected_memory": GiB, "internal_port": 6379},
         {"kind": "database"}, {"max_replicas": 0, "dependencies": [], "image": "redis:8"}),
    Case("event-predictions", {"name": "black-friday", "service": "sock-shop",
                               "starts_at": "2026-11-27T00:00:00+00:00", "ends_at": "2026-11-28T00:00:00+00:00",
                               "min_replicas": 5},
         {"service": "sock-shop"}, {"weekly": True, "min_replicas": 6, "service": "sock-shop-user"}),
    Case("containers", {"name": "carts-2", "service": "sock-shop-carts", "host": "leiria", "docker_id": "f00d"},
         {"host": "leiria", "service": "sock-shop-carts"}, {"state": "running", "port": 9000}),
    Case("cloud-hosts", {"name": "paris-1", "latitude": 48.88, "longitude": 2.34, "cpu": 4.0, "ram": 8 * GiB,
                         "disk": 32 * GiB, "instance_id": "i-0002", "instance_type": "t2.large",
                         "cloud_region": "eu-west-3"},
         {"cloud_region": "eu-west-3"}, {"state": "stopped", "public_ip": "127.0.0.9"}),
    Case("edge-hosts", {"name": "madrid", "region": "europe", "latitude": 40.42, "longitude": -3.70, "cpu": 4.0,
                        "ram": 4 * GiB, "disk": 64 * GiB, "username": "edge", "public_dns_name": "madrid.example",
                        "local": True},
         {"local": True}, {"ssh_port": 2200, "username": "usm"}),
    Case("nodes", {"swarm_id": "node-london", "host": "london-1"}, {"host": "london-1"},
         {"availability": "drain", "state": "down"}, key="node-london"),
    Case("elastic-ips", {"allocation_id": "eipalloc-1", "public_ip": "127.0.0.20", "region": "europe",
                         "cloud_region": "eu-central-1"},
         {"region": "europe"}, {"host": "frankfurt-1", "association_id": "eipassoc-1"}, key="eipalloc-1"),
    Case("load-balancers", {"container": "sock-shop-1", "region": "europe"}, {"region": "europe"},
         {"container": "sock-shop-user-1"}, key="sock-shop-1", key_after="sock-shop-user-1"),
    Case("registration-servers", {"container": "sock-shop-user-1", "region": "europe"}, {"region": "europe"},
         {"region": "asia"}, key="sock-shop-user-1"),
    Case("workers", {"name": "worker-asia", "address": "127.0.0.6", "port": 8082}, {"address": "127.0.0.6"},
         {"region": "asia", "heartbeat_at": "2026-11-27T12:00:00+00:00", "state": "down"}),
    Case("host-assignments", {"host": "leiria", "worker": "worker-europe"}, {"worker": "worker-europe"},
         {"host": "portland-edge"}, key="leiria", key_after="portland-edge",
         before=(("workers", {"name": "worker-europe", "address": "127.0.0.5", "port": 8081}),)),
]


def same(shown: dict[str, Any], given: dict[str, Any]) -> bool:
    def norm(value: Any) -> Any:
        if isinstance(value, str) and value[:2] == "20" and "T" in value:
            return datetime.fromisoformat(value)
        return value

    return all(norm(shown[k]) == norm(v) for k, v in given.items())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.path)
def test_each_entity_is_created_read_found_changed_and_deleted(admin, case):
    for path, body in case.before:
        assert admin.post(f"/api/{path}", json=body).status_code == 201
    key = case.key or case.values["name"]
    made = admin.post(f"/api/{case.path}", json=case.values)
    assert made.status_code == 201, made.get_json()
    assert same(made.get_json(), case.values)
    assert made.headers["Location"].endswith(f"/api/{case.path}/{key}")

    assert same(admin.get(f"/api/{case.path}/{key}").get_json(), case.values)
    found = admin.get(f"/api/{case.path}?{urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in case.filters.items()})}").get_json()
    assert key in [item.get("name") or item.get("swarm_id") or item.get("allocation_id") or item.get("container")
                   or item.get("host") for item in found["items"]]
    assert all(same(item, case.filters) for item in found["items"]) and found["total"] == len(found["items"])

    changed = admin.patch(f"/api/{case.path}/{key}", json=case.changes)
    assert changed.status_code == 200, changed.get_json()
    assert same(changed.get_json(), {**case.values, **case.changes})
    key = case.key_after or key
    assert same(admin.get(f"/api/{case.path}/{key}").get_json(), case.changes)

    assert admin.delete(f"/api/{case.path}/{key}").status_code == 204
    gone = admin.get(f"/api/{case.path}/{key}")
    assert gone.status_code == 404 and key in gone.get_json()["message"]


def test_listings_page_in_key_order_and_count_every_match(admin):
    every = admin.get("/api/containers?limit=1000").get_json()
    names = [c["name"] for c in every["items"]]
    assert every["total"] == 13 and names == sorted(names)
    page = admin.get("/api/containers?limit=5&offset=10").get_json()
    assert [c["name"] for c in page["items"]] == names[10:] and page["total"] == 13
    assert (page["limit"], page["offset"]) == (5, 10)
    assert admin.get("/api/containers?service=sock-shop-carts").get_json()["total"] == 1
    assert admin.get("/api/cloud-hosts?state=stopped").get_json()["total"] == 2
    assert admin.get("/api/services?dependencies=sock-shop-user-db").get_json()["items"][0]["name"] == "sock-shop-user"


def test_services_show_their_dependencies_dependents_predictions_and_apps(admin):
    admin.post("/api/event-predictions", json={"name": "sale", "service": "sock-shop-user",
                                               "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-02T00:00:00Z",
                                               "min_replicas": 3})
    user = admin.get("/api/services/sock-shop-user").get_json()
    assert user["dependencies"] == ["sock-shop-user-db"]
    assert user["dependents"] == ["sock-shop"]
    assert user["predictions"] == ["sale"]
    assert user["apps"] == ["sock-shop"]


@pytest.mark.parametrize("path", ["apps", "services", "containers", "cloud-hosts", "edge-hosts", "nodes", "regions",
                                  "elastic-ips", "load-balancers", "registration-servers", "workers",
                                  "event-predictions", "host-assignments"])
def test_unknown_keys_are_404(admin, path):
    for answer in (admin.get(f"/api/{path}/nothing-here"), admin.patch(f"/api/{path}/nothing-here", json={}),
                   admin.delete(f"/api/{path}/nothing-here")):
        assert answer.status_code == 404
        assert "nothing-here" in answer.get_json()["message"]


def count(admin, path: str) -> int:
    return admin.get(f"/api/{path}").get_json()["total"]


def test_malformed_bodies_are_400_and_change_nothing(admin):
    before = count(admin, "services")
    for text in ("{bad", '{"name": "x",}', "", "\xff"):
        answer = admin.post("/api/services", data=text.encode("latin-1"), content_type="application/json")
        if text:
            assert answer.status_code == 400, text
            assert answer.get_json()["errors"]["body"]
    broken = admin.patch("/api/services/sock-shop", data="[1,", content_type="application/json")
    assert broken.status_code == 400 and "line 1" in broken.get_json()["message"]
    not_json = admin.post("/api/services", data="name=x", content_type="application/x-www-form-urlencoded")
    assert not_json.status_code == 415
    array = admin.post("/api/services", json=[{"name": "x", "image": "y"}])
    assert array.status_code == 422 and array.get_json()["errors"] == {"body": ["must be a JSON object"]}
    assert count(admin, "services") == before
    assert admin.get("/api/services/sock-shop").get_json()["image"] == "usmanager/sock-shop-front-end"


def test_invalid_fields_are_422_by_field_and_change_nothing(admin):
    before = count(admin, "services")
    missing = admin.post("/api/services", json={"name": "cache"}).get_json()
    assert missing["status"] == 422 and "image" in missing["errors"]
    typo = admin.post("/api/services", json={"name": "cache", "image": "redis", "colour": "red"}).get_json()
    assert "colour" in typo["errors"]
    wrong_type = admin.post("/api/services", json={"name": "cache", "image": "redis", "min_replicas": "two"})
    assert wrong_type.status_code == 422 and "min_replicas" in wrong_type.get_json()["errors"]
    not_a_number = admin.post("/api/cloud-hosts", data='{"name": "x", "latitude": NaN}',
                              content_type="application/json")
    assert not_a_number.status_code == 422 and "latitude" in not_a_number.get_json()["errors"]
    bounds = admin.post("/api/services", json={"name": "cache", "image": "redis", "min_replicas": 3,
                                               "max_replicas": 2}).get_json()
    assert bounds["status"] == 422 and "max_replicas" in bounds["errors"]
    unknown_ref = admin.post("/api/containers", json={"name": "c", "service": "nope", "host": "leiria"}).get_json()
    assert unknown_ref["status"] == 422 and "service" in unknown_ref["errors"]
    cycle = admin.patch("/api/services/sock-shop-user-db", json={"dependencies": ["sock-shop-user"]})
    assert cycle.status_code == 422 and "cycle" in cycle.get_json()["message"]
    too_big = admin.patch("/api/edge-hosts/leiria", json={"ram": 10**30})
    assert too_big.status_code == 422 and "ram" in too_big.get_json()["errors"]
    out_of_range = admin.patch("/api/edge-hosts/leiria", json={"latitude": 123.0})
    assert out_of_range.status_code == 422 and "latitude" in out_of_range.get_json()["message"]
    assert count(admin, "services") == before
    assert admin.get("/api/services/sock-shop-user-db").get_json()["dependencies"] == []
    assert admin.get("/api/edge-hosts/leiria").get_json()["latitude"] == pytest.approx(39.575097)


def test_conflicts_are_409_and_change_nothing(admin):
    duplicate = admin.post("/api/services", json={"name": "sock-shop", "image": "other"})
    assert duplicate.status_code == 409 and "sock-shop" in duplicate.get_json()["message"]
    in_use = admin.delete("/api/services/sock-shop-carts")
    assert in_use.status_code == 409
    assert in_use.get_json()["errors"]  # what still uses it
    assert admin.get("/api/services/sock-shop-carts").status_code == 200
    host_in_use = admin.delete("/api/cloud-hosts/frankfurt-1")
    assert host_in_use.status_code == 409 and "containers" in host_in_use.get_json()["errors"]


def test_bad_queries_are_422(admin):
    for query, field_name in (("limit=0", "limit"), ("limit=100000", "limit"), ("offset=-1", "offset"),
                              ("colour=red", "colour"), ("state=flying", "state"), ("port=eighty", "port"),
                              ("offset=99999999999999999999", "offset"), ("port=99999999999999999999", "port")):
        answer = admin.get(f"/api/containers?{query}")
        assert answer.status_code == 422, query
        assert field_name in answer.get_json()["errors"], query


def test_unknown_api_paths_and_methods_answer_json(admin):
    missing = admin.get("/api/no-such-thing")
    assert missing.status_code == 404 and missing.get_json()["status"] == 404
    wrong = admin.put("/api/services/sock-shop", json={})
    assert wrong.status_code == 405 and "PATCH" in wrong.headers["Allow"]


def test_listings_by_columns_show_what_the_orm_shows(app, admin):
    """The column-query listings (usm.web.api.listing) and the service layer give the same items."""
    from tests.hub.conftest import state_of
    from usm.manager.store import crud
    from usm.web.api import listing, schemas
    from usm.web.api.inventory import ENTITIES

    for case in CASES:
        for path, body in case.before:
            admin.post(f"/api/{path}", json=body)
        assert admin.post(f"/api/{case.path}", json=case.values).status_code == 201, case.path
    compared = []
    with app.app_context(), state_of(app).sessions.begin() as session:
        for entity in ENTITIES:
            if not listing.supported(entity.model) or entity.extras or entity.loads:
                continue
            items, total = listing.page(session, entity.model, {}, 1000, 0)
            found = crud.find(session, entity.model, limit=1000)
            assert (items, total) == ([schemas.dump(row) for row in found.items], found.total), entity.path
            compared.append(entity.path)
    assert "containers" in compared and "cloud-hosts" in compared and len(compared) >= 10

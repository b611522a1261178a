"""Listings served from memory (usm.web.listings, usm.web.shortcut) are never stale: a write through the API, by
another process through usm, or by a plain SQLite connection shows in the next listing; entity tags and 304; the
memory kept stays within its budget; the short way answers exactly as Flask does; a revoked, expired or demoted
token is refused at once; and every listing reads only the tables whose revisions date it."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import event

from tests.hub.conftest import ROOT, VIEWER, state_of
from tests.hub.test_hub_inventory import CASES
from usm.manager.store import Base
from usm.web.api.inventory import ENTITIES
from usm.web.listings import ListingCache

PAGE = "/api/containers?limit=5&offset=2"


@pytest.fixture
def hub(app):
    return state_of(app)


@pytest.fixture
def bearer(app, token):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def counted(app):
    """The requests that went the long way (through Flask) rather than the short way, by path."""
    shortcut = app.wsgi_app
    long_way, paths = shortcut.long_way, []

    def counting(environ, start_response):
        paths.append(environ["PATH_INFO"])
        return long_way(environ, start_response)

    shortcut.long_way = counting
    return paths


def warm(client, url: str = PAGE) -> dict:
    """Ask for a listing until it is kept (the cache builds it at the second miss), and return the last page."""
    for _ in range(3):
        answer = client.get(url)
        assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def kept(hub) -> int:
    return len(hub.listings)


def test_a_listing_shows_each_write_made_through_the_api(bearer, hub, counted):
    before = warm(bearer, "/api/containers?limit=1000")
    counted.clear()
    assert kept(hub) == 1 and bearer.get("/api/containers?limit=1000").get_json() == before
    assert counted == []  # answered from memory, the short way
    first = before["items"][0]["name"]

    assert bearer.patch(f"/api/containers/{first}", json={"port": 4321}).status_code == 200
    after = bearer.get("/api/containers?limit=1000").get_json()
    assert after["items"][0]["port"] == 4321 and after["total"] == before["total"]

    assert bearer.post("/api/containers", json={"name": "aaa-first", "service": "sock-shop-carts",
                                                "host": "leiria"}).status_code == 201
    created = warm(bearer, "/api/containers?limit=1000")
    assert created["total"] == before["total"] + 1 and created["items"][0]["name"] == "aaa-first"

    assert bearer.delete("/api/containers/aaa-first").status_code == 204
    assert bearer.get("/api/containers?limit=1000").get_json()["items"] == after["items"]
    assert bearer.patch("/api/services/sock-shop-carts", json={"name": "carts"}).status_code == 200
    renamed = bearer.get("/api/containers?limit=1000&service=carts").get_json()
    assert renamed["total"] > 0 and {item["service"] for item in renamed["items"]} == {"carts"}
    assert "sock-shop-carts" not in {item["service"] for item in warm(bearer, "/api/containers?limit=1000")["items"]}


def test_a_listing_shows_writes_by_another_process_and_by_any_sqlite_connection(bearer, hub, tmp_path):
    warm(bearer, "/api/containers?limit=1000")
    first = bearer.get("/api/containers?limit=1000").get_json()["items"][0]["name"]
    database = tmp_path / "usm.db"
    script = ("import sys\nfrom usm.manager.store import Container, crud\n"
              "from usm.manager.store.database import open_engine, sessions\n"
              "engine = open_engine(sys.argv[1])\n"
              "with sessions(engine).begin() as session:\n"
              "    crud.update(session, Container, sys.argv[2], port=5151)\n")
    subprocess.run([sys.executable, "-c", script, str(database), first], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert bearer.get("/api/containers?limit=1000").get_json()["items"][0]["port"] == 5151

    warm(bearer, "/api/containers?limit=1000")
    with sqlite3.connect(database) as plain:  # no usm at all: what psql would be on PostgreSQL
        plain.execute("UPDATE containers SET port = 6262 WHERE name = ?", (first,))
    assert bearer.get("/api/containers?limit=1000").get_json()["items"][0]["port"] == 6262


def test_pages_carry_an_entity_tag_and_a_client_that_has_the_page_gets_304(bearer):
    warm(bearer)
    answer = bearer.get(PAGE)
    tag = answer.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}-5-2"', tag)
    for sent in (tag, f"W/{tag}", f'"other", {tag}'):
        again = bearer.get(PAGE, headers={"If-None-Match": sent})
        assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == tag, sent
    assert bearer.get(PAGE, headers={"If-None-Match": '"other"'}).status_code == 200
    assert bearer.get("/api/containers?limit=5&offset=3").headers["ETag"] != tag
    assert bearer.get("/api/containers?limit=5&offset=2&state=running").headers["ETag"] != tag

    name = answer.get_json()["items"][0]["name"]
    assert bearer.patch(f"/api/containers/{name}", json={"port": 1234}).status_code == 200
    changed = bearer.get(PAGE, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert changed.get_json()["items"][0]["port"] == 1234


def test_the_short_way_answers_as_flask_does(app, bearer, counted):
    queries = ["", "?limit=5&offset=2", "?limit=1000", "?offset=999", "?state=running&limit=3",
               "?service=sock-shop-carts", "?offset=1&limit=1&host=leiria"]
    for query in queries:
        warm(bearer, f"/api/containers{query}")
        counted.clear()
        short = bearer.get(f"/api/containers{query}")
        assert counted == [], f"{query} went the long way"
        flask = bearer.get(f"/api/containers{query}", headers={"If-None-Match": '"not this"'})
        assert counted == ["/api/containers"]
        assert (short.status_code, short.data) == (flask.status_code, flask.data), query
        assert sorted(short.headers.items()) == sorted(flask.headers.items()), query
    counted.clear()
    for refused in ("?limit=0", "?colour=red", "?limit=1&limit=2"):
        assert bearer.get(f"/api/containers{refused}").status_code == 422, refused
    assert bearer.get("/api/containers", headers={"Authorization": "Bearer usm_unknown"}).status_code == 401
    assert len(counted) == 4


def test_a_revoked_token_is_refused_at_once(admin, bearer, token):
    warm(bearer)
    listed = admin.get("/api/tokens").get_json()["items"]
    assert admin.delete(f"/api/tokens/{listed[0]['id']}").status_code == 204
    refused = bearer.get(PAGE)
    assert refused.status_code == 401 and "revoked" in refused.get_json()["message"]


def test_an_expired_token_is_refused_on_the_hub_clock(app, clock, admin):
    expiring = admin.post("/api/tokens", json={"name": "short", "expires_at": (clock() + timedelta(hours=1))
                                               .isoformat()}).get_json()["token"]
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {expiring}"
    warm(client)
    clock.advance(3600)
    assert client.get(PAGE).status_code == 401


def test_a_user_made_admin_or_deleted_is_known_at_once(app, admin, viewer, hub):
    from usm.manager import accounts

    text = viewer.post("/api/tokens", json={"name": "v"}).get_json()["token"]
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {text}"
    warm(client)
    assert client.patch("/api/regions/europe", json={"title": "EU"}).status_code == 403
    with hub.sessions.begin() as session:  # any writer: here, straight into the store
        accounts.user_named(session, VIEWER).admin = True
    assert client.patch("/api/regions/europe", json={"title": "EU"}).status_code == 200
    assert admin.delete(f"/api/users/{VIEWER}").status_code == 204
    assert client.get(PAGE).status_code == 401


def test_listings_kept_stay_within_the_budget(bearer, hub):
    hub.listings = ListingCache(budget=700, build_after=1)  # about three listings of one container
    services = [item["name"] for item in bearer.get("/api/services?limit=1000").get_json()["items"]]
    urls = [f"/api/containers?service={name}" for name in services]
    expected = {url: bearer.get(url).get_json() for url in urls}
    for url in urls * 2:
        assert bearer.get(url).get_json() == expected[url]
        assert hub.listings.bytes <= 700
    assert 0 < kept(hub) < len(urls)
    whole = bearer.get("/api/containers?limit=1000").get_json()
    assert whole["total"] == 13 and hub.listings.bytes <= 700

    hub.listings = ListingCache(budget=1_000, build_after=1)  # a listing of all 13 containers takes more
    assert bearer.get("/api/containers?limit=1000").get_json() == whole
    assert bearer.get("/api/containers?limit=1000").get_json() == whole and kept(hub) == 0

    hub.listings = ListingCache(build_after=1, largest=12)  # more rows than a kept listing may have
    for _ in range(2):
        assert bearer.get("/api/containers?limit=3").get_json() == whole | {"items": whole["items"][:3], "limit": 3}
    assert kept(hub) == 0


def test_a_store_whose_triggers_are_gone_is_read_every_time(app, bearer, hub, tmp_path):
    with hub.engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER usm_revision_containers_update")
    hub.tracked = None
    warm(bearer, "/api/containers?limit=1000")
    assert hub.tracked is False and kept(hub) == 0
    first = bearer.get("/api/containers?limit=1000").get_json()["items"][0]["name"]
    with sqlite3.connect(tmp_path / "usm.db") as plain:
        plain.execute("UPDATE containers SET port = 7373 WHERE name = ?", (first,))
    assert bearer.get("/api/containers?limit=1000").get_json()["items"][0]["port"] == 7373


def test_each_listing_reads_only_the_tables_whose_revisions_date_it(app, admin, bearer, hub):
    """Every entity with rows (those of the inventory tests added), listed with a fresh cache: the statements
    run name no table outside the entity's ``tables`` (besides the revisions themselves)."""
    for case in CASES:
        for path, body in case.before:
            admin.post(f"/api/{path}", json=body)
        assert admin.post(f"/api/{case.path}", json=case.values).status_code == 201, case.path
    bearer.get("/api/containers")  # the token is known from here on: identifying reads nothing
    names = set(Base.metadata.tables)
    statements: list[str] = []

    def record(connection, cursor, statement, *rest):
        statements.append(statement)

    event.listen(hub.engine, "before_cursor_execute", record)
    try:
        for entity in ENTITIES:
            statements.clear()
            for build_after in (10**9, 1):  # a page read on its own, then the whole listing
                hub.listings = ListingCache(build_after=build_after)
                listed = bearer.get(f"/api/{entity.path}?limit=2")
                assert listed.status_code == 200 and listed.get_json()["items"], entity.path
            assert len(hub.listings) == 1, entity.path
            read = {word for statement in statements for word in re.findall(r"[a-z_]+", statement)} & names
            assert entity.model.__tablename__ in read
            assert read <= set(entity.tables) | {"store_revisions"}, (entity.path, read - set(entity.tables))
    finally:
        event.remove(hub.engine, "before_cursor_execute", record)


def test_a_page_from_the_store_and_from_memory_are_the_same(app, bearer, hub):
    pages = ["/api/services?limit=4&offset=3", "/api/apps", "/api/cloud-hosts?limit=2", "/api/regions?offset=5",
             "/api/containers?limit=7&offset=11", "/api/containers?offset=40"]
    hub.listings = ListingCache(build_after=10**9)
    from_store = {page: bearer.get(page).data for page in pages}
    hub.listings = ListingCache(build_after=1)
    for page in pages:
        assert bearer.get(page).data == from_store[page], page
        assert bearer.get(page).data == from_store[page], page
    assert len(hub.listings) == len({page.split("?")[0] for page in pages})

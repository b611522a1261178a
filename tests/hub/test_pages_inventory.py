"""The inventory pages: every entity the API manages has a list (filters, paging), a detail page, and create, edit
and delete forms that change the same store the API reads, with the API's checks and the store's refusals shown
beside the fields; nothing changes without an admin and the session's CSRF token."""

from __future__ import annotations

import pytest

from tests.hub.pages import field_error, flashes, post_form, soup
from usm.manager.store import Region, crud
from usm.web.hub import state
from usm.web.pages.inventory import PAGES

SEEDED = {"apps": "sock-shop", "services": "sock-shop-carts", "containers": "sock-shop-carts-1",
          "cloud-hosts": "frankfurt-1", "edge-hosts": "leiria", "nodes": "node-leiria", "regions": "europe"}


def test_there_is_a_page_for_every_entity_the_api_manages(admin):
    api = admin.get("/api/openapi.json").get_json()["paths"]
    listed = {path.split("/")[2] for path in api if path.count("/") == 2 and f"{path}/{{key}}" in api}
    assert listed == set(PAGES)
    nav = {a["href"] for a in soup(admin.get("/workers")).select("nav.side a")}
    assert {f"/{path}" for path in PAGES} <= nav


@pytest.mark.parametrize("path", sorted(PAGES))
def test_each_list_shows_what_the_api_lists(admin, path):
    page = soup(admin.get(f"/{path}"))
    keys = [a.get_text(strip=True) for a in page.select("table.rows tbody th a")]
    api = admin.get(f"/api/{path}?limit=50").get_json()
    assert keys == [str(item[PAGES[path].key]) for item in api["items"]]
    assert page.find("h1").get_text(strip=True) == PAGES[path].title


@pytest.mark.parametrize("path", sorted(SEEDED))
def test_each_detail_page_shows_the_row_and_what_refers_to_it(admin, path):
    key = SEEDED[path]
    page = soup(admin.get(f"/{path}/{key}"))
    shown = {dt.get_text(strip=True): dd.get_text(" ", strip=True) for dt, dd in
             zip(page.select("dl.fields dt"), page.select("dl.fields dd"), strict=True)}
    item = admin.get(f"/api/{path}/{key}").get_json()
    assert len(shown) == len(item)
    if path == "edge-hosts":
        assert shown["Region"] == "europe" and shown["SSH port"] == "22"
        assert [a.get_text() for a in page.select("section h2")][:1] == ["Act on this host"]
        assert "node-leiria" in page.get_text()
    if path == "services":
        assert shown["Dependencies"] == "sock-shop-carts-db"
        assert page.find("a", string="sock-shop-carts-1")["href"] == "/containers/sock-shop-carts-1"


def test_unknown_rows_and_entities_are_404_pages(admin):
    assert admin.get("/services/nope").status_code == 404
    assert "there is no service with name 'nope'" in soup(admin.get("/services/nope")).get_text()
    assert admin.get("/hosts/atlantis").status_code == 404
    assert admin.get("/hosts/leiria").headers["Location"] == "/edge-hosts/leiria"


def test_pages_need_a_signed_in_user(anonymous):
    answer = anonymous.get("/containers?host=leiria")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=/containers")
    assert anonymous.post("/new/regions", data={"name": "x"}).status_code in (302, 403)


def test_filters_are_the_apis_and_bad_ones_are_explained(admin):
    page = soup(admin.get("/containers?host=leiria"))
    assert [a.get_text() for a in page.select("tbody th a")] == [
        c["name"] for c in admin.get("/api/containers?host=leiria").get_json()["items"]]
    frankfurt = soup(admin.get("/containers?host=frankfurt-1&state=running"))
    assert len(frankfurt.select("tbody th a")) == admin.get(
        "/api/containers?host=frankfurt-1&state=running").get_json()["total"] > 0
    wrong = admin.get("/nodes?role=boss")
    assert wrong.status_code == 422 and field_error(soup(wrong), "role")


def test_long_lists_come_in_pages(app, admin):
    with app.app_context(), state().sessions.begin() as session:
        for index in range(60):
            crud.create(session, Region, name=f"area-{index:02}", latitude=float(index), longitude=0.0)
    first = soup(admin.get("/regions"))
    assert len(first.select("tbody tr")) == 50
    assert first.select_one("nav.pager span").get_text() == "1–50 of 67"
    second = soup(admin.get(first.select_one("a[rel=next]")["href"]))
    assert len(second.select("tbody tr")) == 17 and second.select_one("a[rel=prev]")


def test_a_service_created_with_the_form_is_in_the_store(admin):
    answer = post_form(admin, "/new/services", {"name": "web", "image": "example/web:1", "kind": "frontend",
                                                "min_replicas": "2", "dependencies": ["sock-shop-carts"]})
    assert answer.status_code == 302 and answer.headers["Location"] == "/services/web"
    stored = admin.get("/api/services/web").get_json()
    assert (stored["kind"], stored["min_replicas"], stored["dependencies"]) == ("frontend", 2, ["sock-shop-carts"])
    assert flashes(soup(admin.get("/services/web"))) == ["Created service web."]


def test_a_form_the_models_refuse_shows_each_problem_beside_its_field_and_creates_nothing(admin):
    answer = post_form(admin, "/new/services", {"name": "web", "min_replicas": "two", "dependencies": ["nope"]})
    page = soup(answer)
    assert answer.status_code == 422
    assert "integer" in field_error(page, "min_replicas") and field_error(page, "image")
    assert page.find("input", {"name": "min_replicas"})["value"] == "two"  # what was typed is kept
    stored = post_form(admin, "/new/services", {"name": "web", "image": "x", "dependencies": ["nope"]})
    assert stored.status_code == 422 and "there is no service 'nope'" in soup(stored).get_text()
    assert admin.get("/api/services/web").status_code == 404


def test_a_change_without_the_csrf_token_is_refused(admin):
    answer = admin.client.post("/new/regions", data={"name": "mars", "latitude": "1", "longitude": "2"})
    assert answer.status_code == 403 and "CSRF" in answer.get_data(as_text=True)
    assert admin.get("/api/regions/mars").status_code == 404


def test_an_edit_changes_only_what_the_form_changed(admin):
    edit = soup(admin.get("/services/sock-shop-carts/edit"))
    form = {i["name"]: i.get("value", "") for i in edit.select("form.grid input") if i.get("name")}
    form.update({s["name"]: s.find("option", selected=True).get_text() for s in edit.select("select:not([multiple])")
                 if s.find("option", selected=True)})
    form["dependencies"] = [o.get_text() for o in edit.select("select[name=dependencies] option[selected]")]
    unchanged = post_form(admin, "/services/sock-shop-carts/edit", form)
    assert unchanged.status_code == 302
    assert flashes(soup(admin.get("/services/sock-shop-carts"))) == [
        "Nothing to save: service sock-shop-carts is as it was."]
    form["max_replicas"] = "4"
    assert post_form(admin, "/services/sock-shop-carts/edit", form).status_code == 302
    assert flashes(soup(admin.get("/services/sock-shop-carts"))) == [
        "Saved service sock-shop-carts: changed max_replicas."]
    stored = admin.get("/api/services/sock-shop-carts").get_json()
    assert (stored["max_replicas"], stored["dependencies"]) == (4, ["sock-shop-carts-db"])


def test_an_edit_the_store_refuses_is_shown_and_changes_nothing(admin):
    answer = post_form(admin, "/regions/europe/edit", {"name": "europe", "latitude": "95", "longitude": "9"})
    assert answer.status_code == 422 and "latitude" in soup(answer).select_one("[role=alert]").get_text()
    assert admin.get("/api/regions/europe").get_json()["latitude"] != 95
    other = next(r["name"] for r in admin.get("/api/regions").get_json()["items"] if r["name"] != "europe")
    duplicate = post_form(admin, "/regions/europe/edit", {"name": other, "latitude": "1", "longitude": "9"})
    assert duplicate.status_code == 409 and "exists already" in soup(duplicate).select_one("[role=alert]").get_text()
    assert admin.get("/api/regions/europe").status_code == 200


def test_delete_is_refused_while_rows_use_the_row_and_done_otherwise(admin):
    refused = post_form(admin, "/services/sock-shop-carts-db/delete")
    assert refused.status_code == 409 and "still used by" in soup(refused).select_one("[role=alert]").get_text()
    assert admin.get("/api/services/sock-shop-carts-db").status_code == 200
    assert soup(admin.get("/apps/sock-shop/delete")).find("button", string="Delete sock-shop")
    done = post_form(admin, "/apps/sock-shop/delete")
    assert done.status_code == 302 and done.headers["Location"] == "/apps"
    assert admin.get("/api/apps/sock-shop").status_code == 404


def test_a_viewer_reads_but_cannot_change(viewer):
    page = soup(viewer.get("/services/sock-shop-carts"))
    assert page.find("a", string="Edit") is None and page.find("h1").get_text() == "Service sock-shop-carts"
    assert viewer.get("/new/services").status_code == 403
    refused = post_form(viewer, "/new/regions", {"name": "mars", "latitude": "1", "longitude": "2"})
    assert refused.status_code == 403 and "may read but not change" in soup(refused).get_text()
    assert viewer.get("/api/regions/mars").status_code == 404

"""The dashboard: a world map drawn from the vendored Natural Earth countries with a marker per stored host (its
containers and swarm node in its description), refreshed from /map/markers; launching a container near a place
clicked on the map or on a chosen host, through the same checks and world as the API; themes."""

from __future__ import annotations

from tests.hub.pages import flashes, post_form, soup
from usm.web.pages import worldmap


def markers(page) -> dict[str, str]:
    return {a["data-host"]: a["aria-label"] for a in page.select("#markers a")}


def test_the_map_draws_the_countries_and_every_stored_host(admin):
    page = soup(admin.get("/"))
    assert len(page.select("#world .countries path")) == len(worldmap.countries()) > 170
    hosts = {h["name"]: h for h in admin.get("/api/cloud-hosts").get_json()["items"] +
             admin.get("/api/edge-hosts").get_json()["items"]}
    shown = markers(page)
    assert set(shown) == set(hosts)
    frankfurt = page.select_one('#markers a[data-host="frankfurt-1"]')
    assert frankfurt["href"] == "/hosts/frankfurt-1"
    x, y = frankfurt.find_parent("g", class_="host")["transform"][len("translate("):-1].split()
    assert (float(x), float(y)) == (round(hosts["frankfurt-1"]["longitude"], 3),
                                    round(-hosts["frankfurt-1"]["latitude"], 3))
    running = admin.get("/api/containers?host=frankfurt-1&state=running").get_json()["total"]
    assert f"containers {running} running" in shown["frankfurt-1"]
    assert "swarm node node-frankfurt-1 (manager" in shown["frankfurt-1"]
    assert "stopped" in shown["london-1"] and "containers" not in shown["london-1"]


def test_a_country_outline_is_drawn_where_the_country_is():
    outline = next(c.outline for c in worldmap.countries() if c.name == "Portugal")
    points = [tuple(map(float, p.split(","))) for p in outline.replace("M", " ").replace("L", " ")
              .replace("Z", " ").split()]
    xs, ys = zip(*points, strict=True)
    assert -10 < min(xs) < max(xs) < -6 and -43 < min(ys) < max(ys) < -36  # y is minus the latitude
    assert worldmap.ring([(0.0, 0.0), (1.5, 0.0), (1.5, 1.25), (0.0, 0.0)]) == "M0,0L1.5,0L1.5,-1.25Z"


def test_a_container_launched_near_a_clicked_place_appears_on_the_map(admin, world):
    before = markers(soup(admin.get("/map/markers")))
    answer = post_form(admin, "/launch", {"service": "sock-shop-user", "where": "near", "latitude": "51.5072",
                                          "longitude": "-0.1276", "next": "/"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    message = flashes(soup(admin.get("/")))[0]
    assert message.startswith("Launched sock-shop-user:")
    after = markers(soup(admin.get("/map/markers")))
    assert after["frankfurt-1"] != before["frankfurt-1"]  # the closest host with room: its count went up
    audit = admin.get("/api/audit?action=launch").get_json()["items"][0]
    assert (audit["user"], audit["outcome"]) == ("ada", "ok")


def test_a_container_launched_on_a_chosen_host_starts_there(admin, world):
    answer = post_form(admin, "/launch", {"service": "sock-shop-carts", "where": "host", "host": "leiria",
                                          "next": "/edge-hosts/leiria"})
    assert answer.headers["Location"] == "/edge-hosts/leiria"
    assert admin.get("/api/containers?host=leiria&service=sock-shop-carts").get_json()["total"] == 1


def test_a_launch_with_a_bad_place_is_refused_with_the_reason_and_launches_nothing(admin, world):
    before = admin.get("/api/containers").get_json()["total"]
    post_form(admin, "/launch", {"service": "sock-shop-user", "where": "near", "latitude": "95", "longitude": "0"})
    assert "near.latitude" in flashes(soup(admin.get("/")))[0]
    post_form(admin, "/launch", {"service": "nope", "where": "host", "host": "leiria"})
    assert "there is no service 'nope'" in flashes(soup(admin.get("/")))[0]
    assert admin.get("/api/containers").get_json()["total"] == before


def test_without_a_world_the_hub_says_so(admin):
    post_form(admin, "/launch", {"service": "sock-shop-user", "where": "host", "host": "leiria"})
    assert "no world to act on" in flashes(soup(admin.get("/")))[0]


def test_the_markers_fragment_is_svg_for_the_refresh(admin):
    answer = admin.get("/map/markers")
    assert answer.mimetype == "image/svg+xml"
    page = soup(answer)
    assert page.select_one("svg > g#markers")["data-summary"].startswith("5 hosts")


def test_the_theme_is_remembered_and_changes_the_page(admin):
    assert soup(admin.get("/")).html.get("data-theme") is None  # the browser's preference
    answer = post_form(admin, "/theme", {"theme": "dark", "next": "/services"})
    assert answer.headers["Location"] == "/services" and "usm_theme=dark" in answer.headers["Set-Cookie"]
    page = soup(admin.get("/"))
    assert page.html["data-theme"] == "dark"
    assert page.select_one('button[name=theme][value=dark]')["aria-pressed"] == "true"
    post_form(admin, "/theme", {"theme": "light"})
    assert soup(admin.get("/")).html["data-theme"] == "light"


def test_pages_take_no_inline_script_or_style(admin):
    page = soup(admin.get("/"))
    assert not page.select("script:not([src])") and not page.select("[style]")
    assert not [s for s in page.select("script[src], link[href]") if "://" in (s.get("src") or s.get("href"))]
    assert "script-src 'self'" in admin.get("/").headers["Content-Security-Policy"]

"""The hub in a real browser, as an operator uses it: signing in, adding an app and a service, a rule edited
with an error shown at its line, a dry run (its progress, then its plots), a container launched by clicking the
map in the dark theme, the map's markers refreshed every 15 s (on a clock the test moves). Each test starts from
a fresh tab on the same ``usm serve``."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import sign_in, snap

ROME = (41.9028, 12.4964)  # no host there: a click on the map, not on a marker


def test_signing_in_takes_a_wrong_password_then_the_right_one(page, hub):
    page.goto(f"{hub.url}/services")
    expect(page).to_have_url(re.compile(r"/login\?next=/services"))
    page.get_by_label("User").fill(hub.admin)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")
    page.get_by_label("Password").fill(hub.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{hub.url}/services")
    expect(page.get_by_role("heading", level=1)).to_have_text("Services")


def test_an_app_and_a_service_are_added_through_their_forms(page, hub):
    sign_in(page, hub)
    page.get_by_role("link", name="Services", exact=True).click()
    page.get_by_role("link", name="New service").click()
    page.get_by_label("Name").fill("checkout")
    page.get_by_label("Image").fill("example/checkout:2")
    page.get_by_label("Kind").select_option("frontend")
    page.get_by_label("Min replicas").fill("-1")  # refused by the store, beside the field, the form kept
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#min_replicas-error")).to_contain_text("min_replicas is -1")
    expect(page.get_by_label("Image")).to_have_value("example/checkout:2")
    page.get_by_label("Min replicas").fill("2")
    page.get_by_label("Dependencies").select_option(["sock-shop-carts", "sock-shop-orders"])
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(f"{hub.url}/services/checkout")
    expect(page.locator(".flash")).to_have_text("Created service checkout.")
    expect(page.locator("dl.fields")).to_contain_text("sock-shop-carts, sock-shop-orders")

    page.get_by_role("link", name="Apps", exact=True).click()
    page.get_by_role("link", name="New app").click()
    page.get_by_label("Name").fill("shop-front")
    page.get_by_label("Description").fill("the storefront and its checkout")
    page.get_by_label("Services").select_option(["checkout", "sock-shop"])
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(f"{hub.url}/apps/shop-front")
    services = page.locator("dl.fields dd").filter(has=page.get_by_role("link", name="checkout"))
    expect(services).to_contain_text("checkout, sock-shop")
    page.get_by_role("link", name="checkout").click()
    expect(page.locator("dl.fields")).to_contain_text("shop-front")  # the service lists the app it is in


def test_a_rule_edited_with_an_error_shows_the_error_at_its_line(page, hub):
    sign_in(page, hub)
    before = (hub.policy / "services.yaml").read_bytes()
    page.get_by_role("link", name="Rules").click()
    page.get_by_role("row", name=re.compile("replicate-on-rx")).get_by_role("link", name="Edit").click()
    page.get_by_label("When").fill("rx_bytes_per_sc > 500k")
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The policy would not load with this edit (1 problem); nothing was changed.")
    marked = page.locator("ol.source li.marked")
    expect(marked).to_have_count(1)
    expect(marked.locator("code")).to_contain_text("when: rx_bytes_per_sc > 500k")
    expect(marked.locator(".line-problem")).to_contain_text("unknown field 'rx_bytes_per_sc'")
    line = marked.get_attribute("id").removeprefix("line-")
    expect(page.locator("#p-when-error")).to_contain_text(f"line {line}")
    assert (hub.policy / "services.yaml").read_bytes() == before


def test_a_dry_run_shows_its_progress_then_its_plots(page, hub):
    sign_in(page, hub)
    page.get_by_role("link", name="Workbench").click()
    page.get_by_label("Scenario").first.select_option("edge-flash-crowd")
    page.locator("#run-minutes").fill("3")
    page.get_by_role("button", name="Start the dry run").click()
    expect(page).to_have_url(re.compile(r"/workbench/jobs/\d+"))
    if page.locator("progress").count():
        snap(page, "dry_run_progress")
    plot = page.get_by_role("img", name="Replicas per service and hosts over time")
    expect(plot).to_be_visible(timeout=80_000)
    plot.scroll_into_view_if_needed()
    assert plot.evaluate("image => image.complete && image.naturalWidth > 0")
    expect(page.get_by_role("row", name=re.compile("Duration"))).to_contain_text("180.0")
    expect(page.locator("table.records")).to_contain_text("The engine chose to underwork")


def test_a_container_is_launched_where_the_map_is_clicked(page, hub):
    sign_in(page, hub)
    page.get_by_role("button", name="Dark").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    frankfurt = page.locator('#markers a[data-host="frankfurt-1"]')
    before = _containers(frankfurt.get_attribute("aria-label"))
    x, y = page.locator("#world").evaluate(
        """(svg, [latitude, longitude]) => {
             const point = svg.createSVGPoint();
             point.x = longitude; point.y = -latitude;
             const screen = point.matrixTransform(svg.getScreenCTM());
             return [screen.x, screen.y];
           }""", list(ROME))
    page.mouse.click(x, y)
    latitude, longitude = (float(page.locator(f"#launch-{name}").input_value()) for name in ("latitude", "longitude"))
    assert abs(latitude - ROME[0]) < 0.5 and abs(longitude - ROME[1]) < 0.5
    expect(page.locator("#pick-status")).to_contain_text("Place chosen")
    page.get_by_label("Service", exact=True).select_option("sock-shop-user")
    page.get_by_role("button", name="Launch", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("Launched sock-shop-user")
    assert _containers(frankfurt.get_attribute("aria-label")) == before + 1  # the closest host with room


def _containers(description: str) -> int:
    """How many containers a map marker's description counts on its host (running and starting)."""
    return sum(int(n) for n, state in re.findall(r"(\d+) (running|starting)", description))


def test_the_map_refreshes_its_markers_every_15_seconds(page, hub):
    sign_in(page, hub)
    page.clock.install()  # the page's timers run on a clock the test moves
    page.goto(f"{hub.url}/")
    leiria = page.locator('#markers a[data-host="leiria"]')
    shown = leiria.get_attribute("aria-label")
    before = _containers(shown)
    csrf = page.request.get(f"{hub.url}/api/session").json()["csrf_token"]
    launched = page.request.post(f"{hub.url}/api/actions/launch", headers={"X-CSRFToken": csrf},
                                 data={"service": "sock-shop-carts", "host": "leiria"})
    assert launched.ok, launched.text()
    page.clock.run_for(14_000)
    expect(leiria).to_have_attribute("aria-label", shown)  # the page has not asked yet
    page.clock.run_for(1_000)
    expect(leiria).not_to_have_attribute("aria-label", shown)
    assert _containers(leiria.get_attribute("aria-label")) == before + 1

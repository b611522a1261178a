"""Users and API tokens from the pages: a token shown once and usable at once by the API, revoked; users made
and deleted by an admin, the last admin kept; each audited as the API's own endpoints audit them."""

from __future__ import annotations

from tests.hub.pages import flashes, post_form, soup


def test_a_token_made_on_the_page_is_shown_once_works_and_can_be_revoked(viewer):
    answer = post_form(viewer, "/account/tokens", {"name": "nightly report"})
    page = soup(answer)
    assert answer.status_code == 201
    token = page.select_one("#issued-text")["value"]
    assert token.startswith("usm_") and "nightly report" in page.select_one("#issued").get_text()
    assert token not in soup(viewer.get("/account")).get_text()  # never shown again
    api = viewer.client.application.test_client()
    assert api.get("/api/services", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    row = soup(viewer.get("/account")).find("th", string="nightly report").find_parent("tr")
    post_form(viewer, row.form["action"])
    assert flashes(soup(viewer.get("/account"))) == ["Revoked token nightly report."]
    assert api.get("/api/services", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_token_with_a_past_expiry_is_refused_beside_its_field(admin):
    answer = post_form(admin, "/account/tokens", {"name": "old", "expires_at": "2001-01-01T00:00:00+00:00"})
    assert answer.status_code == 422 and "not in the future" in soup(answer).select_one("[role=alert]").get_text()
    assert not soup(admin.get("/account")).find("th", string="old")


def test_an_admin_makes_and_deletes_users_and_the_last_admin_stays(admin):
    short = post_form(admin, "/account/users", {"name": "bo", "password": "short"})
    assert short.status_code == 422 and "at least 12" in soup(short).select_one("[role=alert]").get_text()
    made = post_form(admin, "/account/users", {"name": "bo", "password": "a long enough password", "admin": "on"})
    assert made.status_code == 302
    users = {th.get_text(): th.find_next("td").get_text() for th in soup(admin.get("/account")).select(
        "#users-heading ~ table tbody th")}
    assert users == {"ada": "admin", "bo": "admin", "vic": "reads only"}
    post_form(admin, "/account/users/bo/delete", {"confirm": "yes"})
    post_form(admin, "/account/users/vic/delete", {"confirm": "yes"})
    refused = post_form(admin, "/account/users/ada/delete", {"confirm": "yes"})
    assert refused.status_code == 302
    assert "'ada' is the only admin" in flashes(soup(admin.get("/account")))[0]
    audit = [(e["action"], e["target"]) for e in admin.get("/api/audit?limit=10").get_json()["items"]]
    assert ("user.delete", "vic") in audit and ("user.create", "bo") in audit


def test_a_viewer_sees_no_users_and_cannot_make_any(viewer):
    assert not soup(viewer.get("/account")).select("#users-heading")
    assert post_form(viewer, "/account/users", {"name": "eve", "password": "a long enough password"}).status_code \
        == 403

"""Acting from the pages: hosts started, stopped and terminated, swarm nodes changed, commands run and files
uploaded over the actions seam, each audited with its user and refused with the API's reasons."""

from __future__ import annotations

import io

from tests.hub.pages import flashes, post_form, soup


def test_a_host_stopped_from_its_page_is_stopped_in_the_store(admin, world):
    post_form(admin, "/launch", {"service": "sock-shop-carts", "where": "host", "host": "leiria"})
    answer = post_form(admin, "/operate/hosts/leiria/stop", {"next": "/edge-hosts/leiria"})
    assert answer.headers["Location"] == "/edge-hosts/leiria"
    page = soup(admin.get("/edge-hosts/leiria"))
    assert flashes(page)[-1].startswith("Stop leiria:")
    assert admin.get("/api/edge-hosts/leiria").get_json()["state"] == "stopped"
    assert [b.get_text() for b in page.select("section form button")][:2] == ["Start", "Stop"]


def test_what_the_world_refuses_is_flashed_with_its_reason(admin, world):
    post_form(admin, "/operate/hosts/leiria/terminate")
    assert "edge host: it can be started and stopped, not terminated" in flashes(soup(admin.get("/")))[0]
    post_form(admin, "/operate/hosts/atlantis/stop")
    assert "there is no host named 'atlantis'" in flashes(soup(admin.get("/")))[0]
    assert admin.get("/api/edge-hosts/leiria").get_json()["state"] == "running"


def test_a_node_changed_from_its_page_changes_in_the_store(admin, world):
    page = soup(admin.get("/nodes/node-leiria"))
    assert page.select_one("#node-availability option").get_text() == "(keep active)"
    post_form(admin, "/operate/nodes/node-leiria", {"availability": "drain", "role": ""})
    node = admin.get("/api/nodes/node-leiria").get_json()
    assert (node["availability"], node["role"]) == ("drain", "worker")
    post_form(admin, "/operate/nodes/node-leiria", {"availability": "asleep"})
    assert "availability" in flashes(soup(admin.get("/nodes/node-leiria")))[-1]


def test_a_command_runs_through_the_actions_seam_and_is_in_the_history(admin, world):
    answer = post_form(admin, "/shell/ssh", {"host": "leiria", "command": "uptime", "timeout": "5"})
    page = soup(answer)
    assert answer.status_code == 200
    terminal = page.select_one(".terminal")
    assert "$ uptime" in terminal.get_text() and "exit 0" in terminal.get_text()
    assert "simulated world: leiria has no shell" in terminal.select_one("pre.err").get_text()
    history = page.select("#history-heading ~ table tbody tr")
    assert "uptime" in history[0].get_text() and "ada" in history[0].get_text()
    audit = admin.get("/api/audit?action=ssh").get_json()["items"][0]
    assert (audit["target"], audit["user"]) == ("leiria", "ada")


def test_a_bad_command_or_host_is_refused_beside_its_field(admin, world):
    empty = post_form(admin, "/shell/ssh", {"host": "leiria", "command": ""})
    assert empty.status_code == 422 and soup(empty).select_one("#ssh-command").find_parent(class_="invalid")
    nowhere = post_form(admin, "/shell/ssh", {"host": "atlantis", "command": "ls"})
    assert nowhere.status_code == 404 and "no host named 'atlantis'" in soup(nowhere).select_one("[role=alert]").text


def test_a_file_uploaded_from_the_page_goes_through_the_seam_and_is_audited(admin, world):
    answer = post_form(admin, "/shell/sftp", {"host": "leiria", "path": "/opt/usm/hello.sh", "mode": "755",
                                              "file": (io.BytesIO(b"#!/bin/sh\necho hi\n"), "hello.sh")},
                       content_type="multipart/form-data")
    assert answer.status_code == 302 and answer.headers["Location"] == "/shell?host=leiria"
    assert "Uploaded hello.sh to leiria:/opt/usm/hello.sh" in flashes(soup(admin.get("/shell?host=leiria")))[0]
    audit = admin.get("/api/audit?action=sftp").get_json()["items"][0]
    assert '"bytes": 18' in audit["detail"] and "0o755" in audit["detail"]
    relative = post_form(admin, "/shell/sftp", {"host": "leiria", "path": "opt/x", "mode": "644",
                                                "file": (io.BytesIO(b"x"), "x")}, content_type="multipart/form-data")
    assert relative.status_code == 422 and "path" in soup(relative).select_one("[role=alert]").get_text()
    octal = post_form(admin, "/shell/sftp", {"host": "leiria", "path": "/opt/x", "mode": "999",
                                             "file": (io.BytesIO(b"x"), "x")}, content_type="multipart/form-data")
    assert octal.status_code == 422
    assert admin.get("/api/audit?action=sftp").get_json()["total"] == 1


def test_a_viewer_sees_the_shell_but_cannot_run_anything(viewer, world):
    page = soup(viewer.get("/shell"))
    assert page.find(string="Only an admin can run commands.")
    assert post_form(viewer, "/shell/ssh", {"host": "leiria", "command": "ls"}).status_code == 403
    assert post_form(viewer, "/operate/hosts/leiria/stop").status_code == 403


def test_an_app_launched_and_stopped_from_its_page(admin, world):
    page = soup(admin.get("/apps/sock-shop"))
    assert page.find("form", action="/operate/apps/sock-shop/launch") is not None
    post_form(admin, "/operate/apps/sock-shop/launch",
              {"latitude": "51.5", "longitude": "-0.13", "on_failure": "rollback", "next": "/apps/sock-shop"})
    shown = flashes(soup(admin.get("/apps/sock-shop")))
    assert any(text.startswith("Launch of sock-shop") for text in shown), shown
    launched = admin.get("/api/audit?action=app.launch").get_json()["items"][0]
    assert (launched["user"], launched["outcome"]) == ("ada", "ok")
    assert admin.get("/api/containers?limit=1").get_json()["total"] > 0
    post_form(admin, "/operate/apps/sock-shop/stop", {"next": "/apps/sock-shop"})
    assert admin.get("/api/audit?action=app.stop").get_json()["items"][0]["outcome"] == "ok"


def test_an_app_launch_with_a_bad_place_is_refused_with_its_reason(admin, world):
    post_form(admin, "/operate/apps/sock-shop/launch", {"latitude": "north", "longitude": "-0.13"})
    shown = flashes(soup(admin.get("/apps/sock-shop")))
    assert any("latitude" in text for text in shown), shown
    assert admin.get("/api/audit?action=app.launch").get_json()["items"] == []


def test_an_app_is_launched_near_the_place_picked_on_the_dashboard(admin, world):
    page = soup(admin.get("/"))
    button = page.find("button", formaction="/operate/apps/launch")
    assert button is not None and page.find("select", id="launch-app").find("option", string="sock-shop")
    post_form(admin, "/operate/apps/launch", {"app": "sock-shop", "service": "sock-shop-carts",
                                              "where": "near", "latitude": "45.5", "longitude": "-122.7"})
    launched = admin.get("/api/audit?action=app.launch").get_json()["items"][0]
    assert (launched["target"], launched["outcome"]) == ("sock-shop", "ok")
    assert "45.5" in str(launched["detail"]) and "-122.7" in str(launched["detail"])

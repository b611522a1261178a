"""The decision log and the logs: records of a real run (the simulator's control loop on a short scenario),
indexed into the store, listed with the API's filters and shown one by one with their explanation; the hub's own
log records and the audit log."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from tests.hub.pages import post_form, soup
from usm.engine import load_policy
from usm.manager.store import index_log
from usm.simulator.run import simulate
from usm.simulator.scenario import load_scenario
from usm.web.hub import state


@pytest.fixture(scope="module")
def decision_log(tmp_path_factory, policy_dir_module):
    """A decision log written by the control loop over the first five minutes of edge-flash-crowd."""
    scenario = dataclasses.replace(load_scenario("edge-flash-crowd"), duration=300)
    out = tmp_path_factory.mktemp("run")
    simulate(scenario, load_policy(policy_dir_module), out=out)
    return out / "decisions.jsonl"


@pytest.fixture(scope="module")
def policy_dir_module():
    from tests.hub.conftest import ROOT

    return ROOT / "policies"


@pytest.fixture
def indexed(app, decision_log):
    with app.app_context(), state().sessions.begin() as session:
        return index_log(session, decision_log)


def test_the_decision_log_lists_what_the_api_lists(admin, indexed):
    page = soup(admin.get("/decisions"))
    rows = page.select("tbody tr")
    api = admin.get("/api/decisions?limit=50").get_json()
    assert len(rows) == len(api["items"]) == min(50, indexed) > 20 and api["total"] == indexed
    assert [r.select("td")[1].get_text() for r in rows] == [item["kind"] for item in api["items"]]
    assert page.select_one("nav.pager span").get_text() == f"1–{min(50, indexed)} of {indexed}"


def test_filters_select_the_records(admin, indexed):
    page = soup(admin.get("/decisions?rule=host-idle&kind=evaluation"))
    rows = page.select("tbody tr")
    assert rows and all(r.select("td")[5].get_text() == "host-idle" and r.select("td")[1].get_text() == "evaluation"
                        for r in rows)
    wrong = admin.get("/decisions?kind=guess")
    assert wrong.status_code == 422 and "kind" in soup(wrong).select_one("[role=alert]").get_text()


def test_an_evaluation_is_shown_with_its_explanation(admin, indexed, decision_log):
    link = soup(admin.get("/decisions?rule=host-idle&kind=evaluation")).select_one("tbody a")
    page = soup(admin.get(link["href"]))
    record_id = int(link["href"].rsplit("/", 1)[1])
    written = admin.get(f"/api/decisions/{record_id}").get_json()["record"]
    text = page.select_one(".explanation").get_text(" ", strip=True)
    assert f"{written['entity']} (host) was judged underwork by rule host-idle" in text
    assert f"{written['streak']} cycle" in text
    terms = {tr.select("td")[0].get_text(): float(tr.select("td")[1].get_text())
             for tr in page.select(".explanation table tbody tr")}
    assert terms == pytest.approx(written["terms"], abs=1e-4)
    assert json.loads(page.select_one(".explanation details pre").get_text()) == written


def test_actions_and_steps_are_explained(admin, indexed):
    action = soup(admin.get("/decisions?kind=action")).select_one("tbody a")
    text = soup(admin.get(action["href"])).select_one(".explanation").get_text(" ", strip=True)
    assert text.startswith("The engine chose to underwork")
    step = soup(admin.get("/decisions?kind=step")).select_one("tbody a")
    assert "Placement planned DrainHost" in soup(admin.get(step["href"])).select_one(".explanation").get_text()
    assert admin.get("/decisions/999999").status_code == 404


def test_the_logs_show_the_hubs_records_and_the_audit_log(admin, world):
    logging.getLogger("usm.web").warning("a warning the logs page must show")
    post_form(admin, "/shell/ssh", {"host": "leiria", "command": "ls"})
    page = soup(admin.get("/logs?level=WARNING"))
    messages = [pre.get_text() for pre in page.select("table.log pre.message")]
    assert "a warning the logs page must show" in messages
    assert all(row.select("td")[1].get_text() in ("WARNING", "ERROR", "CRITICAL")
               for row in page.select("table.log tbody tr"))
    audit = [tr.get_text(" ", strip=True) for tr in page.select("#audit-log ~ table tbody tr")]
    assert any("ssh" in row and "leiria" in row and "ada" in row for row in audit)
    searched = soup(admin.get("/logs?level=INFO&q=must+show"))
    assert len(searched.select("table.log tbody tr")) >= 1
    only_ssh = soup(admin.get("/logs?action=ssh"))
    assert all("ssh" in tr.get_text() for tr in only_ssh.select("#audit-log ~ table tbody tr"))
    assert soup(admin.get("/logs?auto=on")).select_one('meta[http-equiv="refresh"]')["content"] == "5"


def test_a_viewer_sees_the_log_but_not_the_audit_log(viewer):
    page = soup(viewer.get("/logs"))
    assert page.find(string="Only an admin can read the audit log.")

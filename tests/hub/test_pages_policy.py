"""The rule and simulated-metric editors: items as written in the policy files, edits through the same
``PolicyFiles`` as the API, and an edit the engine refuses shown at its line in the file it would have written,
beside the input it concerns, with the files left byte for byte as they were."""

from __future__ import annotations

from pathlib import Path

from tests.hub.pages import field_error, flashes, post_form, soup
from usm.engine import load_policy


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def rule_form(admin, name: str) -> dict[str, str]:
    page = soup(admin.get(f"/policy/rules/{name}/edit"))
    form = {i["name"]: i.get("value", "") for i in page.select("form.grid input") if i.get("name")}
    form.update({s["name"]: s.find("option", selected=True).get_text() for s in page.select("form.grid select")})
    form["when"] = page.select_one("textarea[name=when]").get_text()
    form.pop("csrf_token")
    return form


def test_the_rules_are_listed_with_where_they_are_written(admin, policy_dir):
    page = soup(admin.get("/policy/rules"))
    names = [th.get_text() for th in page.select("tbody th")]
    assert names == [r.name for r in load_policy(policy_dir).rules]
    where = page.select_one("tbody tr td a.mono")
    assert (where.get_text(), where["href"]) == ("hosts.yaml:5", "/policy/files/hosts.yaml#line-5")
    file = soup(admin.get("/policy/files/hosts.yaml"))
    assert file.select_one("#line-5").get_text().strip().startswith("- name:")


def test_a_rule_edited_with_an_error_shows_it_at_its_line_and_changes_nothing(admin, policy_dir):
    before = snapshot(policy_dir)
    form = rule_form(admin, "replicate-on-rx")
    form["when"] = "rx_bytes_per_sc > 500k"
    answer = post_form(admin, "/policy/rules/replicate-on-rx/edit", form)
    page = soup(answer)
    assert answer.status_code == 422
    marked = page.select("ol.source li.marked")
    assert len(marked) == 1
    line = int(marked[0]["id"].removeprefix("line-"))
    assert "when: rx_bytes_per_sc > 500k" in marked[0].code.get_text()
    assert "unknown field 'rx_bytes_per_sc'" in marked[0].select_one(".line-problem").get_text()
    assert f"line {line}" in field_error(page, "when")  # and beside the input it concerns
    assert page.select_one("textarea[name=when]").get_text() == "rx_bytes_per_sc > 500k"
    assert snapshot(policy_dir) == before


def test_a_valid_rule_edit_is_written_and_the_engine_loads_it(admin, policy_dir):
    form = rule_form(admin, "host-idle")
    form.update(when="avg(cpu_percent, 5m) < 5", priority="2")
    answer = post_form(admin, "/policy/rules/host-idle/edit", form)
    assert answer.status_code == 302
    assert flashes(soup(admin.get("/policy/rules"))) == ["Saved rule host-idle in hosts.yaml: changed priority, when."]
    rule = {r.name: r for r in load_policy(policy_dir).rules}["host-idle"]
    assert rule.priority == 2 and "# A host that has been nearly idle" in (policy_dir / "hosts.yaml").read_text()
    form["priority"] = ""
    post_form(admin, "/policy/rules/host-idle/edit", form)
    assert {r.name: r for r in load_policy(policy_dir).rules}["host-idle"].priority == 0


def test_a_rule_is_added_and_deleted(admin, policy_dir):
    answer = post_form(admin, "/policy/rules/new", {"name": "busy-service", "scope": "service", "target": "a, b",
                                                    "when": "cpu_percent > 95", "then": "replicate", "priority": ""})
    assert answer.status_code == 302, soup(answer).get_text()
    rule = {r.name: r for r in load_policy(policy_dir).rules}["busy-service"]
    assert (rule.targets, rule.when_text, rule.priority) == (("a", "b"), "cpu_percent > 95", 0)
    assert "busy-service" in (policy_dir / "services.yaml").read_text()
    assert post_form(admin, "/policy/rules/busy-service/delete").status_code == 302
    assert "busy-service" not in (policy_dir / "services.yaml").read_text()


def test_a_new_rule_the_models_refuse_is_shown_field_by_field(admin, policy_dir):
    before = snapshot(policy_dir)
    answer = post_form(admin, "/policy/rules/new", {"name": "", "scope": "galaxy", "target": "*", "when": "x",
                                                    "then": "explode"})
    page = soup(answer)
    assert answer.status_code == 422
    assert field_error(page, "name") and field_error(page, "scope") and field_error(page, "then")
    duplicate = post_form(admin, "/policy/rules/new", {"name": "host-idle", "scope": "host", "target": "*",
                                                       "when": "cpu_percent < 1", "then": "underwork"})
    assert duplicate.status_code == 409 and "named 'host-idle' already" in soup(duplicate).get_text()
    assert snapshot(policy_dir) == before


def test_simulated_metrics_are_edited_the_same_way(admin, policy_dir):
    answer = post_form(admin, "/policy/simulated-metrics/new", {
        "name": "busy-lisbon", "scope": "host", "target": "lisbon", "field": "cpu_percent", "min": "80",
        "max": "95", "active": "on"})
    assert answer.status_code == 302, soup(answer).get_text()
    metric = {m.name: m for m in load_policy(policy_dir).simulated_metrics}["busy-lisbon"]
    assert (metric.min, metric.max) == (80, 95)
    listed = soup(admin.get("/policy/simulated-metrics"))
    assert [th.get_text() for th in listed.select("tbody th")] == ["busy-lisbon"]
    before = snapshot(policy_dir)
    wrong = post_form(admin, "/policy/simulated-metrics/busy-lisbon/edit", {
        "name": "busy-lisbon", "scope": "host", "target": "lisbon", "field": "cpu_percent", "min": "99",
        "max": "95", "active": "on"})
    assert wrong.status_code == 422 and soup(wrong).select("ol.source li.marked")
    assert snapshot(policy_dir) == before


def test_a_viewer_reads_the_rules_but_cannot_edit_them(viewer, policy_dir):
    page = soup(viewer.get("/policy/rules"))
    assert page.select("tbody th") and not page.find("a", string="New rule")
    assert post_form(viewer, "/policy/rules/host-idle/delete").status_code == 403

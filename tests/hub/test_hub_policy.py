"""The policy's rules and simulated metrics over the API: read from the files, written back tidily and
atomically, and an edit the engine would refuse answered 422 with FILE:LINE:COLUMN problems and no change."""

from __future__ import annotations

from pathlib import Path

from usm.engine import load_policy


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_rules_are_listed_as_written_in_loading_order(admin, policy_dir):
    answer = admin.get("/api/rules").get_json()
    names = [r["name"] for r in answer["items"]]
    assert names == [r.name for r in load_policy(policy_dir).rules]
    assert answer["digest"] == load_policy(policy_dir).digest
    first = answer["items"][0]
    assert (first["file"], first["line"]) == ("hosts.yaml", 5)
    assert first["values"]["when"] == "cpu_percent > 90 and ram_percent > 90"
    one = admin.get("/api/rules/host-idle").get_json()
    assert one["values"]["then"] == "underwork" and one["file"] == "hosts.yaml"
    assert admin.get("/api/rules/nope").status_code == 404
    state = admin.get("/api/policy").get_json()
    assert state["files"] == ["00-settings.yaml", "hosts.yaml", "services.yaml"] and state["period"] == 15.0


def test_a_change_keeps_the_file_tidy_and_the_engine_loads_it(admin, policy_dir):
    before = (policy_dir / "hosts.yaml").read_text()
    answer = admin.patch("/api/rules/host-idle", json={"when": "avg(cpu_percent, 5m) < 5", "priority": 2})
    assert answer.status_code == 200, answer.get_json()
    after = (policy_dir / "hosts.yaml").read_text()
    assert "when: avg(cpu_percent, 5m) < 5" in after
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=False) if a != b]
    assert len(changed) == 1  # the comments and every other line stay as they were; priority is added below
    assert after.count("\n") == before.count("\n") + 1
    assert "# A host that has been nearly idle for five minutes" in after
    rule = {r.name: r for r in load_policy(policy_dir).rules}["host-idle"]
    assert rule.priority == 2 and rule.when_text == "avg(cpu_percent, 5m) < 5"
    assert not [p for p in policy_dir.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_new_rule_goes_with_its_scope_and_can_be_deleted(admin, policy_dir):
    body = {"name": "replicate-busy-carts", "scope": "service", "target": ["sock-shop-carts"], "priority": 3,
            "when": "avg(cpu_percent, 1m) > 80", "then": "replicate"}
    made = admin.post("/api/rules", json=body)
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["file"] == "services.yaml"
    assert made.headers["Location"].endswith("/api/rules/replicate-busy-carts")
    loaded = {r.name: r for r in load_policy(policy_dir).rules}
    assert loaded["replicate-busy-carts"].targets == ("sock-shop-carts",)
    text = (policy_dir / "services.yaml").read_text()
    assert "  - name: replicate-busy-carts\n    scope: service\n" in text
    assert admin.post("/api/rules", json=body).status_code == 409
    in_new_file = admin.post("/api/rules", json={**body, "name": "elsewhere", "file": "extra.yaml"})
    assert in_new_file.status_code == 201 and (policy_dir / "extra.yaml").exists()
    assert admin.delete("/api/rules/replicate-busy-carts").status_code == 204
    assert "replicate-busy-carts" not in {r.name for r in load_policy(policy_dir).rules}
    assert admin.delete("/api/rules/replicate-busy-carts").status_code == 404


def test_an_invalid_edit_is_422_with_positions_and_changes_no_file(admin, policy_dir):
    before = snapshot(policy_dir)
    bad_expression = admin.patch("/api/rules/host-idle", json={"when": "avg(cpu_percent, 5m) <"})
    assert bad_expression.status_code == 422
    problems = bad_expression.get_json()["errors"]
    assert list(problems) and all(key.startswith("hosts.yaml:") for key in problems)
    assert "bad expression in rule 'host-idle'" in next(iter(problems.values()))[0]
    wrong_decision = admin.post("/api/rules", json={"name": "host-replicates", "scope": "host", "target": "*",
                                                    "when": "cpu_percent > 1", "then": "replicate"})
    assert wrong_decision.status_code == 422
    assert any("cannot decide 'replicate'" in m for ms in wrong_decision.get_json()["errors"].values() for m in ms)
    unknown_field = admin.patch("/api/rules/host-idle", json={"when": "colour > 3"})
    assert unknown_field.status_code == 422
    duplicate_name = admin.patch("/api/rules/host-idle", json={"name": "host-cpu-and-ram-over-90"})
    assert duplicate_name.status_code == 422
    assert admin.patch("/api/rules/host-idle", json={"then": "explode"}).status_code == 422
    assert admin.patch("/api/rules/host-idle", json={"name": None}).status_code == 422
    assert admin.post("/api/rules", json={"name": "x", "scope": "host", "target": "*", "when": True,
                                          "then": "none", "file": "../escape.yaml"}).status_code == 422
    assert snapshot(policy_dir) == before


def test_a_policy_broken_on_disk_is_reported_not_served_half(admin, policy_dir):
    (policy_dir / "hosts.yaml").write_text("rules:\n  - name: [unclosed\n")
    answer = admin.get("/api/rules")
    assert answer.status_code == 422 and any(k.startswith("hosts.yaml:") for k in answer.get_json()["errors"])
    assert admin.get("/api/policy").status_code == 422


def test_simulated_metrics_are_edited_the_same_way(admin, policy_dir):
    assert admin.get("/api/simulated-metrics").get_json()["items"] == []
    body = {"name": "busy-frankfurt", "scope": "host", "target": "frankfurt-1", "field": "cpu_percent",
            "min": 85, "max": 99, "override": True}
    made = admin.post("/api/simulated-metrics", json=body)
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["file"] == "simulated_metrics.yaml"
    metric = load_policy(policy_dir).simulated_metrics[0]
    assert (metric.name, metric.min, metric.max, metric.override) == ("busy-frankfurt", 85, 99, True)
    before = snapshot(policy_dir)
    inverted = admin.patch("/api/simulated-metrics/busy-frankfurt", json={"min": 100})
    assert inverted.status_code == 422
    assert any("smaller than min" in m for ms in inverted.get_json()["errors"].values() for m in ms)
    assert admin.patch("/api/simulated-metrics/busy-frankfurt", json={"field": "no_such_metric"}).status_code == 422
    assert snapshot(policy_dir) == before
    assert admin.patch("/api/simulated-metrics/busy-frankfurt", json={"active": False}).status_code == 200
    assert load_policy(policy_dir).simulated_metrics[0].active is False
    assert admin.delete("/api/simulated-metrics/busy-frankfurt").status_code == 204
    assert load_policy(policy_dir).simulated_metrics == ()


def test_policy_edits_are_audited_and_viewers_cannot_make_them(admin, viewer, policy_dir):
    before = snapshot(policy_dir)
    assert viewer.patch("/api/rules/host-idle", json={"priority": 5}).status_code == 403
    assert snapshot(policy_dir) == before
    admin.patch("/api/rules/host-idle", json={"priority": 5})
    entries = admin.get("/api/audit?action=policy.rules.change").get_json()["items"]
    assert entries and entries[0]["target"] == "host-idle" and entries[0]["user"] == "ada"

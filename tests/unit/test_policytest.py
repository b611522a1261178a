"""`usm policy test`: series notation, action matching, exit codes, diffs, JUnit and coverage."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from usm.manager.cli import main
from usm.policytest import expand_series
from usm.policytest.runner import match_actions

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, values", [
    ("1 2 3", [1, 2, 3]),
    ("600000+0x3", [600000] * 4),
    ("10+5x2", [10, 15, 20]),
    ("10-5x2", [10, 5, 0]),
    ("7x2", [7, 7, 7]),
    ("_ 1 _x2 2", [None, 1, None, None, 2]),
    ("-500 -1.5", [-500, -1.5]),
    ("1e3", [1000]),
], ids=lambda x: str(x))
def test_series_notation(text, values):
    assert expand_series(text) == values


@pytest.mark.parametrize("text", ["1k", "1+2", "x3", "_x", "a", "1 2+", "inf"])
def test_bad_series(text):
    with pytest.raises(ValueError):
        expand_series(text)


def test_actions_match_one_to_one_in_any_order_on_the_keys_given():
    actual = [{"action": "replicate", "target": "s", "container": "c1", "rule": "r"},
              {"action": "replicate", "target": "s", "container": "c2", "rule": "r"}]
    assert match_actions([{"container": "c2"}, {"action": "replicate"}], actual) == ([], [])
    # Greedy pairing would give {"action"} the c2 action and leave {"container": "c2"} unpaired.
    assert match_actions([{"action": "replicate"}, {"container": "c2"}], actual) == ([], [])
    assert match_actions([{"action": "replicate"}], actual) == ([], [actual[1]])
    assert match_actions([{"action": "overwork", "target": "h1", "container": "x"}],
                         [{"action": "overwork", "target": "h1", "rule": "r"}])[0]  # a host action has no container


POLICY = """
settings: {streak: {replicate: 2}}
rules:
  - {name: busy, scope: service, target: "*", when: cpu > 80, then: replicate}
  - {name: never, scope: host, target: "*", when: false, then: overwork}
"""
TEST = """
policy: policy
interval: 15s
inventory:
  hosts: [{name: h1}]
  containers: [{name: c1, service: web, host: h1}]
series:
  - {entity: c1, field: cpu, values: "90x3"}
tests:
  - at: 0s
    decisions: [{entity: c1, decision: replicate, rule: busy}]
    actions: []
  - at: 15s
    actions: [{action: replicate, target: web, container: c1}]
  - at: 30s
    actions: %s
"""


@pytest.fixture()
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "rules.yaml").write_text(POLICY)
    (tmp_path / "good_test.yaml").write_text(TEST % "[]")
    (tmp_path / "bad_test.yaml").write_text(TEST % "[{action: stop, target: web}]")
    (tmp_path / "broken_test.yaml").write_text("policy: policy\ninterval: 15\ninventory: {}\ntests: [{at: 0s}]\n")
    return tmp_path


def invoke(project, *args):
    return CliRunner().invoke(main, ["policy", "test", *args])


def test_all_passed_exits_0(project):
    result = invoke(project, "good_test.yaml")
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS good_test.yaml") == 3
    assert result.output.rstrip().endswith("3 passed, 0 failed")


def test_a_failed_test_exits_1_with_a_diff(project):
    result = invoke(project, "bad_test.yaml")
    assert result.exit_code == 1
    assert "FAIL bad_test.yaml at 30s" in result.output
    assert "- expected {action: stop, target: web}" in result.output
    assert result.output.rstrip().endswith("2 passed, 1 failed")


def test_an_invalid_file_exits_2_and_the_others_still_run(project):
    result = invoke(project, "broken_test.yaml", "bad_test.yaml")
    assert result.exit_code == 2
    assert "broken_test.yaml:2:11: interval must be a duration" in result.output
    assert "2 passed, 1 failed, 1 invalid file" in result.output


def test_junit_and_coverage(project):
    result = invoke(project, "good_test.yaml", "bad_test.yaml", "--junit", "report.xml", "--coverage")
    assert "coverage: policy: never matched: never" in result.output
    suites = ElementTree.parse(project / "report.xml").getroot()
    assert suites.get("tests") == "6" and suites.get("failures") == "1"
    failures = suites.findall(".//failure")
    assert len(failures) == 1 and "expected {action: stop" in failures[0].text


def test_the_shipped_policy_tests_pass_and_cover_every_default_rule(monkeypatch):
    monkeypatch.chdir(ROOT)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "policies" / "tests").glob("*.yaml"))
    result = CliRunner().invoke(main, ["policy", "test", *files, "--coverage"])
    assert result.exit_code == 0, result.output
    assert "coverage: policies/tests/..: every rule matched" in result.output

"""Loading policies: every kind of bad input is reported at FILE:LINE:COLUMN and loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from usm.engine import Decision, InvalidSource, Scope, load_policy
from usm.engine.yamldoc import schema
from usm.manager.cli import main

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "policies" / "tests" / "invalid"


def write(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("_yaml", ".yaml")).write_text(text)
    return directory


# Every case of policies/tests/invalid/EXPECTED.md: (test file, error file, line, column, phrase).
CASES = [
    ("invalid-yaml_test.yaml", "invalid-yaml/rules.yaml", 6, 27, "mapping values are not allowed"),
    ("unknown-key_test.yaml", "unknown-key/rules.yaml", 6, 5, "priorty"),
    ("unknown-field_test.yaml", "unknown-field/rules.yaml", 6, 11, "cpu_pct"),
    ("bad-expression_test.yaml", "bad-expression/rules.yaml", 6, 28, "expression"),
    ("bad-duration_test.yaml", "bad-duration/rules.yaml", 3, 11, "15sec"),
    ("scope-decision_test.yaml", "scope-decision/rules.yaml", 7, 11, "replicate"),
    ("duplicate-name_test.yaml", "duplicate-name/b-rules.yaml", 4, 11, "twice-named"),
    ("short-window_test.yaml", "short-window/rules.yaml", 8, 28, "window"),
    ("two-settings_test.yaml", "two-settings/b-settings.yaml", 3, 1, "settings"),
    ("at-without-unit_test.yaml", "at-without-unit_test.yaml", 9, 9, "duration"),
    ("unknown-entity_test.yaml", "unknown-entity_test.yaml", 7, 13, "ghost"),
    ("unknown-series-field_test.yaml", "unknown-series-field_test.yaml", 9, 12, "queue_length"),
    ("actions-null_test.yaml", "actions-null_test.yaml", 11, 14, "actions"),
]


@pytest.mark.parametrize("test_file, error_file, line, column, phrase", CASES, ids=[c[0] for c in CASES])
def test_invalid_files_exit_2_with_the_location(test_file, error_file, line, column, phrase, monkeypatch):
    monkeypatch.chdir(INVALID)
    result = CliRunner().invoke(main, ["policy", "test", test_file])
    assert result.exit_code == 2, result.output
    located = [x.strip() for x in result.output.splitlines() if x.strip().startswith(f"{error_file}:")]
    assert located, result.output
    assert located[0].startswith(f"{error_file}:{line}:{column}: "), located[0]
    assert phrase.lower() in located[0].lower()
    assert "0 passed, 0 failed, 1 invalid file" in result.output


def test_policy_check_reports_every_problem_and_exits_2(tmp_path):
    write(tmp_path, a_yaml="rules:\n  - {name: x, scope: host, target: '*', when: 'cpu > 1', then: stop}\n"
                           "  - {name: y, scope: app, target: '*', when: 'nope > 1', then: none}\n")
    result = CliRunner().invoke(main, ["policy", "check", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path}/a.yaml:2:64: a host rule cannot decide 'stop'" in result.output
    column = "  - {name: y, scope: app, target: '*', when: 'nope > 1', then: none}".index("nope") + 1
    assert f"{tmp_path}/a.yaml:3:{column}: bad expression in rule 'y': unknown field 'nope'" in result.output
    assert "2 problems" in result.output


def test_the_default_policy_checks(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["policy", "check", "policies"])
    assert result.exit_code == 0, result.output
    assert "ok: 5 rules, 0 simulated metrics, period 15s" in result.output


def test_load_order_settings_and_targets(tmp_path):
    write(tmp_path,
          b_yaml="rules:\n  - {name: second, scope: service, target: [a, b], when: true, then: replicate}\n",
          a_yaml="settings:\n  period: 30s\n  streak: {stop: 5}\n  cooldown: {replicate: 2m}\n  fields: [queue]\n"
                 "rules:\n  - {name: first, scope: host, target: h1, priority: 3, when: 'queue > 1k', then: overwork}\n")
    policy = load_policy(tmp_path)
    assert [r.name for r in policy.rules] == ["first", "second"]
    assert [r.order for r in policy.rules] == [0, 1]
    first, second = policy.rules
    assert (first.scope, first.targets, first.priority, first.then) == (Scope.HOST, ("h1",), 3, Decision.OVERWORK)
    assert second.targets == ("a", "b")
    settings = policy.settings
    assert settings.period == 30
    assert settings.streak_for(Decision.STOP) == 5 and settings.streak_for(Decision.REPLICATE) == 2
    assert settings.cooldown_for(Decision.REPLICATE) == 120 and settings.cooldown_for(Decision.STOP) == 0
    assert len(policy.digest) == 12


def test_the_digest_changes_with_the_content(tmp_path):
    write(tmp_path, a_yaml="rules: []\n")
    before = load_policy(tmp_path).digest
    write(tmp_path, a_yaml="rules: []  # edited\n")
    assert load_policy(tmp_path).digest != before


@pytest.mark.parametrize("text, line, marker, phrase", [
    ("rules:\n  - {name: x, scope: host, target: '*', when: 5, then: none}\n", 2, "5,", "must be a string or true/false"),
    ("rules:\n  - {name: x, scope: host, target: '*', when: 'cpu > 1'}\n", 2, "{", "missing the required key 'then'"),
    ("rules:\n  - {name: x, scope: host, target: [], when: 'cpu > 1', then: none}\n", 2, "[]", "rules[0].target"),
    ("rules:\n  - {name: x, scope: host, target: ['*', a], when: 'cpu > 1', then: none}\n", 2, "[", "cannot be mixed"),
    ("rules:\n  - {name: x, scope: host, target: '*', when: 'cpu >= 1 and ram => 2', then: none}\n", 2, "=>",
     "unexpected character '='"),
    ("settings:\n  streak: {replicate: 0}\n", 2, "0}", "minimum"),
    ("settings:\n  streak: {jump: 1}\n", 2, "jump", "unknown key 'jump' in settings.streak"),
    ("settings:\n  period: 0s\n", 2, "0s", "longer than 0s"),
    ("simulated_metrics:\n  - {name: m, scope: host, target: '*', field: cpu, min: 5, max: 1}\n", 2, "1}",
     "smaller than min"),
    ("simulated_metrics:\n  - {name: m, scope: host, target: '*', field: wat, min: 1, max: 5}\n", 2, "wat",
     "unknown field"),
    ("- just a list\n", 1, "-", "must be a mapping"),
    ("rules:\n  - {name: x, scope: host, target: '*', when: 'cpu >\n    1 and', then: none}\n", 2, "'cpu",
     "expected a field"),
    ("rules: [\n", 2, "", "invalid YAML"),
], ids=lambda x: str(x)[:40])
def test_bad_policy_files(tmp_path, text, line, marker, phrase):
    """``marker`` is the text the error must point at, on ``line``."""
    write(tmp_path, p_yaml=text)
    with pytest.raises(InvalidSource) as raised:
        load_policy(tmp_path)
    problem = raised.value.problems[0]
    source = (text.splitlines() + [""])[line - 1]
    assert (problem.location.line, problem.location.column) == (line, source.index(marker) + 1), str(problem)
    assert phrase in str(problem)


def test_an_empty_directory_is_an_error(tmp_path):
    with pytest.raises(InvalidSource, match="no .yaml or .yml file"):
        load_policy(tmp_path)


def test_the_shipped_schema_is_valid_and_accepts_the_default_policy():
    from ruamel.yaml import YAML

    document_schema = schema("policy.schema.json")
    Draft202012Validator.check_schema(document_schema)
    validator = Draft202012Validator(document_schema)
    for file in sorted((ROOT / "policies").glob("*.yaml")):
        data = json.loads(json.dumps(YAML(typ="safe").load(file.read_text())))
        assert not list(validator.iter_errors(data)), file

"""A dry run over recorded samples decides exactly what `usm policy test` decides for the same samples.

Every policy test file of the default policy's suite is run twice: by the policy-test runner, and as a dry
run (the control loop with a replaying collector and the recording actuator). Every cycle's evaluations,
actions and suppressions must be the same, and so must each check's verdict.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from usm.actuators.recording import DRY_RUN, RecordingActuator
from usm.collectors.history import History
from usm.engine import Engine, InvalidSource
from usm.manager.loop import ControlLoop
from usm.manager.replay import ReplayCollector, policy_test_cycles
from usm.policytest.runner import _compare, run
from usm.policytest.testfile import load_test_file

ROOT = Path(__file__).resolve().parents[2]


def valid_test_files() -> list[Path]:
    files = []
    for path in sorted((ROOT / "policies" / "tests").glob("*.yaml")):
        try:
            load_test_file(path)
        except InvalidSource:
            continue
        files.append(path)
    return files


def decisions(cycle) -> tuple:
    evaluations = cycle.evaluations.select("entity", "decision", "rule", "level", "streak", "candidate").sort("entity")
    return (cycle.at, evaluations.rows(), [a.as_dict() for a in cycle.actions],
            [(s.entity, s.reason) for s in cycle.suppressed])


@pytest.mark.parametrize("path", valid_test_files(), ids=lambda p: p.name)
def test_a_dry_run_decides_what_the_policy_test_decides(path: Path):
    test = load_test_file(path)
    by_test = []
    run(test, on_cycle=lambda cycle: by_test.append(cycle))

    actuator = RecordingActuator()
    cycles = policy_test_cycles(test)
    by_dry_run = []
    with History() as history:
        loop = ControlLoop(Engine(test.policy), history, ReplayCollector(cycles), actuator)
        for recorded in cycles:
            by_dry_run.append(loop.run_cycle(recorded.at).cycle)

    assert len(by_dry_run) == len(by_test) > 0
    for mine, theirs in zip(by_dry_run, by_test, strict=True):
        assert decisions(mine) == decisions(theirs)
    for check in test.checks:
        cycle = next(c for c in by_dry_run if c.at == check.at)
        assert _compare(check, cycle) == []  # the suite passes under the policy-test runner, so here too


def test_the_dry_run_records_steps_and_touches_nothing():
    test = load_test_file(ROOT / "policies" / "tests" / "default_policy_test.yaml")
    actuator = RecordingActuator()
    cycles = policy_test_cycles(test)
    with History() as history:
        loop = ControlLoop(Engine(test.policy), history, ReplayCollector(cycles), actuator)
        reports = [loop.run_cycle(c.at) for c in cycles]
    acted = [a for r in reports for a in r.cycle.actions]
    assert acted, "the test file makes the engine act at least once"
    assert actuator.steps, "and placement planned steps for it"
    outcomes = [o for r in reports for o in r.outcomes if o is not None]
    assert outcomes and all(o.ok and o.detail == DRY_RUN for o in outcomes)
    assert isinstance(reports[0].cycle.evaluations, pl.DataFrame)

"""Backtesting: a run of the simulated world is recorded (decision log + stored history), then replayed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from usm.collectors.history import History
from usm.engine import Engine, load_policy
from usm.manager.backtest import Verdict, backtest, read_decision_log
from usm.manager.decisionlog import DecisionLog
from usm.manager.loop import ControlLoop
from usm.simulator.scenario import load_scenario
from usm.simulator.world import World

ROOT = Path(__file__).resolve().parents[2]
CYCLES = 40


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """40 cycles (10 minutes) of the Sock Shop demo under the default policy, recorded to files."""
    where = tmp_path_factory.mktemp("recorded")
    scenario = load_scenario("sock-shop")
    policy = load_policy(ROOT / "policies", period=scenario.tick)
    world = World(scenario, seed=7)
    with History(str(where / "history.duckdb")) as history, (where / "decisions.jsonl").open("w") as out:
        loop = ControlLoop(Engine(policy), history, world, world, DecisionLog(out))
        reports = [loop.run_cycle(i * scenario.tick) for i in range(CYCLES)]
    return where, policy, reports


def eager_replicas(tmp_path: Path) -> Path:
    """The default policy, but replicating any container that receives traffic at all."""
    candidate = tmp_path / "candidate"
    shutil.copytree(ROOT / "policies", candidate, ignore=shutil.ignore_patterns("tests"))
    services = candidate / "services.yaml"
    services.write_text(services.read_text().replace("when: rx_bytes_per_sec > 500k", "when: rx_bytes_per_sec > 0"))
    return candidate


def test_the_log_rebuilds_every_cycle_and_its_inventory(recorded):
    where, _, reports = recorded
    cycles = read_decision_log(where / "decisions.jsonl")
    assert [c.at for c in cycles] == [r.at for r in reports]
    for cycle, report in zip(cycles, reports, strict=True):
        assert cycle.inventory == report.observation.inventory
        decided = {e: Verdict(d, r) for e, d, r in report.cycle.evaluations.select("entity", "decision", "rule")
                   .iter_rows() if d != "none"}
        assert {e: v for e, v in cycle.verdicts.items() if v.decision != "none"} == decided


def test_the_policy_that_decided_finds_no_difference(recorded):
    where, policy, reports = recorded
    assert any(r.cycle.actions for r in reports), "the recorded run acted"
    result = backtest(policy, where / "decisions.jsonl", where / "history.duckdb")
    assert result.replayed == result.compared == CYCLES
    assert result.judged == sum(r.cycle.evaluations.height for r in reports)
    assert result.same, (result.differences[:5], result.action_differences[:5])
    assert result.recorded_policies == (policy.digest,)


def test_a_candidate_policy_shows_where_it_would_have_decided_otherwise(recorded, tmp_path):
    where, policy, reports = recorded
    new = load_policy(eager_replicas(tmp_path), period=policy.settings.period)
    start = reports[10].at
    result = backtest(new, where / "decisions.jsonl", where / "history.duckdb", start=start)
    assert result.compared == CYCLES - 10 and result.replayed > result.compared  # the warm-up ran first
    assert not result.same
    # Every container that received any traffic now wants a replica where the recorded run did not.
    receiving = {e for r in reports[10:] for e, rx in r.cycle.facts.select("entity", "rx_bytes_per_sec").iter_rows()
                 if rx is not None and rx > 0}
    changed = {d.entity for d in result.differences if d.candidate.rule == "replicate-on-rx"}
    assert changed and changed <= receiving
    assert all(d.at >= start for d in result.differences)


def test_a_log_without_cycles_is_refused_with_its_line(tmp_path):
    log = tmp_path / "old.jsonl"
    log.write_text('{"type":"action","at":0,"action":"stop","target":"x"}\n')
    with pytest.raises(ValueError, match=r"old.jsonl:1: a record of type action before any cycle record"):
        read_decision_log(log)


def test_the_command_prints_the_differences_and_exits_1(recorded, tmp_path):
    from click.testing import CliRunner

    from usm.manager.cli import main

    where, policy, _ = recorded
    candidate = eager_replicas(tmp_path)
    settings = candidate / "00-settings.yaml"
    settings.write_text(settings.read_text().replace("period: 15s", f"period: {policy.settings.period:g}s"))
    runner = CliRunner()
    differs = runner.invoke(main, ["policy", "backtest", "--policy", str(candidate), "--data", str(where),
                                   "--from", "150"])
    assert differs.exit_code == 1, differs.output
    assert "replicate (replicate-on-rx)" in differs.output and "differ on" in differs.output
    same = runner.invoke(main, ["policy", "backtest", "--policy", str(ROOT / "policies"), "--data", str(where)])
    assert same.exit_code == 0, same.output
    assert f"{CYCLES} cycles compared" in same.output and " 0 differ on 0 entities" in same.output
    missing = runner.invoke(main, ["policy", "backtest", "--policy", str(candidate), "--data", str(tmp_path)])
    assert missing.exit_code == 2 and "does not exist" in missing.output

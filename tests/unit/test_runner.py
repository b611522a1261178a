"""Live mode's runner on a virtual clock, over the simulator's world: hot reload, metrics, failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from usm.collectors.history import History
from usm.engine import Engine
from usm.manager.loop import ControlLoop
from usm.manager.metrics import ManagerMetrics
from usm.manager.reload import PolicyWatcher
from usm.manager.runner import LiveRunner
from usm.manager.scheduler import Scheduler
from usm.simulator.scenario import load_scenario
from usm.simulator.world import World

ROOT = Path(__file__).resolve().parents[2]


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    target.mkdir()
    for file in (ROOT / "policies").glob("*.yaml"):
        shutil.copy(file, target / file.name)
    return target


@pytest.fixture
def runner(policy_dir: Path):
    scenario = load_scenario("sock-shop")
    world = World(scenario, seed=1)
    watcher = PolicyWatcher(policy_dir)
    engine = Engine(watcher.load())
    clock = VirtualClock()
    with History() as history:
        loop = ControlLoop(engine, history, world, world)
        scheduler = Scheduler(engine.policy.settings.period, clock=clock, wait=clock.wait)
        yield LiveRunner(loop, watcher, scheduler, ManagerMetrics(), timer=clock)


def metric(runner: LiveRunner, name: str, **labels: str) -> float:
    value = runner.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def test_cycles_run_and_are_counted(runner):
    assert runner.run(cycles=3) == 3
    assert metric(runner, "usm_cycles_total", result="ok") == 3
    evaluated = sum(metric(runner, "usm_evaluations_total", decision=d)
                    for d in ("none", "replicate", "migrate", "stop", "overwork", "underwork"))
    assert evaluated == 3 * runner.last.cycle.evaluations.height
    assert metric(runner, "usm_cycle_duration_seconds_count") == 3


def test_a_broken_edit_keeps_the_policy_in_force_and_is_reported(runner, policy_dir):
    runner.run(cycles=1)
    before = runner.loop.engine.policy.digest
    (policy_dir / "services.yaml").write_text("rules:\n  - name: broken\n    scope: service\n    when: cpu >\n")
    runner.run(cycles=1)
    assert runner.loop.engine.policy.digest == before
    assert metric(runner, "usm_policy_reloads_total", result="invalid") == 1
    assert metric(runner, "usm_policy_edit_valid") == 0
    assert metric(runner, "usm_policy_info", digest=before) == 1
    runner.run(cycles=1)  # the same broken content is not reported again
    assert metric(runner, "usm_policy_reloads_total", result="invalid") == 1
    assert metric(runner, "usm_cycles_total", result="ok") == 3  # the cycles ran on the old policy


def test_a_valid_edit_is_in_force_from_the_next_cycle_with_its_period(runner, policy_dir):
    runner.run(cycles=1)
    settings = policy_dir / "00-settings.yaml"
    settings.write_text(settings.read_text().replace("period: 15s", "period: 30s"))
    before = runner.loop.engine.policy.digest
    runner.run(cycles=2)
    after = runner.loop.engine.policy
    assert after.digest != before and after.settings.period == 30.0
    assert runner.scheduler.period == 30.0
    assert metric(runner, "usm_policy_reloads_total", result="ok") == 1
    assert metric(runner, "usm_policy_info", digest=after.digest) == 1
    assert metric(runner, "usm_policy_info", digest=before) == 0


def test_a_failing_cycle_is_counted_and_the_next_runs(runner, monkeypatch):
    calls = {"n": 0}
    real = runner.loop.run_cycle

    def flaky(at: float):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the collector broke")
        return real(at)

    monkeypatch.setattr(runner.loop, "run_cycle", flaky)
    assert runner.run(cycles=2) == 2
    assert metric(runner, "usm_cycles_total", result="error") == 1
    assert metric(runner, "usm_cycles_total", result="ok") == 1

"""The app launcher on the simulated world and its virtual clock: waves start side by side and only once their
dependencies are ready; a failed start is either reported precisely or rolled back; stopping goes the other way.

World (start-up times in brackets): front (10 s) -> api (20 s, 2 replicas) -> db (30 s) and cache (5 s); waves
are [cache, db], [api], [front]: ready at 30 s, 50 s and 60 s.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from usm.geo.sphere import Coordinates
from usm.manager.launcher import AppLaunch, OnFailure, ReplicaState, launch_app, stop_app
from usm.placement.launch import LaunchRefused, plan_launch
from usm.placement.model import PlacementOptions
from usm.placement.plans import PlaceReplica, UseHost
from usm.simulator.launches import WorldClock, launch_plan, launch_specs
from usm.simulator.scenario import load_scenario
from usm.simulator.world import World

LISBON = Coordinates(38.72, -9.14)

WORLD = """\
name: launch
duration: 1h
tick: 15s
hosts:
  - {name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, cpu: 8, ram: 8Gi, disk: 64Gi}
  - {name: madrid, kind: edge, latitude: 40.42, longitude: -3.70, cpu: 8, ram: 8Gi, disk: 64Gi}
apps:
  - {name: shop, services: [front, api, db, cache]}
services:
  - {name: front, image: shop/front, memory: 256Mi, cpu_per_request: 0.002, start_time: 10s, dependencies: [api]}
  - {name: api, image: shop/api, memory: 256Mi, cpu_per_request: 0.002, start_time: 20s, min_replicas: 2,
     dependencies: [db, cache]}
  - {name: db, image: shop/db, memory: 1Gi, cpu_per_request: 0.001, start_time: 30s}
  - {name: cache, image: shop/cache, memory: 128Mi, cpu_per_request: 0.001, start_time: 5s}
workloads: []
faults: []
"""


def world(tmp_path: Path, faults: str = "[]", **changes: str) -> World:
    text = WORLD.replace("faults: []", f"faults: {faults}")
    for old, new in changes.items():
        text = text.replace(old, new)
    file = tmp_path / "launch.yaml"
    file.write_text(text)
    return World(load_scenario(file))


def launch(w: World, where=LISBON, one_by_one: bool = False, **options):
    plan = launch_plan(w.scenario, "shop", set())
    plan = plan.one_by_one() if one_by_one else plan
    return launch_app(plan, launch_specs(w), w, lambda _: w.cluster(), where, WorldClock(w), **options)


def starts(w: World) -> dict[str, float]:
    """Container -> when it was asked to start, from the world's log."""
    found = {}
    for at, words in w.log:
        if match := re.match(r"container (\S+) of \S+ is starting", words):
            found[match.group(1)] = at
    return found


def test_waves_start_side_by_side_each_once_its_dependencies_are_ready(tmp_path):
    w = world(tmp_path)
    report = launch(w)
    assert report.ok, report.summary()
    assert report.waves == (("cache", "db"), ("api",), ("front",))
    assert report.wave_ready_at == (30.0, 50.0, 60.0)
    assert report.duration == 60.0 and w.now == 60.0
    assert starts(w) == {"cache-1": 0.0, "db-1": 0.0, "api-1": 30.0, "api-2": 30.0, "front-1": 50.0}
    assert report.status("api").ready == ("api-1", "api-2")  # its minimum of 2, started together
    assert w.replicas() == {"front": 1, "api": 2, "db": 1, "cache": 1}
    assert {c["host"] for c in w.snapshot()["containers"]} == {"lisbon"}  # near Lisbon: placement chose it
    again = launch(w)  # what runs counts: launching again starts nothing and waits for nothing
    assert again.ok and again.duration == 0.0 and len(starts(w)) == 5


def test_one_by_one_takes_the_sum_of_the_start_up_times(tmp_path):
    w = world(tmp_path)
    report = launch(w, one_by_one=True)
    assert report.ok and report.duration == 5 + 30 + 20 + 10  # the waves took max(5, 30) + 20 + 10 = 60


def test_on_failure_report_keeps_what_started_and_says_what_runs_and_what_does_not(tmp_path):
    # Replicas go on lisbon and madrid in turn; madrid goes down while db starts on it.
    w = world(tmp_path, "[{at: 25s, kind: host_down, host: madrid}]")
    report = launch(w, ["lisbon", "madrid"])
    assert not report.ok
    assert report.failure == "replica db-1 of db stopped before it was ready"
    assert report.finished_at == 25.0
    assert report.status("cache").state == "ready" and report.status("cache").ready == ("cache-1",)
    assert report.status("db").state == "failed" and report.status("db").failures == ("db-1 stopped before it was ready",)
    assert report.in_state("not started") == ("api", "front")
    assert report.rolled_back == ()
    assert w.replica_state("cache-1", 25.0) is ReplicaState.READY  # kept
    assert "not started: api, front" in report.summary()


def test_on_failure_rollback_stops_what_the_launch_started_and_nothing_else(tmp_path):
    w = world(tmp_path, "[{at: 25s, kind: host_down, host: madrid}]")
    assert w.execute(PlaceReplica("cache", LISBON, UseHost("lisbon", 0.0)), 0.0).ok
    report = launch(w, ["madrid", "lisbon"], on_failure=OnFailure.ROLLBACK)  # db, the first to start, on madrid
    assert not report.ok and report.status("db").state == "failed"
    assert report.status("cache").ready == ("cache-1",)  # it ran before the launch: it stays
    assert w.replicas() == {"front": 0, "api": 0, "db": 0, "cache": 1}
    # With no replica running before, everything the launch started goes.
    w = world(tmp_path, "[{at: 25s, kind: host_down, host: madrid}]")
    report = launch(w, ["lisbon", "madrid"], on_failure=OnFailure.ROLLBACK)
    assert report.rolled_back == ("cache-1",) and report.status("cache").state == "rolled back"
    assert sum(w.replicas().values()) == 0
    assert "stopped again: cache-1" in report.summary()


def test_a_wave_not_ready_in_time_fails_the_launch(tmp_path):
    w = world(tmp_path)
    report = launch(w, timeout=12.0, poll=4.0)
    assert not report.ok
    assert report.failure == "wave 1 was not ready within 12s (db has 0 of 1 ready)"
    assert report.finished_at == 12.0
    db = report.status("db")
    assert db.state == "failed" and db.starting == ("db-1",) and db.failures == ("not ready within 12s",)
    assert report.status("cache").state == "ready"


def test_a_replica_no_host_can_take_or_the_world_refuses_fails_the_launch(tmp_path):
    # db needs more memory than any host has: placement would launch a cloud host, which this world cannot.
    w = world(tmp_path, **{"memory: 1Gi": "memory: 64Gi"})
    report = launch(w, on_failure=OnFailure.ROLLBACK)
    assert report.failure == ("a replica of db did not start: no instance type to launch (the scenario has no "
                              "instance_types)")
    assert report.rolled_back == ("cache-1",) and sum(w.replicas().values()) == 0
    report = launch(w, options=PlacementOptions(can_start_hosts=False, can_launch_hosts=False))
    assert report.failure.startswith("no replica of db could start: ")
    assert report.status("db").state == "failed" and report.status("cache").state == "starting"  # failed at 0 s
    report = launch(world(tmp_path), ["lisbon", "nowhere"])
    assert report.failure == "no replica of db could start: there is no host nowhere"


def test_a_cycle_or_a_missing_spec_is_refused_before_anything_starts(tmp_path):
    w = world(tmp_path)
    with pytest.raises(LaunchRefused, match="api -> db -> api"):
        plan_launch("shop", {"api": ("db",), "db": ("api",)})
    plan = launch_plan(w.scenario, "shop", set())
    with pytest.raises(LaunchRefused, match="no spec .* for db"):
        AppLaunch(plan, {k: v for k, v in launch_specs(w).items() if k != "db"}, w, lambda _: w.cluster(), LISBON,
                  0.0)
    assert sum(w.replicas().values()) == 0 and starts(w) == {}


def test_stopping_an_app_stops_dependents_first(tmp_path):
    w = world(tmp_path)
    launch(w)
    outcomes = stop_app(launch_plan(w.scenario, "shop", set()), w.cluster(), w, w.now)
    assert all(o.ok for o in outcomes) and sum(w.replicas().values()) == 0
    stopped = [m.group(1) for _, words in w.log if (m := re.match(r"container (\S+) stopped", words))]
    assert stopped == ["front-1", "api-1", "api-2", "cache-1", "db-1"]

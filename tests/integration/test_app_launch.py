"""Apps as a unit in whole simulations (the real engine, history, placement and control loop on the simulated
world's virtual clock): a catalogue app launched wave by wave, and event predictions raising a service's replicas
ahead of their window and letting them go after it."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from usm.catalog import catalog_app
from usm.engine import load_policy
from usm.simulator.run import simulate
from usm.simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies"

LAUNCH = """\
name: launch
duration: {duration}
tick: 15s
hosts:
  - {{name: frankfurt, kind: edge, latitude: 50.11, longitude: 8.68, cpu: 8, ram: 16Gi, disk: 200Gi}}
apps:
  - {{catalog: sock-shop}}
launches:
  - {{app: sock-shop, at: 2m, near: {{latitude: 50.11, longitude: 8.68}}, waves: {waves}}}
workloads:
  - {{name: users, service: sock-shop, latitude: 51.5, longitude: -0.12, profile: {{kind: constant, rate: 2}}}}
"""


def run(tmp_path: Path, text: str):
    file = tmp_path / "scenario.yaml"
    file.write_text(text)
    scenario = load_scenario(file)
    return simulate(scenario, load_policy(POLICY, period=scenario.tick))


def replicas(result, service: str) -> list[tuple[float, int]]:
    """(time, replicas) at each change of the service's replica count."""
    rows = result.replicas.filter(pl.col("service") == service).select("at", "replicas").rows()
    return [row for i, row in enumerate(rows) if i == 0 or row[1] != rows[i - 1][1]]


def test_a_catalogue_app_is_launched_wave_by_wave_and_nothing_starts_before(tmp_path):
    result = run(tmp_path, LAUNCH.format(duration="6m", waves="parallel"))
    (report,) = result.launches
    plan = catalog_app("sock-shop").launch_plan()
    assert report.ok and report.waves == plan.waves
    # Waves are ready when their slowest service is: catalogue-db 20 s, carts 45 s, orders 45 s, front end 10 s.
    assert report.started_at == 120.0 and report.wave_ready_at == (140.0, 185.0, 230.0, 240.0)
    first_seen = {service: next((at for at, n in replicas(result, service) if n), None)
                  for service in plan.services}
    assert all(at is not None and at >= 120.0 for at in first_seen.values()), first_seen  # the loop waited
    for service in plan.services:
        for dep in catalog_app("sock-shop").service_by_name[service].dependencies:
            assert first_seen[dep] < first_seen[service]  # ticks every 15 s see each wave apart
    final = {c["service"] for c in result.final["containers"]}
    assert final == set(plan.services)


def test_one_by_one_the_same_launch_takes_the_sum_of_the_start_up_times(tmp_path):
    (report,) = run(tmp_path, LAUNCH.format(duration="8m", waves="one_by_one")).launches
    total = sum(s.start_time for s in catalog_app("sock-shop").services)
    assert report.ok and report.duration == total == 252.0  # against 120 s in four waves


PREDICTION = """\
name: prediction
duration: 40m
tick: 15s
start_date: 2026-11-27
hosts:
  - {name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, cpu: 8, ram: 8Gi, disk: 64Gi}
services:
  - {name: front, image: shop/front, memory: 256Mi, cpu_per_request: 0.002, start_time: 10s}
  - {name: report, image: shop/report, memory: 256Mi, cpu_per_request: 0.002, start_time: 45s}
containers:
  - {name: front-1, service: front, host: lisbon}
  - {name: report-1, service: report, host: lisbon}
predictions:
  - {name: month-end, service: report, start: 2026-11-27 00:10, end: 2026-11-27 00:20, min_replicas: 3}
workloads:
  - {name: users, service: front, latitude: 38.7, longitude: -9.1, profile: {kind: constant, rate: 5}}
"""


def test_a_prediction_raises_replicas_its_start_up_time_early_and_releases_them_when_it_closes(tmp_path):
    result = run(tmp_path, PREDICTION)
    changes = replicas(result, "report")
    # The window opens at 10 min; report takes 45 s to start, so its replicas are asked for from 9 min 15 s
    # (555 s, a tick) and run when the window opens. It closes at 20 min: the idle replicas are the policy's
    # again, and stop-idle-container stops them (one per cooldown of 5 min) down to the service's own minimum.
    assert changes == [(0.0, 1), (555.0, 3), (1200.0, 2), (1500.0, 1)]
    running = result.timeline.filter(pl.col("at") == 600.0)["containers_running"][0]
    assert running == 4  # front-1 and all three replicas of report run when the window opens
    stops = result.actions.filter(pl.col("action") == "stop")
    assert stops["at"].to_list() == [1200.0, 1500.0] and set(stops["target"]) == {"report"}
    assert replicas(result, "front") == [(0.0, 1)]

"""Whole simulations: the real engine, history, placement and control loop on a simulated world."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import polars as pl

from usm.engine import load_policy
from usm.simulator.run import simulate
from usm.simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies"

SMALL_WORLD = """
name: {name}
duration: {duration}
tick: 15s
seed: 3
hosts:
  - {{name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, cpu: 4, ram: 1Gi, disk: 64Gi, start_time: 30s}}
  - {{name: madrid, kind: edge, latitude: 40.42, longitude: -3.70, cpu: 4, ram: 1Gi, disk: 64Gi, start_time: 30s}}
  - {{name: paris, kind: edge, latitude: 48.86, longitude: 2.35, cpu: 4, ram: 1Gi, disk: 64Gi, start_time: 30s}}
apps:
  - {{name: shop, services: [front, stock]}}
services:
  - {{name: front, image: shop/front, memory: 256Mi, cpu_per_request: 0.002, start_time: 10s, min_replicas: 2,
     dependencies: [stock]}}
  - {{name: stock, image: shop/stock, memory: 256Mi, cpu_per_request: 0.001, start_time: 10s}}
containers:
  - {{name: front-1, service: front, host: lisbon}}
  - {{name: front-2, service: front, host: madrid}}
  - {{name: stock-1, service: stock, host: lisbon}}
workloads:
  - {{name: users, service: front, latitude: 40.0, longitude: -5.0, profile: {{kind: constant, rate: 20}}}}
faults:
{faults}
"""


def small_world(tmp_path: Path, name: str, faults: str, duration: str = "10m"):
    file = tmp_path / f"{name}.yaml"
    file.write_text(SMALL_WORLD.format(name=name, duration=duration, faults=faults))
    return load_scenario(file)


def run(scenario, out: Path | None = None, seed: int | None = None):
    return simulate(scenario, load_policy(POLICY, period=scenario.tick), seed=seed, out=out)


def containers_by_host(snapshot: dict) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for c in snapshot["containers"]:
        result.setdefault(c["host"], []).append(c["service"])
    return result


def test_the_same_scenario_and_seed_give_a_byte_identical_decision_log(tmp_path):
    scenario = replace(load_scenario("edge-flash-crowd"), duration=40 * 60.0)
    first, second = run(scenario, tmp_path / "a"), run(scenario, tmp_path / "b")
    digests = [hashlib.sha256(s.decisions.read_bytes()).hexdigest() for s in (first, second)]
    lines = [len(s.decisions.read_text().splitlines()) for s in (first, second)]
    assert digests[0] == digests[1]
    assert lines[0] == lines[1] > 0
    assert first.actions.equals(second.actions) and first.timeline.equals(second.timeline)
    other = run(scenario, tmp_path / "c", seed=scenario.seed + 1)
    assert hashlib.sha256(other.decisions.read_bytes()).hexdigest() != digests[0]  # the seed matters


def test_a_flash_crowd_far_away_brings_a_replica_towards_it(tmp_path):
    scenario = replace(load_scenario("edge-flash-crowd"), duration=50 * 60.0)
    result = run(scenario, tmp_path)
    replicated = result.actions.filter(pl.col("action") == "replicate")
    assert replicated.height >= 1
    # The crowd starts at 20 min, 3,380 km from the only replica in Lisbon, and grows for 5 minutes.
    distance = dict(result.timeline.select("at", "mean_distance_km").iter_rows())
    when_it_came = max(distance[at] for at in distance if 20 * 60 <= at <= 26 * 60)
    assert when_it_came > 2000
    assert distance[50 * 60.0] < 0.5 * when_it_came
    lisbon = (38.7223, -9.1393)
    served_from = {c["host"] for c in result.final["containers"] if c["service"] == "live-scores"}
    hosts = {h["name"]: h for h in result.final["hosts"]}
    assert any(hosts[h]["latitude"] > 50 for h in served_from), served_from  # north of Lisbon, towards Tampere
    assert (hosts["lisbon"]["latitude"], hosts["lisbon"]["longitude"]) == lisbon


def test_a_crashed_container_is_restored(tmp_path):
    scenario = small_world(tmp_path, "crash", "  - {at: 3m, kind: container_crash, service: stock}")
    result = run(scenario, tmp_path / "out")
    replicas = result.replicas.filter(pl.col("service") == "stock")
    at = dict(replicas.select("at", "replicas").iter_rows())
    assert at[3 * 60.0 - 15] == 1
    assert at[10 * 60.0] == 1  # restored
    log = (tmp_path / "out" / "decisions.jsonl").read_text()
    assert '"why":"recovery of stock-1 (stock)"' in log
    assert all(c["name"] != "stock-1" for c in result.final["containers"])
    assert result.actions.filter(pl.col("action") == "underwork").is_empty()  # the world is not idle


def test_a_host_that_goes_down_has_its_containers_placed_elsewhere(tmp_path):
    scenario = small_world(tmp_path, "down", "  - {at: 3m, kind: host_down, host: lisbon}")
    result = run(scenario, tmp_path / "out")
    placed = containers_by_host(result.final)
    assert "lisbon" not in placed
    assert sorted(s for services in placed.values() for s in services) == ["front", "front", "stock"]
    lisbon = next(h for h in result.final["hosts"] if h["name"] == "lisbon")
    assert lisbon["state"] == "stopped"


TWO_REGIONS = """
name: support
duration: 12m
tick: 15s
seed: 5
hosts:
  - {name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, cpu: 8, ram: 4Gi, disk: 64Gi}
  - {name: boston, kind: edge, latitude: 42.36, longitude: -71.06, cpu: 8, ram: 4Gi, disk: 64Gi}
apps:
  - {name: shop, services: [front]}
services:
  - {name: front, image: shop/front, memory: 256Mi, cpu_per_request: 0.001, min_replicas: 2, max_replicas: 2}
containers:
  - {name: front-1, service: front, host: lisbon}
  - {name: front-2, service: front, host: boston}
workloads:
  - {name: users, service: front, latitude: 40.0, longitude: -30.0, profile: {kind: constant, rate: 5}}
faults:
  - {at: 1m, kind: host_down, host: boston}
"""


def test_support_components_follow_the_regions_containers(tmp_path):
    """Registry, load balancer and worker start in each region with containers; when boston goes down and its
    replica is restored in Lisbon, North America's stop five minutes later."""
    file = tmp_path / "support.yaml"
    file.write_text(TWO_REGIONS)
    result = run(load_scenario(file), tmp_path / "out")
    support = dict(result.timeline.select("at", "support_components").iter_rows())
    assert support[0.0] == 6  # two regions x three components
    records = [json.loads(line) for line in (tmp_path / "out" / "decisions.jsonl").read_text().splitlines()]
    events = [(r["at"], r["event"]["type"], r["event"]["region"]) for r in records if r["type"] == "support"]
    started = {region for _, kind, region in events if kind == "StartSupport"}
    assert len(started) == 2
    emptied = min(at for at, kind, _ in events if kind == "ArmSupportStop")
    stopped = [(at, region) for at, kind, region in events if kind == "StopSupport"]
    assert len(stopped) == 1 and stopped[0][0] >= emptied + 300 and stopped[0][1] != "europe"
    assert support[stopped[0][0]] == 3
    assert all(count == 6 for at, count in support.items() if at < stopped[0][0])

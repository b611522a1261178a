"""Scenario files: the bundled ones load, every kind of mistake is reported at FILE:LINE:COLUMN."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from usm.engine.yamldoc import InvalidSource, schema
from usm.placement.model import HostKind, HostState
from usm.simulator.scenario import (
    FaultKind,
    bundled_scenario,
    bundled_scenarios,
    callers_first,
    load_scenario,
)
from usm.simulator.workload import Diurnal, FlashCrowd, Ramp
from usm.simulator.world import World

# A small valid scenario; each case below changes one line of it. Line numbers matter: keep them in sync.
VALID = """\
name: tiny
duration: 1h
tick: 15s
seed: 3
policy: rules
instance_types:
  t3.medium: {cpu: 2, ram: 4Gi, disk: 20Gi, price_per_hour: 0.0416, boot_time: 90s}
hosts:
  - {name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, cpu: 4, ram: 8Gi, disk: 64Gi}
  - {name: london, kind: cloud, instance_type: t3.medium, cloud_region: eu-west-2}
services:
  - {name: web, image: demo/web, memory: 256Mi, cpu_per_request: 0.01, dependencies: [db]}
  - {name: db, image: demo/db, memory: 1Gi, cpu_per_request: 0.002}
containers:
  - {name: web-1, service: web, host: lisbon}
  - {name: db-1, service: db, host: london}
workloads:
  - name: porto
    service: web
    latitude: 41.15
    longitude: -8.61
    profile: {kind: constant, rate: 10}
faults:
  - {at: 10m, kind: container_crash, container: web-1}
"""


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSource) as caught:
        load_scenario(path)
    return [(str(p.location), p.message) for p in caught.value.problems]


def changed(line: int, new: str) -> str:
    lines = VALID.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


# (id, line to replace, its new text, the text the problem points at, phrase in the message). The expected
# column is where that text starts on the line; "{" points at a mapping that misses a key.
INVALID = [
    ("unknown-key", 4, "sed: 3", "sed", "unknown key 'sed'"),
    ("bad-duration", 3, "tick: 15sec", "15sec", "'15sec' is not a valid duration"),
    ("duration-without-unit", 2, "duration: 3600", "3600", "must be a duration"),
    ("zero-tick", 3, "tick: 0s", "0s", "longer than 0s"),
    ("tick-longer-than-duration", 3, "tick: 2h", "2h", "longer than the duration"),
    ("unknown-service-in-container", 15, "  - {name: web-1, service: wbe, host: lisbon}", "wbe",
     "unknown service 'wbe'"),
    ("unknown-host-in-container", 15, "  - {name: web-1, service: web, host: lisbn}", "lisbn",
     "unknown host 'lisbn'"),
    ("dependency-cycle", 13,
     "  - {name: db, image: demo/db, memory: 1Gi, cpu_per_request: 0.002, dependencies: [web]}", "web]",
     "dependency cycle: web -> db -> web"),
    ("self-dependency", 13,
     "  - {name: db, image: demo/db, memory: 1Gi, cpu_per_request: 0.002, dependencies: [db]}", "db]",
     "service 'db' depends on itself"),
    ("unknown-dependency", 12,
     "  - {name: web, image: demo/web, memory: 256Mi, cpu_per_request: 0.01, dependencies: [dbs]}", "dbs",
     "unknown service 'dbs'"),
    ("bad-size", 12, "  - {name: web, image: demo/web, memory: 256MB, cpu_per_request: 0.01, dependencies: [db]}",
     "256MB", "'256MB' is not valid for services[0].memory"),
    ("unknown-instance-type", 10, "  - {name: london, kind: cloud, instance_type: t9.huge, cloud_region: eu-west-2}",
     "t9.huge", "unknown instance type 't9.huge'"),
    ("unknown-cloud-region", 10, "  - {name: london, kind: cloud, instance_type: t3.medium, cloud_region: eu-west-9}",
     "eu-west-9", "unknown cloud region 'eu-west-9'"),
    ("cloud-host-with-coordinates", 10,
     "  - {name: london, kind: cloud, instance_type: t3.medium, cloud_region: eu-west-2, latitude: 51}",
     "latitude", "a cloud host has no 'latitude'"),
    ("edge-host-without-cpu", 9,
     "  - {name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, ram: 8Gi, disk: 64Gi}", "{",
     "missing the required key 'cpu'"),
    ("latitude-out-of-range", 20, "    latitude: 141.15", "141.15", "141.15"),
    ("unknown-profile-kind", 22, "    profile: {kind: spiky, rate: 10}", "spiky", "'spiky' is not allowed"),
    ("constant-without-rate", 22, "    profile: {kind: constant}", "{", "missing the required key 'rate'"),
    ("key-of-another-profile", 22, "    profile: {kind: constant, rate: 10, peak: 20}", "peak",
     "a constant profile has no 'peak'"),
    ("unknown-container-in-fault", 24, "  - {at: 10m, kind: container_crash, container: web-9}", "web-9",
     "unknown container 'web-9'"),
    ("host-fault-without-host", 24, "  - {at: 10m, kind: host_down}", "{", "missing the required key 'host'"),
    ("duplicate-host-name", 10, "  - {name: lisbon, kind: cloud, instance_type: t3.medium, cloud_region: eu-west-2}",
     "lisbon", "duplicate host or container name 'lisbon'"),
    ("container-named-like-a-host", 16, "  - {name: london, service: db, host: london}", "london",
     "duplicate host or container name 'london'"),
    ("missing-policy", 5, "policy: no-such-rules", "no-such-rules", "no such policy"),
]


@pytest.mark.parametrize(("line", "text", "token", "phrase"), [pytest.param(*case[1:], id=case[0]) for case in INVALID])
def test_problems_at_file_line_column(tmp_path, line, text, token, phrase):
    path = write(tmp_path, changed(line, text))
    found = problems_of(path)
    expected = f"{path}:{line}:{text.index(token) + 1}"
    assert [message for where, message in found if where == expected and phrase in message], found


def test_only_the_broken_definition_is_reported(tmp_path):
    """A host with a problem of its own does not also make its containers' and faults' references unknown."""
    text = changed(10, "  - {name: london, kind: cloud, instance_type: t3.medium, cloud_region: eu-west-9}")
    assert len(problems_of(write(tmp_path, text))) == 1


def test_every_problem_is_reported_at_once(tmp_path):
    text = changed(3, "tick: 2h").replace("service: web, host: lisbon", "service: wbe, host: lisbn")
    messages = [m for _, m in problems_of(write(tmp_path, text))]
    assert any("longer than the duration" in m for m in messages)
    assert any("wbe" in m for m in messages) and any("lisbn" in m for m in messages)


def test_invalid_yaml_is_reported_where_it_breaks(tmp_path):
    path = write(tmp_path, changed(4, "seed: [3"))
    (where, message), *_ = problems_of(path)
    assert where.startswith(f"{path}:") and "invalid YAML" in message


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path):
    assert "no such scenario file" in problems_of(tmp_path / "nothing.yaml")[0][1]


class TestLoaded:
    @pytest.fixture
    def scenario(self, tmp_path):
        return load_scenario(write(tmp_path, VALID))

    def test_units(self, scenario):
        assert (scenario.duration, scenario.tick, scenario.seed, scenario.ticks) == (3600.0, 15.0, 3, 241)
        web = scenario.service_by_name["web"]
        assert web.memory == 256 * 2**20
        assert web.dependencies == ("db",)
        assert (web.min_replicas, web.max_replicas, web.start_time) == (1, 0, 5.0)

    def test_hosts(self, scenario):
        lisbon, london = scenario.hosts
        assert (lisbon.kind, lisbon.region, lisbon.total.ram, lisbon.price_per_hour) == \
            (HostKind.EDGE, "europe", 8 * 2**30, 0.0)
        assert (london.kind, london.cloud_region, london.region, london.state) == \
            (HostKind.CLOUD, "eu-west-2", "europe", HostState.RUNNING)
        assert (london.location.latitude, london.boot_time, london.price_per_hour) == (51.516689, 90.0, 0.0416)
        assert london.total.cpu == 2

    def test_policy_is_relative_to_the_file(self, scenario, tmp_path):
        assert scenario.policy == (tmp_path / "rules").resolve()

    def test_launch_defaults_to_the_first_instance_type(self, scenario):
        assert scenario.launch_type is not None and scenario.launch_type.name == "t3.medium"

    def test_faults(self, scenario):
        (fault,) = scenario.faults
        assert (fault.at, fault.kind, fault.container) == (600.0, FaultKind.CONTAINER_CRASH, "web-1")

    def test_callers_come_first(self, scenario):
        assert scenario.service_order == ("web", "db")


def test_diurnal_offset_defaults_to_solar_time(tmp_path):
    text = VALID.replace("{kind: constant, rate: 10}", "{kind: diurnal, peak: 10, trough: 1, peak_at: 20}")
    (source,) = load_scenario(write(tmp_path, text)).workloads
    assert isinstance(source.profile, Diurnal)
    assert source.profile.utc_offset == pytest.approx(-8.61 / 15)


def test_profile_durations_are_parsed(tmp_path):
    text = VALID.replace("{kind: constant, rate: 10}",
                         "{kind: flash_crowd, base: 1, peak: 9, start: 20m, rise: 5m, hold: 1h, fall: 90s}")
    (source,) = load_scenario(write(tmp_path, text)).workloads
    assert source.profile == FlashCrowd(1, 9, 1200, 300, 3600, 90)


@pytest.mark.parametrize("order", [
    pytest.param({"a": ("b", "c"), "b": ("c",), "c": ()}, id="chain"),
    pytest.param({"z": (), "y": ("z",), "x": ("z",)}, id="diamond-roots-by-name"),
])
def test_callers_first_puts_every_caller_before_its_dependencies(order):
    result = callers_first(order)
    assert sorted(result) == sorted(order)
    for service, deps in order.items():
        assert all(result.index(service) < result.index(d) for d in deps)


def test_callers_first_refuses_a_cycle():
    with pytest.raises(ValueError, match="cycle among: a, b"):
        callers_first({"a": ("b",), "b": ("a",), "c": ()})


def test_the_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(schema("scenario.schema.json", "usm.simulator"))


@pytest.mark.parametrize("name", ["sock-shop", "online-boutique", "edge-flash-crowd"])
def test_bundled_scenarios_load_and_run(name):
    assert name in bundled_scenarios()
    scenario = load_scenario(bundled_scenario(name))
    assert scenario.name == name and scenario.tick == 15.0
    world = World(scenario)
    observation = world.observe(0.0)
    assert observation.samples.height > 0
    assert world.kpis(scenario.tick)["requests_per_sec"] > 0


def test_sock_shop_follows_the_original_k6_test():
    scenario = load_scenario("sock-shop")
    assert len(scenario.services) == 13
    assert scenario.service_by_name["sock-shop"].memory == 200 * 2**20
    london, portland = scenario.workloads
    for source in (london, portland):
        assert isinstance(source.profile, Ramp)
        assert [(s.duration, s.target) for s in source.profile.stages] == \
            [(60, 1), (90, 100), (120, 100), (90, 1), (60, 1)]
    assert round(london.location.latitude) == 52 and round(portland.location.longitude) == -123


def test_flash_crowd_is_far_from_the_only_replica():
    scenario = load_scenario("edge-flash-crowd")
    replicas = [c for c in scenario.containers if c.service == "live-scores"]
    crowd = next(w for w in scenario.workloads if isinstance(w.profile, FlashCrowd))
    assert len(replicas) == 1
    host = next(h for h in scenario.hosts if h.name == replicas[0].host)
    from usm.geo.sphere import distance_m
    assert distance_m(host.location, crowd.location) > 3_000_000
    assert not math.isinf(scenario.duration)

"""Scenario sections for apps as a unit: catalogue apps, event predictions, app launches; every mistake located."""

from __future__ import annotations

from pathlib import Path

import pytest

from usm.catalog import catalog_app
from usm.engine.yamldoc import InvalidSource
from usm.simulator.scenario import load_scenario

# Each case below changes one line of this; line numbers matter.
VALID = """\
name: apps
duration: 1h
tick: 15s
start_date: 2026-11-27
hosts:
  - {name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, cpu: 8, ram: 16Gi, disk: 64Gi}
apps:
  - {catalog: sock-shop, cpu_per_request: 0.003}
  - {name: tools, services: [report]}
services:
  - {name: report, image: demo/report, memory: 256Mi, cpu_per_request: 0.01, dependencies: [sock-shop-orders]}
predictions:
  - {name: black-friday, service: sock-shop-carts, start: 2026-11-27 09:00, end: 2026-11-27 21:00, min_replicas: 4}
  - {name: weekly-report, service: report, start: 2026-11-27 23:00:00, end: 2026-11-28T01:00+00:00, weekly: true, min_replicas: 2}
launches:
  - {app: tools, at: 10m, hosts: [lisbon]}
  - {app: sock-shop, at: 0s, near: {latitude: 38.72, longitude: -9.14}, waves: one_by_one, on_failure: rollback}
workloads:
  - {name: users, service: sock-shop, latitude: 38.7, longitude: -9.1, profile: {kind: constant, rate: 5}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "apps.yaml"
    path.write_text(text)
    return path


def test_the_valid_scenario_loads_with_the_catalogue_app_its_predictions_and_launches(tmp_path):
    scenario = load_scenario(write(tmp_path, VALID))
    shop = catalog_app("sock-shop")
    assert [a.name for a in scenario.apps] == ["sock-shop", "tools"]
    assert scenario.apps[0].services == tuple(s.name for s in shop.services)
    carts = scenario.service_by_name["sock-shop-carts"]
    assert (carts.memory, carts.start_time, carts.cpu_per_request) == (250 * 2**20, 45.0, 0.003)
    assert carts.dependencies == ("sock-shop-carts-db",)
    assert len(scenario.services) == 14
    sale, report = scenario.predictions
    assert (sale.service, sale.window.start, sale.window.end, sale.window.min_replicas) == \
        ("sock-shop-carts", 9 * 3600.0, 21 * 3600.0, 4)
    assert (report.window.start, report.window.end, report.window.weekly) == (23 * 3600.0, 25 * 3600.0, True)
    assert [(launch.app, launch.at) for launch in scenario.launches] == [("sock-shop", 0.0), ("tools", 600.0)]
    shop_launch = scenario.launches[0]
    assert shop_launch.one_by_one and shop_launch.on_failure == "rollback" and shop_launch.hosts == ()
    assert scenario.launches[1].hosts == ("lisbon",) and scenario.launches[1].near is None


CASES = [
    ("unknown-catalogue-app", 8, "  - {catalog: sock-socks}", "no app 'sock-socks' in the catalogue"),
    ("catalogue-app-with-services", 8, "  - {catalog: sock-shop, services: [report]}",
     "a catalogue app has no 'services'"),
    ("cpu-of-a-plain-app", 9, "  - {name: tools, services: [report], cpu_per_request: 0.1}",
     "only a catalogue app has 'cpu_per_request'"),
    ("clash-with-the-catalogue", 11,
     "  - {name: sock-shop-user, image: demo/report, memory: 256Mi, cpu_per_request: 0.01}",
     "service 'sock-shop-user' is already defined by a catalogue app"),
    ("prediction-of-an-unknown-service", 13,
     "  - {name: black-friday, service: socks, start: 2026-11-27 09:00, end: 2026-11-27 21:00, min_replicas: 4}",
     "unknown service 'socks'"),
    ("prediction-bad-date", 13,
     "  - {name: black-friday, service: report, start: 2026-11-31 09:00, end: 2026-11-27 21:00, min_replicas: 4}",
     "'2026-11-31 09:00' is not a date and time"),
    ("prediction-not-a-date", 13,
     "  - {name: black-friday, service: report, start: tomorrow, end: 2026-11-27 21:00, min_replicas: 4}",
     "'tomorrow' is not valid for predictions[0].start"),
    ("prediction-ends-first", 13,
     "  - {name: black-friday, service: report, start: 2026-11-27 09:00, end: 2026-11-27 08:00, min_replicas: 4}",
     "the window ends before it starts"),
    ("prediction-week-long", 14, ("  - {name: weekly-report, service: report, start: 2026-11-27 23:00, "
                                  "end: 2026-12-04 23:00, weekly: true, min_replicas: 2}"),
     "a weekly window must last less than a week"),
    ("launch-near-and-hosts", 16, "  - {app: tools, at: 10m, hosts: [lisbon], near: {latitude: 1, longitude: 2}}",
     "a launch gives either near (a place) or hosts"),
    ("launch-unknown-app", 16, "  - {app: toolz, at: 10m, hosts: [lisbon]}", "unknown app 'toolz'"),
    ("launch-unknown-host", 16, "  - {app: tools, at: 10m, hosts: [lisbon, porto]}", "unknown host 'porto'"),
    ("launch-too-late", 16, "  - {app: tools, at: 2h, hosts: [lisbon]}", "the launch comes after the end"),
    ("launch-before-its-dependency", 16, "  - {app: tools, at: 0s, hosts: [lisbon]}",
     "'report' depends on 'sock-shop-orders', which is neither a service of the app nor running"),
    ("launch-twice", 17, "  - {app: tools, at: 20m, hosts: [lisbon]}", "app 'tools' is launched twice"),
    ("launch-bad-waves", 16, "  - {app: tools, at: 10m, hosts: [lisbon], waves: all}",
     "'all' is not allowed for launches[0].waves"),
]


@pytest.mark.parametrize(("case", "line", "replacement", "message"), CASES, ids=[c[0] for c in CASES])
def test_every_mistake_is_reported_at_its_line(tmp_path, case, line, replacement, message):
    lines = VALID.splitlines()
    lines[line - 1] = replacement
    with pytest.raises(InvalidSource) as caught:
        load_scenario(write(tmp_path, "\n".join(lines) + "\n"))
    found = [(p.location.line, p.message) for p in caught.value.problems]
    assert any(at == line and message in text for at, text in found), found


def test_a_scenario_may_have_only_catalogue_services(tmp_path):
    text = VALID.replace("  - {name: tools, services: [report]}\n", "").split("services:\n  - {name: report")[0]
    text += "workloads: []\n"
    scenario = load_scenario(write(tmp_path, text))
    assert len(scenario.services) == 13 and scenario.launches == () and scenario.predictions == ()
    with pytest.raises(InvalidSource, match="a launch gives either"):
        load_scenario(write(tmp_path, text + "launches:\n  - {app: sock-shop, at: 0s}\n"))

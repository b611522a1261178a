"""Launch plans: the waves of each demo app against its dependency graph, refusals that name the culprit, stop
order; and the catalogue files themselves (the five apps of original-system §2.8, located errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from usm.catalog import catalog, catalog_app, catalog_names, load_app
from usm.engine.yamldoc import InvalidSource
from usm.placement.launch import LaunchRefused, find_cycle, plan_launch

MiB = 2**20


def dependencies_of(name: str) -> dict[str, tuple[str, ...]]:
    return {s.name: s.dependencies for s in catalog_app(name).services}


@pytest.mark.parametrize("name", catalog_names())
def test_each_demo_app_starts_every_service_after_all_its_dependencies_in_maximal_waves(name):
    graph = dependencies_of(name)
    plan = plan_launch(name, graph)
    assert sorted(plan.services) == sorted(graph)  # every service, once
    wave = {service: plan.wave_of(service) for service in graph}
    for service, deps in graph.items():
        assert all(wave[d] < wave[service] for d in deps), f"{service} starts before one of {deps}"
        # maximal: no service waits longer than it must, so one dependency is in the wave just before
        expected = 1 + max((wave[d] for d in deps), default=-1)
        assert wave[service] == expected, f"{service} could start in wave {expected + 1}"
    assert all(list(w) == sorted(w) for w in plan.waves)  # stable order within a wave


def test_sock_shop_starts_in_four_waves_databases_and_queue_first():
    plan = catalog_app("sock-shop").launch_plan()
    assert plan.waves[0] == ("sock-shop-carts-db", "sock-shop-catalogue-db", "sock-shop-orders-db",
                             "sock-shop-payment", "sock-shop-rabbitmq", "sock-shop-user-db")
    assert plan.waves[-2:] == (("sock-shop-orders",), ("sock-shop",))  # orders waits for shipping
    assert plan.stop_order()[0] == ("sock-shop",) and plan.stop_order()[-1] == plan.waves[0]
    assert plan.one_by_one().waves == tuple((s,) for s in plan.services)


def test_a_cycle_is_refused_naming_it():
    graph = {"web": ("api",), "api": ("db", "cache"), "cache": ("web",), "db": ()}
    with pytest.raises(LaunchRefused, match=r"'shop' .* cycle, api -> cache -> web -> api"):
        plan_launch("shop", graph)
    assert find_cycle({"a": ("a",)}) == ["a", "a"]
    assert find_cycle(dependencies_of("media")) == []


def test_a_missing_dependency_is_refused_unless_it_runs_already():
    graph = {"web": ("api", "auth"), "api": ("db",)}
    with pytest.raises(LaunchRefused) as refused:
        plan_launch("shop", graph)
    message = str(refused.value)
    assert "'web' depends on 'auth'" in message and "'api' depends on 'db'" in message
    assert "add 'auth', 'db' to the app, or start it first" in message
    plan = plan_launch("shop", graph, running={"auth", "db"})
    assert plan.waves == (("api",), ("web",))  # dependencies that run already are not waited for


def test_the_five_demo_apps_have_the_services_of_the_original_seed():
    counts = {app.name: len(app.services) for app in catalog()}
    assert counts == {"sock-shop": 13, "online-boutique": 12, "hotel-reservation": 17, "media": 32,
                      "social-network": 29}
    shop = catalog_app("sock-shop").service_by_name
    front = shop["sock-shop"]  # the front end is named after the app (§2.8)
    assert (front.kind, front.external_port, front.internal_port, front.memory) == ("frontend", 8079, 8079, 200 * MiB)
    assert (shop["sock-shop-user-db"].external_port, shop["sock-shop-user-db"].internal_port) == (15017, 27017)
    assert shop["sock-shop-shipping"].dependencies == ("sock-shop-rabbitmq",)
    for app in catalog():
        for service in app.services:
            assert service.image == f"usmanager/{service.name}" or service.name == app.name
            assert service.memory > 0 and service.start_time > 0


CYCLIC = """\
name: loop
services:
  - {name: web, kind: frontend, image: x/web, memory: 64Mi, start_time: 3s, dependencies: [api]}
  - {name: api, kind: backend, image: x/api, memory: 64Mi, start_time: 3s, dependencies: [web, nowhere]}
  - {name: api, kind: backend, image: x/api, memory: 64Mi, start_time: 3s}
"""


def problems_in(tmp_path: Path, text: str) -> set[tuple[int, int, str]]:
    path = tmp_path / "app.yaml"
    path.write_text(text)
    with pytest.raises(InvalidSource) as caught:
        load_app(path)
    return {(p.location.line, p.location.column, p.message) for p in caught.value.problems}


def test_a_broken_catalogue_file_is_refused_with_every_problem_located(tmp_path: Path):
    found = problems_in(tmp_path, CYCLIC)
    assert (4, 91, "dependency cycle: api -> web -> api") in found
    assert (4, 96, "unknown service 'nowhere'") in found
    assert any(line == 5 and "duplicate service name 'api'" in message for line, _, message in found)
    assert len(found) == 3
    found = problems_in(tmp_path, CYCLIC.replace("memory: 64Mi, start_time: 3s}", "memory: lots, start_time: 3}"))
    assert {(line, message) for line, _, message in found} == {
        (5, "'lots' is not valid for services[2].memory"),
        (5, "services[2].start_time must be a duration, not the number 3")}

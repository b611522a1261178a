"""Apps as a unit over the API, on the simulated world ``usm serve`` wires (sock-shop): a launch answers with its
report, waves in dependency order; a dependency cycle is refused before anything starts; stop stops the app."""

from __future__ import annotations

from sqlalchemy import text

from tests.hub.conftest import state_of

LONDON = {"latitude": 51.5072, "longitude": -0.1276}


def dependencies(admin, service: str) -> list[str]:
    return admin.get(f"/api/services/{service}").get_json()["dependencies"]


def test_an_app_launches_wave_by_wave_after_what_each_service_depends_on(admin, world):
    answer = admin.post("/api/apps/sock-shop/launch", json={"near": LONDON, "on_failure": "rollback"})
    assert answer.status_code == 200, answer.get_json()
    report = answer.get_json()
    assert report["ok"], report["summary"]
    wave_of = {s["service"]: s["wave"] for s in report["services"]}
    assert len(wave_of) == 13 and len(report["waves"]) > 1
    for service, wave in wave_of.items():
        assert report["waves"][wave].count(service) == 1
        for dep in dependencies(admin, service):
            assert wave_of[dep] < wave, (service, dep)
    assert all(s["state"] == "ready" and s["ready"] for s in report["services"])
    assert report["wave_ready_at"] == sorted(report["wave_ready_at"])
    audit = admin.get("/api/audit?action=app.launch").get_json()["items"][0]
    assert (audit["user"], audit["outcome"], audit["target"]) == ("ada", "ok", "sock-shop")


def test_a_launch_on_hosts_uses_them_and_bad_bodies_are_422(admin, world):
    bad = admin.post("/api/apps/sock-shop/launch", json={"near": LONDON, "hosts": ["leiria"]})
    assert bad.status_code == 422 and "either hosts or near" in str(bad.get_json()["errors"])
    unknown = admin.post("/api/apps/sock-shop/launch", json={"hosts": ["atlantis"]})
    assert unknown.status_code == 422 and "atlantis" in unknown.get_json()["message"]
    assert admin.post("/api/apps/nope/launch", json={"hosts": ["leiria"]}).status_code == 404
    answer = admin.post("/api/apps/sock-shop/launch", json={"hosts": ["leiria"]})
    assert answer.status_code == 200 and answer.get_json()["ok"], answer.get_json()


def test_a_dependency_cycle_is_refused_before_anything_starts(admin, app, world):
    hub = state_of(app)
    with hub.engine.begin() as connection:  # the store's own checks refuse a cycle; put one in behind them
        connection.execute(text(
            "INSERT INTO service_dependencies (service_id, dependency_id) SELECT a.id, b.id FROM services a, "
            "services b WHERE a.name = 'sock-shop-user-db' AND b.name = 'sock-shop-user'"))
    before = admin.get("/api/containers?limit=1000").get_json()["items"]
    answer = admin.post("/api/apps/sock-shop/launch", json={"near": LONDON})
    assert answer.status_code == 422, answer.get_json()
    assert "cycle" in answer.get_json()["message"] and "sock-shop-user" in answer.get_json()["message"]
    assert admin.get("/api/containers?limit=1000").get_json()["items"] == before
    assert world.now == 0.0  # the world was not even asked


def test_stop_stops_every_replica_of_the_app(admin, world):
    assert admin.post("/api/apps/sock-shop/launch", json={"near": LONDON}).get_json()["ok"]
    assert any(c.service.startswith("sock-shop") for c in world.cluster().containers)
    answer = admin.post("/api/apps/sock-shop/stop")
    assert answer.status_code == 200, answer.get_json()
    assert "dependents first" in answer.get_json()["detail"]
    assert not [c for c in world.cluster().containers if c.service.startswith("sock-shop") and not c.system]
    assert admin.post("/api/apps/nope/stop").status_code == 404


def test_without_a_world_an_app_launch_is_503(admin):
    answer = admin.post("/api/apps/sock-shop/launch", json={"near": LONDON})
    assert answer.status_code == 503

"""A master and two regional workers in one process, over a real PostgreSQL store and the simulator's world (one
world, managed region by region), on a virtual clock: the master's start sequence, hand-overs, heartbeats and the
60 s countdown, a policy applied on the master in force at every worker's next cycle, each decision logged with
its policy version, and every step carried out by the one manager that held its region at that moment."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.services import free_port
from tests.services.postgres import Postgres
from usm.engine import load_policy
from usm.geo.sphere import Coordinates
from usm.manager.cli import main
from usm.manager.federation.coordinator import Coordinator, LeasedActuator
from usm.manager.federation.live import regions_of, site_regions
from usm.manager.federation.manager import federated_loop
from usm.manager.federation.ports import StoreSteps, publish_policy
from usm.manager.federation.sequences import Deployment, Role, carry_out, shutdown_plan, startup_plan
from usm.manager.federation.simulation import OncePerCycle
from usm.manager.federation.supervision import HandBack, MarkDown, TakeOver, Timing
from usm.manager.site import load_site
from usm.manager.store import federation as fed
from usm.manager.store.configs import ConfigKind, latest_number
from usm.manager.store.database import open_engine, sessions, upgrade
from usm.placement.model import HostKind, Resources
from usm.placement.plans import PlaceReplica, UseHost
from usm.simulator.scenario import HostDefinition, InitialContainer, Scenario, ServiceDefinition, WorkloadSource
from usm.simulator.workload import Constant, Ramp, Stage
from usm.simulator.world import World

GiB = 2**30
HOSTS = {"lisbon": (38.72, -9.14), "frankfurt": (50.11, 8.68), "portland": (45.52, -122.68),
         "boston": (42.36, -71.06)}
POLICY = """
settings:
  period: 15s
  retention: 10m
  streak: {{replicate: 1, stop: 2}}
  cooldown: {{replicate: 30s}}
rules:
  - name: busy
    scope: service
    target: "*"
    when: requests_per_sec > {busy}
    then: replicate
  - name: quiet
    scope: container
    target: "*"
    when: avg(requests_per_sec, 30s) < 0.5
    then: stop
"""


def site_document() -> dict:
    return {
        "hosts": [{"name": name, "latitude": lat, "longitude": lon, "docker": f"unix:///run/usm-test/{name}.sock",
                   "cpu": 16, "ram": "64Gi", "disk": "1000Gi"} for name, (lat, lon) in HOSTS.items()],
        "services": [{"name": "shop-eu", "image": "busybox", "region": "europe", "min_replicas": 2,
                      "max_replicas": 8},
                     {"name": "shop-us", "image": "busybox", "region": "north_america", "min_replicas": 2,
                      "max_replicas": 8}],
        "apps": [{"name": "shop", "services": ["shop-eu", "shop-us"]}],
    }


def world() -> World:
    hosts = tuple(HostDefinition(name, HostKind.EDGE, Coordinates(lat, lon), Resources(16, 64 * GiB, 1000 * GiB))
                  for name, (lat, lon) in HOSTS.items())
    services = (ServiceDefinition("shop-eu", "busybox", 64 * 2**20, 0.002, min_replicas=2, max_replicas=8),
                ServiceDefinition("shop-us", "busybox", 64 * 2**20, 0.002, min_replicas=2, max_replicas=8))
    containers = (InitialContainer("shop-eu-1", "shop-eu", "lisbon"), InitialContainer("shop-eu-2", "shop-eu",
                                                                                          "frankfurt"),
                  InitialContainer("shop-us-1", "shop-us", "portland"), InitialContainer("shop-us-2", "shop-us",
                                                                                         "boston"))
    load = Ramp((Stage(120, 5), Stage(240, 80)), 1, 1.0, False)
    sources = (WorkloadSource("eu-users", "shop-eu", Coordinates(40.4, -3.7), load, noise=0.1),
               WorkloadSource("us-users", "shop-us", Coordinates(40.7, -74.0), Constant(30), noise=0.1))
    return World(Scenario("two-regions", 600.0, 15.0, hosts, services, sources, containers=containers, seed=5))


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with Postgres(tmp_path_factory.mktemp("postgres")).start() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("PGPASSWORD", server.password)
        yield server


@pytest.fixture
def store(postgres):
    engine = open_engine(postgres.new_database())
    yield engine
    engine.dispose()


def write_policy(directory: Path, busy: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(POLICY.format(busy=busy))
    return directory


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_master_and_two_workers_share_one_world_through_the_store(store, tmp_path):
    timing = Timing()  # the defaults: a beat every 15 s, down after 60 s
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(site_document()))
    site = load_site(site_file)
    first = write_policy(tmp_path / "policy-1", busy=20)
    clock = [0.0]
    master = Coordinator(sessions(store), None, timing, clock=lambda: clock[0])
    master_steps = StoreSteps(store, master, site_file=site_file, policy_dir=first, clock=lambda: clock[0])
    deployment = Deployment(Role.MASTER, "master", site.default_region, regions_of(site))
    assert [r.ok for r in carry_out(startup_plan(deployment), master_steps)] == [True] * 5
    assert deployment.regions == ("europe", "north_america")

    shared = OncePerCycle(world())
    regions = site_regions(site)
    coordinators = {"master": master}
    for name, region in (("w-eu", "europe"), ("w-na", "north_america")):
        coordinators[name] = Coordinator(sessions(store), name, timing, clock=lambda: clock[0])
        steps = StoreSteps(store, coordinators[name], clock=lambda: clock[0])
        worker = Deployment(Role.WORKER, name, region, (region,))
        assert all(r.ok for r in carry_out(startup_plan(worker), steps))
    with ExitStack() as stack:
        members = {name: federated_loop(c, shared, shared.world, regions, tmp_path / name, stack)
                   for name, c in coordinators.items()}
        silent_from, back_at, applied_at = 100.0, 250.0, 60.0
        changes = []
        for tick in range(24):
            at = clock[0] = tick * 15.0
            if at == applied_at + 15.0:  # applied between the cycles at 60 s and 75 s
                version, _, new = publish_policy(store, write_policy(tmp_path / "policy-2", busy=12), at - 10.0)
                assert (version, new) == (2, True)
            for name in ("w-eu", "w-na"):
                if name != "w-eu" or not silent_from <= at < back_at:
                    assert coordinators[name].beat(at)
            changes += [(at, c) for c in master.supervise(at)]
            for name in ("w-eu", "w-na", "master"):
                members[name].runner.cycle(at)

    assert changes == [(0.0, HandBack("europe", "w-eu")), (0.0, HandBack("north_america", "w-na")),
                       (165.0, MarkDown("w-eu")), (165.0, TakeOver("europe", "w-eu")),  # its last beat was at 90 s: the first look past 60 s of silence
                       (255.0, HandBack("europe", "w-eu"))]
    logs = {name: records(tmp_path / name / "decisions.jsonl") for name in members}
    cycles = {name: [r for r in log if r["type"] == "cycle"] for name, log in logs.items()}
    v1, v2 = load_policy(first).digest, load_policy(tmp_path / "policy-2").digest
    for name in ("w-eu", "w-na"):
        versions = [(c["at"], c["policy_version"], c["policy"]) for c in cycles[name]]
        assert all((v, d) == ((1, v1) if at < 75.0 else (2, v2)) for at, v, d in versions), versions
        assert {r["manager"] for r in logs[name]} == {name}
        assert all(r["policy_version"] == (1 if r["at"] < 75.0 else 2) for r in logs[name])
    # Who acted on which region, and when: Europe by w-eu, except while the master held it.
    steps = [(name, r) for name, log in logs.items() for r in log if r["type"] == "step" and r["ok"]]
    region = {"lisbon": "europe", "frankfurt": "europe", "portland": "north_america", "boston": "north_america"}
    for name, r in steps:
        host = r["step"].get("host") or r["step"]["on"]["host"]
        held_by_master = 165.0 <= r["at"] < 255.0
        expected = {"north_america": "w-na", "europe": "master" if held_by_master else "w-eu"}[region[host]]
        assert name == expected, (name, r)
    assert {name for name, _ in steps} == {"w-eu", "w-na", "master"}  # each of them had something to do
    executed = [(r["at"], json.dumps(r["step"], sort_keys=True)) for _, r in steps]
    assert len(executed) == len(set(executed))  # no step carried out twice


def test_a_step_decided_in_a_tenure_that_ended_is_not_carried_out(store, tmp_path):
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(site_document()))
    site = load_site(site_file)
    master = Coordinator(sessions(store), None)
    steps = StoreSteps(store, master, site_file=site_file, policy_dir=write_policy(tmp_path / "p", busy=20))
    carry_out(startup_plan(Deployment(Role.MASTER, "master", "europe", regions_of(site))), steps)
    worker = Coordinator(sessions(store), "w-eu")
    worker.register("europe", "127.0.0.1", 9465)
    master.supervise()
    world_ = world()
    actuator = LeasedActuator(world_, worker, site_regions(site))
    actuator.held = worker.held()
    step = PlaceReplica("shop-eu", Coordinates(40.4, -3.7), UseHost("lisbon", 0.0))
    assert actuator.execute(step, 0.0).ok
    with sessions(store).begin() as session:  # the master takes Europe over and the worker gets it back
        fed.hand_over(session, "europe", None, fed_now())
        fed.hand_over(session, "europe", "w-eu", fed_now())
    refused = actuator.execute(step, 15.0)
    assert not refused.ok and refused.detail == "not carried out: europe changed hands since this cycle's observation"
    assert not actuator.execute(PlaceReplica("shop-us", Coordinates(40.7, -74.0), UseHost("boston", 0.0)), 15.0).ok
    assert world_.replicas()["shop-eu"] == 3


def fed_now() -> datetime:
    return datetime.now(UTC)


def test_stopping_the_master_stops_its_workers_and_leaves_a_clean_store(store, tmp_path):
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(site_document()))
    site = load_site(site_file)
    clock = [1000.0]
    master = Coordinator(sessions(store), None, clock=lambda: clock[0])
    waited: list[float] = []

    def wait(seconds: float) -> None:  # the worker sees the stop request while the master waits, and goes
        waited.append(seconds)
        clock[0] += seconds
        if worker.stop_requested() is not None:
            assert all(r.ok for r in carry_out(shutdown_plan(Deployment(Role.WORKER, "w-eu", "europe",
                                                                        ("europe",), dry_run=True)), worker_steps))

    steps = StoreSteps(store, master, site_file=site_file, policy_dir=write_policy(tmp_path / "p", busy=20),
                       clock=lambda: clock[0], wait=wait)
    deployment = Deployment(Role.MASTER, "master", "europe", regions_of(site), await_workers=30.0, dry_run=True)
    carry_out(startup_plan(deployment), steps)
    worker = Coordinator(sessions(store), "w-eu", clock=lambda: clock[0])
    worker_steps = StoreSteps(store, worker, clock=lambda: clock[0])
    carry_out(startup_plan(Deployment(Role.WORKER, "w-eu", "europe", ("europe",))), worker_steps)
    master.supervise()
    assert worker.held() == {"europe": 1}
    results = carry_out(shutdown_plan(deployment), steps)
    assert [(type(r.step).__name__, r.ok) for r in results] == [
        ("RequestWorkersStop", True), ("AwaitWorkers", True), ("TakeOverRegions", True), ("ClearRuntime", True)]
    assert results[1].detail == "every worker stopped" and waited == [0.5]
    assert results[2].detail == "every region was the master's already"  # the worker gave Europe back itself
    with sessions(store).begin() as session:
        assert fed.leases(session) == {} and session.query(fed.Worker).count() == 0


def test_usm_policy_apply_stores_a_valid_policy_once_and_refuses_an_invalid_one(store, tmp_path):
    upgrade(store)
    url = store.url.render_as_string(hide_password=False)
    runner = CliRunner()
    good = write_policy(tmp_path / "good", busy=20)
    digest = load_policy(good).digest
    assert runner.invoke(main, ["policy", "apply", str(good), "--db", url]).output == \
        f"policy {digest}: stored as version 1\n"
    assert runner.invoke(main, ["policy", "apply", str(good), "--db", url]).output == \
        f"policy {digest}: already version 1\n"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "rules.yaml").write_text("rules:\n  - name: x\n    scope: host\n    target: '*'\n    when: cpu >\n"
                                    "    then: overwork\n")
    refused = runner.invoke(main, ["policy", "apply", str(bad), "--db", url])
    assert refused.exit_code == 2 and "rules.yaml:5:" in refused.output and "the policy was not stored" in \
        refused.output
    with sessions(store).begin() as session:
        assert latest_number(session, ConfigKind.POLICY) == 1


def test_a_manager_that_cannot_reach_the_store_skips_its_cycles_and_acts_on_nothing(store, tmp_path):
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(site_document()))
    site = load_site(site_file)
    master = Coordinator(sessions(store), None)
    steps = StoreSteps(store, master, site_file=site_file, policy_dir=write_policy(tmp_path / "p", busy=20))
    carry_out(startup_plan(Deployment(Role.MASTER, "master", "europe", regions_of(site))), steps)
    world_ = world()
    with ExitStack() as stack:
        member = federated_loop(master, world_, world_, site_regions(site), tmp_path / "m", stack)
        assert member.runner.cycle(0.0) is not None  # it holds both regions and runs
        gone = open_engine(f"postgresql+psycopg://usm@127.0.0.1:{free_port()}/usm", connect_args={"connect_timeout": 2})
        master.sessions = sessions(gone)  # the store goes away
        assert member.runner.cycle(15.0) is None
        assert member.runner.metrics.registry.get_sample_value("usm_cycles_total", {"result": "error"}) == 1.0
        step = PlaceReplica("shop-eu", Coordinates(40.4, -3.7), UseHost("lisbon", 0.0))
        refused = member.leased.execute(step, 15.0)
        assert not refused.ok and refused.transient and "the store cannot be reached" in refused.detail
        assert world_.replicas()["shop-eu"] == 2
        gone.dispose()

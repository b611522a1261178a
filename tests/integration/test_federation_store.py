"""The federation's part of the store on a SQLite file and on a private PostgreSQL cluster: workers, region leases
with their epochs, host assignments, stop requests and stored policy and site versions. The lock that keeps a
region from changing hands while its holder acts is checked on PostgreSQL with two real connections."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.services import wait_until
from tests.services.postgres import Postgres
from usm.manager.store import (
    ConfigKind,
    EdgeHost,
    HostAssignment,
    Invalid,
    NotFound,
    RegionLease,
    StopRequest,
    Worker,
    WorkerState,
    crud,
)
from usm.manager.store import federation as fed
from usm.manager.store.configs import file_bytes, latest_number, latest_version, store_version
from usm.manager.store.database import open_engine, sessions, upgrade

GiB = 2**30
NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with Postgres(tmp_path_factory.mktemp("postgres")).start() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("PGPASSWORD", server.password)
        yield server


def prepared(url: str):
    """A migrated store with three hosts, leases for Europe and North America, and a European worker."""
    opened = open_engine(url)
    upgrade(opened)
    with sessions(opened).begin() as session:
        for name, lat, lon in (("lisbon", 38.72, -9.14), ("porto", 41.15, -8.61), ("portland", 45.52, -122.68)):
            crud.create(session, EdgeHost, name=name, latitude=lat, longitude=lon, cpu=2.0, ram=4 * GiB,
                        disk=32 * GiB, username="usm", public_ip="127.0.0.2")
        fed.ensure_leases(session, ["europe", "north_america"], NOON)
        fed.register_worker(session, "w-eu", "europe", "127.0.0.1", 9465, NOON)
    return opened


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'usm.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("postgres").new_database()
    opened = prepared(url)
    yield opened
    opened.dispose()


@pytest.fixture
def pg_engine(postgres):
    opened = prepared(postgres.new_database())
    yield opened
    opened.dispose()


def test_regions_start_with_the_master_and_unknown_regions_are_named(engine):
    with sessions(engine).begin() as session:
        assert fed.leases(session) == {"europe": fed.Lease("europe", None, 0),
                                       "north_america": fed.Lease("north_america", None, 0)}
        assert fed.assigned_hosts(session, None) == ["lisbon", "portland", "porto"]
        fed.ensure_leases(session, ["europe"], NOON + timedelta(hours=1))  # an existing lease is kept as it is
        assert fed.leases(session)["europe"].epoch == 0
        with pytest.raises(NotFound, match="no region 'atlantis' in the store"):
            fed.ensure_leases(session, ["atlantis"], NOON)


def test_a_region_handed_to_its_worker_assigns_it_the_region_hosts_and_back(engine):
    with sessions(engine).begin() as session:
        assert fed.hand_over(session, "europe", "w-eu", NOON) == fed.Lease("europe", "w-eu", 1)
    with sessions(engine).begin() as session:
        assert fed.assigned_hosts(session, "w-eu") == ["lisbon", "porto"]
        assert fed.assigned_hosts(session, None) == ["portland"]
        assert fed.leases(session)["europe"] == fed.Lease("europe", "w-eu", 1)
        assert fed.hand_over(session, "europe", None, NOON) == fed.Lease("europe", None, 2)
        assert fed.assigned_hosts(session, "w-eu") == []
        assert session.query(HostAssignment).count() == 0
        with pytest.raises(Invalid, match="worker 'w-eu' runs for region 'europe', not 'north_america'"):
            fed.hand_over(session, "north_america", "w-eu", NOON)


def test_assignable_hosts_are_the_worker_region_hosts_no_other_worker_manages(engine):
    with sessions(engine).begin() as session:
        fed.register_worker(session, "w-eu-2", "europe", "127.0.0.1", 9466, NOON)
        crud.create(session, HostAssignment, host="porto", worker="w-eu-2")
        assert [h.name for h in fed.assignable(session, "w-eu")] == ["lisbon"]
        assert [h.name for h in fed.assignable(session, "w-eu-2")] == ["lisbon", "porto"]
        with pytest.raises(NotFound, match="no worker 'nobody'; it registers itself"):
            fed.assignable(session, "nobody")


def test_a_worker_registers_again_under_its_name_but_not_for_another_region(engine):
    with sessions(engine).begin() as session:
        fed.mark_down(session, ["w-eu"])
        later = NOON + timedelta(minutes=5)
        worker = fed.register_worker(session, "w-eu", "europe", "127.0.0.9", 9470, later)
        assert (worker.address, worker.port, worker.state, worker.heartbeat_at) == \
            ("127.0.0.9", 9470, WorkerState.READY, later)
        assert session.query(Worker).count() == 1
        with pytest.raises(Invalid, match="registered for region 'europe', not 'north_america'"):
            fed.register_worker(session, "w-eu", "north_america", "127.0.0.1", 9465, later)
        with pytest.raises(NotFound, match="no region 'mars'"):
            fed.register_worker(session, "w-mars", "mars", "127.0.0.1", 9465, later)


def test_holding_a_region_is_checked_at_the_epoch_it_was_got(engine):
    with sessions(engine).begin() as session:
        fed.hand_over(session, "europe", "w-eu", NOON)
        assert fed.lock_held(session, {"europe": 1}) == []
        assert fed.lock_held(session, {"europe": 1, "north_america": 0}) == []
    with sessions(engine).begin() as session:
        fed.hand_over(session, "europe", None, NOON)  # lost (epoch 2) ...
        fed.hand_over(session, "europe", "w-eu", NOON)  # ... and got back (epoch 3): the old tenure is over
        assert fed.lock_held(session, {"europe": 1, "north_america": 0}) == ["europe"]
        assert fed.lock_held(session, {"europe": 3}) == []
        assert fed.lock_held(session, {}) == []


def test_a_stopping_worker_hands_its_region_to_the_master(engine):
    with sessions(engine).begin() as session:
        fed.hand_over(session, "europe", "w-eu", NOON)
        fed.request_stop(session, NOON, "w-eu", "master stopping")
        fed.unregister_worker(session, "w-eu")
        assert fed.leases(session)["europe"] == fed.Lease("europe", None, 2)
        assert session.query(HostAssignment).count() == session.query(StopRequest).count() == 0
        assert session.query(Worker).count() == 0
        fed.unregister_worker(session, "w-eu")  # already gone: nothing to do


def test_stop_requests_reach_the_workers_they_name_and_the_master_cleans_up(engine):
    with sessions(engine).begin() as session:
        fed.register_worker(session, "w-na", "north_america", "127.0.0.1", 9466, NOON)
        assert fed.stop_requested(session, "w-eu") is None
        fed.request_stop(session, NOON, "w-na", "moving it")
        assert (fed.stop_requested(session, "w-eu"), fed.stop_requested(session, "w-na")) == (None, "moving it")
        fed.request_stop(session, NOON, reason="the master stops")
        assert fed.stop_requested(session, "w-eu") == "the master stops"
        fed.hand_over(session, "europe", "w-eu", NOON)
        fed.clear_runtime(session)
    with sessions(engine).begin() as session:
        for model in (Worker, RegionLease, HostAssignment, StopRequest):
            assert session.query(model).count() == 0, model


def test_policy_versions_count_up_and_the_same_content_makes_no_new_one(engine):
    files = {"00-settings.yaml": b"settings: {period: 15s}\n", "rules.yaml": "rules: [] # caf\u00e9\n".encode()}
    with sessions(engine).begin() as session:
        assert latest_version(session, ConfigKind.POLICY) is None and latest_number(session, ConfigKind.POLICY) == 0
        first, new = store_version(session, ConfigKind.POLICY, files, "aaa", "/p", NOON)
        assert (first.version, new) == (1, True)
        again, new = store_version(session, ConfigKind.POLICY, files, "aaa", "/p", NOON)
        assert (again.version, new) == (1, False)
        store_version(session, ConfigKind.SITE, {"site.yaml": b"hosts: []\n"}, "sss", "/s.yaml", NOON)
        second, new = store_version(session, ConfigKind.POLICY, {"rules.yaml": b"rules: []\n"}, "bbb", "/p", NOON)
        assert (second.version, new) == (2, True)
        with pytest.raises(Invalid, match=r"/p/bad.yaml is not UTF-8 text \(byte 0\)"):
            store_version(session, ConfigKind.POLICY, {"bad.yaml": b"\xff"}, "ccc", "/p", NOON)
    with sessions(engine).begin() as session:
        assert latest_number(session, ConfigKind.POLICY) == 2
        assert file_bytes(latest_version(session, ConfigKind.SITE)) == {"site.yaml": b"hosts: []\n"}
        first = session.query(type(second)).filter_by(kind=ConfigKind.POLICY, version=1).one()
        assert file_bytes(first) == files


def test_a_hand_over_waits_for_the_step_its_former_holder_is_carrying_out(pg_engine):
    """On PostgreSQL (SQLite serialises writers as a whole): the former holder locks its lease (as before a step)
    and keeps its transaction open; the master's hand-over waits on the row lock, goes through once the step's
    transaction commits, and the former holder then finds its epoch gone."""
    engine = pg_engine
    with sessions(engine).begin() as session:
        fed.hand_over(session, "europe", "w-eu", NOON)
    acting = sessions(engine)()
    acting.begin()
    assert fed.lock_held(acting, {"europe": 1}) == []
    acting_pid = acting.execute(text("SELECT pg_backend_pid()")).scalar()
    done: list[fed.Lease] = []

    def take_over() -> None:
        with sessions(engine).begin() as session:
            done.append(fed.hand_over(session, "europe", None, NOON))

    thread = threading.Thread(target=take_over)
    thread.start()

    def waiting() -> bool:  # a transaction per look: PostgreSQL keeps a transaction's view of pg_stat_activity
        with engine.connect() as watcher:
            return bool(watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND :pid = ANY("
                "pg_blocking_pids(pid))"), {"pid": acting_pid}).scalar())

    wait_until(waiting, 30, "the hand-over to wait on the lease lock")
    assert done == []
    acting.commit()
    thread.join(30)
    assert done == [fed.Lease("europe", None, 2)]
    with sessions(engine).begin() as session:
        assert fed.lock_held(session, {"europe": 1}) == ["europe"]
    acting.close()

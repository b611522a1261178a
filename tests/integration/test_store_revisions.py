"""Store revisions (usm.manager.store.revisions) on a SQLite file and on a private PostgreSQL cluster: every table
is tracked; every kind of committed write moves the revisions of the tables it changed (the service layer, bulk
Core statements, plain SQL, foreign-key cascades) and only those; a write rolled back moves nothing; readers see
new revisions together with the rows; on PostgreSQL a writer holds no revision before it commits, and concurrent
writers of the same tables in any order all commit and all count."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text

from tests.services.postgres import Postgres
from usm.manager.store import Container, EdgeHost, HostAssignment, Invalid, Service, crud, revisions
from usm.manager.store import federation as fed
from usm.manager.store.database import open_engine, sessions, upgrade
from usm.manager.store.revisions import REVISIONS, Latest, read, track, untracked

GiB = 2**30
NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with Postgres(tmp_path_factory.mktemp("postgres")).start() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("PGPASSWORD", server.password)
        yield server


def prepared(url: str):
    """A migrated store with two services, two hosts and four containers."""
    opened = open_engine(url)
    upgrade(opened)
    with sessions(opened).begin() as session:
        for name in ("front", "back"):
            crud.create(session, Service, name=name, image=f"example/{name}", expected_memory=GiB // 4)
        for name, lat in (("lisbon", 38.7), ("porto", 41.1)):
            crud.create(session, EdgeHost, name=name, latitude=lat, longitude=-9.0, cpu=2.0, ram=4 * GiB,
                        disk=32 * GiB, username="usm", public_ip="127.0.0.2")
        for number in range(4):
            crud.create(session, Container, name=f"c-{number}", service=("front", "back")[number % 2],
                        host=("lisbon", "porto")[number % 2])
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


def now(engine) -> dict[str, int]:
    with engine.connect() as connection:
        return read(connection)


def moved(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {table for table in after if after[table] != before.get(table)}


def test_every_table_of_the_store_is_tracked(engine):
    with engine.connect() as connection:
        assert untracked(connection) == []
        counted = set(read(connection))
    tables = {table for table in REVISIONS.metadata.tables if table != REVISIONS.name}
    assert counted == tables and {"containers", "hosts", "edge_hosts", "users", "decision_records"} <= counted


WRITES = {
    "crud.update": (lambda s: crud.update(s, Container, "c-1", port=8080), {"containers"}),
    "crud.create": (lambda s: crud.create(s, Service, name="cache", image="redis", expected_memory=GiB),
                    {"services"}),
    "crud.delete": (lambda s: crud.delete(s, Container, "c-2"), {"containers"}),
    "an update of a subclass row": (lambda s: crud.update(s, EdgeHost, "porto", ssh_port=2222),
                                    {"edge_hosts"}),
    "bulk insert": (lambda s: s.execute(insert(Container), [
        {"name": f"bulk-{n}", "service_id": s.scalar(select(Service.id).where(Service.name == "front")),
         "host_id": s.scalar(select(EdgeHost.id).where(EdgeHost.name == "lisbon")), "state": "running"}
        for n in range(50)]), {"containers"}),
    "plain SQL": (lambda s: s.execute(text("UPDATE services SET image = 'example/new' WHERE name = 'back'")),
                  {"services"}),
    "a statement that changes no row": (lambda s: s.execute(text("UPDATE services SET image = 'x' WHERE 1 = 0")),
                                        set()),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_committed_write_moves_the_revisions_of_the_tables_it_changed_and_only_those(engine, write):
    change, tables = WRITES[write]
    before = now(engine)
    with sessions(engine).begin() as session:
        change(session)
    after = now(engine)
    assert moved(before, after) == tables
    assert all(after[table] > before[table] for table in tables)


def test_rows_deleted_by_a_foreign_key_cascade_move_their_table(engine):
    with sessions(engine).begin() as session:
        fed.register_worker(session, "w-eu", "europe", "127.0.0.1", 9465, NOON)
        crud.create(session, HostAssignment, host="lisbon", worker="w-eu")
        crud.delete(session, Container, "c-0")
        crud.delete(session, Container, "c-2")
    before = now(engine)
    with engine.begin() as connection:  # the database deletes the assignment (ON DELETE CASCADE), not usm
        connection.execute(text("DELETE FROM edge_hosts WHERE id = (SELECT id FROM hosts WHERE name = 'lisbon')"))
        connection.execute(text("DELETE FROM hosts WHERE name = 'lisbon'"))
    assert {"hosts", "edge_hosts", "host_assignments"} <= moved(before, now(engine))


def test_a_write_rolled_back_moves_nothing(engine):
    before = now(engine)
    with sessions(engine)() as session:
        crud.update(session, Container, "c-1", port=1)
        session.rollback()
    with sessions(engine).begin() as session:  # a savepoint rolled back inside a transaction that commits
        with pytest.raises(Invalid):
            crud.create(session, Container, name="c-9", service="front", host="nowhere")
        nested = session.begin_nested()
        crud.update(session, Service, "back", image="never")
        nested.rollback()
    assert moved(before, now(engine)) == set()


def test_readers_see_new_revisions_together_with_the_rows(engine):
    writer = sessions(engine)()
    writer.begin()
    crud.update(writer, Container, "c-3", port=7777)
    before = now(engine)
    with engine.connect() as reader:
        assert reader.scalar(text("SELECT port FROM containers WHERE name = 'c-3'")) != 7777
    writer.commit()
    writer.close()
    with engine.connect() as reader:
        after = read(reader)
        assert reader.scalar(text("SELECT port FROM containers WHERE name = 'c-3'")) == 7777
    assert moved(before, after) == {"containers"}


def test_latest_follows_the_commits_of_every_other_connection(engine):
    latest = Latest(engine)
    first = latest()
    assert latest() == first == now(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE containers SET port = 1 WHERE name = 'c-0'"))
    second = latest()
    assert moved(first, second) == {"containers"} and second == now(engine)
    other = open_engine(engine.url)  # another engine, as another process would have
    with other.begin() as connection:
        connection.execute(text("UPDATE services SET image = 'o' WHERE name = 'front'"))
    other.dispose()
    assert moved(second, latest()) == {"services"}
    seen: list[dict[str, int]] = []
    thread = threading.Thread(target=lambda: seen.append(latest()))  # each thread reads on its own
    thread.start()
    thread.join()
    assert seen == [now(engine)]


def test_untracked_names_a_table_that_lost_its_triggers_until_it_is_tracked_again(engine):
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f'DROP TRIGGER {revisions.TRIGGER} ON "containers"')
        else:
            connection.exec_driver_sql(f"DROP TRIGGER {revisions.TRIGGER}_containers_delete")
        assert untracked(connection) == ["containers"]
        assert untracked(connection, ["services"]) == []
    with engine.begin() as connection:
        track(connection, "containers")
        assert untracked(connection) == []
    before = now(engine)
    with sessions(engine).begin() as session:
        crud.delete(session, Container, "c-1")
    assert moved(before, now(engine)) == {"containers"}


def test_only_plain_names_of_existing_tables_are_tracked(engine):
    with engine.begin() as connection:
        for wrong in ('containers"; DROP TABLE users; --', "no_such_table"):
            with pytest.raises(ValueError):
                track(connection, wrong)


def test_on_postgresql_one_transaction_moves_a_table_once(pg_engine):
    before = now(pg_engine)
    with sessions(pg_engine).begin() as session:
        for number in range(4):
            crud.update(session, Container, f"c-{number}", port=9000 + number)
        session.execute(text("UPDATE services SET image = 'example/again'"))
    after = now(pg_engine)
    assert (after["containers"] - before["containers"], after["services"] - before["services"]) == (1, 1)


def test_on_postgresql_a_writer_holds_no_revision_until_it_commits(pg_engine):
    """A manager's step can keep its transaction open for seconds after writing a container: another writer of
    containers commits meanwhile without waiting (with a lock timeout, so that waiting would fail the test)."""
    long = sessions(pg_engine)()
    long.begin()
    crud.update(long, Container, "c-0", port=1000)
    before = now(pg_engine)
    with sessions(pg_engine).begin() as other:
        other.execute(text("SET LOCAL lock_timeout = '5s'"))
        crud.update(other, Container, "c-1", port=1001)
    middle = now(pg_engine)
    long.commit()
    long.close()
    after = now(pg_engine)
    assert middle["containers"] == before["containers"] + 1 and after["containers"] == middle["containers"] + 1


def test_on_postgresql_concurrent_writers_in_any_order_all_commit_and_all_count(pg_engine):
    """Four threads, each committing transactions that change containers, services and hosts in a random order:
    none fails (no deadlock among the revision locks taken at commit), and each table moved once per
    transaction that changed it."""
    rounds, threads = 25, 4
    with sessions(pg_engine).begin() as session:  # rows of each thread's own: only the revisions are shared
        for seed in range(threads):
            crud.create(session, Service, name=f"s-{seed}", image="example/s", expected_memory=GiB)
            crud.create(session, EdgeHost, name=f"h-{seed}", latitude=40.0, longitude=-8.0, cpu=2.0, ram=4 * GiB,
                        disk=32 * GiB, username="usm", public_ip="127.0.0.3")
    before = now(pg_engine)
    failures: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for number in range(rounds):
                steps = [
                    ("UPDATE containers SET port = :v WHERE name = :n", {"v": 1000 + number, "n": f"c-{seed}"}),
                    ("UPDATE services SET image = :v WHERE name = :n", {"v": f"example/{number}", "n": f"s-{seed}"}),
                    ("UPDATE hosts SET cpu = cpu WHERE name = :n", {"n": f"h-{seed}"}),
                ]
                rng.shuffle(steps)
                with sessions(pg_engine).begin() as session:
                    for statement, values in steps:
                        session.execute(text(statement), values)
        except BaseException as failed:  # noqa: BLE001 - reported by the test below
            failures.append(failed)

    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert failures == []
    after = now(pg_engine)
    assert {table: after[table] - before[table] for table in ("containers", "services", "hosts")} == {
        "containers": rounds * threads, "services": rounds * threads, "hosts": rounds * threads}


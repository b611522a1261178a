"""``usm catalog import`` into real stores: a SQLite file and a private PostgreSQL cluster (tests/services/postgres),
each migrated by the project's Alembic revisions."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.services.postgres import Postgres
from usm.catalog import catalog, catalog_app
from usm.manager.cli import main
from usm.manager.store import App, Service, crud
from usm.manager.store.database import open_engine, sessions, upgrade

MiB = 2**20


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with Postgres(tmp_path_factory.mktemp("postgres")).start() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("PGPASSWORD", server.password)
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The URL of a freshly migrated, empty store."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'usm.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def usm(*args: str):
    return CliRunner().invoke(main, list(args))


def test_every_app_is_imported_with_its_services_dependencies_and_launch_order(store):
    result = usm("catalog", "import", "--db", store)
    assert result.exit_code == 0, result.output
    assert "sock-shop: app created; 13 services created" in result.output
    engine = open_engine(store)
    with sessions(engine).begin() as session:
        for app in catalog():
            stored = crud.get(session, App, app.name)
            assert [s.name for s in stored.services] == list(app.launch_plan().services)  # in launch order
            for expected in app.services:
                service = crud.get(session, Service, expected.name)
                assert sorted(d.name for d in service.dependencies) == sorted(expected.dependencies)
                assert (service.kind.value, service.image, service.external_port, service.internal_port,
                        service.expected_memory, service.min_replicas) == \
                    (expected.kind, expected.image, expected.external_port, expected.internal_port,
                     int(expected.memory), 1)
        assert crud.find(session, Service, limit=1000).total == sum(len(a.services) for a in catalog())
        front = crud.get(session, Service, "sock-shop")
        assert (front.external_port, front.expected_memory) == (8079, 200 * MiB)  # §2.8
    engine.dispose()


def test_importing_again_keeps_what_is_stored_and_changes_nothing(store):
    assert usm("catalog", "import", "--db", store, "--app", "hotel-reservation").exit_code == 0
    engine = open_engine(store)
    with sessions(engine).begin() as session:
        crud.update(session, Service, "hotel-reservation-geo", min_replicas=3, image="mine/geo:2")
    result = usm("catalog", "import", "--db", store, "--app", "hotel-reservation", "--app", "sock-shop")
    assert result.exit_code == 0, result.output
    assert "hotel-reservation: app kept as stored; 0 services created, 17 kept as stored" in result.output
    assert "sock-shop: app created; 13 services created" in result.output
    with sessions(engine).begin() as session:
        geo = crud.get(session, Service, "hotel-reservation-geo")
        assert (geo.min_replicas, geo.image) == (3, "mine/geo:2")  # the operator's edit is kept
        assert crud.find(session, App, limit=10).total == 2
        assert len(crud.get(session, App, "hotel-reservation").services) == len(catalog_app("hotel-reservation").services)
    engine.dispose()


def test_an_unknown_app_or_an_unmigrated_store_is_refused_and_nothing_is_imported(tmp_path, store):
    result = usm("catalog", "import", "--db", store, "--app", "sock-socks")
    assert result.exit_code == 2 and "no app sock-socks in the catalogue" in result.output
    result = usm("catalog", "import", "--db", str(tmp_path / "empty.db"))
    assert result.exit_code == 2 and "run `usm db upgrade`" in result.output
    engine = open_engine(store)
    with sessions(engine).begin() as session:
        assert crud.find(session, Service).total == 0
    engine.dispose()

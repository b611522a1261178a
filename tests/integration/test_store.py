"""The inventory store against real databases: every test runs on a SQLite file and on a private PostgreSQL
cluster (tests/services/postgres.py), each test in a fresh store migrated by the project's Alembic revisions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect as schema_of
from sqlalchemy import text

from tests.services import free_port
from tests.services.postgres import Postgres
from usm.engine import inventory as engine
from usm.geo.regions import AREAS
from usm.geo.sphere import Coordinates
from usm.manager.cli import main
from usm.manager.decisionlog import DecisionLog
from usm.manager.store import (
    App,
    Base,
    CloudHost,
    Container,
    DecisionRecord,
    Duplicate,
    EdgeHost,
    ElasticIp,
    EventPrediction,
    Host,
    HostAssignment,
    InUse,
    Invalid,
    LoadBalancer,
    Node,
    NotFound,
    NotMigrated,
    Region,
    RegistrationServer,
    Service,
    Worker,
    WorkerState,
    crud,
    heartbeat,
    index_log,
    read_record,
    silent_workers,
    views,
)
from usm.manager.store.database import (
    current_revision,
    downgrade,
    head_revision,
    open_engine,
    require_current,
    sessions,
    upgrade,
)
from usm.placement.model import (
    ContainerDemand,
    HostCapacity,
    HostKind,
    HostState,
    Resources,
    ServiceSpec,
)

GiB = 2**30
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


# Stores: per backend, one store migrated and filled with WORLD once; every test starts from that snapshot.


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """The PostgreSQL cluster; its password is in the environment, where libpq finds it (as in production)."""
    with Postgres(tmp_path_factory.mktemp("postgres")).start() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("PGPASSWORD", server.password)
        yield server


def new_database(server: Postgres, template: str = "template0") -> str:
    name = f"test_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return server.url(name)


@dataclass(frozen=True)
class Snapshot:
    """Every row of every table of the store, to put back before each test (faster than a new database)."""

    rows: dict[str, list[dict[str, Any]]]

    @classmethod
    def of(cls, engine) -> Snapshot:
        with engine.connect() as connection:
            return cls({t.name: [dict(r._mapping) for r in connection.execute(t.select())]
                        for t in Base.metadata.sorted_tables})

    def restore(self, engine) -> None:
        tables = Base.metadata.sorted_tables
        with engine.begin() as connection:
            for table in reversed(tables):
                connection.execute(table.delete())
            for table in tables:
                if self.rows[table.name]:
                    connection.execute(table.insert(), self.rows[table.name])
            if engine.dialect.name == "postgresql":  # identities continue after the restored ids
                for table in tables:
                    if "id" in table.c and table.c.id.autoincrement is True:
                        connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                                f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated(request, tmp_path_factory):
    """A migrated store holding WORLD, and its snapshot."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'usm.db'}"
    else:
        url = new_database(request.getfixturevalue("postgres"))
    engine = open_engine(url)
    upgrade(engine)
    with sessions(engine).begin() as session:
        for model, values in WORLD:
            crud.create(session, model, **values)
    yield engine, Snapshot.of(engine)
    engine.dispose()


@pytest.fixture
def store(migrated):
    """An engine on a store holding WORLD and nothing else."""
    engine, snapshot = migrated
    snapshot.restore(engine)
    return engine


@pytest.fixture
def world(store):
    """Sessions on the store holding WORLD."""
    return sessions(store)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def blank_url(backend, request, tmp_path):
    """The URL of an empty database on the backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'usm.db'}"
    return new_database(request.getfixturevalue("postgres"))


# A small world, built through the service layer.

WORLD: list[tuple[type[Base], dict[str, Any]]] = [
    (Service, {"name": "stock", "image": "shop/stock", "kind": "database", "expected_memory": GiB // 2}),
    (Service, {"name": "front", "image": "shop/front", "kind": "frontend", "dependencies": ["stock"],
               "min_replicas": 2, "max_replicas": 6, "expected_memory": GiB // 4, "internal_port": 8080,
               "external_port": 80}),
    (Service, {"name": "monitor", "image": "usm/monitor", "kind": "system"}),
    (App, {"name": "shop", "description": "the shop", "services": ["front", "stock"]}),
    (EventPrediction, {"name": "sale", "service": "front", "starts_at": "2026-11-27T09:00:00+00:00",
                       "ends_at": "2026-11-27T18:00:00+00:00", "min_replicas": 4}),
    (EventPrediction, {"name": "fridays", "service": "stock", "starts_at": "2026-11-20T08:00:00+00:00",
                       "ends_at": "2026-11-20T10:00:00+00:00", "weekly": True, "min_replicas": 3}),
    (EdgeHost, {"name": "lisbon", "latitude": 38.72, "longitude": -9.14, "cpu": 4.0, "ram": 8 * GiB,
                "disk": 64 * GiB, "username": "usm", "public_ip": "127.0.0.2", "ssh_port": 2222}),
    (EdgeHost, {"name": "porto", "latitude": 41.15, "longitude": -8.61, "cpu": 2.0, "ram": 4 * GiB,
                "disk": 32 * GiB, "username": "usm", "public_ip": "127.0.0.3", "state": "stopped"}),
    (CloudHost, {"name": "frankfurt-1", "region": "europe", "latitude": 50.11, "longitude": 8.63, "cpu": 2.0,
                 "ram": 4 * GiB, "disk": 16 * GiB, "instance_id": "i-0001", "instance_type": "t2.medium",
                 "cloud_region": "eu-central-1", "state": "starting", "public_ip": "127.0.0.4"}),
    (Container, {"name": "front-1", "service": "front", "host": "lisbon", "state": "running", "port": 8081}),
    (Container, {"name": "front-2", "service": "front", "host": "frankfurt-1", "state": "starting"}),
    (Container, {"name": "stock-1", "service": "stock", "host": "lisbon", "state": "running"}),
    (Container, {"name": "stock-0", "service": "stock", "host": "porto", "state": "down"}),
    (Container, {"name": "monitor-1", "service": "monitor", "host": "lisbon", "state": "running"}),
    (Worker, {"name": "worker-europe", "region": "europe", "address": "127.0.0.5", "port": 8081}),
    (Node, {"swarm_id": "node-lisbon", "host": "lisbon", "role": "manager"}),
]


# Each entity: create, read back in another transaction, find by a filter, update, delete.


@dataclass(frozen=True)
class Case:
    model: type[Base]
    values: dict[str, Any]
    filters: dict[str, Any]
    changes: dict[str, Any]
    key: Any = field(default=None)  # the row's key when it is not values["name"]


CASES = [
    Case(Region, {"name": "antarctica", "title": "Antarctica", "latitude": -82.0, "longitude": 0.0},
         {"latitude": -82.0}, {"title": "The far south"}),
    Case(App, {"name": "blog", "description": "a blog", "services": ["stock", "front"]},
         {"description": "a blog"}, {"services": ["front", "monitor", "stock"]}),
    Case(Service, {"name": "cache", "image": "redis:7", "kind": "database", "dependencies": ["stock"],
                   "min_replicas": 2, "max_replicas": 4, "expected_memory": GiB, "internal_port": 6379},
         {"kind": "database"}, {"max_replicas": 0, "dependencies": [], "image": "redis:8"}),
    Case(EventPrediction, {"name": "black-friday", "service": "front", "starts_at": "2026-11-27T00:00:00+00:00",
                           "ends_at": "2026-11-28T00:00:00+01:00", "min_replicas": 5},
         {"service": "front"}, {"weekly": True, "min_replicas": 6, "service": "stock"}),
    Case(CloudHost, {"name": "paris-1", "latitude": 48.88, "longitude": 2.34, "cpu": 4.0, "ram": 8 * GiB,
                     "disk": 32 * GiB, "instance_id": "i-0002", "instance_type": "t2.large",
                     "cloud_region": "eu-west-3"},
         {"cloud_region": "eu-west-3"}, {"state": "stopped", "public_ip": "127.0.0.9"}),
    Case(EdgeHost, {"name": "madrid", "region": "europe", "latitude": 40.42, "longitude": -3.70, "cpu": 4.0,
                    "ram": 4 * GiB, "disk": 64 * GiB, "username": "edge", "public_dns_name": "madrid.example",
                    "local": True},
         {"local": True}, {"ssh_port": 2200, "username": "usm"}),
    Case(Node, {"swarm_id": "node-frankfurt", "host": "frankfurt-1", "worker": "worker-europe"},
         {"worker": "worker-europe"}, {"availability": "drain", "state": "down"}, key="node-frankfurt"),
    Case(ElasticIp, {"allocation_id": "eipalloc-1", "public_ip": "127.0.0.20", "region": "europe",
                     "cloud_region": "eu-central-1"},
         {"region": "europe"}, {"host": "frankfurt-1", "association_id": "eipassoc-1"}, key="eipalloc-1"),
    Case(Container, {"name": "stock-2", "service": "stock", "host": "frankfurt-1", "docker_id": "f00d"},
         {"host": "frankfurt-1", "service": "stock"}, {"state": "running", "host": "lisbon", "port": 9000}),
    Case(LoadBalancer, {"container": "front-2", "region": "europe"}, {"region": "europe"},
         {"container": "front-1"}, key="front-2"),
    Case(RegistrationServer, {"container": "stock-1", "region": "europe"}, {"region": "europe"},
         {"region": "asia"}, key="stock-1"),
    Case(Worker, {"name": "worker-asia", "address": "127.0.0.6", "port": 8082}, {"address": "127.0.0.6"},
         {"region": "asia", "heartbeat_at": "2026-11-27T12:00:00+00:00", "state": "down"}),
    Case(HostAssignment, {"host": "lisbon", "worker": "worker-europe"}, {"worker": "worker-europe"},
         {"host": "porto"}, key="lisbon"),
]


def plain(value: Any) -> Any:
    """A stored value as the service layer takes it: rows by their key, enums by their value."""
    if isinstance(value, Base):
        return crud.label(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def assert_has(row: Base, values: dict[str, Any]) -> None:
    stored = {k: getattr(row, k) for k in values}
    given = {k: datetime.fromisoformat(v) if isinstance(stored[k], datetime) else v for k, v in values.items()}
    assert {k: plain(v) for k, v in stored.items()} == {k: plain(v) for k, v in given.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.model.__name__)
def test_each_entity_is_created_read_found_updated_and_deleted(world, case):
    key = case.key or case.values["name"]
    with world.begin() as session:
        created = crud.create(session, case.model, **case.values)
        assert crud.label(created) == key
    with world.begin() as session:
        stored = crud.get(session, case.model, key)
        assert_has(stored, case.values)
        assert crud.get(session, case.model, schema_of(stored).identity[0]) is stored
        found = crud.find(session, case.model, **case.filters)
        assert stored in found.items and found.total == len(found.items)
        assert all(plain(getattr(r, f)) == v for r in found.items for f, v in case.filters.items())
    with world.begin() as session:
        key = crud.label(crud.update(session, case.model, key, **case.changes))
    with world.begin() as session:
        assert_has(crud.get(session, case.model, key), {**case.values, **case.changes})
        crud.delete(session, case.model, key)
    with world.begin() as session, pytest.raises(NotFound, match="there is no"):
        crud.get(session, case.model, key)


def test_listings_page_in_key_order_and_count_every_match(world):
    names = [f"app-{i}" for i in (3, 1, 4, 0, 2)]
    with world.begin() as session:
        for name in names:
            crud.create(session, App, name=name)
        page = crud.find(session, App, limit=2, offset=2)
        assert [a.name for a in page.items] == sorted([*names, "shop"])[2:4]
        assert (page.total, page.limit, page.offset) == (6, 2, 2)
        assert crud.find(session, App, offset=6).items == []
        with pytest.raises(Invalid, match="limit is 0"):
            crud.find(session, App, limit=0)


def test_filters_by_fields_by_related_rows_and_by_kind_of_host(world):
    with world() as session:
        names = lambda page: [crud.label(r) for r in page.items]
        assert names(crud.find(session, Container, host="lisbon", state="running")) == [
            "front-1", "monitor-1", "stock-1"]
        assert names(crud.find(session, Service, apps="shop")) == ["front", "stock"]
        assert names(crud.find(session, Service, dependents="front")) == ["stock"]
        assert names(crud.find(session, Host, kind="edge")) == ["lisbon", "porto"]
        assert all(isinstance(h, EdgeHost) for h in crud.find(session, Host, kind="edge").items)
        assert names(crud.find(session, Host, region="europe")) == ["frankfurt-1", "lisbon", "porto"]
        assert names(crud.find(session, Host, node=None)) == ["frankfurt-1", "porto"]
        with pytest.raises(Invalid, match="cannot be filtered by 'colour'; filter by one of .*region"):
            crud.find(session, Host, colour="red")
        with pytest.raises(Invalid, match="state: 'asleep' is not one of running, starting, stopping, stopped"):
            crud.find(session, Host, state="asleep")


def test_a_host_without_a_region_joins_the_closest_stored_region(world):
    with world() as session:
        assert crud.get(session, Host, "lisbon").region.name == "europe"
        sydney = crud.create(session, EdgeHost, name="sydney", latitude=-33.87, longitude=151.21, cpu=1.0, ram=GiB,
                             disk=GiB, username="usm", public_ip="127.0.0.30")
        assert sydney.region.name == "oceania"


def test_an_app_keeps_its_services_in_launch_order(world):
    with world.begin() as session:
        crud.update(session, App, "shop", services=["stock", "monitor", "front"])
    with world() as session:
        app = crud.get(session, App, "shop")
        assert [s.name for s in app.services] == ["stock", "monitor", "front"]
        assert [m.launch_order for m in app.members] == [0, 1, 2]


# Refusals: each one names the problem, and changes nothing.


def test_unknown_keys_and_ids_are_not_found(world):
    with world() as session:
        for call in (lambda: crud.get(session, Service, "cart"), lambda: crud.update(session, App, "blog", name="x"),
                     lambda: crud.delete(session, CloudHost, "lisbon"), lambda: crud.get(session, Worker, 10**6)):
            with pytest.raises(NotFound, match=r"there is no .* (name|id) ('cart'|'blog'|'lisbon'|1000000)"):
                call()


@pytest.mark.parametrize(("model", "values", "message"), [
    (Service, {"name": "front", "image": "x"}, "a service named 'front' exists already"),
    (CloudHost, {"name": "lisbon", "latitude": 0.0, "longitude": 0.0, "cpu": 1.0, "ram": 1, "disk": 1,
                 "instance_id": "i-9", "instance_type": "t", "cloud_region": "eu-west-1"},
     "a host named 'lisbon' exists already"),
    (CloudHost, {"name": "paris-9", "latitude": 0.0, "longitude": 0.0, "cpu": 1.0, "ram": 1, "disk": 1,
                 "instance_id": "i-0001", "instance_type": "t", "cloud_region": "eu-west-1"},
     "cloud host 'frankfurt-1' already has instance_id 'i-0001'"),
    (Node, {"swarm_id": "node-2", "host": "lisbon"}, "node 'node-lisbon' already has host 'lisbon'"),
])
def test_duplicates_are_refused_naming_the_holder(world, model, values, message):
    with world.begin() as session:
        before = crud.find(session, model).total
        with pytest.raises(Duplicate, match=message):
            crud.create(session, model, **values)
        assert crud.find(session, model).total == before


@pytest.mark.parametrize(("model", "key", "dependants"), [
    (Service, "stock", {"containers": ["stock-0", "stock-1"], "dependents": ["front"], "apps": ["shop"]}),
    (Region, "europe", {"hosts": ["frankfurt-1", "lisbon", "porto"], "workers": ["worker-europe"]}),
    (EdgeHost, "lisbon", {"containers": ["front-1", "monitor-1", "stock-1"], "node": ["node-lisbon"]}),
    (Worker, "worker-europe", {}),
])
def test_a_delete_is_blocked_while_rows_depend_on_it(world, model, key, dependants):
    with world.begin() as session:
        if not dependants:  # a worker managing a host cannot go either
            crud.create(session, HostAssignment, host="porto", worker=key)
            dependants = {"assignments": ["porto"]}
        with pytest.raises(InUse, match=f"{model.noun()} '{key}' is still used by") as refused:
            crud.delete(session, model, key)
        assert refused.value.dependants == dependants
        crud.create(session, App, name="after")  # the transaction goes on
    with world() as session:
        assert crud.get(session, model, key) is not None
        assert crud.get(session, App, "after") is not None


def test_deleting_a_service_takes_its_predictions_and_dependencies_not_other_rows(world):
    with world.begin() as session:
        crud.delete(session, Container, "front-1")
        crud.delete(session, Container, "front-2")
        crud.update(session, App, "shop", services=["stock"])
        crud.delete(session, Service, "front")
    with world() as session:
        assert crud.find(session, EventPrediction).total == 1
        assert crud.get(session, Service, "stock").dependents == []
        assert [s.name for s in crud.get(session, App, "shop").services] == ["stock"]


@pytest.mark.parametrize(("model", "key", "changes", "message"), [
    (Service, "front", {"max_replicas": 1}, r"max_replicas \(1\) is below min_replicas \(2\)"),
    (Service, "front", {"min_replicas": -1}, "min_replicas is -1; it must be 0 or more"),
    (Service, "front", {"external_port": 70000}, "external_port is 70000"),
    (Service, "stock", {"dependencies": ["front"]}, "a cycle: stock -> front -> stock"),
    (Service, "stock", {"dependencies": ["stock"]}, "cannot depend on itself"),
    (Service, "front", {"dependencies": ["stock", "stock"]}, "lists 'stock' more than once"),
    (Service, "front", {"dependencies": "stock"}, "must be a list of service names"),
    (Service, "front", {"kind": "gateway"}, "kind: 'gateway' is not one of frontend, backend, database, system"),
    (Service, "front", {"min_replicas": "2"}, "min_replicas must be a whole number, not '2'"),
    (Service, "front", {"image": None}, "image cannot be empty"),
    (Service, "front", {"name": ""}, "name cannot be blank"),
    (Service, "front", {"colour": "red"}, "services have no field 'colour'"),
    (App, "shop", {"services": ["front", "cart"]}, "there is no service 'cart'; create it first"),
    (EdgeHost, "lisbon", {"latitude": 91.0}, r"latitude must be a number in \[-90, 90\]"),
    (EdgeHost, "lisbon", {"cpu": 0.0}, "cpu is 0.0; a host's capacity must be more than 0"),
    (EdgeHost, "lisbon", {"public_ip": "lisbon.local"}, "public_ip 'lisbon.local' is not an IPv4 or IPv6"),
    (EdgeHost, "lisbon", {"region": "atlantis"}, "there is no region 'atlantis'"),
    (CloudHost, "frankfurt-1", {"cloud_region": "mars-1"}, "cloud_region 'mars-1' is unknown"),
    (EventPrediction, "sale", {"ends_at": "2026-11-27T08:00:00+00:00"}, "is not after starts_at"),
    (EventPrediction, "sale", {"starts_at": "2026-11-27T09:00:00"}, "has no time zone"),
    (EventPrediction, "sale", {"starts_at": "tomorrow"}, "'tomorrow' is not an ISO 8601 time"),
    (EventPrediction, "fridays", {"ends_at": "2026-11-27T08:00:00+00:00"}, "must last less than a week"),
    (Node, "node-lisbon", {"host": None}, "host cannot be empty"),
    (Worker, "worker-europe", {"port": 0}, "port is 0"),
])
def test_bad_values_are_refused_and_the_row_keeps_its_own(world, model, key, changes, message):
    with world.begin() as session:
        before = {k: plain(getattr(crud.get(session, model, key), k)) for k in changes if k != "colour"}
        with pytest.raises(Invalid, match=message):
            crud.update(session, model, key, **changes)
        assert {k: plain(getattr(crud.get(session, model, key), k)) for k in before} == before
    with world() as session:
        assert {k: plain(getattr(crud.get(session, model, key), k)) for k in before} == before


def test_creating_needs_every_required_field_and_a_concrete_kind_of_host(world):
    with world() as session:
        with pytest.raises(Invalid, match="container 'c' needs service, host; give them"):
            crud.create(session, Container, name="c")
        with pytest.raises(Invalid, match="hosts are created as cloud hosts or edge hosts"):
            crud.create(session, Host, name="h")
        with pytest.raises(Invalid, match="an elastic IP is associated with a cloud host"):
            crud.create(session, ElasticIp, allocation_id="a", public_ip="127.0.0.40", region="asia",
                        cloud_region="ap-south-1", host="lisbon", association_id="x")


def test_the_database_enforces_what_the_layer_checks(store, world):
    """Constraints hold for writers that bypass the service layer too (another tool, a bad migration)."""
    from sqlalchemy.exc import IntegrityError

    for statement in ("UPDATE services SET max_replicas = 1 WHERE name = 'front'",
                      "UPDATE hosts SET state = 'asleep' WHERE name = 'lisbon'",
                      "INSERT INTO containers (name, service_id, host_id, state) VALUES ('x', 999, 999, 'running')",
                      "DELETE FROM services WHERE name = 'stock'"):
        with pytest.raises(IntegrityError), store.begin() as connection:
            connection.execute(text(statement))


# Federation helpers.


def test_heartbeats_make_workers_ready_and_silence_shows(world):
    with world.begin() as session:
        crud.create(session, Worker, name="worker-asia", region="asia", address="127.0.0.6", port=8082)
        assert heartbeat(session, "worker-europe", NOON)
        assert not heartbeat(session, "worker-mars", NOON)
        assert [w.name for w in silent_workers(session, NOON - timedelta(seconds=30))] == ["worker-asia"]
        assert [w.name for w in silent_workers(session, NOON + timedelta(seconds=1))] == [
            "worker-asia", "worker-europe"]
        crud.update(session, Worker, "worker-asia", state="down")
        assert [w.name for w in silent_workers(session, NOON + timedelta(seconds=1))] == ["worker-europe"]
        assert heartbeat(session, "worker-asia", NOON)
    with world() as session:
        asia = crud.get(session, Worker, "worker-asia")
        assert (asia.state, asia.heartbeat_at) == (WorkerState.READY, NOON)


# Views: what the engine and placement are given.


def test_the_inventory_is_what_was_stored_at_that_time(world):
    with world() as session:
        inventory = views.inventory(session, NOON)
        on_friday_morning = views.inventory(session, datetime(2026, 12, 4, 9, 30, tzinfo=UTC))
    assert inventory == engine.Inventory(
        hosts=(engine.Host("frankfurt-1", "europe", 50.11, 8.63), engine.Host("lisbon", "europe", 38.72, -9.14)),
        apps=(engine.App("shop", ("front", "stock")),),
        services=(engine.Service("front", 4, 6), engine.Service("monitor", 1, 0), engine.Service("stock", 1, 0)),
        containers=(engine.Container("front-1", "front", "lisbon"), engine.Container("front-2", "front",
                                                                                       "frankfurt-1"),
                    engine.Container("monitor-1", "monitor", "lisbon"), engine.Container("stock-1", "stock",
                                                                                          "lisbon")),
    )
    assert {s.name: s.min_replicas for s in on_friday_morning.services} == {"front": 2, "monitor": 1, "stock": 3}
    assert inventory.replicas == {"front": 2, "monitor": 1, "stock": 1}


def test_the_cluster_has_every_host_and_the_live_containers_with_their_demands(world):
    used = {"lisbon": Resources(1.5, 2 * GiB, 10 * GiB)}
    measured = {"front-1": Resources(0.5, GiB / 8, 0.0)}
    with world() as session:
        cluster = views.cluster(session, used=used, demands=measured)
        specs = views.service_specs(session, NOON)
    assert cluster.hosts == (
        HostCapacity("frankfurt-1", Coordinates(50.11, 8.63), Resources(2.0, 4 * GiB, 16 * GiB), kind=HostKind.CLOUD,
                     state=HostState.STARTING, region="europe", cloud_region="eu-central-1"),
        HostCapacity("lisbon", Coordinates(38.72, -9.14), Resources(4.0, 8 * GiB, 64 * GiB), used["lisbon"],
                     region="europe"),
        HostCapacity("porto", Coordinates(41.15, -8.61), Resources(2.0, 4 * GiB, 32 * GiB),
                     state=HostState.STOPPED, region="europe"),
    )
    assert cluster.containers == (
        ContainerDemand("front-1", "front", "lisbon", measured["front-1"]),
        ContainerDemand("front-2", "front", "frankfurt-1", Resources(ram=GiB / 4), starting=True),
        ContainerDemand("monitor-1", "monitor", "lisbon", system=True),
        ContainerDemand("stock-1", "stock", "lisbon", Resources(ram=GiB / 2)),
    )
    assert cluster.load("frankfurt-1") == Resources(ram=GiB / 4)  # the starting replica is counted
    assert specs == (ServiceSpec("front", Resources(ram=GiB / 4), 4), ServiceSpec("monitor", Resources(), 1),
                     ServiceSpec("stock", Resources(ram=GiB / 2), 1))


def test_views_refuse_a_time_without_zone(world):
    with world() as session, pytest.raises(Invalid, match="has no time zone"):
        views.inventory(session, datetime(2026, 11, 27, 12, 0))


# The decision log index.


def test_the_decision_log_is_indexed_incrementally_and_records_read_back(world, tmp_path):
    log = tmp_path / "decisions.jsonl"
    records = [
        {"type": "evaluation", "at": 60.0, "entity": "front-1", "kind": "container", "decision": "replicate",
         "rule": "busy", "policy": "abc"},
        {"type": "action", "at": 60.0, "action": "replicate", "target": "front", "container": "front-1",
         "rule": "busy", "policy": "abc"},
        {"type": "step", "at": 60.0, "why": "replicate front", "ok": True, "detail": "",
         "step": {"type": "PlaceReplica", "service": "front", "on": {"type": "UseHost", "host": "lisbon"}}},
    ]
    with log.open("w") as stream:
        DecisionLog(stream).write(iter(records))
    with world.begin() as session:
        assert index_log(session, log) == 3
        assert index_log(session, log) == 0
    with log.open("a") as stream:
        DecisionLog(stream).write(iter([{"type": "suppressed", "at": 75.0, "action": "stop", "target": "stock",
                                         "entity": "stock-1", "rule": "idle", "reason": "cooldown",
                                         "policy": "abc"}]))
        stream.write('{"type": "action", "at": 90.0')  # a record being written
    with world.begin() as session:
        assert index_log(session, log) == 1
        front = crud.find(session, DecisionRecord, entity="front-1")
        assert [(r.kind, r.decision, r.target) for r in front.items] == [
            ("evaluation", "replicate", None), ("action", "replicate", "front")]
        assert [read_record(r) for r in front.items] == records[:2]
        step = crud.find(session, DecisionRecord, kind="step").items[0]
        assert (step.entity, step.target, step.decision) == ("front", "front", "PlaceReplica")
        assert crud.find(session, DecisionRecord, target="stock").items[0].decision == "stop"
    log.write_text("")
    with world.begin() as session, pytest.raises(Invalid, match="shorter than its index"):
        index_log(session, log)


# The schema: migrations, the command, the backends' settings.


def test_migrations_go_from_empty_to_head_and_match_the_models(blank_url):
    migrated = open_engine(blank_url)
    try:
        with pytest.raises(NotMigrated, match="revision none .* run `usm db upgrade`"):
            require_current(migrated)
        assert upgrade(migrated) == (None, head_revision())
        require_current(migrated)
        with migrated.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                    Base.metadata) == []
            regions = connection.execute(text("SELECT name, latitude, longitude FROM regions ORDER BY id")).all()
        assert regions == [(a.name, a.location.latitude, a.location.longitude) for a in AREAS]
        assert downgrade(migrated, "base") == (head_revision(), None)
        assert set(schema_of(migrated).get_table_names()) == {"alembic_version"}
        assert upgrade(migrated)[1] == head_revision()
    finally:
        migrated.dispose()


def test_sqlite_stores_use_write_ahead_logging_and_foreign_keys(tmp_path):
    migrated = open_engine(tmp_path / "usm.db")
    with migrated.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    migrated.dispose()


def test_usm_db_upgrade_migrates_once(blank_url, backend):
    runner = CliRunner()
    first = runner.invoke(main, ["db", "upgrade"], env={"USM_DATABASE": blank_url})
    assert first.exit_code == 0, first.output
    assert f"migrated from empty to {head_revision()}" in first.output
    again = runner.invoke(main, ["db", "upgrade", "--db", blank_url])
    assert again.exit_code == 0 and f"already at revision {head_revision()}" in again.output
    migrated = open_engine(blank_url)
    assert current_revision(migrated) == head_revision()
    migrated.dispose()


def test_usm_db_upgrade_explains_what_it_cannot_reach(tmp_path):
    runner = CliRunner()
    wrong = runner.invoke(main, ["db", "upgrade", "--db", "mysql://root@127.0.0.1/usm"])
    assert wrong.exit_code == 2 and "runs on SQLite or PostgreSQL, not 'mysql'" in wrong.output
    closed = runner.invoke(main, ["db", "upgrade", "--db", f"postgresql://usm@127.0.0.1:{free_port()}/usm"],
                           env={"PGCONNECT_TIMEOUT": "2"})
    assert closed.exit_code == 1 and "usm db upgrade: postgresql+psycopg://usm@127.0.0.1" in closed.output
    assert "connection" in closed.output.lower()


def test_records_survive_reopening_the_store(world, store):
    url = store.url.render_as_string(hide_password=False)
    store.dispose()
    reopened = open_engine(url)
    with sessions(reopened)() as session:
        assert [c.name for c in crud.find(session, Container).items] == sorted(
            v["name"] for m, v in WORLD if m is Container)
    reopened.dispose()

"""An app launched live, in dependency order, on two pseudo-hosts (a private dockerd each, reached over a real sshd):
usm's launcher (``launch_app`` on the wall clock) with the Docker launch actuator.

db <- api <- web, each a busybox httpd on the host's network. db listens only a second after its container
starts, so a launch that did not wait for db to answer would start api too early. The order is read behind usm's
back, from each engine: the containers' ``State.StartedAt``, and the engines' ``die`` events when the app stops.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.services import free_port, need
from tests.services.dockerd import busybox_image
from tests.services.dockerhost import pseudo_hosts
from usm.actuators.clock import WALL_CLOCK
from usm.actuators.docker import LABEL_APP, LABEL_NAME, ContainerSettings, ContainerSpec, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts
from usm.actuators.launching import DockerLaunchActuator
from usm.geo.sphere import Coordinates
from usm.manager.launcher import ReplicaState, launch_app, stop_app
from usm.placement.launch import plan_launch
from usm.placement.model import HostCapacity, Resources, ServiceSpec
from usm.placement.plans import PlaceReplica, StartHost

DB_DELAY = 1.0  # seconds between db's container starting and db answering
DEPENDENCIES = {"db": (), "api": ("db",), "web": ("api",)}
LOOPBACK = "127.0.0.1"
HOSTS = (HostCapacity("a", Coordinates(50.11, 8.68), Resources(4, 4e9, 1e10)),
         HostCapacity("b", Coordinates(48.85, 2.35), Resources(4, 4e9, 1e10)))


def httpd(port: int, delay: float = 0.0) -> tuple[str, ...]:
    """A busybox httpd on ``port`` after ``delay`` seconds; it stops at once on SIGTERM."""
    return ("sh", "-c", f"trap 'exit 0' TERM; sleep {delay:g}; httpd -f -p {LOOPBACK}:{port} -h / & wait")


@pytest.fixture(scope="module")
def lab():
    need("dockerd")
    need("sshd")
    with pseudo_hosts("a", "b", prefix="usm-launch-") as started:
        image = ""
        for host in started.hosts.values():
            image = busybox_image(host.engine())
        access = DockerAccess(known_hosts=started.known_hosts, identity=started.identity)
        hosts = DockerHosts({name: host.url for name, host in started.hosts.items()}, access)
        ports = {service: free_port() for service in DEPENDENCIES}
        specs = {service: ContainerSpec(service, image, app="shop",
                                        command=httpd(ports[service], DB_DELAY if service == "db" else 0.0))
                 for service in DEPENDENCIES}
        containers = DockerContainers(hosts, ContainerSettings(pull=False, poll=0.05, stop_grace=2), WALL_CLOCK)
        actuator = DockerLaunchActuator(containers, specs, {"a": LOOPBACK, "b": LOOPBACK}, ports)
        yield started, actuator
        hosts.close()


def engine_containers(started) -> dict[str, tuple[str, dict]]:
    """usm name -> (host, Docker's attrs) of every container of app shop, from each engine's own socket."""
    found = {}
    for name, host in started.hosts.items():
        for container in host.engine().containers.list(all=True, filters={"label": f"{LABEL_APP}=shop"}):
            found[container.labels[LABEL_NAME]] = (name, container.attrs)
    return found


def started_at(attrs: dict) -> datetime:
    """Docker's StartedAt (UTC, in nanoseconds) to the microsecond."""
    return datetime.fromisoformat(attrs["State"]["StartedAt"][:26])


def test_an_app_starts_in_dependency_order_and_stops_in_reverse(lab):
    started, actuator = lab
    plan = plan_launch("shop", DEPENDENCIES)
    specs = {service: ServiceSpec(service) for service in DEPENDENCIES}
    since = time.time()

    report = launch_app(plan, specs, actuator, lambda _: actuator.cluster(HOSTS), ["a", "b"], WALL_CLOCK,
                        poll=0.1, timeout=60)

    assert report.ok, report.summary()
    assert report.waves == (("db",), ("api",), ("web",))
    seen = engine_containers(started)
    by_service = {attrs["Config"]["Labels"]["usm.service"]: (name, host, attrs)
                  for name, (host, attrs) in seen.items()}
    assert sorted(by_service) == ["api", "db", "web"]
    assert [by_service[s][1] for s in ("db", "api", "web")] == ["a", "b", "a"]  # the chosen hosts in turn
    assert all(attrs["State"]["Running"] for _, _, attrs in by_service.values())
    db, api, web = (started_at(by_service[s][2]) for s in ("db", "api", "web"))
    # db answered DB_DELAY after it started; api started only then, and web only once api was ready.
    assert (api - db).total_seconds() >= DB_DELAY
    assert db < api < web
    for service in DEPENDENCIES:
        assert actuator.replica_state(by_service[service][0], time.time()) is ReplicaState.READY

    outcomes = stop_app(plan, actuator.cluster(HOSTS), actuator, time.time())

    assert [o.ok for o in outcomes] == [True, True, True], outcomes
    assert engine_containers(started) == {}
    died = []
    for host in started.hosts.values():
        events = host.engine().events(since=int(since), until=int(time.time()) + 1, decode=True,
                                      filters={"event": "die", "label": f"{LABEL_APP}=shop"})
        died += [(event["timeNano"], event["Actor"]["Attributes"]["usm.service"]) for event in events]
    assert [service for _, service in sorted(died)] == ["web", "api", "db"]
    for service in DEPENDENCIES:
        assert actuator.replica_state(by_service[service][0], time.time()) is ReplicaState.GONE


def test_a_replica_that_exits_before_it_answers_fails_the_launch_and_only_running_hosts_are_used(lab):
    started, actuator = lab
    broken = ContainerSpec("db", actuator.specs["db"].image, app="shop", command=("sh", "-c", "exit 3"))
    failing = DockerLaunchActuator(actuator.containers, {**actuator.specs, "db": broken}, actuator.addresses,
                                   actuator.ports)
    plan = plan_launch("shop", DEPENDENCIES)
    specs = {service: ServiceSpec(service) for service in DEPENDENCIES}

    report = launch_app(plan, specs, failing, lambda _: failing.cluster(HOSTS), ["a"], WALL_CLOCK, poll=0.1,
                        timeout=30)

    assert not report.ok
    # Docker may report the container running for the instant before `exit 3` ends it: then the launch
    # finds it gone while waiting for it to be ready, instead of seeing the exit code at start.
    assert report.status("db").state == "failed"
    assert "exited with code 3" in report.failure or "of db stopped before it was ready" in report.failure
    assert report.in_state("not started") == ("api", "web")
    assert engine_containers(started) == {}  # the container that never ran was removed
    refused = failing.start_replica(PlaceReplica("db", HOSTS[0].location, StartHost("a", 0.0)), time.time())
    assert not refused.ok and "StartHost" in refused.detail

"""The Docker actuator against two real pseudo-hosts (a private dockerd each, reached over a real sshd).

usm reaches both hosts only over SSH, checked against its own known_hosts file; the tests look at each engine
directly through its socket to see what really happened. One pair of hosts serves the whole module.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from tests.services import free_port, need
from tests.services.dockerd import Dockerd, busybox_image, remove_tree
from tests.services.dockerhost import DockerHost, client_key, pseudo_hosts, short_tempdir
from usm.actuators.containersteps import ContainerSteps, step_name
from usm.actuators.docker import (
    LABEL_APP,
    LABEL_LINEAGE,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_SERVICE,
    ContainerError,
    ContainerSettings,
    ContainerSpec,
    DockerContainers,
    UnmanagedContainer,
)
from usm.actuators.dockerhosts import AccessError, DockerAccess, DockerHosts, connect
from usm.geo.sphere import Coordinates
from usm.placement.plans import (
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    RestoreContainer,
    StartHost,
    StopContainer,
    StopHost,
    UseHost,
)

# A service that stops at once on SIGTERM (a plain `sleep` as PID 1 ignores it and would wait out the grace).
SERVE = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")
ONLY_ON_A = "usm-test/only-a:1"
LISBON = Coordinates(38.72, -9.14)


@dataclass
class VirtualClock:
    """Time that passes only when someone sleeps; `on_sleep` sees every sleep as it happens."""

    now_s: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    on_sleep: object = None

    def now(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if callable(self.on_sleep):
            self.on_sleep(seconds)
        self.now_s += seconds


@dataclass
class Pair:
    a: DockerHost
    b: DockerHost
    access: DockerAccess
    hosts: DockerHosts
    image: str
    workdir: Path


@pytest.fixture(scope="module")
def pair():
    need("dockerd")
    need("sshd")
    with pseudo_hosts("a", "b", prefix="usm-docker-") as started:
        a, b = started.hosts["a"], started.hosts["b"]
        image = busybox_image(a.engine())
        busybox_image(b.engine())
        busybox_image(a.engine(), *ONLY_ON_A.split(":"))
        access = DockerAccess(known_hosts=started.known_hosts, identity=started.identity)
        hosts = DockerHosts({"a": a.url, "b": b.url}, access)
        yield Pair(a, b, access, hosts, image, started.workdir)
        hosts.close()


names = (f"t{n}" for n in itertools.count())


def containers(pair: Pair, **settings) -> tuple[DockerContainers, VirtualClock]:
    clock = VirtualClock()
    return DockerContainers(pair.hosts, ContainerSettings(pull=False, **settings), clock), clock


def spec(pair: Pair, service: str = "front", **changes) -> ContainerSpec:
    return ContainerSpec(**{"service": service, "image": pair.image, "app": "shop", "command": SERVE, **changes})


def on_engine(host: DockerHost, name: str):
    """The container `name` as the host's engine itself reports it (None if it is not there)."""
    found = host.engine().containers.list(all=True, filters={"name": f"^/{name}$"})
    return found[0] if found else None


def test_launch_labels_the_container_and_reports_an_existing_one(pair):
    actuator, _ = containers(pair)
    name = next(names)
    launched = actuator.launch("a", spec(pair), name)
    assert launched.created and launched.container.running
    seen = on_engine(pair.a, name)
    assert seen.status == "running"
    assert {k: seen.labels[k] for k in (LABEL_MANAGED, LABEL_SERVICE, LABEL_APP, LABEL_NAME)} == {
        LABEL_MANAGED: "true", LABEL_SERVICE: "front", LABEL_APP: "shop", LABEL_NAME: name}
    assert seen.attrs["HostConfig"]["NetworkMode"] == "host"

    again = actuator.launch("a", spec(pair), name)
    assert not again.created and again.container.id == launched.container.id
    assert [c.id for c in pair.a.engine().containers.list(all=True, filters={"label": f"{LABEL_NAME}={name}"})] == [
        launched.container.id]
    assert name in [c.name for c in actuator.list("a", "front")]


def test_launch_starts_a_stopped_container_of_the_same_name_again(pair):
    actuator, _ = containers(pair)
    name = next(names)
    first = actuator.launch("a", spec(pair), name)
    on_engine(pair.a, name).stop(timeout=5)
    again = actuator.launch("a", spec(pair), name)
    assert not again.created and again.container.id == first.container.id
    assert on_engine(pair.a, name).status == "running"


def test_replicate_copies_the_container_to_the_second_host(pair):
    actuator, _ = containers(pair)
    source, copy = next(names), next(names)
    actuator.launch("a", spec(pair, environment={"REGION": "eu"}), source)
    launched = actuator.replicate(source, "a", "b", copy)
    assert launched.created and launched.container.host == "b"
    original, replica = on_engine(pair.a, source), on_engine(pair.b, copy)
    assert replica.status == "running" and original.status == "running"
    assert replica.attrs["Config"]["Cmd"] == list(SERVE)  # the command as it runs, not rebuilt (bug 17)
    assert "REGION=eu" in replica.attrs["Config"]["Env"]
    assert replica.labels[LABEL_SERVICE] == "front" and replica.labels[LABEL_NAME] == copy


def test_migrate_stops_the_original_only_after_the_new_container_runs(pair):
    actuator, clock = containers(pair, delay_before_stop=45)
    source, copy = next(names), next(names)
    actuator.launch("a", spec(pair), source)
    seen_during_delay = []

    def look(seconds: float) -> None:
        if seconds == 45:
            seen_during_delay.append((on_engine(pair.b, copy).status, on_engine(pair.a, source).status))

    clock.on_sleep = look
    moved = actuator.migrate(source, "a", "b", copy)
    assert seen_during_delay == [("running", "running")]
    assert moved.stopped and moved.created and moved.container.host == "b"
    assert on_engine(pair.a, source) is None
    assert on_engine(pair.b, copy).status == "running"
    # repeated (a restart replaying it): the copy is reported, nothing new starts, nothing fails
    again = actuator.migrate(source, "a", "b", copy)
    assert not again.created and not again.stopped and again.container.id == moved.container.id


def test_a_migration_whose_copy_cannot_start_leaves_the_original_running(pair):
    actuator, clock = containers(pair)
    source, copy = next(names), next(names)
    actuator.launch("a", spec(pair, image=ONLY_ON_A), source)
    with pytest.raises(ContainerError, match=f"image {ONLY_ON_A} is not on host b and pulling is off"):
        actuator.migrate(source, "a", "b", copy)
    assert on_engine(pair.a, source).status == "running"
    assert on_engine(pair.b, copy) is None
    assert clock.sleeps == []  # no delay was waited: the original was never about to stop


def test_a_container_that_cannot_start_is_reported_and_removed(pair):
    actuator, _ = containers(pair)
    name = next(names)
    with pytest.raises(ContainerError, match=f"cannot start container {name} on host b: .*/bin/absent"):
        actuator.launch("b", spec(pair, command=("/bin/absent",)), name)
    assert on_engine(pair.b, name) is None


def test_stop_removes_the_container_and_a_second_stop_reports_it_gone(pair):
    actuator, _ = containers(pair)
    name = next(names)
    actuator.launch("b", spec(pair), name)
    assert actuator.stop("b", name) is True
    assert on_engine(pair.b, name) is None
    assert actuator.stop("b", name) is False


def test_an_unmanaged_container_is_left_alone(pair):
    actuator, _ = containers(pair)
    bystander = pair.b.engine().containers.run(pair.image, list(SERVE), name="bystander", network_mode="none",
                                               detach=True)
    try:
        with pytest.raises(UnmanagedContainer, match="bystander on host b was not started by usm"):
            actuator.stop("b", "bystander")
        with pytest.raises(UnmanagedContainer):
            actuator.launch("b", spec(pair), "bystander")
        with pytest.raises(UnmanagedContainer):
            actuator.migrate("bystander", "b", "a", next(names))
        assert "bystander" not in [c.name for c in actuator.list("b")]
        bystander.reload()
        assert bystander.status == "running" and bystander.labels == {}
    finally:
        bystander.remove(force=True)


def test_plan_steps(pair):
    actuator, clock = containers(pair, delay_before_stop=30)
    steps = ContainerSteps(actuator, {"front": spec(pair), "stock": spec(pair, service="stock")})

    place = PlaceReplica("front", LISBON, UseHost("b", 0.0))
    placed = steps.execute(place, at=100.0)
    name = step_name("front", place, 100.0)
    assert placed.ok and placed.detail == f"{name} started on b"
    repeated = steps.execute(place, at=100.0)
    assert repeated.ok and repeated.detail == f"{name} was already running on b"
    assert len(pair.b.engine().containers.list(filters={"label": f"{LABEL_NAME}={name}"})) == 1

    move = MoveContainer(name, "front", "b", LISBON, StartHost("a", 0.0))
    moved = steps.execute(move, at=110.0)
    copy = step_name("front", move, 110.0)
    assert moved.ok and moved.detail == f"{copy} runs on a; {name} on b stopped"
    assert clock.sleeps[-1] == 30
    assert on_engine(pair.b, name) is None and on_engine(pair.a, copy).status == "running"

    restore = RestoreContainer("stock-old", "stock", "stock-first", LISBON, UseHost("b", 0.0))
    restored = steps.execute(restore, at=120.0)
    assert restored.ok, restored.detail
    new = on_engine(pair.b, step_name("stock", restore, 120.0))
    assert new.labels[LABEL_LINEAGE] == "stock-first" and new.labels[LABEL_SERVICE] == "stock"

    stopped = steps.execute(StopContainer(copy, "a"), at=130.0)
    assert stopped.ok and stopped.detail == f"{copy} on a stopped"
    assert steps.execute(StopContainer(copy, "a"), at=140.0).detail == f"{copy} on a was already gone"


def test_plan_steps_that_cannot_be_carried_out_say_why(pair):
    actuator, _ = containers(pair)
    steps = ContainerSteps(actuator, {"front": spec(pair)})
    cases = {
        PlaceReplica("front", LISBON, LaunchCloudHost("eu-west-3", 0.0)): "host still to be launched in eu-west-3",
        PlaceReplica("cart", LISBON, UseHost("a", 0.0)): "no container spec for service cart",
        PlaceReplica("front", LISBON, UseHost("c", 0.0)): "no Docker endpoint for host 'c'; known hosts: a, b",
        MoveContainer("ghost", "front", "a", LISBON, UseHost("b", 0.0)): "no container ghost on host a to migrate",
        StopHost("a"): "the Docker actuator does not carry out a StopHost",
    }
    for step, reason in cases.items():
        outcome = steps.execute(step, at=1.0)
        assert not outcome.ok and reason in outcome.detail, outcome.detail


def test_ssh_refuses_a_host_whose_key_is_unknown_or_changed(pair):
    empty = pair.workdir / "known_hosts.empty"
    empty.write_text("")
    with pytest.raises(AccessError, match="is not in usm's known_hosts file"):
        connect(pair.a.url, DockerAccess(known_hosts=empty, identity=pair.access.identity))
    swapped = pair.workdir / "known_hosts.swapped"  # host a's address with host b's key
    swapped.write_text(f"[127.0.0.1]:{pair.a.sshd.port} {pair.b.sshd.host_public_key}\n")
    with pytest.raises(AccessError, match="is not the one in .*refusing to connect"):
        connect(pair.a.url, DockerAccess(known_hosts=swapped, identity=pair.access.identity))
    with pytest.raises(AccessError, match="known_hosts file .* does not exist"):
        connect(pair.a.url, DockerAccess(known_hosts=pair.workdir / "nowhere", identity=pair.access.identity))


def test_a_dropped_ssh_connection_is_opened_again(pair):
    hosts = DockerHosts({"a": pair.a.url}, pair.access)
    try:
        client = hosts.client("a")
        engine_id = client.info()["ID"]
        transport = client.api.get_adapter("http+docker://ssh").ssh_client.get_transport()
        transport.close()  # as a reboot of the host or a cut network would
        assert hosts.client("a").info()["ID"] == engine_id
        assert client.api.get_adapter("http+docker://ssh").ssh_client.get_transport() is not transport
    finally:
        hosts.close()


def test_ssh_login_with_a_key_the_host_does_not_know_is_refused(pair, tmp_path):
    stranger, _ = client_key(tmp_path)
    with pytest.raises(AccessError, match="SSH login to 127.0.0.1:.* was refused"):
        connect(pair.a.url, DockerAccess(known_hosts=pair.access.known_hosts, identity=stranger))


def test_tls_endpoint_with_usm_certificates(tmp_path):
    """A dockerd that listens on loopback TCP with --tlsverify: usm reaches it with its client certificate, and a
    client certificate from another CA is turned away."""
    need("dockerd")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    certs = tmp_path / "server"
    certs.mkdir()
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    server.private_key_pem.write_to_path(str(certs / "key.pem"))
    port = free_port()
    root = short_tempdir("usm-tls-")
    dockerd = Dockerd(root, extra_args=(
        "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", f"--tlscacert={certs / 'ca.pem'}",
        f"--tlscert={certs / 'cert.pem'}", f"--tlskey={certs / 'key.pem'}"))
    try:
        dockerd.start()

        def client_dir(authority: trustme.CA, name: str) -> Path:
            directory = tmp_path / name
            directory.mkdir()
            leaf = authority.issue_cert("usm-client")
            ca.cert_pem.write_to_path(str(directory / "ca.pem"))  # the server's CA, to check the server
            leaf.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
            leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
            return directory

        good = DockerAccess(known_hosts=tmp_path / "unused", tls_dir=client_dir(ca, "usm"))
        client = connect(f"tcp://127.0.0.1:{port}", good)
        assert client.info()["ID"] == dockerd.client().info()["ID"]
        client.close()
        foreign = DockerAccess(known_hosts=tmp_path / "unused", tls_dir=client_dir(trustme.CA(), "foreign"))
        with pytest.raises(Exception, match="(?i)certificate|ssl|tls"):
            connect(f"tcp://127.0.0.1:{port}", foreign).info()
    finally:
        dockerd.stop()
        remove_tree(root)

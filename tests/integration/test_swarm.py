"""Swarm nodes on two real pseudo-hosts: a single-node swarm on 127.0.0.1, a second dockerd joining it as a worker
over loopback, node availability, role and labels set and read back, sync, and a host leaving.

Both engines run on this machine, so each gets its own swarm port. The tests run in order on one swarm.
"""

from __future__ import annotations

import contextlib

import docker.errors
import pytest

from tests.services import free_port, need, wait_until
from tests.services.dockerd import busybox_image, remove_tree
from tests.services.dockerhost import DockerHost, client_key, short_tempdir
from usm.actuators.docker import ContainerSettings, ContainerSpec, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts
from usm.actuators.swarm import LABEL_HOST, Swarm, SwarmError, SwarmSettings, SwarmSync

SERVE = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")


class SteppedClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(scope="module")
def hosts():
    need("dockerd")
    need("sshd")
    workdir = short_tempdir("usm-swarm-")
    identity, public = client_key(workdir)
    started: list[DockerHost] = []
    try:
        for name in ("a", "b"):
            started.append(DockerHost(workdir / name, public).start())
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text("".join(f"{h.known_hosts_line}\n" for h in started))
        for host in started:
            busybox_image(host.engine())
        clients = DockerHosts({"a": started[0].url, "b": started[1].url},
                              DockerAccess(known_hosts=known_hosts, identity=identity))
        yield dict(zip("ab", started)), clients
        clients.close()
    finally:
        for host in started:
            with contextlib.suppress(docker.errors.APIError):  # not in a swarm any more
                host.engine().swarm.leave(force=True)  # an engine in a swarm takes seconds longer to shut down
            host.stop()
        remove_tree(workdir)


@pytest.fixture(scope="module")
def swarm(hosts):
    _, clients = hosts
    containers = DockerContainers(clients, ContainerSettings(pull=False))
    return Swarm(clients, "a", containers, SwarmSettings(sync_interval=10.0))


def test_init_makes_a_single_node_swarm_and_is_idempotent(swarm, hosts):
    engines, _ = hosts
    port = free_port()
    node = swarm.init("127.0.0.1", port=port, labels={"region": "eu"})
    assert (node.host, node.role, node.availability, node.state, node.leader) == ("a", "manager", "active", "ready",
                                                                                  True)
    assert node.labels == {LABEL_HOST: "a", "region": "eu"}
    assert engines["a"].engine().info()["Swarm"]["NodeID"] == node.id
    again = swarm.init("127.0.0.1", port=free_port())
    assert again.id == node.id and [n.id for n in swarm.nodes()] == [node.id]


def test_a_second_dockerd_joins_as_a_worker_over_loopback(swarm, hosts):
    engines, _ = hosts
    node = swarm.join("b", "127.0.0.1", port=free_port(), labels={"region": "eu", "place": "lisbon"})
    assert (node.host, node.role, node.state) == ("b", "worker", "ready")
    assert engines["b"].engine().info()["Swarm"]["NodeID"] == node.id
    assert sorted(n.host for n in swarm.nodes()) == ["a", "b"]
    assert swarm.join("b", "127.0.0.1", port=free_port()).id == node.id  # already in: reported


def test_availability_role_and_labels_are_set_and_read_back(swarm, hosts):
    engines, _ = hosts
    for availability in ("pause", "drain", "active"):
        assert swarm.set_availability("b", availability).availability == availability
        assert swarm.node("b").availability == availability
    assert swarm.set_role("b", "manager").role == "manager"
    # b's own engine takes up the role once it has its manager certificate
    wait_until(lambda: engines["b"].engine().info()["Swarm"]["ControlAvailable"], 30, "b acting as a manager")
    assert swarm.set_role("b", "worker").role == "worker"
    labelled = swarm.set_labels("b", {"tier": "edge", "place": None})
    assert labelled.labels == {LABEL_HOST: "b", "region": "eu", "tier": "edge"}
    seen = engines["a"].engine().nodes.get(labelled.id).attrs["Spec"]["Labels"]
    assert seen == {LABEL_HOST: "b", "region": "eu", "tier": "edge"}


def test_bad_node_settings_are_refused_with_the_choices(swarm):
    with pytest.raises(SwarmError, match="'sleep' is not a node availability; choose one of active, pause, drain"):
        swarm.set_availability("b", "sleep")
    with pytest.raises(SwarmError, match="'boss' is not a node role"):
        swarm.set_role("b", "boss")
    with pytest.raises(SwarmError, match="usm.host names the node's host"):
        swarm.set_labels("b", {LABEL_HOST: "c"})
    with pytest.raises(SwarmError, match="host c has no node in the swarm"):
        swarm.set_availability("c", "drain")
    with pytest.raises(SwarmError, match="cannot update swarm node .*last manager"):
        swarm.set_role("a", "worker")


def test_sync_returns_the_nodes_and_managed_containers_when_due(swarm, hosts):
    engines, _ = hosts
    swarm.containers.launch("a", ContainerSpec("front", "usm-test/busybox:1", "shop", SERVE), "front-1")
    swarm.containers.launch("b", ContainerSpec("stock", "usm-test/busybox:1", "shop", SERVE), "stock-1")
    bystander = engines["b"].engine().containers.run("usm-test/busybox:1", list(SERVE), network_mode="none",
                                                     detach=True)
    try:
        clock = SteppedClock()
        sync = SwarmSync(swarm, clock)
        state = sync.poll()
        assert sorted((n.host, n.role) for n in state.nodes) == [("a", "manager"), ("b", "worker")]
        assert sorted((c.host, c.name, c.service, c.running) for c in state.containers) == [
            ("a", "front-1", "front", True), ("b", "stock-1", "stock", True)]
        assert state.unreachable == {}
        clock.sleep(9.9)
        assert sync.poll() is None
        clock.sleep(0.1)
        assert sync.poll() is not None
    finally:
        bystander.remove(force=True)


def test_a_host_leaves_and_its_node_is_removed(swarm, hosts):
    engines, _ = hosts
    swarm.set_role("b", "manager")
    wait_until(lambda: engines["b"].engine().info()["Swarm"]["ControlAvailable"], 30, "b acting as a manager")
    with pytest.raises(SwarmError, match="host a runs usm's swarm"):
        swarm.remove("a")
    assert swarm.remove("b") is True  # a manager is demoted before it leaves
    assert [n.host for n in swarm.nodes()] == ["a"]
    assert engines["b"].engine().info()["Swarm"]["LocalNodeState"] == "inactive"
    assert swarm.remove("b") is False

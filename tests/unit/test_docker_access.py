"""The Docker actuator's checks that need no engine: endpoints, credentials, names, specs and labels."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from tests.services.dockerhost import client_key
from usm.actuators.containersteps import step_name
from usm.actuators.docker import (
    ContainerError,
    ContainerSpec,
    check_name,
    labels_of,
    new_name,
)
from usm.actuators.dockerhosts import (
    AccessError,
    DockerAccess,
    DockerHosts,
    connect,
    parse_endpoint,
    trusted_keys,
)
from usm.actuators.swarm import with_labels
from usm.geo.sphere import Coordinates
from usm.placement.plans import PlaceReplica, UseHost

ACCESS = DockerAccess(known_hosts=Path("/nonexistent/known_hosts"))
TLS = DockerAccess(known_hosts=Path("/nonexistent/known_hosts"), tls_dir=Path("/nonexistent/certs"))


@pytest.mark.parametrize("url", ["tcp://10.1.2.3:2375", "https://edge-7:2376"])
def test_plain_tcp_is_refused_with_the_ways_to_fix_it(url):
    with pytest.raises(AccessError, match="is plain TCP: usm reaches a Docker API only over SSH or TLS") as error:
        parse_endpoint(url, ACCESS)
    assert "ssh://user@" in str(error.value) and "USM_DOCKER_CERT_PATH" in str(error.value)


def test_http_and_unknown_schemes_are_refused():
    with pytest.raises(AccessError, match="plain HTTP"):
        parse_endpoint("http://127.0.0.1:2375", TLS)
    with pytest.raises(AccessError, match="unknown scheme 'npipe'"):
        parse_endpoint("npipe:////./pipe/docker_engine", TLS)
    with pytest.raises(AccessError, match="names no host"):
        parse_endpoint("ssh://", ACCESS)
    with pytest.raises(AccessError, match="needs a host and a port"):
        parse_endpoint("tcp://127.0.0.1", TLS)


def test_ssh_tls_and_local_socket_endpoints_are_accepted():
    assert parse_endpoint("ssh://root@127.0.0.1:2222", ACCESS).scheme == "ssh"
    assert parse_endpoint("tcp://127.0.0.1:2376", TLS).scheme == "tls"
    assert parse_endpoint("unix:///run/docker.sock", ACCESS).scheme == "unix"


def test_a_bad_endpoint_is_refused_when_the_hosts_are_configured_and_names_its_host():
    with pytest.raises(AccessError, match="^host edge-2: Docker endpoint 'tcp://10.0.0.2:2375' is plain TCP"):
        DockerHosts({"edge-1": "ssh://usm@10.0.0.1", "edge-2": "tcp://10.0.0.2:2375"}, ACCESS)
    hosts = DockerHosts({"edge-1": "ssh://usm@10.0.0.1"}, ACCESS)
    with pytest.raises(AccessError, match="no Docker endpoint for host 'edge-9'; known hosts: edge-1"):
        hosts.client("edge-9")


def test_missing_credentials_are_named_before_anything_connects(tmp_path):
    with pytest.raises(AccessError, match="known_hosts file /nonexistent/known_hosts does not exist.*ssh-keyscan"):
        connect("ssh://usm@127.0.0.1:1", ACCESS)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    with pytest.raises(AccessError, match="SSH identity .*/absent_key does not exist"):
        connect("ssh://usm@127.0.0.1:1", DockerAccess(known_hosts, identity=tmp_path / "absent_key"))
    (tmp_path / "ca.pem").write_text("")
    with pytest.raises(AccessError, match="TLS files missing: .*cert.pem, .*key.pem"):
        connect("tcp://127.0.0.1:1", DockerAccess(known_hosts, tls_dir=tmp_path))


def test_access_comes_from_the_environment():
    access = DockerAccess.from_environment({"XDG_CONFIG_HOME": "/etc/xdg", "USM_SSH_IDENTITY": "/keys/usm",
                                            "USM_DOCKER_CERT_PATH": "/certs"})
    assert access == DockerAccess(Path("/etc/xdg/usm/known_hosts"), Path("/keys/usm"), Path("/certs"))
    assert DockerAccess.from_environment({"USM_KNOWN_HOSTS": "/k"}).known_hosts == Path("/k")


def test_container_names_and_specs_are_checked():
    assert check_name("front-1.eu_2") == "front-1.eu_2"
    for bad in ("", "-front", "front one", "a/b", "x" * 129):
        with pytest.raises(ContainerError, match="is not usable"):
            check_name(bad)
    assert new_name("front") != new_name("front") and new_name("front").startswith("front-")
    with pytest.raises(ContainerError, match="network mode 'bridge' is not one usm uses; choose one of host, none"):
        ContainerSpec("front", "shop/front:1", network_mode="bridge")
    with pytest.raises(ContainerError, match="service front: no image"):
        ContainerSpec("front", "")


def test_labels_mark_a_container_as_usms():
    spec = ContainerSpec("front", "shop/front:1", app="shop")
    assert labels_of(spec, "front-1") == {"usm.managed": "true", "usm.service": "front", "usm.app": "shop",
                                          "usm.container": "front-1"}
    assert labels_of(spec, "front-2", lineage="front-1")["usm.lineage"] == "front-1"


def test_a_step_names_its_container_the_same_way_every_time():
    step = PlaceReplica("front", Coordinates(38.72, -9.14), UseHost("a", 12.0))
    assert step_name("front", step, 60.0) == step_name("front", step, 60.0)
    assert step_name("front", step, 60.0) != step_name("front", step, 75.0)
    other = PlaceReplica("front", Coordinates(38.72, -9.14), UseHost("b", 12.0))
    assert step_name("front", step, 60.0) != step_name("front", other, 60.0)


def test_node_labels_are_merged_and_removed():
    spec = {"Role": "worker", "Labels": {"usm.host": "b", "region": "eu", "place": "lisbon"}}
    assert with_labels(spec, {"tier": "edge", "place": None, "absent": None}) == {
        "Role": "worker", "Labels": {"usm.host": "b", "region": "eu", "tier": "edge"}}
    assert spec["Labels"]["place"] == "lisbon"  # the node's spec as read is left as it was


def test_known_hosts_markers_are_honoured_not_fatal(tmp_path):
    keys = {}
    for name in ("a", "b", "c", "ca"):
        (tmp_path / name).mkdir()
        keys[name] = paramiko.Ed25519Key.from_private_key_file(str(client_key(tmp_path / name)[0]))
    line = {name: f"{key.get_name()} {key.get_base64()}" for name, key in keys.items()}
    hashed = paramiko.HostKeys.hash_host("[10.0.0.3]:2222")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join([
        "# usm's hosts", "",
        f"@cert-authority *.edge {line['ca']}",
        f"[10.0.0.1]:2222 {line['a']}",
        f"10.0.0.2,edge-2 {line['b']}",
        f"@revoked * {line['b']}",
        f"{hashed} {line['c']}",
        "10.0.0.4 ssh-ed25519 not-base64!",
    ]) + "\n")
    trusted = paramiko.HostKeys()
    trusted_keys(known_hosts, trusted)
    assert trusted.lookup("[10.0.0.1]:2222")["ssh-ed25519"] == keys["a"]
    assert trusted.lookup("10.0.0.2") is None and trusted.lookup("edge-2") is None  # revoked
    assert trusted.lookup("[10.0.0.3]:2222")["ssh-ed25519"] == keys["c"]
    assert trusted.lookup("10.0.0.4") is None

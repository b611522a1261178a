"""Bad input to the edge actuator is refused before anything connects, with what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from usm.actuators.edge import EdgeConfig, EdgeError, EdgeHost, EdgeHosts


@pytest.mark.parametrize("address, user, port, complaint", [
    ("-oProxyCommand=x", "pi", 22, "address"),
    ("host name", "pi", 22, "address"),
    ("10.0.0.1", "../root", 22, "user"),
    ("10.0.0.1", "", 22, "user"),
    ("10.0.0.1", "pi", 0, "port"),
    ("10.0.0.1", "pi", 70000, "port"),
])
def test_an_edge_host_is_checked_when_made(address, user, port, complaint):
    with pytest.raises(ValueError, match=complaint):
        EdgeHost(address, user, port)


def test_names_follow_openssh():
    assert EdgeHost("edge-1.example", "pi").known_as == "edge-1.example"
    assert EdgeHost("127.0.0.1", "pi", 2222).known_as == "[127.0.0.1]:2222"
    assert EdgeHost("fe80::1", "pi", 2222).key_name == "pi@fe80__1_2222"


def test_configuration_comes_from_the_environment():
    config = EdgeConfig.from_environment({"USM_EDGE_KEY_DIR": "/var/lib/usm/keys", "USM_KNOWN_HOSTS": "/etc/usm/kh"})
    assert (config.key_dir, config.known_hosts_file) == (Path("/var/lib/usm/keys"), Path("/etc/usm/kh"))
    default = EdgeConfig.from_environment({"XDG_CONFIG_HOME": "/home/op/.config"})
    assert default.key_dir == Path("/home/op/.config/usm/edge-keys")
    assert default.known_hosts_file == Path("/home/op/.config/usm/known_hosts")
    assert EdgeConfig(Path("/k")).known_hosts_file == Path("/k/known_hosts")


def test_an_empty_password_and_a_bad_job_name_are_refused(tmp_path):
    edge = EdgeHosts(EdgeConfig(tmp_path))
    host = EdgeHost("127.0.0.1", "pi", 2222)
    with pytest.raises(ValueError, match="password"):
        edge.add(host, "")
    with pytest.raises(ValueError, match="job name"):
        edge.job_state(host, "../../etc/passwd")
    assert list(tmp_path.iterdir()) == []


def test_a_private_key_others_can_read_or_that_is_not_a_key_is_refused(tmp_path):
    host = EdgeHost("127.0.0.1", "pi", 2222)
    edge = EdgeHosts(EdgeConfig(tmp_path))
    edge.key_file(host).write_text("not even a key")
    edge.key_file(host).chmod(0o644)
    with pytest.raises(EdgeError, match="chmod 600"):
        edge.run(host, "true")
    edge.key_file(host).chmod(0o600)
    with pytest.raises(EdgeError, match="cannot read usm's private key .* add the host again"):
        edge.run(host, "true")

"""The Docker API auth proxy: a real nginx with TLS and basic auth in front of a real dockerd's socket."""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
import trustme

from tests.services import free_port
from tests.services.dockerd import Dockerd
from tests.services.locationmonitor import usm_command
from tests.services.nginx import NginxServer
from usm.actuators.dockerproxy import PASSWORD_ENV, read_secret, set_up
from usm.actuators.nginx import Nginx
from usm.dockerproxy.config import InvalidProxy, ProxySettings, htpasswd_line


@dataclass
class Proxy:
    url: str
    ca: Path
    user: str
    password: str
    prefix: Path


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    root = tmp_path_factory.mktemp("proxy")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    server.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    password = secrets.token_urlsafe(24)  # made at test time; nothing secret is in the repository
    with Dockerd(root / "d").start() as dockerd:
        nginx = Nginx(root / "nginx")
        port = free_port()
        # pytest's temporary directories are private to root, so the workers run as root to reach the socket;
        # on a host they run as nobody:docker (the defaults).
        settings = ProxySettings(f"127.0.0.1:{port}", str(dockerd.socket), str(root / "server.pem"),
                                 str(root / "server.pem"), str(nginx.prefix / "htpasswd"), user="root", group="root")
        set_up(nginx, settings, "usm", password)
        with NginxServer(nginx, port).start():
            yield Proxy(f"https://127.0.0.1:{port}", root / "ca.pem", "usm", password, nginx.prefix)


def tls_client(proxy: Proxy, **kwargs) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(proxy.ca))
    return httpx.Client(base_url=proxy.url, verify=context, trust_env=False, timeout=10, **kwargs)


def test_the_docker_sdk_works_through_the_proxy_with_tls_and_the_password(proxy: Proxy) -> None:
    client = docker.DockerClient(base_url=proxy.url.replace("https", "tcp"),
                                 tls=docker.tls.TLSConfig(ca_cert=str(proxy.ca), verify=True),
                                 version="1.41")  # not "auto": its first request would precede the two lines below
    client.api.trust_env = False  # the CA we give, not $REQUESTS_CA_BUNDLE (docs/decisions.md, Workarounds)
    client.api.auth = (proxy.user, proxy.password)
    try:
        assert client.ping()
        assert client.version()["ApiVersion"]
        assert client.containers.list(all=True) == []
    finally:
        client.close()


def test_without_the_right_password_the_proxy_answers_401(proxy: Proxy) -> None:
    with tls_client(proxy) as client:
        assert client.get("/version").status_code == 401
        assert client.get("/version", auth=(proxy.user, proxy.password + "x")).status_code == 401
        assert client.get("/version", auth=("someone", proxy.password)).status_code == 401
        assert client.get("/version", auth=(proxy.user, proxy.password)).status_code == 200


def test_plain_http_and_unknown_certificate_authorities_are_refused(proxy: Proxy) -> None:
    plain = httpx.get(proxy.url.replace("https", "http") + "/version", auth=(proxy.user, proxy.password))
    assert plain.status_code == 400  # nginx: "The plain HTTP request was sent to HTTPS port"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{proxy.url}/version", verify=ssl.create_default_context(), trust_env=False)


def test_the_password_is_stored_only_as_a_bcrypt_hash(proxy: Proxy) -> None:
    stored = (proxy.prefix / "htpasswd").read_text()
    assert stored.startswith("usm:$2b$")
    assert proxy.password not in stored
    assert proxy.password not in (proxy.prefix / "nginx.conf").read_text()
    assert (proxy.prefix / "htpasswd").stat().st_mode & 0o007 == 0


def test_the_secret_comes_from_a_private_file_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-long-enough-password\n")
    secret.chmod(0o644)
    with pytest.raises(InvalidProxy, match="may be read by others .*chmod 600"):
        read_secret(secret)
    secret.chmod(0o600)
    assert read_secret(secret) == "a-long-enough-password"
    assert read_secret(None, {PASSWORD_ENV: "from-the-environment"}) == "from-the-environment"
    with pytest.raises(InvalidProxy, match=f"give --password-file FILE .* or set \\${PASSWORD_ENV}"):
        read_secret(None, {})
    with pytest.raises(InvalidProxy, match="shorter than 16 characters"):
        htpasswd_line("usm", "short")


def test_usm_docker_proxy_setup_writes_a_checked_configuration(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(24))
    secret.chmod(0o600)
    argv = [usm_command(), "docker-proxy", "setup", "--prefix", str(tmp_path / "proxy"), "--listen",
            f"127.0.0.1:{free_port()}", "--certificate", str(tmp_path / "server.pem"), "--key",
            str(tmp_path / "server.pem"), "--password-file", str(secret)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "checked" in done.stdout
    assert "ssl_certificate_key" in (tmp_path / "proxy" / "nginx.conf").read_text()
    refused = subprocess.run(argv[:-2], check=False, capture_output=True, text=True, timeout=120,
                             env={k: v for k, v in os.environ.items() if k != PASSWORD_ENV})
    assert refused.returncode == 2
    assert "no password" in refused.stderr


@pytest.mark.parametrize("settings", [
    {"listen": "0.0.0.0:2375; evil"}, {"socket": "relative.sock"}, {"certificate": "/x; evil"},
    {"user": "no body"}, {"max_body": "lots"}, {"read_timeout": "forever"}, {"workers": 0},
])
def test_settings_that_would_inject_configuration_are_refused(settings: dict) -> None:
    base = {"listen": "0.0.0.0:2375", "socket": "/var/run/docker.sock", "certificate": "/etc/usm/proxy.pem",
            "key": "/etc/usm/proxy.key", "htpasswd": "/etc/usm/htpasswd"}
    with pytest.raises(InvalidProxy):
        ProxySettings(**{**base, **settings})



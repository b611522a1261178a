"""How usm reaches each host's Docker Engine API: over SSH checked against usm's own known_hosts, or over TLS.

The original exposed the Engine API on 0.0.0.0:2376 without TLS and never verified SSH host keys (§13 item 23).
Here a host's endpoint is one of

* ``ssh://[user@]host[:port]``: the Docker SDK's SSH transport (paramiko, which runs ``docker system dial-stdio``
  on the host). The SDK on its own checks host keys against ``~/.ssh/known_hosts`` (the user's file, which other
  tools append to) or shells out to the ``ssh`` CLI, whose known_hosts cannot be chosen per call. usm builds the
  paramiko client itself instead: only usm's known_hosts file is read, an unknown key is rejected
  (``RejectPolicy``), a changed key is an error, and only usm's identity (or the SSH agent) is offered.
* ``tcp://host:port`` (or ``https://``) with mutual TLS: usm's CA, client certificate and key, in the layout of
  Docker's ``DOCKER_CERT_PATH`` (``ca.pem``, ``cert.pem``, ``key.pem``). Without TLS settings it is refused.
* ``unix:///path``: the engine on this machine (no network involved).

Plain ``tcp://`` or ``http://`` is always refused: whoever reaches an unauthenticated Engine API owns the host.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import docker
import docker.constants
import docker.tls
import paramiko
import paramiko.hostkeys
from docker.transport import SSHHTTPAdapter

# The Engine API version usm speaks. Pinned rather than negotiated because the SSH client is built before the
# first request can be made (see `_connect_ssh`); 1.41 is Docker 20.10's (Debian 12), and newer engines accept it.
API_VERSION = "1.41"

ENV_KNOWN_HOSTS = "USM_KNOWN_HOSTS"
ENV_SSH_IDENTITY = "USM_SSH_IDENTITY"
ENV_DOCKER_CERT_PATH = "USM_DOCKER_CERT_PATH"


class AccessError(Exception):
    """A host's Docker API cannot be reached as configured; the message says what is wrong and how to fix it."""


class HostUnreachable(AccessError):
    """The host did not answer (refused, reset, timed out): it may answer when tried again."""


@dataclass(frozen=True)
class DockerAccess:
    """usm's credentials for the hosts' Docker APIs (read from files; nothing secret is stored here)."""

    known_hosts: Path  # usm's own known_hosts file: the only host keys SSH endpoints are checked against
    identity: Path | None = None  # private key offered over SSH; None: the keys of the running SSH agent
    tls_dir: Path | None = None  # ca.pem, cert.pem, key.pem for tcp:// endpoints
    api_version: str = API_VERSION
    timeout: float = 60.0  # seconds for one API call

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> DockerAccess:
        """``USM_KNOWN_HOSTS`` (default ``$XDG_CONFIG_HOME/usm/known_hosts``), ``USM_SSH_IDENTITY`` and
        ``USM_DOCKER_CERT_PATH``."""
        config = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "usm"
        identity = environ.get(ENV_SSH_IDENTITY)
        tls_dir = environ.get(ENV_DOCKER_CERT_PATH)
        return cls(
            known_hosts=Path(environ.get(ENV_KNOWN_HOSTS) or config / "known_hosts"),
            identity=Path(identity) if identity else None,
            tls_dir=Path(tls_dir) if tls_dir else None,
        )


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint URL: ``scheme`` is ``ssh``, ``tls`` or ``unix``."""

    scheme: str
    url: str


def parse_endpoint(url: str, access: DockerAccess) -> Endpoint:
    """Check an endpoint URL against the rules above; refuse plain TCP with the way to fix it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "ssh":
        if not parts.hostname:
            raise AccessError(f"Docker endpoint {url!r} names no host: write ssh://user@host[:port]")
        return Endpoint("ssh", url)
    if parts.scheme in ("tcp", "https"):
        if access.tls_dir is None:
            raise AccessError(
                f"Docker endpoint {url!r} is plain TCP: usm reaches a Docker API only over SSH or TLS. Use "
                f"ssh://user@{parts.hostname or 'host'}, or set {ENV_DOCKER_CERT_PATH} to a directory with "
                "ca.pem, cert.pem and key.pem and run dockerd with --tlsverify")
        if not parts.hostname or not parts.port:
            raise AccessError(f"Docker endpoint {url!r} needs a host and a port: write tcp://host:2376")
        return Endpoint("tls", url)
    if parts.scheme == "unix":
        return Endpoint("unix", url)
    if parts.scheme == "http":
        raise AccessError(f"Docker endpoint {url!r} is plain HTTP: usm reaches a Docker API only over SSH or TLS "
                          "(ssh://user@host, or tcp://host:port with TLS)")
    raise AccessError(f"Docker endpoint {url!r} has an unknown scheme {parts.scheme!r}: "
                      "use ssh://user@host[:port], tcp://host:port (with TLS) or unix:///path")


def connect(url: str, access: DockerAccess) -> docker.DockerClient:
    """A Docker client for one endpoint, connected and verified (an SSH endpoint connects here)."""
    endpoint = parse_endpoint(url, access)
    if endpoint.scheme == "ssh":
        return _connect_ssh(endpoint.url, access)
    if endpoint.scheme == "tls":
        client = docker.DockerClient(base_url=endpoint.url, tls=_tls_config(access), version=access.api_version,
                                     timeout=int(access.timeout))
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the CA given in code (docker/docker-py#2433,
        # open): the server would then be checked against the system's CAs instead of usm's. Ignore the env.
        client.api.trust_env = False
        return client
    return docker.DockerClient(base_url=endpoint.url, version=access.api_version, timeout=int(access.timeout))


def _tls_config(access: DockerAccess) -> docker.tls.TLSConfig:
    assert access.tls_dir is not None
    files = {name: access.tls_dir / name for name in ("ca.pem", "cert.pem", "key.pem")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise AccessError(f"TLS files missing: {', '.join(missing)} ({ENV_DOCKER_CERT_PATH} must hold usm's CA "
                          "certificate ca.pem, its client certificate cert.pem and key key.pem)")
    return docker.tls.TLSConfig(client_cert=(str(files["cert.pem"]), str(files["key.pem"])),
                                ca_cert=str(files["ca.pem"]), verify=True)


def trusted_keys(known_hosts: Path, into: paramiko.HostKeys) -> None:
    """Add the keys of an OpenSSH known_hosts file to ``into``, leaving out every key marked ``@revoked``.

    Not ``HostKeys.load``: it rejects the whole file at a marker line (``@cert-authority``, ``@revoked``), which
    OpenSSH writes and honours. Certificate authorities are skipped (paramiko does not check host certificates), and
    so are lines OpenSSH would ignore too (malformed, unknown key types).
    """
    entries, revoked = [], set()
    for line in known_hosts.read_text().splitlines():
        marker, _, rest = line.strip().partition(" ") if line.lstrip().startswith("@") else ("", "", line)
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(rest.strip())
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError, TypeError):
            continue
        if entry is None:
            continue
        if marker == "@revoked":
            revoked.add(entry.key.asbytes())
        elif not marker:
            entries.append(entry)
    for entry in entries:
        if entry.key.asbytes() not in revoked:
            for name in entry.hostnames:
                into.add(name, entry.key.get_name(), entry.key)


class _VerifiedSSHAdapter(SSHHTTPAdapter):
    """The SDK's SSH transport with a paramiko client that checks host keys against usm's file only.

    It overrides the method where the SDK builds its paramiko client (``_create_paramiko_client``, which reads
    ``~/.ssh/config`` and ``~/.ssh/known_hosts``), and keeps one connection pool per host where the SDK keeps one
    per request URL: each new pool opens an SSH channel running ``docker system dial-stdio`` (~0.5 s here), so
    every new container id in a URL paid that again (see docs/benchmarks.md). Channels and ``dial-stdio`` stay
    the SDK's.
    """

    def __init__(self, url: str, access: DockerAccess):
        self._access = access
        super().__init__(url, timeout=int(access.timeout), pool_connections=docker.constants.DEFAULT_NUM_POOLS_SSH,
                         max_pool_size=docker.constants.DEFAULT_MAX_POOL_SIZE, shell_out=False)

    def _create_paramiko_client(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        client = paramiko.SSHClient()
        trusted_keys(self._access.known_hosts, client.get_host_keys())
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        identity = self._access.identity
        self.ssh_client = client
        self.ssh_params = {
            "hostname": parts.hostname, "port": parts.port or 22, "username": parts.username,
            "key_filename": str(identity) if identity else None, "look_for_keys": False,
            "allow_agent": identity is None, "timeout": self._access.timeout,
        }

    def get_connection(self, url, proxies=None):
        """The host's one pool; after the SSH connection dropped (host rebooted, network cut), a new connection
        and pool. The SDK reconnects only when its client never connected, so a kept client would fail for good."""
        transport = self.ssh_client.get_transport()
        if transport is not None and not transport.is_active():
            with self.pools.lock:
                self.pools.clear()  # their channels belonged to the dead connection
                self._connect()
        return super().get_connection(_ONE_POOL, proxies)


_ONE_POOL = "http+docker://ssh"  # the key of the single pool: every request goes to the same engine


def _connect_ssh(url: str, access: DockerAccess) -> docker.DockerClient:
    """The client is created in shell-out mode, which opens nothing, and then given usm's verified transport.

    (Created the ordinary way, the SDK would connect at once with its own host-key rules.)
    """
    if not access.known_hosts.is_file():
        raise AccessError(
            f"usm's known_hosts file {access.known_hosts} does not exist ({ENV_KNOWN_HOSTS} names it). Add each "
            f"host's key to it once you have checked its fingerprint, e.g. `ssh-keyscan -p PORT HOST >> "
            f"{access.known_hosts}`")
    if access.identity is not None and not access.identity.is_file():
        raise AccessError(f"SSH identity {access.identity} does not exist ({ENV_SSH_IDENTITY} names it)")
    host = urllib.parse.urlsplit(url)
    where = f"{host.hostname}:{host.port or 22}"
    try:
        adapter = _VerifiedSSHAdapter(url, access)
    except paramiko.BadHostKeyException as error:
        raise AccessError(
            f"the SSH host key of {where} is not the one in {access.known_hosts} (it offered {error.key.get_name()} "
            f"{error.key.fingerprint}): refusing to connect. If the host was reinstalled, check its new "
            "key and replace its line in that file") from None
    except paramiko.AuthenticationException as error:
        raise AccessError(f"SSH login to {where} as {host.username or 'the current user'} was refused ({error}); "
                          f"authorize usm's key ({access.identity or 'the SSH agent'}) on that host") from None
    except paramiko.SSHException as error:
        if "not found in known_hosts" in str(error):
            raise AccessError(
                f"the SSH host key of {where} is not in usm's known_hosts file {access.known_hosts}: refusing to "
                "connect. Check the host's key fingerprint, then add it (e.g. `ssh-keyscan -p PORT HOST >> "
                f"{access.known_hosts}`)") from None
        raise AccessError(f"SSH to {where} failed: {error}") from None
    except OSError as error:
        raise HostUnreachable(f"cannot reach {where} over SSH: {error}") from None
    client = docker.DockerClient(base_url=url, use_ssh_client=True, version=access.api_version,
                                 timeout=int(access.timeout))
    client.api.mount("http+docker://ssh", adapter)
    return client


class DockerClients(Protocol):
    """Where the actuators get a host's Docker client."""

    def client(self, host: str) -> docker.DockerClient:
        """The Docker client of ``host`` (raises :class:`AccessError` when it cannot be reached)."""

    def names(self) -> tuple[str, ...]:
        """Every host name there is an endpoint for."""


class DockerHosts:
    """Host name -> Docker client, connected on first use and kept (one SSH connection per host).

    Thread-safe, so that a sync may visit hosts in parallel.
    """

    def __init__(self, endpoints: Mapping[str, str], access: DockerAccess,
                 connector: Callable[[str, DockerAccess], docker.DockerClient] = connect):
        for host, url in endpoints.items():  # refuse a bad endpoint now, not at the first action on that host
            try:
                parse_endpoint(url, access)
            except AccessError as error:
                raise AccessError(f"host {host}: {error}") from None
        self.endpoints = dict(endpoints)
        self.access = access
        self._connector = connector
        self._clients: dict[str, docker.DockerClient] = {}
        self._lock = threading.Lock()

    def names(self) -> tuple[str, ...]:
        return tuple(self.endpoints)

    def client(self, host: str) -> docker.DockerClient:
        with self._lock:
            if host not in self._clients:
                url = self.endpoints.get(host)
                if url is None:
                    raise AccessError(f"no Docker endpoint for host {host!r}; known hosts: "
                                      f"{', '.join(sorted(self.endpoints)) or 'none'}")
                self._clients[host] = self._connector(url, self.access)
            return self._clients[host]

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "API_VERSION",
    "AccessError",
    "DockerAccess",
    "DockerClients",
    "DockerHosts",
    "Endpoint",
    "connect",
    "parse_endpoint",
]

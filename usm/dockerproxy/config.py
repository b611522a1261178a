"""The Docker API proxy's nginx configuration and its htpasswd line (pure; see the package's docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import bcrypt
from jinja2 import Environment, PackageLoader, StrictUndefined

TEMPLATES = Environment(loader=PackageLoader("usm.dockerproxy"), undefined=StrictUndefined, autoescape=False,
                        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)

LISTEN = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):[0-9]{1,5}$")
NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
BCRYPT_ROUNDS = 5
"""nginx checks the password on every request, and the Docker API takes many: cost 10 took ~265 ms per request
on this machine, cost 5 ~10 ms (SHA-512 crypt, 5,000 rounds: ~13 ms). The password is a generated secret that
never crosses the network in clear (TLS), so the hash guards only a stolen htpasswd file against guessing."""


class InvalidProxy(ValueError):
    """A proxy setting that cannot be configured; the message says what to fix."""


@dataclass(frozen=True)
class ProxySettings:
    listen: str  # address:port nginx listens on with TLS, e.g. 0.0.0.0:2375
    socket: str  # the Docker socket, e.g. /var/run/docker.sock
    certificate: str  # the server's certificate chain (PEM)
    key: str  # its private key (PEM)
    htpasswd: str  # written at setup from the secret
    client_ca: str | None = None  # also require client certificates signed by this CA
    user: str = "nobody"  # nginx's worker processes (when the master runs as root)
    group: str = "docker"  # whose members may use the Docker socket
    workers: int = 1
    max_body: str = "512m"  # image loads and build contexts go through the proxy
    read_timeout: str = "3600s"  # `docker logs -f`, `docker events` and attach keep a request open

    def __post_init__(self) -> None:
        if not LISTEN.match(self.listen):
            raise InvalidProxy(f"listen {self.listen!r} is not valid: give address:port, such as 0.0.0.0:2375")
        for name in ("socket", "certificate", "key", "htpasswd", "client_ca"):
            value = getattr(self, name)
            if value is not None and (not value.startswith("/") or any(c in value for c in " ;{}'\"\n")):
                raise InvalidProxy(f"{name} {value!r} must be an absolute path without spaces, quotes, ';' or braces")
        for name in ("user", "group"):
            if not NAME.match(getattr(self, name)):
                raise InvalidProxy(f"{name} {getattr(self, name)!r} is not a user or group name")
        if not SIZE.match(self.max_body):
            raise InvalidProxy(f"max_body {self.max_body!r} is not a size such as 512m")
        if not re.match(r"^[0-9]+[smh]?$", self.read_timeout):
            raise InvalidProxy(f"read_timeout {self.read_timeout!r} is not a duration such as 3600s")
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise InvalidProxy(f"workers must be a whole number from 1, not {self.workers!r}")


def render(settings: ProxySettings) -> str:
    return TEMPLATES.get_template("dockerproxy.conf.j2").render(
        listen=settings.listen, socket=settings.socket, certificate=settings.certificate, key=settings.key,
        htpasswd=settings.htpasswd, client_ca=settings.client_ca, user=settings.user, group=settings.group,
        workers=settings.workers, max_body=settings.max_body, read_timeout=settings.read_timeout)


def htpasswd_line(user: str, password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """``user:<bcrypt hash>`` for nginx's ``auth_basic_user_file`` (nginx checks ``$2b$`` hashes with the
    system's crypt)."""
    if not re.match(r"^[A-Za-z0-9_.@-]{1,64}$", user):
        raise InvalidProxy(f"user {user!r} is not valid: use 1 to 64 letters, digits, '_', '.', '@' or '-'")
    if len(password) < 16:
        raise InvalidProxy("the password is shorter than 16 characters: generate one, e.g. "
                           "`openssl rand -base64 24`")
    if len(password.encode()) > 72:
        raise InvalidProxy("the password is longer than 72 bytes, which bcrypt cannot hash whole")
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()}"

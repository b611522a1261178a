"""Set up the Docker API auth proxy on a host: its htpasswd from a secret, its nginx configuration, checked.

The secret comes from a file (readable by its owner only) or from an environment variable, never from the
command line or the repository; only its bcrypt hash is written. See ``usm.dockerproxy``.
"""

from __future__ import annotations

import grp
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from usm.actuators.nginx import Nginx
from usm.dockerproxy.config import InvalidProxy, ProxySettings, htpasswd_line, render

PASSWORD_ENV = "USM_DOCKER_PROXY_PASSWORD"


def read_secret(path: Path | None, environ: Mapping[str, str] = os.environ) -> str:
    """The proxy's password: the first line of ``path``, else ``$USM_DOCKER_PROXY_PASSWORD``."""
    if path is not None:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidProxy(f"{path} may be read by others (mode {stat.filemode(mode)}): chmod 600 {path}")
        lines = path.read_text().splitlines()
        secret = lines[0].strip() if lines else ""
        if not secret:
            raise InvalidProxy(f"{path} is empty: write the password on its first line")
        return secret
    secret = environ.get(PASSWORD_ENV, "")
    if not secret:
        raise InvalidProxy(f"no password: give --password-file FILE (mode 600) or set ${PASSWORD_ENV}")
    return secret


def write_private(path: Path, text: str, mode: int = 0o640, group: str | None = None) -> None:
    """Write ``text`` to ``path`` atomically with ``mode`` (and ``group``, so nginx's workers can read it)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(name, mode)
        if group is not None and os.geteuid() == 0:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise InvalidProxy(f"group {group!r} does not exist: give the group that may use the Docker "
                                   "socket (usually docker)") from None
            os.chown(name, 0, gid)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def set_up(nginx: Nginx, settings: ProxySettings, user: str, password: str) -> None:
    """Write the htpasswd and the configuration into ``nginx``'s prefix, the configuration only once nginx
    has accepted it. Run nginx afterwards (``nginx -p PREFIX -c PREFIX/nginx.conf``), or reload it."""
    nginx.prepare()
    write_private(Path(settings.htpasswd), htpasswd_line(user, password) + "\n", group=settings.group)
    nginx.install(render(settings))

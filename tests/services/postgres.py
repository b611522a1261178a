"""A private PostgreSQL cluster: `initdb` into a fresh directory, then the `postgres` server in the foreground on
127.0.0.1:<free port>, stopped by its PID.

PostgreSQL refuses to run as root, so as root the cluster belongs to the unprivileged `postgres` user (the
Debian package creates it): the data directory is chowned to it and the server is exec'd with `setpriv`, which
keeps the PID the server's own. The superuser `usm` gets a random password (scram-sha-256), handed to clients
through `env` (PGPASSWORD) and never written into a URL.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

from . import Service, free_port, need

SUPERUSER = "usm"


def postgres_bin() -> Path:
    """The newest PostgreSQL server's binaries (Debian keeps them out of PATH, in /usr/lib/postgresql/N/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else Path(need("postgres")).parent


class Postgres(Service):
    def __init__(self, workdir: Path):
        self.bin = postgres_bin()
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.owner = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        # Its own directory under the temporary root: the owner must be able to reach it, and pytest's temporary
        # directories are private to root.
        self.cluster = Path(tempfile.mkdtemp(prefix="usm-postgres-"))
        self.data = self.cluster / "data"
        self._initdb()
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        super().__init__("postgres", self._as_owner(argv), Path(workdir))

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return [need("setpriv"), f"--reuid={self.owner}", f"--regid={self.owner}", "--init-groups", "--", *argv]

    def _initdb(self) -> None:
        password_file = self.cluster / "password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        shutil.chown(self.cluster, self.owner, self.owner)
        shutil.chown(password_file, self.owner, self.owner)
        try:
            subprocess.run(self._as_owner([
                str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={password_file}",
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
                check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as failed:
            raise RuntimeError(f"initdb failed:\n{failed.stdout}\n{failed.stderr}") from None
        finally:
            password_file.unlink()

    @property
    def client_env(self) -> dict[str, str]:
        """What a client needs besides the URL: the password, as libpq reads it."""
        return {"PGPASSWORD": self.password}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        """A psycopg connection in autocommit mode (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
                               dbname=database, autocommit=True, connect_timeout=5)

    def new_database(self) -> str:
        """The URL of a fresh, empty database of its own (for one test's store)."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with self.connect() as connection:
            connection.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def start(self, ready=None, timeout: float = 30.0) -> Postgres:
        def answers() -> bool:
            with self.connect() as connection:
                return connection.execute("SELECT 1").fetchone() == (1,)

        super().start(ready or answers, timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: open sessions are ended, not waited for), then remove the cluster."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                super().stop(timeout)
        shutil.rmtree(self.cluster, ignore_errors=True)

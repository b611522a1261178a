"""One nginx instance in a directory of its own: check, install and reload its configuration, start and stop it.

Both nginx front ends of usm (the per-region load balancer and the Docker API auth proxy) are a configuration
that usm generates and an nginx that must never run a bad one. So a new configuration is written to a temporary
file beside the live one, checked there with ``nginx -t``, and only then renamed over the live file (a rename is
atomic: nginx never reads half a file) and nginx told to reload. A reload is graceful: the master starts new
workers with the new configuration and lets the old ones finish the requests they hold, so no request is dropped;
:meth:`Nginx.reload` returns once the old workers have stopped accepting, so what follows meets the new
configuration.
A configuration nginx refuses raises :class:`NginxConfigError` with nginx's own words, and the live file and the
running nginx are left as they were.

Paths in generated configurations are relative to the prefix directory (``-p``), so a configuration can be
checked before it is in place.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_TIMEOUT = 30.0


class NginxError(RuntimeError):
    """nginx could not be found, started, reloaded or stopped; the message has its output."""


class NginxConfigError(NginxError):
    """nginx refused a configuration (``nginx -t``); nothing was changed."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin:/usr/local/sbin")
    if not found:
        raise NginxError("nginx is not installed: install the Debian package nginx")
    return found


class Nginx:
    """nginx with its prefix ``prefix`` (configuration ``nginx.conf``, ``logs/``, ``tmp/`` and the pid file)."""

    def __init__(self, prefix: Path, binary: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.prefix = Path(prefix).resolve()
        self.binary = binary or nginx_binary()
        self.timeout = timeout
        self.config = self.prefix / "nginx.conf"
        self.error_log = self.prefix / "logs" / "error.log"
        self.pid_file = self.prefix / "nginx.pid"  # where the generated configurations put it
        self.process: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        """Create the directories a generated configuration refers to."""
        for directory in (self.prefix, self.prefix / "logs", self.prefix / "tmp"):
            directory.mkdir(parents=True, exist_ok=True)

    def argv(self, config: Path, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.prefix}/", "-c", str(config), "-e", str(self.error_log), *extra]

    def check(self, text: str) -> None:
        """Check ``text`` as this nginx's configuration without installing it."""
        self._checked(text).unlink()

    def install(self, text: str) -> None:
        """Check ``text`` and make it the live configuration (atomically). Does not reload."""
        checked = self._checked(text)
        os.replace(checked, self.config)

    def _checked(self, text: str) -> Path:
        self.prepare()
        handle, name = tempfile.mkstemp(prefix=".nginx.conf.", dir=self.prefix)
        candidate = Path(name)
        try:
            with os.fdopen(handle, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(candidate, 0o644)
            result = self._run(self.argv(candidate, "-t", "-q"))
            if result.returncode != 0:
                raise NginxConfigError(f"nginx refused the configuration (nothing was changed): {_output(result)}")
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate

    def reload(self) -> None:
        """Make the running nginx load the live configuration, gracefully (``nginx -s reload``), and return once
        it serves with it.

        ``nginx -s reload`` only signals the master, which then starts new workers and tells the old ones to stop
        accepting. So this waits until none of the workers that served before accepts any more (each is gone or
        titled "shutting down"): from then on every new request meets the new configuration. A master that could
        not apply the configuration keeps its old workers; that ends in :class:`NginxError` after ``timeout``.
        """
        master = self.master_pid()
        before = accepting_workers(master) if master else set()
        result = self._run(self.argv(self.config, "-s", "reload"))
        if result.returncode != 0:
            raise NginxError(f"nginx could not reload: {_output(result)}")
        deadline = time.monotonic() + self.timeout
        while before & accepting_workers(master):
            if time.monotonic() > deadline:
                raise NginxError(f"nginx did not take up the new configuration within {self.timeout:g} s: its old "
                                 f"workers still accept requests (see {self.error_log})")
            time.sleep(0.005)

    def master_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> int:
        """Start nginx in the foreground as a child of this process (``daemon off``); its PID."""
        if not self.config.exists():
            raise NginxError(f"{self.config} does not exist: install a configuration first")
        self.prepare()
        with (self.prefix / "logs" / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(self.argv(self.config, "-g", "daemon off;"), stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self.process.pid

    def running(self) -> bool:
        """Whether the master in the pid file is alive (nginx writes the file once it listens)."""
        master = self.master_pid()
        if master is None:
            return False
        try:
            os.kill(master, 0)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop the nginx this object started: gracefully (QUIT lets workers finish their requests), then KILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(self.timeout)

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise NginxError(f"{' '.join(argv)} did not finish within {self.timeout:g} s") from None


def accepting_workers(master: int) -> set[int]:
    """The PIDs of ``master``'s workers that still accept connections (not "shutting down")."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return set()
    accepting = set()
    for child in children:
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # exited meanwhile
        if b"worker process" in title and b"shutting down" not in title:
            accepting.add(int(child))
    return accepting


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stderr + result.stdout).split())[-1500:] or f"exit status {result.returncode}"

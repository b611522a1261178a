"""Edge hosts over SSH: added once with a password, then reached with usm's own key.

Fixes against the original (§4.7, §13 items 22-24):

* the key pair is generated here, on the manager, and only its public half goes to the host (bug 24: the original
  ran ssh-keygen on the edge host, then looked for the private key on the manager);
* the password serves one connection and is never stored, logged or put on a command line (items 22, 23);
* host keys are verified: trusted on first use, recorded in usm's own known_hosts, a changed key refused (item 23);
* failures are an :class:`EdgeError` that says whether trying again later can help (``transient``: refused, reset,
  timed out) or someone must act first (authentication failed, host key changed, a file the host refuses).

One SSH connection per host is kept and reused by commands, uploads and tunnels; :meth:`EdgeHosts.close` ends them.
Remote paths without a leading ``/`` are relative to the user's home, for commands and SFTP alike.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import re
import secrets
import select
import shlex
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self, TypeVar

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.auth_strategy import (
    AuthSource,
    AuthStrategy,
    InMemoryPrivateKey,
    Password,
)

from usm.actuators.known_hosts import HostKeyChanged, HostKeyUnknown, KnownHosts

T = TypeVar("T")

_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")
_JOB = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_PID_MARK = "usm-pid="  # the first stderr line of every command: the process group to kill on a timeout
JOBS = ".usm/jobs"  # background jobs' pid, log and exit files, in the user's home on the host
_TRANSIENT_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EPIPE,
})
# `alive PID`: the process exists and is not a zombie (kill -0 says yes to zombies, which linger where pid 1 does
# not reap). `sed` takes the state after the last ')' since the command name may itself hold parentheses.
_ALIVE = """alive() { s=$(sed -n 's/.*) \\(.\\).*/\\1/p' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }"""


class EdgeError(Exception):
    """An edge-host operation that failed, and whether trying again later may help.

    ``transient``: the host could not be reached or the connection broke (refused, reset, timed out); the same call
    may work later. Otherwise the error is permanent until someone acts (a rejected password or key, a changed host
    key, a missing key file, a path the host refuses); the message says what to do.
    """

    def __init__(self, host: str, message: str, transient: bool):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.transient = transient


@dataclass(frozen=True)
class EdgeHost:
    """Where and as whom usm reaches an edge host."""

    address: str  # host name or IP address
    user: str
    port: int = 22

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not _ADDRESS.fullmatch(self.address):
            raise ValueError(f"edge host address {self.address!r} is not a host name or IP address "
                             "(letters, digits, '.', ':' and '-', not starting with '-')")
        if not isinstance(self.user, str) or not _USER.fullmatch(self.user):
            raise ValueError(f"edge host user {self.user!r} is not a valid user name (up to 32 letters, digits, "
                             "'_', '.' or '-', starting with a letter or '_')")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"edge host port {self.port!r} is not a TCP port (1-65535)")

    @property
    def name(self) -> str:
        """How messages name it: ``user@address:port``."""
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def known_as(self) -> str:
        """Its name in known_hosts, as OpenSSH writes it (``[address]:port`` unless the port is 22)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    @property
    def key_name(self) -> str:
        """The file name of usm's private key for it in the key directory."""
        return f"{self.user}@{self.address.replace(':', '_')}_{self.port}"


@dataclass(frozen=True)
class EdgeConfig:
    """Where usm keeps its edge keys and known hosts, and how long it waits."""

    key_dir: Path  # private keys (mode 0600) in a directory usm creates with mode 0700
    known_hosts: Path | None = None  # default: key_dir/known_hosts
    connect_timeout: float = 10.0  # TCP connect, SSH banner, authentication, opening a channel
    command_timeout: float = 120.0  # a command's default limit

    @property
    def known_hosts_file(self) -> Path:
        return Path(self.known_hosts) if self.known_hosts else Path(self.key_dir) / "known_hosts"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> EdgeConfig:
        """``USM_EDGE_KEY_DIR`` (default ``$XDG_CONFIG_HOME/usm/edge-keys``) and ``USM_KNOWN_HOSTS`` (default
        ``$XDG_CONFIG_HOME/usm/known_hosts``): the same known_hosts file usm's Docker-over-SSH access checks, so
        a host added here is trusted there too."""
        config = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "usm"
        key_dir = environ.get("USM_EDGE_KEY_DIR", "").strip()
        known_hosts = environ.get("USM_KNOWN_HOSTS", "").strip()
        return cls(Path(key_dir) if key_dir else config / "edge-keys",
                   Path(known_hosts) if known_hosts else config / "known_hosts")


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int  # -1 when the command was ended by a signal (the server then reports no status)
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class JobState:
    """A background job as last seen: running, finished by itself (with its exit status), or gone (stopped)."""

    name: str
    pid: int
    running: bool
    exit_status: int | None = None  # set when it finished by itself


class EdgeHosts:
    """The edge hosts usm reaches over SSH, with one reused connection per host. Safe to share between threads."""

    def __init__(self, config: EdgeConfig):
        self.config = config
        self.known_hosts = KnownHosts(config.known_hosts_file)
        self._connections: dict[EdgeHost, paramiko.SSHClient] = {}
        self._lock = threading.Lock()

    def key_file(self, host: EdgeHost) -> Path:
        return Path(self.config.key_dir) / host.key_name

    # -- adding a host --------------------------------------------------------------------------------------------

    def add(self, host: EdgeHost, password: str) -> Path:
        """Take ``host`` under usm's key, using ``password`` for this one connection; return the private key file.

        Trusts and records the host key (first use), generates an ed25519 key pair here unless usm already has one
        for the host, appends the public key to the user's ``~/.ssh/authorized_keys`` over SFTP (atomically,
        keeping the lines already there), then proves the key works with a key-only connection, which is kept. If
        anything fails, a key generated by this call is removed from both sides. Adding again is harmless.
        """
        if not isinstance(password, str) or not password:
            raise ValueError(f"no password given for {host.name}: usm needs the user's password once to install "
                             "its own key")
        key_file = self.key_file(host)
        generated = not key_file.exists()
        key = new_key_pair(key_file) if generated else self._key(host)
        line = f"{key.get_name()} {key.get_base64()} usm@{socket.gethostname()}"
        try:
            with closing(self._connect(host, Password(host.user, lambda: password), "its password", True)) as first:
                installed = self._authorize(host, first, line)
                try:
                    self.close(host)
                    client = self._connect(host, InMemoryPrivateKey(host.user, key), f"usm's key {key_file}", False)
                except EdgeError as refused:
                    if installed:
                        self._unauthorize(host, first, key)  # never leave a key that usm no longer holds
                    raise EdgeError(host.name, f"the host did not accept usm's key after it was installed in "
                                    f"~/.ssh/authorized_keys ({refused}); check that its sshd has PubkeyAuthentication"
                                    " yes and reads .ssh/authorized_keys (AuthorizedKeysFile)",
                                    refused.transient) from refused
        except BaseException:
            if generated:
                for path in (key_file, _public_file(key_file)):
                    path.unlink(missing_ok=True)
            raise
        self._keep(host, client)
        return key_file

    def _authorize(self, host: EdgeHost, client: paramiko.SSHClient, line: str) -> bool:
        """Append ``line`` to ~/.ssh/authorized_keys unless its key is there; whether it was appended."""
        key_blob = line.split()[1]
        try:
            with closing(client.open_sftp()) as sftp:
                _makedirs(sftp, ".ssh", 0o700)
                current = _read_text(sftp, ".ssh/authorized_keys")
                if any(key_blob in entry.split() for entry in current.splitlines()):
                    return False
                content = current + ("\n" if current and not current.endswith("\n") else "") + line + "\n"
                _put_atomic(sftp, io.BytesIO(content.encode()), ".ssh/authorized_keys", 0o600)
                return True
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise _edge_error(host, error, "installing usm's key in ~/.ssh/authorized_keys") from error

    def _unauthorize(self, host: EdgeHost, client: paramiko.SSHClient, key: paramiko.PKey) -> None:
        """Take usm's key out of ~/.ssh/authorized_keys again, keeping every other line (best effort: the error
        that led here is the one to report)."""
        try:
            with closing(client.open_sftp()) as sftp:
                lines = _read_text(sftp, ".ssh/authorized_keys").splitlines(keepends=True)
                kept = "".join(entry for entry in lines if key.get_base64() not in entry.split())
                _put_atomic(sftp, io.BytesIO(kept.encode()), ".ssh/authorized_keys", 0o600)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    # -- connections ----------------------------------------------------------------------------------------------

    def _key(self, host: EdgeHost) -> paramiko.PKey:
        path = self.key_file(host)
        if not path.exists():
            raise EdgeError(host.name, f"usm has no key for this host ({path} is missing); add the host with its "
                            "password first", transient=False)
        loose = path.stat().st_mode & 0o077
        if loose:
            raise EdgeError(host.name, f"the private key {path} can be read by other users (mode "
                            f"{path.stat().st_mode & 0o777:o}); run chmod 600 {path}", transient=False)
        try:
            return paramiko.PKey.from_path(path)
        except (OSError, ValueError, paramiko.SSHException) as error:
            raise EdgeError(host.name, f"cannot read usm's private key {path} ({error}); remove it and add the host "
                            "again with its password", transient=False) from error

    def _connect(self, host: EdgeHost, source: AuthSource, credential: str, first_use: bool) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        for key_type, key in self.known_hosts.recorded(host.known_as).items():
            client.get_host_keys().add(host.known_as, key_type, key)
        client.set_missing_host_key_policy(self.known_hosts.policy(first_use))
        timeout = self.config.connect_timeout
        try:
            client.connect(host.address, host.port, username=host.user, timeout=timeout, banner_timeout=timeout,
                           auth_timeout=timeout, channel_timeout=timeout, auth_strategy=_Only(source))
        except paramiko.BadHostKeyException as error:
            client.close()
            raise _edge_error(host, self.known_hosts.changed(host.known_as, error.key), "connecting") from error
        except paramiko.AuthenticationException as error:
            client.close()
            raise EdgeError(host.name, f"authentication as {host.user} with {credential} failed", False) from error
        except Exception as error:
            client.close()
            raise _edge_error(host, error, "connecting") from error
        client.get_transport().set_keepalive(30)  # a dead peer shows up as a closed transport, not a hang
        return client

    def _session(self, host: EdgeHost) -> tuple[paramiko.SSHClient, bool]:
        """The host's live connection and whether it was reused, connecting with usm's key when there is none."""
        with self._lock:
            client = self._connections.get(host)
            if client is not None and _active(client):
                return client, True
            self._connections.pop(host, None)
        if client is not None:
            client.close()
        return self._keep(host, self._connect(host, InMemoryPrivateKey(host.user, self._key(host)),
                                              f"usm's key {self.key_file(host)}", False)), False

    def _keep(self, host: EdgeHost, client: paramiko.SSHClient) -> paramiko.SSHClient:
        """Make ``client`` the host's connection, unless another thread connected first (then use that one)."""
        with self._lock:
            current = self._connections.get(host)
            if current is None or not _active(current):
                self._connections[host] = client
                return client
        client.close()
        return current

    def _open(self, host: EdgeHost, opener: Callable[[paramiko.SSHClient], T], doing: str) -> T:
        """``opener`` (a channel, an SFTP session) on the host's connection; a reused connection found dead is
        replaced once, so a host that came back after a restart is simply reached again."""
        client, reused = self._session(host)
        try:
            return opener(client)
        except (OSError, EOFError, paramiko.SSHException) as error:
            if _active(client) or not reused:
                raise _edge_error(host, error, doing) from error
            self._forget(host, client)
        client, _ = self._session(host)
        try:
            return opener(client)
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise _edge_error(host, error, doing) from error

    def _forget(self, host: EdgeHost, client: paramiko.SSHClient) -> None:
        with self._lock:
            if self._connections.get(host) is client:
                del self._connections[host]
        client.close()

    def close(self, host: EdgeHost | None = None) -> None:
        """Close the connection to ``host``, or to every host; the next call connects again."""
        with self._lock:
            hosts = [host] if host is not None else list(self._connections)
            clients = [self._connections.pop(each) for each in hosts if each in self._connections]
        for client in clients:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------------------------------------

    def run(self, host: EdgeHost, command: str, timeout: float | None = None) -> CommandResult:
        """Run a shell command on the host and wait for it, at most ``timeout`` seconds (default: the config's).

        A command still running at the limit is killed with its process group and raises a transient
        :class:`EdgeError` naming the command. A non-zero exit status is a result, not an error.
        """
        limit = self.config.command_timeout if timeout is None else timeout
        stdout, stderr, status, pid = self._execute(host, command, limit)
        if status is None:
            if pid is not None:
                self._kill_group(host, pid)
            raise EdgeError(host.name, f"running {command!r} timed out after {limit:g} s and was killed; what it "
                            f"wrote before: stdout {_tail(stdout)!r}, stderr {_tail(stderr)!r}", transient=True)
        return CommandResult(command, status, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def _execute(self, host: EdgeHost, command: str, limit: float) -> tuple[bytes, bytes, int | None, int | None]:
        """(stdout, stderr, exit status or None if still running at the limit, the command's process group).

        The command runs as ``sh -c`` after the login shell reports its pid, which is the process group of
        everything the command starts (sshd makes each session a new session), so a timeout can end all of it.
        """
        doing = f"running {command!r}"
        channel = self._open(host, lambda client: client.get_transport().open_session(
            timeout=self.config.connect_timeout), doing)
        with closing(channel):
            try:
                channel.exec_command(f'echo "{_PID_MARK}$$" >&2; exec sh -c {shlex.quote(command)}')
                channel.shutdown_write()
                stdout, stderr, finished = _drain(channel, time.monotonic() + limit)
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise _edge_error(host, error, doing) from error
            pid, stderr = _split_pid(stderr)
            return stdout, stderr, channel.exit_status if finished else None, pid

    def _kill_group(self, host: EdgeHost, pid: int) -> None:
        """End a timed-out command and its children: SIGTERM, SIGKILL two seconds later if still there."""
        try:
            self._execute(host, f'{_ALIVE}\nkill -TERM "-{pid}" 2>/dev/null\n'
                          f'i=0; while alive {pid} && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done\n'
                          f'kill -KILL "-{pid}" 2>/dev/null; true', self.config.connect_timeout)
        except EdgeError:
            pass  # best effort: the connection itself may be what failed

    def tunnel(self, host: EdgeHost, address: str, port: int) -> paramiko.Channel:
        """A TCP connection made by the host to ``address:port`` (direct-tcpip), e.g. to a service that listens
        only on the host's loopback. The caller closes it."""
        return self._open(host, lambda client: client.get_transport().open_channel(
            "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=self.config.connect_timeout),
            f"opening a connection to {address}:{port} on the host")

    # -- files ----------------------------------------------------------------------------------------------------

    def upload(self, host: EdgeHost, source: Path | bytes, remote_path: str, mode: int = 0o644) -> int:
        """Copy a local file (or bytes) to ``remote_path`` with ``mode``; return the number of bytes.

        Atomic: the data goes to a temporary name beside the target, which is then renamed over it, so readers see
        the old file or the new one, never a part (and a running binary can be replaced). Missing parent
        directories are created.
        """
        what = f"uploading {source if isinstance(source, Path) else f'{len(source)} bytes'} to {remote_path}"
        sftp = self._open(host, lambda client: client.open_sftp(), what)
        with closing(sftp):
            try:
                _makedirs(sftp, posixpath.dirname(remote_path), 0o755)
                with (open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)) as data:
                    return _put_atomic(sftp, data, remote_path, mode)
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise _edge_error(host, error, what) from error

    # -- background jobs ------------------------------------------------------------------------------------------

    def start_background(self, host: EdgeHost, name: str, command: str) -> JobState:
        """Start ``command`` detached from the SSH session (nohup, own session), recording its pid, output and
        exit status under ~/.usm/jobs/<name>.*, so it outlives the connection and can be checked on later."""
        files = _job_files(name)
        wrapper = f"sh -c {shlex.quote(command)}; echo $? > {files}.exit.tmp && mv {files}.exit.tmp {files}.exit"
        script = (f"{_ALIVE}\ncd && mkdir -p {JOBS} || exit\n"
                  f'if [ -f {files}.pid ] && alive "$(cat {files}.pid)"; then\n'
                  f'  echo "job {name} is already running as pid $(cat {files}.pid); stop it first" >&2; exit 17\n'
                  f"fi\n"
                  f"rm -f {files}.exit\n"
                  f"nohup setsid sh -c {shlex.quote(wrapper)} > {files}.log 2>&1 < /dev/null &\n"
                  f"echo $! > {files}.pid && echo $!")
        result = self._checked(host, self.run(host, script, self.config.connect_timeout), f"starting job {name}")
        return JobState(name, int(result.stdout.strip()), running=True)

    def job_state(self, host: EdgeHost, name: str) -> JobState:
        files = _job_files(name)
        script = (f"{_ALIVE}\ncd || exit\n"
                  f'[ -f {files}.pid ] || {{ echo "there is no background job {name} on this host" >&2; exit 3; }}\n'
                  f"pid=$(cat {files}.pid)\n"
                  f'if [ -f {files}.exit ]; then echo "$pid exited $(cat {files}.exit)"\n'
                  f'elif alive "$pid"; then echo "$pid running"\n'
                  f'else echo "$pid gone"; fi')
        pid, state, *status = self._checked(host, self.run(host, script, self.config.connect_timeout),
                                            f"checking job {name}").stdout.split()
        return JobState(name, int(pid), state == "running", int(status[0]) if status else None)

    def stop_background(self, host: EdgeHost, name: str, grace: float = 5.0, missing_ok: bool = False
                        ) -> JobState | None:
        """Stop a job and everything it started (its process group): SIGTERM, then SIGKILL after ``grace`` s.
        A job never started on the host is an error, or ``None`` with ``missing_ok``."""
        files = _job_files(name)
        ticks = max(1, round(grace * 10))
        missing = "exit 0" if missing_ok else f'echo "there is no background job {name} on this host" >&2; exit 3'
        script = (f"{_ALIVE}\ncd || exit\n"
                  f"[ -f {files}.pid ] || {{ {missing}; }}\n"
                  f'pid=$(cat {files}.pid); echo "$pid"; alive "$pid" || exit 0\n'
                  f'kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid"\n'
                  f'i=0; while alive "$pid" && [ $i -lt {ticks} ]; do sleep 0.1; i=$((i + 1)); done\n'
                  f'if alive "$pid"; then kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid"; fi; true')
        result = self._checked(host, self.run(host, script, grace + self.config.connect_timeout),
                               f"stopping job {name}")
        return self.job_state(host, name) if result.stdout.strip() else None

    def job_log(self, host: EdgeHost, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines the job wrote (stdout and stderr together)."""
        files = _job_files(name)
        return self._checked(host, self.run(host, f"cd && tail -n {int(lines)} {files}.log",
                                            self.config.connect_timeout), f"reading job {name}'s log").stdout

    def _checked(self, host: EdgeHost, result: CommandResult, doing: str) -> CommandResult:
        if not result.ok:
            raise EdgeError(host.name, f"{doing} failed (exit status {result.exit_status}): "
                            f"{result.stderr.strip() or result.stdout.strip()}", transient=False)
        return result


class _Only(AuthStrategy):
    """Exactly one way to authenticate: no agent, no keys picked up from ~/.ssh, no fallback to a password."""

    def __init__(self, source: AuthSource):
        super().__init__(ssh_config=paramiko.SSHConfig())
        self.source = source

    def get_sources(self):
        yield self.source


def _edge_error(host: EdgeHost, error: BaseException, doing: str) -> EdgeError:
    """Name the failure and sort it: transient (the network or the server's availability) or permanent."""
    if isinstance(error, EdgeError):
        return error
    if isinstance(error, (HostKeyChanged, HostKeyUnknown)):
        return EdgeError(host.name, str(error), transient=False)
    if isinstance(error, paramiko.AuthenticationException):
        return EdgeError(host.name, f"{doing}: authentication as {host.user} failed ({error})", transient=False)
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        return EdgeError(host.name, f"{doing}: connection refused on port {host.port} (is sshd running?)", True)
    if isinstance(error, socket.gaierror):
        return EdgeError(host.name, f"{doing}: cannot resolve {host.address} ({error.strerror})",
                         transient=error.errno == socket.EAI_AGAIN)
    if isinstance(error, TimeoutError):
        return EdgeError(host.name, f"{doing}: timed out", transient=True)
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
        return EdgeError(host.name, f"{doing}: {error.strerror or error}", transient=True)
    if isinstance(error, paramiko.ChannelException):
        return EdgeError(host.name, f"{doing}: the host refused the channel ({error.text})", transient=True)
    if isinstance(error, (EOFError, paramiko.SSHException)):
        return EdgeError(host.name, f"{doing}: the connection was lost ({error or type(error).__name__})", True)
    if isinstance(error, OSError):
        return EdgeError(host.name, f"{doing}: {error.strerror or error}", transient=False)
    return EdgeError(host.name, f"{doing}: {error!r}", transient=False)


def _active(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()


def _drain(channel: paramiko.Channel, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until the server closes the channel (the command ended and said all) or the
    deadline passes; (stdout, stderr, finished)."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        while channel.recv_ready():
            stdout += channel.recv(65536)
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
        if channel.closed or (channel.exit_status_ready() and channel.eof_received):
            return bytes(stdout), bytes(stderr), True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(stdout), bytes(stderr), False
        select.select([channel], [], [], min(remaining, 1.0))


def _split_pid(stderr: bytes) -> tuple[int | None, bytes]:
    """The process group usm's command wrapper reported, and stderr without that line."""
    mark = _PID_MARK.encode()
    for index, line in enumerate(lines := stderr.splitlines(keepends=True)):
        if line.startswith(mark) and line[len(mark):].strip().isdigit():
            return int(line[len(mark):]), b"".join(lines[:index] + lines[index + 1:])
    return None, stderr


def _tail(data: bytes, limit: int = 400) -> str:
    return data[-limit:].decode(errors="replace")


def _job_files(name: str) -> str:
    if not isinstance(name, str) or not _JOB.fullmatch(name):
        raise ValueError(f"job name {name!r} must be 1-64 letters, digits, '_', '.' or '-' (it names files on the "
                         "host)")
    return f"{JOBS}/{name}"


def new_key_pair(path: Path) -> paramiko.PKey:
    """Generate an ed25519 key pair here, on the manager: the private key to ``path`` (0600, written whole),
    the public key beside it (``.pub``) for operators."""
    private = Ed25519PrivateKey.generate()
    text = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created with mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(text.decode()))
    _public_file(path).write_text(f"{key.get_name()} {key.get_base64()} usm@{socket.gethostname()}\n")
    return key


def _public_file(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def _makedirs(sftp: paramiko.SFTPClient, path: str, mode: int) -> None:
    if not path or path in ("/", "."):
        return
    try:
        sftp.stat(path)
    except FileNotFoundError:
        _makedirs(sftp, posixpath.dirname(path), mode)
        sftp.mkdir(path, mode)


def _read_text(sftp: paramiko.SFTPClient, path: str) -> str:
    try:
        with sftp.open(path, "r") as file:
            return file.read().decode()
    except FileNotFoundError:
        return ""


def _put_atomic(sftp: paramiko.SFTPClient, data: BinaryIO, path: str, mode: int) -> int:
    """Write to a temporary name in the same directory, set the mode, rename over ``path``; bytes written."""
    directory, base = posixpath.split(path)
    temporary = posixpath.join(directory, f".{base}.usm-{secrets.token_hex(4)}")
    try:
        size = sftp.putfo(data, temporary, confirm=True).st_size
        sftp.chmod(temporary, mode)
        sftp.posix_rename(temporary, path)
    except BaseException:
        try:
            sftp.remove(temporary)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        raise
    return size

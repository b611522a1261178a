"""The edge-host actuator against a real OpenSSH server on a loopback port, with real system users.

Tests about adding a host get a fresh user with a random password; tests that only use an added host share one
(`added`), each with its own files and job names; destructive tests (host key rotation, server stopped) get a
server of their own. The user's files are read straight from its home, which is on this machine.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import free_port, in_ci, need, wait_until
from tests.services.sshd import Sshd
from usm.actuators.edge import EdgeConfig, EdgeError, EdgeHost, EdgeHosts
from usm.actuators.node_exporter import (
    MANAGER_BINARY,
    REMOTE_BINARY,
    install_node_exporter,
    metrics,
)


def need_root() -> None:
    if os.geteuid() != 0:
        message = "the sshd tests create system users (useradd), which needs root"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def processes_of(user: str, name: str | None = None) -> list[int]:
    """The user's processes (only those whose command is exactly ``name`` if given, e.g. sshd sessions)."""
    found = subprocess.run(["pgrep", "-u", user] + (["-x", name] if name else []), capture_output=True, text=True,
                           check=False)
    return [int(pid) for pid in found.stdout.split()]


def sessions_of(user: str) -> list[int]:
    """The server's processes for the user's SSH connections (they run as the user, named sshd)."""
    return processes_of(user, "sshd")


def end_processes_of(user: str) -> None:
    """After the connections are closed, the user's sshd sessions end by themselves; a background process a failed
    test left behind is killed by its PID, so that the server can remove the user."""
    try:
        wait_until(lambda: not processes_of(user), 5, f"{user}'s processes to end")
    except TimeoutError:
        for pid in processes_of(user):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not processes_of(user), 10, f"{user}'s processes to be killed")


def fingerprint(public_key_file: Path) -> str:
    """The SHA256 fingerprint as OpenSSH computes it (independently of paramiko)."""
    return subprocess.run([need("ssh-keygen"), "-l", "-E", "sha256", "-f", str(public_key_file)],
                          capture_output=True, text=True, check=True).stdout.split()[1]


@dataclass
class Account:
    sshd: Sshd
    edge: EdgeHosts
    host: EdgeHost
    password: str

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.host.user).pw_dir)

    def set_password(self, password: str) -> None:
        subprocess.run(["chpasswd"], input=f"{self.host.user}:{password}\n", text=True, check=True)


@pytest.fixture(scope="module")
def shared_sshd(tmp_path_factory):
    need_root()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def own_sshd(tmp_path):
    need_root()
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


@contextmanager
def open_account(server: Sshd, key_dir: Path) -> Iterator[Account]:
    user, password = server.add_user()
    edge = EdgeHosts(EdgeConfig(key_dir))
    try:
        yield Account(server, edge, EdgeHost("127.0.0.1", user, server.port), password)
    finally:
        edge.close()
        end_processes_of(user)


@pytest.fixture
def account(shared_sshd, tmp_path):
    with open_account(shared_sshd, tmp_path / "keys") as fresh:
        yield fresh


@pytest.fixture
def own_account(own_sshd, tmp_path):
    with open_account(own_sshd, tmp_path / "keys") as fresh:
        yield fresh


@pytest.fixture(scope="module")
def added(shared_sshd, tmp_path_factory):
    with open_account(shared_sshd, tmp_path_factory.mktemp("keys")) as shared:
        shared.edge.add(shared.host, shared.password)
        yield shared


# -- adding a host ---------------------------------------------------------------------------------------------------


def test_a_host_added_with_its_password_is_then_reached_with_the_key_alone(account, tmp_path):
    edge, host = account.edge, account.host
    key_file = edge.add(host, account.password)

    assert key_file.parent == tmp_path / "keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    blob = Path(f"{key_file}.pub").read_text().split()[1]
    ssh_dir = account.home / ".ssh"
    # generated on the manager (bug 24): the host received the public key and nothing else
    assert sorted(p.name for p in ssh_dir.iterdir()) == ["authorized_keys"]
    assert [line.split()[1] for line in (ssh_dir / "authorized_keys").read_text().splitlines()] == [blob]
    assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ssh_dir / "authorized_keys").stat().st_mode) == 0o600
    assert (ssh_dir / "authorized_keys").stat().st_uid == pwd.getpwnam(host.user).pw_uid
    # the password was used once and is nowhere in what usm keeps
    for kept in (tmp_path / "keys").rglob("*"):
        assert account.password.encode() not in kept.read_bytes(), kept

    account.set_password("changed-" + os.urandom(8).hex())
    with EdgeHosts(EdgeConfig(tmp_path / "keys")) as later:  # a new process: only the files are shared
        assert later.run(host, "id -un").stdout.strip() == host.user


def test_adding_twice_keeps_one_key_and_the_lines_already_there(account):
    ssh_dir = account.home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorsOwnKeyStaysHere admin")
    user = pwd.getpwnam(account.host.user)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, user.pw_uid, user.pw_gid)

    first = account.edge.add(account.host, account.password)
    second = account.edge.add(account.host, account.password)

    assert first == second
    lines = (ssh_dir / "authorized_keys").read_text().splitlines()
    assert lines[0].endswith("admin")
    assert [line.split()[1] for line in lines[1:]] == [Path(f"{first}.pub").read_text().split()[1]]


def test_a_wrong_password_is_permanent_and_leaves_nothing_behind(account):
    with pytest.raises(EdgeError) as failed:
        account.edge.add(account.host, account.password + "x")
    assert not failed.value.transient
    assert "authentication" in str(failed.value) and "password" in str(failed.value)
    assert account.password not in str(failed.value)
    assert not account.edge.key_file(account.host).exists()
    assert not (account.home / ".ssh").exists()


def test_a_host_that_refuses_the_key_leaves_no_key_behind(account):
    (account.home / ".ssh").mkdir(mode=0o755)  # owned by root: the user cannot write its authorized_keys
    with pytest.raises(EdgeError) as refused:
        account.edge.add(account.host, account.password)
    assert not refused.value.transient
    assert "authorized_keys" in str(refused.value) and "denied" in str(refused.value).lower()
    assert list(account.edge.key_file(account.host).parent.glob(account.host.user + "*")) == []
    assert list((account.home / ".ssh").iterdir()) == []


def test_a_host_never_added_is_refused_with_what_to_do(account):
    with pytest.raises(EdgeError) as missing:
        account.edge.run(account.host, "true")
    assert not missing.value.transient
    assert "add the host with its password first" in str(missing.value)


def test_usm_keeps_files_that_openssh_itself_accepts(added):
    host, key_file = added.host, added.edge.key_file(added.host)
    known_hosts = added.edge.known_hosts.path
    ssh = subprocess.run(
        [need("ssh"), "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "IdentitiesOnly=yes", "-i", str(key_file),
         "-p", str(host.port), f"{host.user}@{host.address}", "id -un"],
        capture_output=True, text=True, timeout=30, check=False)
    assert (ssh.returncode, ssh.stdout.strip()) == (0, host.user), ssh.stderr


# -- host keys -------------------------------------------------------------------------------------------------------


def test_a_changed_host_key_is_refused_with_both_fingerprints(own_account):
    server, edge, host = own_account.sshd, own_account.edge, own_account.host
    edge.add(host, own_account.password)
    recorded = fingerprint(Path(f"{server.host_key}.pub"))
    known_before = edge.known_hosts.path.read_bytes()
    edge.close()

    server.rotate_host_key()
    server.restart()
    presented = fingerprint(Path(f"{server.host_key}.pub"))
    assert presented != recorded

    with pytest.raises(EdgeError) as refused:
        edge.run(host, "true")
    message = str(refused.value)
    assert not refused.value.transient
    assert "changed" in message and f"[{host.address}]:{host.port}" in message
    assert recorded in message and presented in message
    # the password route does not re-trust it either: first use happens once
    with pytest.raises(EdgeError) as again:
        edge.add(host, own_account.password)
    assert presented in str(again.value) and not again.value.transient
    assert edge.known_hosts.path.read_bytes() == known_before


def test_a_host_missing_from_known_hosts_is_not_trusted_again_silently(account):
    edge = account.edge
    edge.add(account.host, account.password)
    edge.close()
    edge.known_hosts.path.unlink()
    with pytest.raises(EdgeError) as unknown:
        edge.run(account.host, "true")
    assert not unknown.value.transient
    assert "not in" in str(unknown.value) and str(edge.known_hosts.path) in str(unknown.value)
    assert not edge.known_hosts.path.exists()


# -- connections -----------------------------------------------------------------------------------------------------


def client_port(account: Account) -> str:
    """The client side of the SSH connection a command ran on, as the server saw it."""
    return account.edge.run(account.host, 'echo "$SSH_CONNECTION"').stdout.split()[1]


def test_the_connection_is_reused_and_closed_cleanly(added):
    first = client_port(added)
    assert client_port(added) == first

    added.edge.close(added.host)
    wait_until(lambda: not sessions_of(added.host.user), 10, "the server's session to end after close")
    assert client_port(added) != first


def test_a_dead_connection_is_replaced_by_a_fresh_one(added):
    first = client_port(added)
    sessions = sessions_of(added.host.user)
    assert sessions
    for pid in sessions:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not sessions_of(added.host.user), 10, "the server's session to end")

    assert client_port(added) != first


def test_a_stopped_server_is_a_transient_error(own_account):
    own_account.edge.add(own_account.host, own_account.password)
    own_account.edge.close()
    end_processes_of(own_account.host.user)
    own_account.sshd.stop()

    with pytest.raises(EdgeError) as refused:
        own_account.edge.run(own_account.host, "true")
    assert refused.value.transient
    assert "refused" in str(refused.value) and own_account.host.name in str(refused.value)


# -- commands --------------------------------------------------------------------------------------------------------


def test_a_command_gives_its_exit_status_stdout_and_stderr(added):
    result = added.edge.run(added.host, "printf 'out\\n'; printf 'err\\n' >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr, result.ok) == (3, "out\n", "err\n", False)

    big = added.edge.run(added.host, "head -c 3000000 /dev/zero | tr '\\0' a")
    assert big.ok and big.stdout == "a" * 3_000_000


def test_a_command_past_its_timeout_is_an_error_and_is_killed(added):
    command = "echo started; sleep 599; echo never"
    with pytest.raises(EdgeError) as late:
        added.edge.run(added.host, command, timeout=1)
    message = str(late.value)
    assert late.value.transient
    assert command in message and "timed out" in message and "started" in message

    def sleeping() -> bool:
        found = subprocess.run(["pgrep", "-u", added.host.user, "-f", "sleep 599"], capture_output=True,
                               check=False)
        return found.returncode == 0

    wait_until(lambda: not sleeping(), 10, "the timed-out command to be killed")
    assert added.edge.run(added.host, "echo after").stdout == "after\n"  # the connection is still good


# -- files -----------------------------------------------------------------------------------------------------------


def test_an_upload_is_byte_identical_and_replaces_the_file_whole(added, tmp_path):
    first, second = os.urandom(5 << 20), os.urandom(3 << 20)
    source = tmp_path / "blob.bin"
    source.write_bytes(first)

    assert added.edge.upload(added.host, source, "uploads/deep/blob.bin", mode=0o640) == len(first)
    target = added.home / "uploads/deep/blob.bin"
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(first).digest()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.stat().st_uid == pwd.getpwnam(added.host.user).pw_uid

    with target.open("rb") as reader_of_the_old_file:
        added.edge.upload(added.host, second, "uploads/deep/blob.bin")
        assert reader_of_the_old_file.read() == first  # renamed over, not rewritten in place
    assert target.read_bytes() == second
    assert sorted(p.name for p in target.parent.iterdir()) == ["blob.bin"]  # no temporary left


def test_an_upload_the_host_refuses_names_the_path(added):
    with pytest.raises(EdgeError) as refused:
        added.edge.upload(added.host, b"x", "/root/usm-not-allowed.txt")
    assert not refused.value.transient
    assert "/root/usm-not-allowed.txt" in str(refused.value)
    assert not Path("/root/usm-not-allowed.txt").exists()


# -- background jobs -------------------------------------------------------------------------------------------------


def test_a_background_job_outlives_the_connection_and_reports_how_it_ended(added):
    edge, host = added.edge, added.host
    job = edge.start_background(host, "waiter", "echo waiting; while [ ! -f waiter-go ]; do sleep 0.05; done; "
                                                "echo finished; exit 7")
    assert job.running and job.pid > 0
    with pytest.raises(EdgeError) as twice:
        edge.start_background(host, "waiter", "true")
    assert "already running" in str(twice.value) and str(job.pid) in str(twice.value)

    edge.close()
    assert edge.job_state(host, "waiter").running
    edge.run(host, "touch waiter-go")
    wait_until(lambda: not edge.job_state(host, "waiter").running, 10, "the job to finish")

    state = edge.job_state(host, "waiter")
    assert (state.pid, state.exit_status) == (job.pid, 7)
    assert edge.job_log(host, "waiter") == "waiting\nfinished\n"


def test_a_stopped_job_ends_with_everything_it_started(added):
    edge, host = added.edge, added.host
    edge.start_background(host, "sleeper", "sleep 600 & sleep 600; wait")
    stopped = edge.stop_background(host, "sleeper")
    assert stopped is not None and not stopped.running and stopped.exit_status is None
    found = subprocess.run(["pgrep", "-u", host.user, "-f", "sleep 600"], capture_output=True, check=False)
    assert found.returncode == 1, found.stdout
    assert edge.stop_background(host, "never-started", missing_ok=True) is None
    with pytest.raises(EdgeError, match="no background job never-started"):
        edge.job_state(host, "never-started")


# -- node_exporter ---------------------------------------------------------------------------------------------------


def test_node_exporter_is_installed_started_and_answers(added):
    binary = Path(need(str(MANAGER_BINARY)))
    edge, host = added.edge, added.host
    port = free_port()

    job = install_node_exporter(edge, host, port, binary)
    page = metrics(edge, host, port)
    assert "node_exporter_build_info" in page and "node_cpu_seconds_total" in page
    assert (added.home / REMOTE_BINARY).read_bytes() == binary.read_bytes()

    again = install_node_exporter(edge, host, port, binary)  # reinstalling restarts it on the same port
    assert again.pid != job.pid and not edge.job_state(host, job.name).exit_status
    assert "node_exporter_build_info" in metrics(edge, host, port)
    edge.stop_background(host, job.name)
    with pytest.raises(EdgeError) as gone:
        metrics(edge, host, port)
    assert gone.value.transient


def test_node_exporter_that_cannot_listen_reports_its_log(added):
    binary = Path(need(str(MANAGER_BINARY)))
    with pytest.raises(EdgeError) as failed:
        install_node_exporter(added.edge, added.host, added.host.port, binary)  # sshd holds that port
    assert not failed.value.transient
    assert "address already in use" in str(failed.value)

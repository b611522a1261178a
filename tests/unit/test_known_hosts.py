"""usm's known_hosts file: trust on first use, refusal of a changed key, and other lines left alone."""

from __future__ import annotations

import stat
import subprocess

import paramiko
import pytest

from tests.services import need
from usm.actuators.known_hosts import HostKeyChanged, KnownHosts


def new_key(tmp_path, name: str) -> paramiko.PKey:
    """A fresh ed25519 key made by OpenSSH's own ssh-keygen (independently of the code under test)."""
    path = tmp_path / name
    subprocess.run([need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paramiko.PKey.from_path(path)


def test_the_first_key_is_recorded_once_and_another_is_refused(tmp_path):
    known = KnownHosts(tmp_path / "usm" / "known_hosts")
    first, second = new_key(tmp_path, "a"), new_key(tmp_path, "b")
    known.record("[127.0.0.1]:2222", first)
    known.record("[127.0.0.1]:2222", first)

    assert known.recorded("[127.0.0.1]:2222") == {"ssh-ed25519": first}
    assert known.recorded("127.0.0.1") == {}
    assert stat.S_IMODE(known.path.stat().st_mode) == 0o600
    assert len(known.path.read_text().splitlines()) == 1
    found = subprocess.run([need("ssh-keygen"), "-F", "[127.0.0.1]:2222", "-f", str(known.path)],
                           capture_output=True, text=True, check=False)
    assert found.returncode == 0 and first.get_base64() in found.stdout  # OpenSSH reads the same entry

    with pytest.raises(HostKeyChanged) as changed:
        known.record("[127.0.0.1]:2222", second)
    assert first.fingerprint in str(changed.value) and second.fingerprint in str(changed.value)
    assert "[127.0.0.1]:2222" in str(changed.value) and str(known.path) in str(changed.value)
    assert known.recorded("[127.0.0.1]:2222") == {"ssh-ed25519": first}


def test_lines_written_by_others_are_kept(tmp_path):
    path = tmp_path / "known_hosts"
    other = new_key(tmp_path, "other")
    theirs = (f"# kept by the operator\n@cert-authority *.example ssh-ed25519 {other.get_base64()}\n"
              f"edge-7 ssh-ed25519 {other.get_base64()}")
    path.write_text(theirs)  # no newline at the end
    known = KnownHosts(path)
    key = new_key(tmp_path, "mine")

    known.record("edge-9", key)

    assert path.read_text() == theirs + f"\nedge-9 ssh-ed25519 {key.get_base64()}\n"
    assert known.recorded("edge-7") == {"ssh-ed25519": other}

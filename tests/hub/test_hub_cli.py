"""``usm user create`` and ``usm serve``: the first admin made by an operator, and the hub served by waitress
on a loopback port, seeded from the bundled scenario."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from tests.services import Service, free_port
from usm.manager import accounts
from usm.manager.cli import main
from usm.manager.store.database import open_engine, sessions


def test_user_create_makes_an_admin_from_a_password_file(tmp_path):
    database = tmp_path / "usm.db"
    password = tmp_path / "password"
    password.write_text("a password from a file\n")
    result = CliRunner().invoke(main, ["user", "create", "--admin", "ada", "--password-file", str(password),
                                       "--db", str(database)])
    assert result.exit_code == 0, result.output
    assert "created admin ada" in result.output
    engine = open_engine(database)
    with sessions(engine).begin() as session:
        assert accounts.authenticate(session, "ada", "a password from a file").admin
    engine.dispose()
    again = CliRunner().invoke(main, ["user", "create", "ada", "--password-file", str(password), "--db",
                                      str(database)])
    assert again.exit_code == 2 and "exists already" in again.output


def test_user_create_asks_twice_and_refuses_short_passwords(tmp_path):
    database = tmp_path / "usm.db"
    typed = CliRunner().invoke(main, ["user", "create", "bob", "--db", str(database)],
                               input="typed at the prompt\ntyped at the prompt\n")
    assert typed.exit_code == 0, typed.output
    short = CliRunner().invoke(main, ["user", "create", "cy", "--db", str(database)], input="short\nshort\n")
    assert short.exit_code == 2 and "at least 12" in short.output
    mismatch = CliRunner().invoke(main, ["user", "create", "di", "--db", str(database)],
                                  input="one long password\nanother long one\n")
    assert mismatch.exit_code != 0


def test_usm_serve_answers_on_loopback_with_the_seeded_scenario(tmp_path):
    port = free_port()
    password = tmp_path / "password"
    password.write_text("served admin password\n")
    password.chmod(0o600)
    environment = {"USM_ADMIN_NAME": "ada", "USM_ADMIN_PASSWORD_FILE": str(password),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))}
    argv = [str(Path(sys.executable).parent / "usm"), "serve", "--port", str(port), "--db", str(tmp_path / "hub.db"),
            "--instance", str(tmp_path / "instance"), "--policy", str(Path("policies").resolve())]
    hub = Service("usm-serve", argv, tmp_path, env=environment)

    def up() -> bool:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200

    with hub.start(up, timeout=60):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/containers").status_code == 401
        # the session cookie is Secure: browsers keep it for loopback http, httpx only for https, so it is
        # carried by hand here
        with httpx.Client(base_url=base) as client:
            page = client.get("/login")
            cookie = page.headers["set-cookie"].split(";")[0]
            csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            signed_in = client.post("/login", data={"name": "ada", "password": "served admin password",
                                                    "csrf_token": csrf}, headers={"Cookie": cookie})
            assert signed_in.status_code == 302
            cookie = signed_in.headers["set-cookie"].split(";")[0]
            assert "Secure" in signed_in.headers["set-cookie"]
            containers = client.get("/api/containers", headers={"Cookie": cookie}).json()
            assert containers["total"] == 13
            assert client.get("/api/openapi.json").json()["openapi"] == "3.1.0"
    assert oct((tmp_path / "instance" / "secret_key").stat().st_mode & 0o777) == "0o600"

"""Signing in, sessions, CSRF, API tokens, the login throttle (on a virtual clock), cookies, CORS, the session
key, the first admin and the audit log."""

from __future__ import annotations

import stat

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.hub.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    VIEWER,
    SignedIn,
    csrf_of,
    settings,
    sign_in,
    state_of,
)
from usm.manager import accounts
from usm.manager.store.accounts import User
from usm.web import create_app
from usm.web.settings import SettingsError
from usm.web.throttle import LoginThrottle, keys_for


def login(client: FlaskClient, name: str, password: str):
    token = csrf_of(client.get("/login").data)
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token})


def test_nothing_is_served_without_a_login_or_token(anonymous):
    for path in ("/api/containers", "/api/services/sock-shop", "/api/rules", "/api/decisions", "/api/session"):
        answer = anonymous.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(answer.get_json()) == {"status", "message", "errors"}
    assert anonymous.post("/api/services", json={"name": "x", "image": "y"}).status_code == 401
    assert anonymous.get("/api/health").status_code == 200
    assert anonymous.get("/api/openapi.json").status_code == 200


def test_a_session_signs_in_and_out(app, anonymous):
    answer = login(anonymous, ADMIN, ADMIN_PASSWORD)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    session = anonymous.get("/api/session").get_json()
    assert session["user"] == ADMIN and session["admin"] and not session["by_token"]
    csrf = session["csrf_token"]
    assert anonymous.post("/logout", headers={"X-CSRFToken": csrf}).status_code == 302
    assert anonymous.get("/api/session").status_code == 401


def test_wrong_passwords_and_names_are_refused_alike(anonymous):
    wrong_password = login(anonymous, ADMIN, "not the password at all")
    unknown_name = login(anonymous, "nobody", "not the password at all")
    assert wrong_password.status_code == unknown_name.status_code == 401
    assert b"Wrong name or password." in wrong_password.data and b"Wrong name or password." in unknown_name.data
    assert anonymous.get("/api/session").status_code == 401


def test_login_goes_back_only_to_pages_of_the_hub(anonymous):
    token = csrf_of(anonymous.get("/login?next=/api/session").data)
    for target, expected in (("/api/session", "/api/session"), ("https://evil.example/", "/"),
                             ("//evil.example/", "/"), ("/\\evil.example", "/")):
        answer = anonymous.post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": token,
                                                "next": target})
        assert answer.headers["Location"] == expected
        token = anonymous.get("/api/session").get_json()["csrf_token"]


def test_state_changes_with_the_cookie_need_the_csrf_token(admin):
    client = admin.client
    body = {"name": "csrf-region", "latitude": 1.0, "longitude": 2.0}
    refused = client.post("/api/regions", json=body)
    assert refused.status_code == 403
    assert "CSRF" in refused.get_json()["message"]
    assert client.post("/api/regions", json=body, headers={"X-CSRFToken": "forged"}).status_code == 403
    assert client.get("/api/regions/csrf-region").status_code == 404  # nothing was created
    assert client.delete("/api/regions/oceania").status_code == 403
    assert admin.post("/api/regions", json=body).status_code == 201


def test_the_login_form_itself_needs_the_csrf_token(anonymous):
    answer = anonymous.post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD})
    assert answer.status_code == 403
    assert anonymous.get("/api/session").status_code == 401


def test_api_tokens_act_as_their_user_without_csrf_and_stop_when_revoked(admin, anonymous, token):
    bearer = {"Authorization": f"Bearer {token}"}
    session = anonymous.get("/api/session", headers=bearer).get_json()
    assert session["user"] == ADMIN and session["by_token"]
    made = anonymous.post("/api/regions", json={"name": "by-token", "latitude": 0.5, "longitude": 0.5},
                          headers=bearer)
    assert made.status_code == 201  # no CSRF token: a bearer token is not a cookie a browser adds by itself
    listed = admin.get("/api/tokens").get_json()["items"]
    assert [t["name"] for t in listed] == ["tests"] and "token" not in listed[0]
    assert token.startswith(listed[0]["prefix"])
    assert admin.delete(f"/api/tokens/{listed[0]['id']}").status_code == 204
    refused = anonymous.get("/api/session", headers=bearer)
    assert refused.status_code == 401 and "revoked" in refused.get_json()["message"]
    assert admin.get("/api/tokens").get_json()["items"][0]["revoked_at"] is not None


def test_tokens_are_stored_as_digests_and_expire(app, admin, anonymous, clock):
    answer = admin.post("/api/tokens", json={"name": "short", "expires_at": "2026-11-27T13:00:00+00:00"})
    text = answer.get_json()["token"]
    with app.app_context(), state_of(app).sessions.begin() as session:
        user = session.query(User).filter_by(name=ADMIN).one()
        assert all(text not in (t.digest, t.prefix) and len(t.digest) == 64 for t in user.tokens)
    bearer = {"Authorization": f"Bearer {text}"}
    assert anonymous.get("/api/session", headers=bearer).status_code == 200
    clock.advance(3600)
    assert anonymous.get("/api/session", headers=bearer).status_code == 401
    for header in ("Bearer", "Basic YWRhOmFkYQ==", f"Bearer {text}x", "Bearer usm_nope"):
        assert anonymous.get("/api/session", headers={"Authorization": header}).status_code == 401


def test_token_bodies_are_checked(admin):
    past = admin.post("/api/tokens", json={"name": "old", "expires_at": "2020-01-01T00:00:00+00:00"})
    assert past.status_code == 422 and "expires_at" in past.get_json()["errors"]
    naive = admin.post("/api/tokens", json={"name": "naive", "expires_at": "2027-01-01T00:00:00"})
    assert naive.status_code == 422 and "expires_at" in naive.get_json()["errors"]
    assert admin.delete("/api/tokens/999").status_code == 404


def test_viewers_read_but_do_not_change(viewer):
    assert viewer.get("/api/containers").status_code == 200
    refused = viewer.post("/api/regions", json={"name": "nope", "latitude": 1.0, "longitude": 1.0})
    assert refused.status_code == 403 and VIEWER in refused.get_json()["message"]
    assert viewer.delete("/api/regions/oceania").status_code == 403
    assert viewer.get("/api/users").status_code == 403
    assert viewer.get("/api/audit").status_code == 403
    assert viewer.post("/api/tokens", json={"name": "mine"}).status_code == 201  # their own token


def test_users_are_managed_by_admins_with_hashed_passwords(app, admin, anonymous):
    short = admin.post("/api/users", json={"name": "bo", "password": "short"})
    assert short.status_code == 422 and "password" in short.get_json()["errors"]
    made = admin.post("/api/users", json={"name": "bo", "password": "a long enough password"})
    assert made.status_code == 201 and made.get_json()["admin"] is False
    assert admin.post("/api/users", json={"name": "bo", "password": "a long enough password"}).status_code == 409
    with app.app_context(), state_of(app).sessions.begin() as session:
        stored = session.query(User).filter_by(name="bo").one().password_hash
    assert stored.startswith("$argon2id$") and "a long enough password" not in stored
    assert sign_in(anonymous, "bo", "a long enough password")
    assert admin.delete(f"/api/users/{VIEWER}").status_code == 204
    only_admin = admin.delete(f"/api/users/{ADMIN}")
    assert only_admin.status_code == 409 and "only admin" in only_admin.get_json()["message"]


def test_a_deleted_user_is_signed_out(app, admin, viewer):
    assert viewer.get("/api/session").status_code == 200
    assert admin.delete(f"/api/users/{VIEWER}").status_code == 204
    assert viewer.get("/api/session").status_code == 401


# Throttling, on the hub's virtual clock.


def test_five_failures_lock_a_name_for_a_growing_time(app, anonymous, clock):
    for _ in range(4):
        assert login(anonymous, ADMIN, "wrong password!").status_code == 401
    fifth = login(anonymous, ADMIN, "wrong password!")
    assert fifth.status_code == 401 and b"Wait 30 s" in fifth.data
    locked = login(anonymous, ADMIN, ADMIN_PASSWORD)  # even the right password waits
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "30"
    clock.advance(30)
    assert login(anonymous, ADMIN, "wrong password!").status_code == 401  # the sixth failure: 60 s
    clock.advance(59)
    assert login(anonymous, ADMIN, ADMIN_PASSWORD).status_code == 429
    clock.advance(1)
    assert login(anonymous, ADMIN, ADMIN_PASSWORD).status_code == 302
    # a success forgets the name's failures, not the address's (shared by whoever tries from there)
    throttle = state_of(app).throttle
    assert throttle.wait(["user:ada"], clock().timestamp()) == 0
    assert login(anonymous, ADMIN, "wrong password!").status_code == 401
    assert login(anonymous, ADMIN, ADMIN_PASSWORD).status_code == 429


def test_an_address_trying_many_names_is_locked_too(app, anonymous, clock):
    for number in range(5):
        login(anonymous, f"guess{number}", "wrong password!")
    answer = login(anonymous, VIEWER, "staple battery horse")
    assert answer.status_code == 429


def test_the_throttle_doubles_up_to_its_cap_and_forgets_old_failures():
    throttle = LoginThrottle(limit=3, base=10, cap=40, forget=100)
    keys = keys_for("Ada", "127.0.0.1")
    assert keys == ("user:ada", "address:127.0.0.1")
    assert [throttle.failed(keys, 0.0) for _ in range(6)] == [0, 0, 10, 20, 40, 40]
    assert throttle.wait(keys, 10.0) == 30.0
    assert throttle.wait(keys, 40.0) == 0.0
    assert throttle.failed(keys, 200.0) == 0  # more than `forget` after the last failure: counted from 1 again
    throttle.succeeded(keys[:1])
    assert throttle.wait(keys[:1], 200.0) == 0 and len(throttle) == 1


def test_the_throttle_keeps_only_recent_keys():
    throttle = LoginThrottle(limit=5, base=1, cap=1, forget=10, prune_above=3)
    for number in range(10):
        throttle.failed([f"user:{number}"], float(number * 20))
    assert len(throttle) <= 4


# Cookies, headers, CORS.


def test_the_session_cookie_is_secure_http_only_and_same_site(anonymous):
    text = login(anonymous, ADMIN, ADMIN_PASSWORD).headers.getlist("Set-Cookie")[0]
    assert text.startswith("usm_session=") and "Secure" in text and "HttpOnly" in text and "SameSite=Lax" in text


def test_pages_cannot_be_framed_or_sniffed(anonymous):
    headers = anonymous.get("/login").headers
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_no_cors_header_is_sent_unless_origins_are_configured(admin, token, anonymous):
    origin = {"Origin": "https://elsewhere.example", "Authorization": f"Bearer {token}"}
    answer = anonymous.get("/api/containers", headers=origin)
    assert answer.status_code == 200
    assert not [k for k, _ in answer.headers.items() if k.lower().startswith("access-control-")]
    preflight = anonymous.options("/api/containers", headers={"Origin": "https://elsewhere.example",
                                                              "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_answers_only_the_configured_origins(tmp_path, clock, policy_dir):
    app = create_app(settings(tmp_path, clock, policy_dir, USM_CORS_ORIGINS="https://hub.example.org"))
    client = app.test_client()
    allowed = client.get("/api/health", headers={"Origin": "https://hub.example.org"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://hub.example.org"
    other = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    for wrong in ("*", "https://*.example.org", "hub.example.org", "https://hub.example.org/path"):
        with pytest.raises(SettingsError, match="USM_CORS_ORIGINS"):
            create_app(settings(tmp_path, clock, policy_dir, USM_CORS_ORIGINS=wrong))


# The session key and the first admin.


def test_the_session_key_is_made_private_once_and_kept(tmp_path, clock, policy_dir):
    create_app(settings(tmp_path, clock, policy_dir))
    key_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_bytes()
    second = create_app(settings(tmp_path, clock, policy_dir))
    assert second.secret_key == first.strip() and key_file.read_bytes() == first
    key_file.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        create_app(settings(tmp_path, clock, policy_dir))


def test_a_given_key_file_is_used_and_a_short_key_refused(tmp_path, clock, policy_dir):
    key_file = tmp_path / "key"
    key_file.write_text("x" * 64)
    key_file.chmod(0o600)
    app = create_app(settings(tmp_path, clock, policy_dir, USM_SECRET_KEY_FILE=str(key_file)))
    assert app.secret_key == b"x" * 64
    key_file.write_text("short")
    with pytest.raises(SettingsError, match="at least 32"):
        create_app(settings(tmp_path, clock, policy_dir, USM_SECRET_KEY_FILE=str(key_file)))


def test_a_new_hub_has_no_user_until_an_admin_is_made(tmp_path, clock, policy_dir, monkeypatch):
    app = create_app(settings(tmp_path, clock, policy_dir))
    client = app.test_client()
    assert login(client, "admin", "admin").status_code == 401
    with app.app_context(), state_of(app).sessions.begin() as session:
        assert accounts.count_admins(session) == 0
    password_file = tmp_path / "password"
    password_file.write_text("from a file, not the repo\n")
    monkeypatch.setenv("USM_ADMIN_NAME", "root-admin")
    monkeypatch.setenv("USM_ADMIN_PASSWORD_FILE", str(password_file))
    app = create_app(settings(tmp_path, clock, policy_dir))
    assert login(app.test_client(), "root-admin", "from a file, not the repo").status_code == 302
    password_file.write_text("another password entirely\n")
    create_app(settings(tmp_path, clock, policy_dir))  # an admin exists: left alone
    assert login(app.test_client(), "root-admin", "from a file, not the repo").status_code == 302
    monkeypatch.delenv("USM_ADMIN_PASSWORD_FILE")
    with pytest.raises(SettingsError, match="go together"):
        create_app(settings(tmp_path, clock, policy_dir))


def test_sign_ins_and_actions_are_audited_with_their_user(app: Flask, admin: SignedIn, anonymous):
    login(anonymous, ADMIN, "wrong password!")
    admin.post("/api/actions/hosts/leiria/ssh", json={"command": "uptime"})
    entries = admin.get("/api/audit").get_json()["items"]
    seen = [(e["user"], e["action"], e["outcome"]) for e in entries]
    assert (ADMIN, "login", "ok") in seen and (ADMIN, "login", "refused") in seen
    ssh = [e for e in entries if e["action"] == "ssh"]
    assert ssh and ssh[0]["user"] == ADMIN and "uptime" in ssh[0]["detail"] and ssh[0]["address"]
    assert admin.get("/api/audit?action=ssh").get_json()["total"] == 1

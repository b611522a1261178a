"""The hub's settings: from the mapping given to ``create_app`` first, then the environment, then defaults that
hold no secret.

==========================  ===================================================================================
``USM_DATABASE``            the store: a SQLite file or a PostgreSQL URL (default: ``usm.db`` in the instance
                            folder)
``USM_SECRET_KEY_FILE``     the file holding the session-signing key (default: ``secret_key`` in the instance
                            folder, made with random bytes and mode 0600 when missing)
``USM_POLICY``              the policy directory whose rules and simulated metrics the API reads and edits
                            (default: ``policies``)
``USM_ADMIN_NAME``          with ``USM_ADMIN_PASSWORD_FILE``: an admin created at startup when no admin exists
``USM_ADMIN_PASSWORD_FILE`` the file whose first line is that admin's password
``USM_CORS_ORIGINS``        origins allowed to call the API from a browser, comma-separated (default: none, and
                            no CORS header is ever sent)
``USM_SECURE_COOKIES``      ``false`` only for a hub served over plain HTTP on a name browsers do not treat as
                            secure (default: true)
==========================  ===================================================================================

Objects that tests and ``usm serve`` inject go in the mapping only: ``USM_CLOCK`` (a function returning the
aware UTC time; the login throttle and every timestamp read it) and ``USM_ACTIONS`` (the ``Actions`` the action
endpoints call).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENVIRONMENT = ("USM_DATABASE", "USM_SECRET_KEY_FILE", "USM_POLICY", "USM_ADMIN_NAME", "USM_ADMIN_PASSWORD_FILE",
               "USM_CORS_ORIGINS", "USM_SECURE_COOKIES")
SECRET_KEY_BYTES = 32


class SettingsError(ValueError):
    """A setting the hub cannot start with; the message names it and says how to fix it."""


def gather(given: Mapping[str, Any] | None, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The settings: ``given`` wins over the environment for every ``USM_*`` name."""
    settings: dict[str, Any] = {name: environ[name] for name in ENVIRONMENT if environ.get(name)}
    settings.update(given or {})
    return settings


def secret_key(path: Path) -> bytes:
    """The session-signing key in ``path``; made (random, mode 0600) when the file does not exist yet.

    The file is created with ``O_EXCL`` so two processes starting together cannot each write their own key, and
    with mode 0600 from the start, so the key is never readable by others, even briefly.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    except OSError as error:
        raise SettingsError(f"cannot create the secret key file {path}: {error.strerror}; set "
                            "USM_SECRET_KEY_FILE to a writable place") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(secrets.token_hex(SECRET_KEY_BYTES).encode() + b"\n")
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise SettingsError(f"cannot read the secret key file {path}: {error.strerror}") from None
    if len(key) < SECRET_KEY_BYTES:
        raise SettingsError(f"the secret key in {path} has {len(key)} bytes; it needs at least {SECRET_KEY_BYTES} "
                            "(delete the file to have a new one made)")
    if path.stat().st_mode & 0o077:
        raise SettingsError(f"the secret key file {path} can be read by others; run chmod 600 {path}")
    return key


def origins(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The explicit origins CORS is allowed for; a wildcard or anything but ``scheme://host[:port]`` is refused."""
    if not value:
        return []
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    found = []
    for item in filter(None, items):
        parts = urlsplit(item)
        if "*" in item or parts.scheme not in ("http", "https") or not parts.hostname or \
                parts.path not in ("", "/") or parts.query or parts.fragment:
            raise SettingsError(f"USM_CORS_ORIGINS: {item!r} is not an origin such as https://hub.example.org; "
                                "list each origin explicitly (no wildcard)")
        found.append(f"{parts.scheme}://{parts.netloc}")
    return found


def flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} is {value!r}; write true or false")


__all__ = ["ENVIRONMENT", "SettingsError", "flag", "gather", "origins", "secret_key"]

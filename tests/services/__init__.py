"""Real services for the integration tests, started and stopped by PID.

Each service module here (dockerd, prometheus, sshd, moto, ...) builds on `Service`: it starts the real
binary on loopback ports in a private directory, waits until it answers, and stops it by its PID. The
launchers themselves are usm's own (`usm.lab`, which `usm lab up` runs too); these modules add what only tests
need. `need()` finds a binary; when it is missing the test is skipped on a developer machine and fails in CI
(`CI=true`), where `.ci/run` must have installed it.
"""

from __future__ import annotations

import os

import pytest

from usm.lab.process import SBIN, MissingBinary, find_binary, free_port, port_open, wait_until
from usm.lab.process import Process as Service


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(binary: str) -> str:
    """The path of `binary`, or skip the test (fail it in CI) when it is not installed."""
    try:
        return find_binary(binary)
    except MissingBinary as missing:
        message = f"{missing} (.ci/run installs the Debian packages the tests need)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


__all__ = ["SBIN", "Service", "free_port", "in_ci", "need", "port_open", "wait_until"]

"""Browser tests of the hub: ``usm serve`` started as a process on a free loopback port (a temporary store and
instance folder, a copy of the policy, an admin whose password is made at random for the run), driven by
Playwright through Debian's Chromium (``playwright install`` cannot download browsers here).

Every test leaves a screenshot of where it ended in ``out/screenshots/`` (``/out/`` is ignored by git); the
paths are listed at the end of the test run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import Service, free_port, need

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "out" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ADMIN = "ada"
_taken: list[Path] = []


@dataclass(frozen=True)
class Hub:
    url: str
    admin: str
    password: str
    policy: Path


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[Hub]:
    """``usm serve`` on the sock-shop world, with an admin made at startup from a random password."""
    folder = tmp_path_factory.mktemp("hub")
    policy = folder / "policies"
    (policy / "tests").mkdir(parents=True)
    for file in (ROOT / "policies").glob("*.yaml"):
        shutil.copyfile(file, policy / file.name)
    shutil.copyfile(ROOT / "policies" / "tests" / "default_policy_test.yaml", policy / "tests" / "default_test.yaml")
    password = secrets.token_urlsafe(18)
    secret = folder / "admin-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    port = free_port()
    environment = {**os.environ, "USM_ADMIN_NAME": ADMIN, "USM_ADMIN_PASSWORD_FILE": str(secret),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [str(Path(sys.executable).parent / "usm"), "serve", "--port", str(port), "--db", str(folder / "hub.db"),
            "--instance", str(folder / "instance"), "--policy", str(policy)]
    server = Service("usm-serve", argv, folder, env=environment)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/api/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    with server.start(up, timeout=90):
        yield Hub(url, ADMIN, password, policy)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = need("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, request) -> Iterator[object]:
    """A fresh browser tab (its own cookies); its last view is saved as ``out/screenshots/<test>.png``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    snap(tab, request.node.name)
    context.close()


def snap(page, name: str) -> None:
    """Keep a screenshot of the whole page as ``out/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    _taken.append(path)


def sign_in(page, hub: Hub) -> None:
    page.goto(f"{hub.url}/login")
    page.get_by_label("User").fill(hub.admin)
    page.get_by_label("Password").fill(hub.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{hub.url}/")


def pytest_terminal_summary(terminalreporter) -> None:
    if _taken:
        terminalreporter.write_sep("-", "screenshots of the browser tests")
        for path in _taken:
            terminalreporter.write_line(str(path.relative_to(ROOT)))

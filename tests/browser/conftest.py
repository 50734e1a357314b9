"""Browser tests: Debian's chromium driven by Playwright's sync API against a real server.

They are skipped only where chromium is missing *and* FEDPLATFORM_BROWSER_TESTS is not "1"; CI
sets it, so a missing browser fails there instead of passing silently.
"""
import os
from pathlib import Path

import pytest

# The real-process helpers live with the end-to-end tests (pyproject.toml puts tests/e2e on pytest's
# pythonpath); share them rather than copy them.
from processes import OPERATOR, Server

CHROMIUM = os.environ.get("FEDPLATFORM_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]


def _required() -> bool:
    return os.environ.get("FEDPLATFORM_BROWSER_TESTS") == "1"


@pytest.fixture(scope="module", autouse=True)
def _browser_available() -> None:
    # Autouse, so it decides before the (slow) server fixture starts anything.
    if not Path(CHROMIUM).exists():
        message = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        if _required():
            pytest.fail(f"FEDPLATFORM_BROWSER_TESTS=1 but {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


# One server for every browser test module: each test makes its own run, and a server's start-up
# is most of a browser test's time.
@pytest.fixture(scope="session")
def fed_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("browser-server"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def operator_page(chromium, fed_server):
    """A logged-in operator's tab on the dashboard, with page errors collected."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())  # the kick and stop confirmations
    page.goto(f"{fed_server.url}/admin/login/?next=/")
    page.fill("#id_username", OPERATOR[0])
    page.fill("#id_password", OPERATOR[1])
    page.click("input[type=submit]")
    page.wait_for_selector("#live.on", timeout=20_000)
    yield page
    context.close()

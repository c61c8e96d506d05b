"""The console's browser tests: one `orion up` (a subprocess, as a user runs it) for the module
set, with tenants alice and bob, and a headless Chromium (Debian's ``chromium`` package, driven by
Playwright) that signs in with a key as a user does.

Each test opens a fresh browser context (its own ``sessionStorage``: its own key), checks what the
page shows against the REST answer for the same key, and closes it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.live_orion import orion_up

CHROMIUM = os.environ.get("ORION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TENANT_KEYS = {"alice": "alice-console-key-0123456789", "bob": "bob-console-key-0123456789"}
CONFIG = """\
orion:
  scheduler: {pin_single_bundle_tasks: true}
  tenants:
    - {id: alice, weight: 2, quota: {gpu: 1, cpu: 2}, api_key_env: ORION_KEY_ALICE}
    - {id: bob, weight: 1, quota: {gpu: 1, cpu: 2}, api_key_env: ORION_KEY_BOB}
"""

pytestmark = pytest.mark.e2e


@dataclass
class Live:
    """A running Orion: its URL, the admin key and the tenants' keys."""

    url: str
    admin_key: str
    env: dict[str, str]
    home: Path
    keys: dict[str, str] = field(default_factory=lambda: dict(TENANT_KEYS))

    def key(self, who: str) -> str:
        """The key of ``who``: ``"admin"`` or a tenant id."""
        return self.admin_key if who == "admin" else self.keys[who]

    def client(self, who: str) -> httpx.Client:
        """The REST API as ``who`` (the same answers the console gets)."""
        auth = {"Authorization": f"Bearer {self.key(who)}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=60)

    def rest(self, who: str, path: str) -> Any:
        """``GET path`` as ``who``, JSON."""
        with self.client(who) as c:
            r = c.get(path)
            r.raise_for_status()
            return r.json()


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[Live]:
    """One `orion up` for the console tests (4 CPUs, 2 fake GPUs), stopped by `orion down` once the
    package's last test is done (not at the session's end: an idle Orion would load every later test)."""
    home = tmp_path_factory.mktemp("orion-console")
    with orion_up(home, CONFIG, TENANT_KEYS) as (creds, env, _):
        yield Live(url=creds["url"], admin_key=creds["api_key"], env=env, home=home)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's package) through Playwright; skipped where it is not installed,
    except under ``ORION_REQUIRE_BROWSER`` (`.ci/run` installs it and sets that).

    Per module, not per session: Playwright's sync API keeps an asyncio loop running in this
    thread while it is open, and every later test that runs a loop of its own would fail."""
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ORION_CHROMIUM)"
    if missing is not None:
        if os.environ.get("ORION_REQUIRE_BROWSER"):  # CI: a skipped browser test is a failure
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


class Console:
    """A signed-in console tab: ``open(hash)`` navigates and waits for the view's data."""

    def __init__(self, page: Any, url: str, errors: list[str]):
        self.page, self.url, self.errors = page, url, errors

    def open(self, route: str, view: str, timeout_ms: int = 30_000) -> Any:
        """Load the console at ``#/<route>`` (a full page load: nothing of the last view is
        left to be mistaken for this one) and wait until ``view`` has rendered its data."""
        self.page.goto("about:blank")  # the tab's sessionStorage (the key) survives this
        self.page.goto(f"{self.url}/console#/{route}")
        self.wait_ready(view, timeout_ms)
        return self.page

    def wait_ready(self, view: str, timeout_ms: int = 30_000) -> None:
        """Wait for ``<body data-ready=view>`` (set once the view's data is on the page)."""
        self.page.wait_for_selector(f'body[data-ready="{view}"]', state="attached", timeout=timeout_ms)

    def shot(self, name: str) -> None:
        """Save a screenshot as ``<name>.png`` in ``$ORION_CONSOLE_SCREENSHOTS`` when it is set
        (how docs/console's pictures of a live Orion are made); nothing otherwise."""
        where = os.environ.get("ORION_CONSOLE_SCREENSHOTS")
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)

    def texts(self, selector: str) -> list[str]:
        """The text of every element matching ``selector``."""
        return [e.inner_text() for e in self.page.query_selector_all(selector)]


@pytest.fixture
def console(browser, live):
    """``console(who)``: a new tab signed in as ``who`` ("admin" or a tenant); page errors fail
    the test (the CSP or a script error shows up here)."""
    opened = []

    def make(who: str) -> Console:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{live.url}/console")
        page.fill("#key", live.key(who))
        page.click("#signin")
        page.wait_for_selector('[data-testid="who"]', timeout=30_000)
        c = Console(page, live.url, errors)
        opened.append((ctx, c))
        return c

    yield make
    for ctx, c in opened:
        ctx.close()
        assert not c.errors, c.errors

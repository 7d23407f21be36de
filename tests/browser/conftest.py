"""Browser fixtures: headless Debian Chromium driven by Playwright's sync API.

`browser_page` opens a fresh page (own context, so no shared storage) whose relative URLs go to
the running stack from the `live_stack` session fixture (tests/conftest.py). `screenshot` saves
PNGs to test-artifacts/screenshots/<name>.png under the repository root. `mood_elsewhere_stack`
is a stack whose every job fails, for real, in its mood stage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, _stop, start_stack
from tuneforge.embedded import free_port, start_nats_server

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("TUNEFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}


def save_screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of `page` as test-artifacts/screenshots/<name>.png and return its path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# Module scope, not session: sync Playwright runs its own event loop in this thread while it is
# open, and the async tests that follow in the same run need the thread's loop to themselves.
@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (set TUNEFORGE_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium_browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory for pages on the live stack: new_page(viewport=PHONE) for a phone-sized one,
    new_page(stack=other) for a page on another stack (the live stack is then not started).

    Each page records uncaught JavaScript errors in `page.js_errors`; the test fails on any.
    """
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(viewport: dict[str, int] | None = None, stack: Stack | None = None, **options: Any) -> Any:
        target = stack if stack is not None else request.getfixturevalue("live_stack")
        context = chromium_browser.new_context(
            base_url=target.base_url.rstrip("/"), viewport=viewport or DESKTOP, **options
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.js_errors = []
        page.on("pageerror", lambda error: page.js_errors.append(str(error)))
        pages.append(page)
        return page

    yield make
    errors = [error for page in pages for error in page.js_errors]
    for context in contexts:
        context.close()
    assert not errors, f"uncaught JavaScript errors on the page: {errors}"


@pytest.fixture
def browser_page(new_page: Callable[..., Any]) -> Any:
    """A desktop-sized page (1280x900) on the live stack."""
    return new_page()


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """save(page, name) -> Path of test-artifacts/screenshots/<name>.png."""
    return save_screenshot


@pytest.fixture
def mood_elsewhere_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack, on a NATS of its own, whose mood actor reads another blob store than the pipeline's
    (`tuneforge up --moods 0`, and a `tuneforge actor mood` with another data directory): every job
    converts and renders, then cannot be analysed; the mood stage retries (2, 4, 8 s apart) and its
    last attempt reports the job failed, stage `analyzing` (about 15 s after the render)."""
    data_dir = tmp_path_factory.mktemp("stack-mood-elsewhere")
    nats_process, nats = start_nats_server(data_dir / "nats", port=free_port())
    elsewhere = data_dir / "elsewhere"
    mood_log = (data_dir / "mood-actor.log").open("wb")
    mood_actor = subprocess.Popen(
        [sys.executable, "-m", "tuneforge", "actor", "mood", "--data-dir", str(elsewhere)],
        env={
            **os.environ,
            "TUNEFORGE_NATS_URL": nats,
            "TUNEFORGE_DATA_DIR": str(elsewhere),
            "TUNEFORGE_BLOB_URL": str(elsewhere / "blobs"),
            "NUMBA_CACHE_DIR": str(REPO_ROOT / ".venv" / "numba-cache"),
        },
        stdout=mood_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Ready once every service answers, the mood actor (warming up on its own) included.
        stack = start_stack("mood-elsewhere", data_dir, nats, {}, ("--moods", "0"))
    except BaseException:
        _stop(mood_actor)
        _stop(nats_process)
        mood_log.close()
        raise
    yield stack
    _stop(stack.process, 30)
    _stop(mood_actor)
    _stop(nats_process)
    mood_log.close()

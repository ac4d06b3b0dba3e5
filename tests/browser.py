"""Headless Chromium for the tests that open a page (the report, the documentation site): Debian's browser
driven by Playwright, and no browser process left behind."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
from playwright.sync_api import BrowserContext, ViewportSize, sync_playwright

CHROMIUM = shutil.which("chromium")
# As root on a closed network: no sandbox, no GPU, and nothing that phones home (the refused
# connections otherwise pile up at every start).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]
SCREEN: ViewportSize = {"width": 1280, "height": 900}
#: Every browser action and expectation gives up after this long (ms), so a hung page fails the test.
ACTION_TIMEOUT_MS = 15_000


@contextlib.contextmanager
def headless_chromium(profile: Path) -> Iterator[BrowserContext]:
    """A browser on a fresh ``--user-data-dir`` (``profile``); afterwards no process of it may remain."""
    assert CHROMIUM is not None, "no chromium on PATH; .ci/run installs Debian's chromium package"
    earlier = {child.pid for child in psutil.Process().children(recursive=True)}  # other tests' processes
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport=SCREEN, timeout=60_000)
        try:
            context.set_default_timeout(ACTION_TIMEOUT_MS)
            yield context
        finally:
            # Playwright's driver and every Chromium process.
            spawned = [child for child in psutil.Process().children(recursive=True) if child.pid not in earlier]
            context.close()
    _, alive = psutil.wait_procs(spawned, timeout=10)
    alive += [p for p in psutil.process_iter(["cmdline"]) if f"--user-data-dir={profile}" in (p.info["cmdline"] or [])]
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    assert not alive, f"browser processes left behind: {[p.pid for p in alive]}"

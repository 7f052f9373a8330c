"""Debian's Chromium, headless, driven by Playwright: the flags every page test uses and a fresh profile each time
(Playwright's launch makes a new temporary user-data-dir). A missing Chromium fails loudly, never skips."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
CHROMIUM_VIDEO_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]  # pages that play video


def chromium_executable() -> str:
    executable = os.environ.get("OSCE_CHROMIUM", "/usr/bin/chromium")
    assert os.path.exists(executable), f"Debian's chromium is needed at {executable} (or set OSCE_CHROMIUM)"
    return executable


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

"""The centre (scripts/harness/centre.py) that the page walk and the console's task tests share: one real server
with a centre's data for the whole run (its setup records and uploads a clip and marks two days), its stations
reporting and st1 publishing live; and one Chromium per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from scripts.harness.browser import CHROMIUM_VIDEO_ARGS, chromium_executable
from scripts.harness.centre import Centre


@pytest.fixture(scope="session")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    c = Centre(tmp_path_factory.mktemp("centre"))
    c.keep_reporting()
    c.start_live("st1")
    try:
        yield c
    finally:
        c.close()


# Per module, not per session: Playwright's sync API keeps an event loop running in the main thread while it is
# open, which would break the other modules' own sync_playwright() and every later asyncio test of the run.
@pytest.fixture(scope="module")
def centre_browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_VIDEO_ARGS)
        try:
            yield b
        finally:
            b.close()

"""What the observer sees of the live view, in Debian's headless Chromium: capture → screen latency of the grid's tile
and of the enlarged view with sound (the short version of bench/bench_live_screen.py; the measurement is
tests/e2e/screen_latency.py). The stack is test_live.py's: a real recording (synthetic camera flashing at every whole
second of the host's clock, synthetic microphone) tapped by the live publisher, the live routes behind the auth TEST
STAND-IN, the grid page in the browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from .screen_latency import CHROMIUM_ARGS, PROBE_JS, Sample, flashes, summary, take, tie_clock, viewer_sink_env
from .test_live import LiveStack

# The target is 250 ms at p95 on the demo with the 12 × 4 load (bench/bench_live_screen.py); this stack measured
# p50 180–205, p95 200–245 ms on a moderately loaded machine. Here the recorder, the server and the browser share the
# test's machine, and one hiccup of a busy CI box is one late flash of fifteen, so the bounds are wider: the median
# holds the player to the live edge (the player before issue 19 sat 0.55–0.8 s behind: it fails this), the p95 to
# no more than an occasional freeze.
P50_BOUND_MS = 350.0
P95_BOUND_MS = 600.0
SECONDS = 15.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    s = LiveStack(tmp_path_factory.mktemp("live-screen"))
    try:
        s.wait_live("cam0")
        yield s
    finally:
        s.close()
    assert not s.recorder.failures, s.recorder.failures


def _watch(page, tag: str) -> dict:  # noqa: ANN001 - playwright Page
    page.evaluate("window.__screen.take()")
    sample = Sample(tie_clock(page)[0])
    for _ in range(int(SECONDS)):
        page.wait_for_timeout(1000)
        take(page, sample)
    return summary(flashes(sample, tag), sample, {tag})


def test_live_picture_reaches_the_screen_within_a_quarter_second_or_so(stack: LiveStack, tmp_path: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("OSCE_CHROMIUM", "/usr/bin/chromium"),
                                    args=CHROMIUM_ARGS, env=viewer_sink_env())
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_cookies([{"name": "osce_session", "value": "observer-cookie", "url": stack.url}])
            context.add_init_script(PROBE_JS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(stack.url + "/live")
            page.wait_for_function("(() => { const v = document.querySelector('.tile video');"
                                   " return v && v.getVideoPlaybackQuality().totalVideoFrames > 25; })()",
                                   timeout=20000)
            tile = _watch(page, "S1:tile")
            page.locator('.tile[data-station="S1"] video').click()
            expect(page.locator("#overlay")).to_be_visible()
            page.wait_for_function("audioCtx && audioCtx.state === 'running' && current.gain.gain.value === 1"
                                   " && !document.querySelector('#big-slot video').muted", timeout=10000)
            page.wait_for_timeout(2000)
            big = _watch(page, "S1:big")
            page.screenshot(path=tmp_path / "enlarged.png")
            assert errors == []
        finally:
            browser.close()
    print(f"tile {tile}\nenlarged with sound {big}")
    for name, figures in (("tile", tile), ("enlarged", big)):
        assert figures["flashes"] >= SECONDS - 3, (name, figures)  # a flash a second, each one seen
        assert figures["p50_ms"] <= P50_BOUND_MS and figures["p95_ms"] <= P95_BOUND_MS, (name, figures)
        assert figures["socket_p50_ms"] < figures["p50_ms"], (name, figures)  # the socket is before the screen

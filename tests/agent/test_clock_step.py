"""The room PC's clock is stepped an hour ahead or back in the middle of an attempt (NTP's `makestep`, a technician).

A real daemon runs with `clock_step_shim.c` preloaded: the shim adds the step to the process's system clock
(CLOCK_REALTIME) while leaving the monotonic clock alone, as a real step does. The attempt must run its phases on
time, record one continuous part, and place the examiner's marks at their true offsets; the step is taken up and
logged once the attempt is over.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from media.manifest import read_manifest, verify_recording

from .conftest import Client, Daemon, build_clock_step_shim, events, set_clock_step, wait_for, write_config

STEP_S = 3600
READING_S, PERFORMING_S = 1, 8


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_clock_step_shim(tmp_path_factory.mktemp("shim"))


@pytest.mark.parametrize("step_s", [STEP_S, -STEP_S], ids=["ahead", "back"])
def test_a_clock_step_during_an_attempt_cuts_nothing_and_moves_no_mark(tmp_path: Path, shim: Path,
                                                                        step_s: int) -> None:
    step_file = tmp_path / "clock-step"
    set_clock_step(step_file, 0)
    daemon = Daemon(write_config(tmp_path, microphone="none", exam_extra="marking_port = 0"))
    folder = tmp_path / "data" / "recordings" / "d1-st1-step"
    try:
        daemon.start({"LD_PRELOAD": str(shim), "OSCE_CLOCK_STEP_FILE": str(step_file),
                      "OSCE_MARKING_PINS": "ivanova:246802"})
        status, answer = daemon.request("POST", "/api/attempt/start", {
            "candidate": "240517", "attempt_id": "d1-st1-step", "reading_s": READING_S, "performing_s": PERFORMING_S})
        assert status == 200, answer
        # `started`: when the reading phase begins (a hand-started attempt begins after a short pre-roll)
        reading = datetime.fromisoformat(answer["attempt"]["reading_starts_at"]).timestamp()
        started = time.monotonic() + reading - time.time()
        examiner = Client(answer["status"]["marking"]["url"])
        assert examiner.request("POST", "/api/login", {"examiner": "ivanova", "pin": "246802"})[0] == 200

        def mark(item: int) -> tuple[float, float]:
            status, body = examiner.request("POST", "/api/events", {"event_id": str(uuid.uuid4()), "kind": "mark",
                                                                    "item": item, "done": True})
            assert status == 200, body
            return body["event"]["recording_offset_s"], time.monotonic()

        time.sleep(max(0.0, started + 1.5 - time.monotonic()))
        first, first_at = mark(1)
        exam_before = datetime.fromisoformat(daemon.request("GET", "/api/clock", token=None)[1]["exam_time"])
        set_clock_step(step_file, step_s)
        stepped_at = time.monotonic()
        time.sleep(1.0)
        second, second_at = mark(2)
        # The mark after the step sits where it happened, not an hour later.
        assert second - first == pytest.approx(second_at - first_at, abs=0.3), (first, second)
        clock = daemon.request("GET", "/api/clock", token=None)[1]
        exam_after = datetime.fromisoformat(clock["exam_time"])
        assert 0 < (exam_after - exam_before).total_seconds() < 5, (exam_before, exam_after)
        assert clock["phase"] == "performing", clock

        phases: list[tuple[str, float]] = []
        while time.monotonic() - started < READING_S + PERFORMING_S + 8:
            phase = daemon.request("GET", "/api/clock", token=None)[1]["phase"]
            if not phases or phases[-1][0] != phase:
                phases.append((phase, time.monotonic() - started))
            if phase == "idle":
                break
            time.sleep(0.1)
        idle_at = dict(phases).get("idle")
        assert idle_at is not None, phases
        # On time by the monotonic clock: not an hour early (at the step), not late.
        assert READING_S + PERFORMING_S - 0.5 <= idle_at <= READING_S + PERFORMING_S + 2.0, phases
        assert stepped_at - started < READING_S + PERFORMING_S - 3  # the step came well inside the attempt

        log = events(folder)
        assert [e["event"] for e in log].count("attempt_done") == 1
        walls = [datetime.fromisoformat(e["wall"]).timestamp() for e in log]
        assert max(walls) - min(walls) < READING_S + PERFORMING_S + 5, "the attempt's log jumped with the step"
        part = folder / "part-1"
        assert not (folder / "part-2").exists()  # one continuous recording
        manifest = read_manifest(part)
        assert manifest.end is not None and verify_recording(part) == []
        media = max(f.end or 0.0 for f in manifest.fragments if f.kind == "media")
        assert media >= READING_S + PERFORMING_S - 1.5, media

        # Between attempts the agent takes the step up (the exam clock has no server here) and logs it.
        wait_for(lambda: f"stepped by {step_s:+d}." in daemon.log.read_text(errors="replace"), 5, "the step logged")
        exam_now = datetime.fromisoformat(daemon.request("GET", "/api/clock", token=None)[1]["exam_time"])
        assert (exam_now - exam_after).total_seconds() == pytest.approx(step_s, abs=30)
    finally:
        daemon.stop()

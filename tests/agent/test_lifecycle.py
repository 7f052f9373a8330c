"""Attempt lifecycle on its own: phases and remaining time, the schedule contract, cues, durable state, gaps."""

from __future__ import annotations

import io
import time
import wave
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from media.manifest import Fragment, ManifestWriter
from media.recorder import WARMUP_S
from station_agent import station_clock
from station_agent.lifecycle import (
    Attempt,
    AttemptLog,
    ExamClock,
    ScheduleError,
    StateStore,
    active_attempt,
    cue_wav,
    due_cues,
    parse_schedule,
    part_dirs,
    part_media_span,
)

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def attempt(**changes: object) -> Attempt:
    base = Attempt("d1-st1-001", "240517", "st1", "cpr", T0, reading_s=2, performing_s=4)
    return replace(base, **changes)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_phases_and_remaining_time() -> None:
    a = attempt()
    assert a.phase_at(at(-3)) == ("scheduled", 3.0)
    assert a.phase_at(at(0)) == ("reading", 2.0)
    assert a.phase_at(at(1.5)) == ("reading", 0.5)
    assert a.phase_at(at(2)) == ("performing", 4.0)
    assert a.phase_at(at(5.75)) == ("performing", 0.25)
    assert a.phase_at(at(6)) == ("done", 0.0)
    stopped = attempt(stopped_at=at(3))
    assert stopped.phase_at(at(2.9))[0] == "performing" and stopped.phase_at(at(3))[0] == "done"
    assert stopped.ends_at == at(3) and stopped.time_up_at == at(6)


def test_active_attempt_with_pre_roll() -> None:
    first, second = attempt(), attempt(attempt_id="d1-st1-002", reading_starts_at=at(6))
    assert active_attempt([first, second], at(-3), lead_s=2) is None
    assert active_attempt([first, second], at(-1.5), lead_s=2) is first
    assert active_attempt([second, first], at(5), lead_s=2) is first  # the earlier one until it is done
    assert active_attempt([first, second], at(6), lead_s=2) is second
    assert active_attempt([first, second], at(12), lead_s=2) is None


def test_cues_in_order_and_the_one_minute_cue_only_when_it_fits() -> None:
    a = attempt(performing_s=120)
    assert due_cues(a, at(1), 60) == [("reading", at(0))]
    assert [c for c, _ in due_cues(a, at(200), 60)] == ["reading", "performing", "one_minute", "time_up"]
    assert dict(due_cues(a, at(200), 60))["one_minute"] == at(62)
    assert [c for c, _ in due_cues(attempt(), at(10), 60)] == ["reading", "performing", "time_up"]  # 4 s task
    stopped = attempt(performing_s=120, stopped_at=at(30))
    assert [c for c, _ in due_cues(stopped, at(200), 60)] == ["reading", "performing"]  # no time_up after a stop


def test_schedule_contract() -> None:
    doc = {"server_time": "2026-11-26T08:00:00Z", "attempts": [
        {"attempt_id": "a1", "candidate": "240517", "station_id": "st1", "reading_starts_at": "2026-11-26T08:00:30Z"},
        {"attempt_id": "a2", "candidate": "240518", "station_id": "st2", "reading_starts_at": "2026-11-26T08:00:30Z"},
        {"attempt_id": "a3", "candidate": "240519", "checklist": "im", "reading_starts_at": "2026-11-26T11:10:30+03:00",
         "reading_s": 10, "performing_s": 300}]}
    server_time, attempts = parse_schedule(doc, "st1", "cpr", 30, 510)
    assert server_time == T0
    assert [a.attempt_id for a in attempts] == ["a1", "a3"]  # a2 is another station's
    assert (attempts[0].checklist, attempts[0].reading_s, attempts[0].performing_s) == ("cpr", 30, 510)
    assert attempts[1].reading_starts_at == at(10 * 60 + 30) and attempts[1].performing_s == 300
    assert attempts[1].station_id == "st1" and attempts[1].origin == "schedule"


@pytest.mark.parametrize(("doc", "message"), [
    ({"attempts": {}}, "schedule: expected an object"),
    ({"attempts": [{"attempt_id": "a1", "candidate": "240517", "reading_starts_at": "08:00"}]},
     "schedule.attempts[0].reading_starts_at: not an ISO-8601 time"),
    ({"attempts": [{"attempt_id": "a1", "candidate": "240517", "reading_starts_at": "2026-11-26T08:00:00"}]},
     "schedule.attempts[0].reading_starts_at: needs a UTC offset"),
    ({"attempts": [{"attempt_id": "a1", "candidate": "Иванов И.И.", "reading_starts_at": "2026-11-26T08:00:00Z"}]},
     "schedule.attempts[0].candidate"),
    ({"attempts": [{"attempt_id": "../x", "candidate": "1", "reading_starts_at": "2026-11-26T08:00:00Z"}]},
     "schedule.attempts[0].attempt_id"),
    ({"attempts": [{"attempt_id": "a1", "candidate": "1", "reading_starts_at": "2026-11-26T08:00:00Z",
                    "performing_s": -5}]}, "schedule.attempts[0].performing_s"),
    # "$" matched before a trailing newline: an id or number with one in it went through to folder names.
    ({"attempts": [{"attempt_id": "a1\n", "candidate": "1", "reading_starts_at": "2026-11-26T08:00:00Z"}]},
     "schedule.attempts[0].attempt_id"),
    ({"attempts": [{"attempt_id": "a1", "candidate": "240517\n", "reading_starts_at": "2026-11-26T08:00:00Z"}]},
     "schedule.attempts[0].candidate"),
])
def test_schedule_errors_name_the_field(doc: dict, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_schedule(doc, "st1", "cpr", 30, 510)


def test_exam_clock_offset_from_the_request_midpoint() -> None:
    clock = ExamClock()
    assert clock.to_json()["source"] == "local"
    sent_wall, sent = datetime.now(UTC), time.monotonic()
    clock.observe(sent_wall + timedelta(seconds=10.5), sent, sent + 1.0)
    assert clock.offset_s == pytest.approx(10.0, abs=0.01)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds() - 10.0) < 0.1
    assert clock.to_json()["source"] == "server"


def test_a_step_of_the_system_clock_moves_no_exam_time_and_reaches_the_station_clock_on_follow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The real fault (an LD_PRELOAD shim stepping a running agent) is in tests/agent/test_clock_step.py;
    # here time.time is stepped in-process, which is what the shim does to the process.
    synced, unsynced = ExamClock(), ExamClock()
    synced.observe(datetime.now(UTC) + timedelta(seconds=2), time.monotonic(), time.monotonic())
    before = (synced.now(), unsynced.now(), station_clock.now())
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
    assert station_clock.step_s() == pytest.approx(3600.0, abs=0.1)
    for was, clock in zip(before, (synced.now(), unsynced.now(), station_clock.now()), strict=True):
        assert abs((clock - was).total_seconds()) < 0.1  # nothing moved by the step
    assert station_clock.follow() == pytest.approx(3600.0, abs=0.1)
    assert (station_clock.now() - before[2]).total_seconds() == pytest.approx(3600.0, abs=0.1)
    assert synced.offset_s == pytest.approx(2.0 - 3600.0, abs=0.1)  # exam times in station time follow the step
    assert abs((synced.now() - before[0]).total_seconds()) < 0.1
    monkeypatch.undo()
    station_clock.follow()


def test_state_survives_a_restart_and_overrides_the_schedule(tmp_path: Path) -> None:
    path = tmp_path / "state" / "attempts.json"
    store = StateStore(path)
    store.put(attempt(stopped_at=at(3)))
    store.put(attempt(attempt_id="manual-1", origin="manual"))
    again = StateStore(path)  # a new process
    assert again.attempts["d1-st1-001"].stopped_at == at(3)
    assert again.attempts["manual-1"].origin == "manual"
    merged = {a.attempt_id: a for a in again.merged([attempt(performing_s=100), attempt(attempt_id="x")])}
    assert merged["d1-st1-001"].stopped_at == at(3) and merged["d1-st1-001"].performing_s == 100
    assert set(merged) == {"d1-st1-001", "manual-1", "x"}
    assert not list(path.parent.glob("*.part"))  # written atomically


def test_attempt_log_and_part_media_span(tmp_path: Path) -> None:
    folder = tmp_path / "d1-st1-001"
    log = AttemptLog(folder)
    assert not log.exists
    log.write("gap", **{"from": "a", "to": "b"})
    with open(log.path, "a") as fh:
        fh.write('{"event": "cut sho')  # a crash mid-line
    assert [e["event"] for e in log.read()] == ["gap"]

    for n in (1, 2, 10):
        (folder / f"part-{n}").mkdir()
    (folder / "part-x").mkdir()
    assert [p.name for p in part_dirs(folder)] == ["part-1", "part-2", "part-10"]
    writer = ManifestWriter(folder / "part-1", {"recording_id": "r", "station": "s",
                                                "started_wall": T0.isoformat(), "tracks": []})
    for seq in (1, 2, 3):
        writer.fragment(Fragment("cam0", seq, "media", f"cam0/{seq:06d}.m4s", "0" * 64, 1, 2.0 * (seq - 1), 2.0 * seq))
    writer.close()
    start, end, reason = part_media_span(folder / "part-1")
    assert start == T0 + timedelta(seconds=WARMUP_S)
    assert end == T0 + timedelta(seconds=WARMUP_S + 6)
    assert reason is None  # killed: no end line
    assert part_media_span(folder / "part-2") == (None, None, None)  # died before its manifest


def test_cue_tones() -> None:
    lengths = {}
    for cue in ("reading", "performing", "one_minute", "time_up"):
        with wave.open(io.BytesIO(cue_wav(cue))) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
        lengths[cue] = len(samples) / 16000
        beep = samples[:1600]  # the first 0.1 s is tone
        peak_hz = np.argmax(np.abs(np.fft.rfft(beep))) * 16000 / len(beep)
        assert abs(peak_hz - {"reading": 880, "performing": 880, "one_minute": 1200, "time_up": 660}[cue]) <= 10
        assert 0.4 < np.abs(samples).max() / 32767 <= 0.5
    assert lengths["performing"] > lengths["reading"] and lengths["time_up"] > 1.0
    with pytest.raises(KeyError):
        cue_wav("nope")


async def test_agent_follows_the_server_schedule_and_its_clock(tmp_path: Path) -> None:
    from aiohttp import ClientSession, web
    from aiohttp.test_utils import TestServer

    from checklists.loader import load_checklist
    from station_agent.config import AgentConfig
    from station_agent.daemon import Agent

    seen: list[str] = []

    async def schedule(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        server_now = datetime.now(UTC) + timedelta(seconds=100)  # the server's clock runs 100 s ahead
        return web.json_response({"server_time": server_now.isoformat(), "attempts": [
            {"attempt_id": "a1", "candidate": "240517", "station_id": "st1",
             "reading_starts_at": (server_now + timedelta(seconds=1)).isoformat()}]})

    app = web.Application()
    app.router.add_get("/api/stations/st1/schedule", schedule)
    async with TestServer(app) as server:
        cfg = AgentConfig(station_id="st1", server_url=str(server.make_url("")).rstrip("/"), token="tok",
                          data_dir=tmp_path)
        agent = Agent(cfg, load_checklist(cfg.checklist))
        async with ClientSession() as session:
            await agent.schedule.fetch(session)
    assert seen == ["Bearer tok"]
    assert agent.clock.source == "server" and agent.clock.offset_s == pytest.approx(100, abs=0.5)
    assert [a.attempt_id for a in agent.scheduled] == ["a1"]
    assert agent.scheduled[0].phase_at(agent.clock.now())[0] == "scheduled"  # on the server's clock: 1 s to go
    again = Agent(cfg, agent.checklist)  # restarted with the server away: the cached schedule and offset
    assert again.clock.source == "cached" and again.clock.offset_s == pytest.approx(agent.clock.offset_s)
    assert [a.attempt_id for a in again.scheduled] == ["a1"]

"""The centre console's server side on both databases: the station status report (format, refusals naming the field,
one station cannot report for another), the stations board's rules (online, offline after missed reports, never
reported, warnings with since when, the clock), every form refused without its CSRF token and with the field
named in the page's language on bad input, nothing changed by a refused form, the examiner's unsigned sheets, and a
Ministry request's steps in order."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from media.station_status import FORMAT, StatusError, parse, time_text
from review_server import examiner_day, ministry, stations_board
from review_server.models import (
    Attempt,
    AuditEvent,
    Candidate,
    ExamDay,
    HealthEvent,
    LegalHold,
    MarkEvent,
    Station,
    StationStatus,
    User,
)

from .conftest import World


def report(**extra: Any) -> dict[str, Any]:
    body = {"format": FORMAT, "agent_version": "0.1.0", "sent_at": time_text(dt.datetime.now(dt.UTC)),
            "phase": "performing", "attempt_id": "A1", "candidate": "2611001", "time_left_s": 100.0,
            "recording": True, "cameras": [{"track": "cam0", "kind": "rtsp", "state": "recording", "arriving": True,
                                            "fps": 25.0, "frozen": False, "black": False}],
            "microphone": {"state": "recording", "arriving": True, "level_dbfs": -30.0, "silent": False},
            "disk": {"free_mb": 1000.0, "reserve_mb": 100.0, "warning": False, "stop": False},
            "upload": {"queue_length": 1, "bytes_pending": 10, "oldest_age_s": 1.0, "failed": 0,
                       "last_success_at": None},
            "clock": {"source": "server", "offset_s": 0.01, "last_sync_age_s": 3.0}, "warnings": []}
    return body | extra


def test_the_status_format_names_what_is_wrong() -> None:
    kept = parse(report(future_key={"x": 1}))
    assert "future_key" not in kept and kept["cameras"][0]["fps"] == 25.0
    for body, where in ((report(format="other/1"), "format"), (report(cameras=[{"fps": "fast"}]), "cameras[0].fps"),
                        (report(disk={"free_mb": float("nan")}), "disk.free_mb"), (report(sent_at="yesterday"),
                                                                                   "sent_at"),
                        (report(warnings=[{"code": "x y", "text": "t"}]), "warnings[0].code"),
                        (report(candidate="../etc"), "candidate"), (report(cameras=[{}] * 9), "cameras")):
        with pytest.raises(StatusError) as refused:
            parse(body)
        assert refused.value.where == where


async def test_a_station_reports_only_for_itself(world: World) -> None:
    client = world.api.client
    mine = await client.put("/api/stations/S1/status", json=report(), headers=world.headers("station"))
    assert mine.status == 200
    other = await client.put("/api/stations/S2/status", json=report(), headers=world.headers("station"))
    assert other.status == 403
    bad = await client.put("/api/stations/S1/status", json=report(recording="yes"), headers=world.headers("station"))
    assert bad.status == 422 and (await bad.json())["where"] == "recording"
    stored = world.api.run(lambda s: [json.loads(r.report) for r in s.scalars(select(StationStatus))])
    assert len(stored) == 1 and stored[0]["recording"] is True


async def test_the_board_tells_online_offline_and_what_is_wrong(world: World) -> None:
    client = world.api.client
    sent = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)  # the station's clock 2 s ahead
    await client.put("/api/stations/S1/status", headers=world.headers("station"), json=report(
        sent_at=time_text(sent), warnings=[{"code": "mic_silent", "text": "Микрофон: тишина (12 с)"}]))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)
    world.api.run(lambda s: s.add(HealthEvent(station_id=s.scalar(select(Station.id).where(Station.code == "S1")),
                                              event_id="e1", code="mic_silent", text="Микрофон: тишина",
                                              started_at=since)))
    rows = {r.code: r for r in world.api.run(stations_board.rows)}
    s1, s2 = rows["S1"], rows["S2"]
    assert s1.online and not s1.ok
    assert [(w.code, w.since) for w in s1.warnings] == [("mic_silent", since), ("clock", None)]
    assert 1.9 < s1.clock_offset_s < 2.5  # type: ignore[operator]
    assert not s2.online and [w.code for w in s2.warnings] == ["never_reported"]
    later = world.api.run(lambda s: stations_board.rows(s, dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=stations_board.OFFLINE_AFTER_S + 1)))
    assert [(r.online, [w.code for w in r.warnings]) for r in later if r.code == "S1"] == [(False, ["offline"])]

    page = await client.get("/admin", headers=world.headers("admin"))
    text = await page.text()
    assert page.status == 200 and 'data-code="mic_silent"' in text and "с " in text
    rows_only = await client.get("/admin/board?lang=en", headers=world.headers("admin"))
    assert "<html" not in await rows_only.text() and "no contact" not in await rows_only.text()
    assert "microphone: silence since" in await rows_only.text()


FORMS = [("/admin/users", {"login": "newbie", "role": "admin"}), ("/admin/stations", {"code": "S7"}),
         ("/holds", {"attempt_id": "A1", "kind": "appeal", "reason": "x"}),
         ("/requests", {"number": "1", "date": "2026-12-01", "requester": "M", "asked_day": "2026-11-30",
                        "asked_stage": "practical"}),
         ("/admin/stations/S1/tokens", {}), ("/admin/audit/anchor", {})]


@pytest.mark.parametrize(("path", "fields"), FORMS, ids=[p for p, _ in FORMS])
async def test_every_form_needs_the_csrf_token(world: World, path: str, fields: dict[str, str]) -> None:
    role = "archivist" if path in ("/requests", "/holds") else "admin"
    cookie = world.headers(role)["Cookie"]
    before = world.api.run(lambda s: s.scalar(select(func.count()).select_from(AuditEvent)))
    refused = await world.api.client.post(path, data=fields, headers={"Cookie": cookie})
    assert refused.status == 403 and "CSRF" in (await refused.json())["error"]
    assert world.api.run(lambda s: s.scalar(select(func.count()).select_from(AuditEvent))) == before


async def test_a_bad_field_is_named_in_the_page_language_and_nothing_changes(world: World) -> None:
    headers = world.headers("admin")
    form = {"login": "Bad Login", "display_name": "Новикова", "role": "examiner",
            "csrf_token": headers["X-CSRF-Token"]}
    ru = await world.api.client.post("/admin/users", data=form, headers={"Cookie": headers["Cookie"]})
    text = await ru.text()
    assert ru.status == 422 and "Поле «Имя входа»: только латинские буквы" in text
    assert re.search(r'name="login"[^>]*value="Bad Login"[^>]*aria-invalid="true"', text)
    assert 'value="Новикова"' in text  # what was typed is kept
    en = await world.api.client.post("/admin/users?lang=en", data=form, headers={"Cookie": headers["Cookie"]})
    assert "Field “Login”: only Latin letters" in await en.text()
    weak = await world.api.client.post("/admin/users", data=form | {"login": "ok1", "password": "short"},
                                       headers={"Cookie": headers["Cookie"]})
    assert "Поле «Пароль»: не короче 10 знаков" in await weak.text()
    assert world.api.run(lambda s: s.scalar(select(func.count()).select_from(User))) == 4  # the four roles only
    made = await world.api.client.post("/admin/users", data=form | {"login": "ok1", "password": "long enough pw"},
                                       headers={"Cookie": headers["Cookie"]}, allow_redirects=False)
    assert made.status == 303 and made.headers["Location"] == "/admin/users?done=user_added"
    last = world.api.run(lambda s: s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)))
    assert (last.action, last.target, last.actor) == ("user.add", "ok1", "user:admin")


async def test_an_admin_cannot_disable_or_demote_themself(world: World) -> None:
    headers = world.headers("admin")
    for path, field in (("/admin/users/admin/active", {"active": "0"}), ("/admin/users/admin/role",
                                                                          {"role": "observer"})):
        resp = await world.api.client.post(path, data=field | {"csrf_token": headers["X-CSRF-Token"]},
                                           headers={"Cookie": headers["Cookie"]})
        assert resp.status == 422 and "нельзя применить к своей учётной записи" in await resp.text()
    me = world.api.run(lambda s: s.scalar(select(User).where(User.login == "admin")))
    assert me.active and me.role == "admin"


def test_unsigned_sheets_follow_finalise_and_reopen(world: World) -> None:
    world.schedule("A1", "A2")

    def events(s: Any) -> None:
        for i, (attempt, kind) in enumerate((("A1", "mark"), ("A1", "finalise"), ("A2", "mark"), ("A2", "finalise"),
                                             ("A2", "reopen"))):
            s.add(MarkEvent(event_id=f"00000000-0000-4000-8000-00000000000{i}", attempt_id=attempt, station_id="S1",
                            examiner="examiner", kind=kind, item=1 if kind == "mark" else None,
                            done=True if kind == "mark" else None, reason="why" if kind == "reopen" else None,
                            checklist_hash="0" * 64, wall_time="2026-12-06T09:00:00+00:00", seq=i, source="t"))

    world.api.run(events)
    assert [a.attempt_id for a in world.api.run(lambda s: examiner_day.unsigned(s, "examiner"))] == ["A2"]
    assert sorted(a.attempt_id for a in world.api.run(lambda s: examiner_day.marked(s, "examiner"))) == ["A1", "A2"]


def test_a_ministry_request_goes_in_order(world: World, config: Any) -> None:
    day = dt.date(2026, 11, 30)

    def setup(s: Any) -> None:
        d = ExamDay(day=day)
        c1, c2 = Candidate(accreditation_number="2611001"), Candidate(accreditation_number="2611002")
        s.add_all([d, c1, c2])
        s.flush()
        st = s.scalar(select(Station).where(Station.code == "S1"))
        s.add_all([Attempt(id="A1", station_id=st.id, exam_day_id=d.id, candidate_id=c1.id),
                   Attempt(id="A2", station_id=st.id, exam_day_id=d.id, candidate_id=c2.id)])

    world.api.run(setup)
    with pytest.raises(ministry.RequestError) as neither:
        world.api.run(lambda s: ministry.register(s, number="1", date=day, requester="M", asked_number=None,
                                                  asked_day=None, asked_stage="practical", subject="", actor="a"))
    assert neither.value.field == "asked_number"
    req_id = world.api.run(lambda s: ministry.register(s, number="1", date=day, requester="M", asked_number="2611002",
                                                       asked_day=day, asked_stage="practical", subject="",
                                                       actor="user:archivist").id)
    with pytest.raises(ministry.RequestError) as early:
        world.api.run(lambda s: ministry.mark_sent(s, req_id, "note", "a", config))
    assert early.value.key == "no_package"
    assert world.api.run(lambda s: ministry.select_matching(s, req_id, "user:archivist")) == ["A2"]
    holds = world.api.run(lambda s: [(h.attempt_id, h.kind) for h in s.scalars(select(LegalHold))])
    assert holds == [("A2", "request")]
    rows = world.api.run(lambda s: ministry.rows(s, config))
    assert [(r.request.id, r.state, r.attempts) for r in rows] == [(req_id, "selected", 1)]

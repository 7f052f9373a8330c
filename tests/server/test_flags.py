"""Flags made in the observation room (review_server/flags.py, routes/flags.py) over the real server: who may make
them (an examiner only on their stations), the moment seen on the live picture, withdrawal by the author alone with
a reason, never deleted, every step audited, and the refusals an outsider would try (another user's withdrawal,
huge or invisible text, Unicode digits, times no live picture had)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from sqlalchemy import select

from review_server import protocol
from review_server.live import LIVE_HUB
from review_server.models import AuditEvent, Flag

from .conftest import World

EDGE_T = 100.0  # the live picture's newest chunk, on the station's recording clock


def _live(world: World, station: str = "S1", attempt_id: str | None = "S1-0") -> None:
    """The station publishes cam0 (its newest chunk at EDGE_T, arrived now), running `attempt_id`."""
    channel = world.api.app[LIVE_HUB].channel(station, "cam0")
    assert channel is not None
    channel.init, channel.last_t, channel.received_at = b"I" + bytes(8), EDGE_T, time.monotonic()
    channel.meta = {"attempt_id": attempt_id} if attempt_id else {}


async def _post(world: World, path: str, body: Any, who: str | None) -> tuple[int, dict[str, Any]]:
    r = await world.api.client.post(path, json=body, headers=world.headers(who))
    return r.status, await r.json()


def _audit(world: World, action: str) -> list[AuditEvent]:
    return world.api.run(lambda s: list(s.scalars(select(AuditEvent).where(AuditEvent.action == action))))


async def test_an_observer_flags_the_moment_seen_and_it_is_listed_and_audited(world: World) -> None:
    world.schedule("S1-0")
    _live(world)
    before = dt.datetime.now(dt.UTC)
    status, flag = await _post(world, "/api/live/S1/flags", {"kind": "prompt", "camera": "cam0", "media_t": 98.5},
                               "observer")
    assert status == 201, flag
    assert flag["attempt_id"] == "S1-0" and flag["kind"] == "prompt" and flag["author"] == "observer"
    assert flag["media_t"] == 98.5 and flag["camera"] == "cam0" and flag["withdrawn"] is False
    # The moment seen: 1.5 s before the newest chunk arrived, not when the flag reached the server.
    at = dt.datetime.fromisoformat(flag["at"])
    assert abs((before - at).total_seconds() - 1.5) < 0.3, (before, at)

    status, other = await _post(world, "/api/live/S1/flags", {"kind": "other", "text": "телефон на столе"},
                                "examiner")
    assert status == 201 and other["text"] == "телефон на столе" and other["media_t"] is None

    r = await world.api.client.get("/api/attempts/S1-0/flags", headers=world.headers("archivist"))
    assert r.status == 200
    assert [f["id"] for f in (await r.json())["flags"]] == [flag["id"], other["id"]]
    r = await world.api.client.get("/api/flags", headers=world.headers("admin"))
    assert [f["kind"] for f in (await r.json())["flags"]] == ["prompt", "other"]
    r = await world.api.client.get("/api/flags?mine=1", headers=world.headers("observer"))
    assert [f["id"] for f in (await r.json())["flags"]] == [flag["id"]]

    made = _audit(world, "flag.add")
    assert [(e.actor, e.target) for e in made] == [("user:observer", f"flag:{flag['id']}"),
                                                  ("user:examiner", f"flag:{other['id']}")]
    assert made[0].details["kind"] == "prompt" and made[0].details["attempt_id"] == "S1-0"

    # The protocol's notes carry the flags of its attempts.
    day = world.api.run(lambda s: protocol.Protocol(day=dt.date.today(), specialty_code="x", specialty_name="x",
                                                     tasks=[], rows=[], generated_at=before,
                                                     flags=[flag, other]))
    assert day.notes[0].startswith("Примечания: отметки наблюдателей")
    assert "подсказка (observer)" in day.notes[1] and "телефон на столе (examiner)" in day.notes[2]


async def test_examiners_flag_only_their_stations_and_other_roles_not_at_all(world: World) -> None:
    world.schedule("S2-0", station="S2")
    _live(world, "S2", None)
    body = {"kind": "outsider", "camera": "cam0", "media_t": 99.0}
    status, answer = await _post(world, "/api/live/S2/flags", body, "examiner")
    assert status == 404 and answer["where"] == "URL station"  # not assigned: reads as missing
    status, _ = await _post(world, "/api/live/S2/flags", body, "observer")
    assert status == 201
    for who, code in (("archivist", 403), ("station", 403), (None, 401)):
        status, _ = await _post(world, "/api/live/S2/flags", body, who)
        assert status == code, who
    status, answer = await _post(world, "/api/live/NOPE/flags", {"kind": "prompt"}, "admin")
    assert status == 404
    # Another station's attempt is refused by name (and never taken from the live meta).
    status, answer = await _post(world, "/api/live/S1/flags", {"kind": "prompt", "attempt_id": "S2-0"}, "examiner")
    assert status == 422 and answer["where"] == "attempt_id"
    status, answer = await _post(world, "/api/live/S2/flags", {"kind": "prompt", "attempt_id": "S2-0"}, "admin")
    assert status == 201 and answer["attempt_id"] == "S2-0"
    # The examiner does not see S2's flags either.
    r = await world.api.client.get("/api/flags", headers=world.headers("examiner"))
    assert (await r.json())["flags"] == []


async def test_only_the_author_withdraws_with_a_reason_and_nothing_deletes_a_flag(world: World) -> None:
    world.schedule("S1-0")
    _live(world)
    _, flag = await _post(world, "/api/live/S1/flags", {"kind": "disorder"}, "observer")
    path = f"/api/flags/{flag['id']}/withdraw"
    for who in ("examiner", "admin"):
        status, answer = await _post(world, path, {"reason": "не то"}, who)
        assert status == 403 and "author" in answer["error"], who
    for reason in ("", "   "):
        status, answer = await _post(world, path, {"reason": reason}, "observer")
        assert status == 422 and answer["where"] == "reason"
    status, answer = await _post(world, path, {}, "observer")
    assert status == 422 and answer["where"] == "reason"
    status, answer = await _post(world, path, {"reason": "перепутала станцию"}, "observer")
    assert status == 200 and answer["withdrawn"] is True and answer["withdraw_reason"] == "перепутала станцию"
    status, _ = await _post(world, path, {"reason": "ещё раз"}, "observer")
    assert status == 409
    status, _ = await _post(world, "/api/flags/999999/withdraw", {"reason": "x"}, "observer")
    assert status == 404
    for method in ("DELETE", "PUT"):
        r = await world.api.client.request(method, f"/api/flags/{flag['id']}", headers=world.headers("admin"))
        assert r.status in (404, 405)
    kept = world.api.run(lambda s: s.get(Flag, flag["id"]))
    assert kept is not None and kept.withdrawn_by == "user:observer"
    r = await world.api.client.get("/api/attempts/S1-0/flags", headers=world.headers("examiner"))
    assert [(f["id"], f["withdrawn"]) for f in (await r.json())["flags"]] == [(flag["id"], True)]
    withdrawn = _audit(world, "flag.withdraw")
    assert [(e.actor, e.target, e.details["reason"]) for e in withdrawn] == [
        ("user:observer", f"flag:{flag['id']}", "перепутала станцию")]


async def test_refusals_name_what_and_where(world: World) -> None:
    _live(world)
    cases: list[tuple[Any, str]] = [
        ({"kind": "cheating"}, "kind"),
        ({"kind": "other"}, "text"),
        ({"kind": "other", "text": "   "}, "text"),
        ({"kind": "prompt", "text": "подсказал"}, "text"),
        ({"kind": "other", "text": "x" * 301}, "text"),
        ({"kind": "other", "text": "ok\u202etxt.exe"}, "text"),  # a bidirectional override
        ({"kind": "other", "text": "две\nстроки"}, "text"),
        ({"kind": "prompt", "camera": "cam0", "media_t": "٩٨"}, "media_t"),  # Arabic-Indic digits
        ({"kind": "prompt", "camera": "cam0", "media_t": True}, "media_t"),
        ({"kind": "prompt", "camera": "cam0", "media_t": -1}, "media_t"),
        ({"kind": "prompt", "camera": "cam0", "media_t": 10.0}, "media_t"),  # 90 s behind the live picture
        ({"kind": "prompt", "camera": "cam0", "media_t": 150.0}, "media_t"),  # ahead of it
        ({"kind": "prompt", "camera": "cam0"}, "media_t"),
        ({"kind": "prompt", "media_t": 99.0}, "camera"),
        ({"kind": "prompt", "camera": "cam3", "media_t": 99.0}, "camera"),  # no live picture there
        ({"kind": "prompt", "camera": "../cam0", "media_t": 99.0}, "camera"),
        ({"kind": "prompt", "attempt_id": "S2-0"}, "attempt_id"),  # not an attempt of this station
        ({"kind": "prompt", "attempt_id": "../S1-0"}, "attempt_id"),
    ]
    for body, where in cases:
        status, answer = await _post(world, "/api/live/S1/flags", body, "observer")
        assert status == 422 and answer["where"] == where, (body, status, answer)
    r = await world.api.client.post("/api/live/S1/flags", data=b'{"kind": "prompt"}', headers=world.headers("observer"))
    assert r.status == 415
    r = await world.api.client.post("/api/live/S1/flags", data=b"\xff\xfe", headers=world.headers("observer")
                                    | {"Content-Type": "application/json"})
    assert r.status == 400
    status, _ = await _post(world, "/api/flags/١/withdraw", {"reason": "x"}, "observer")  # Unicode digit
    assert status == 400
    for day in ("٢٠٢٦-01-01", "2026-13-01", "2026-W01-1"):
        r = await world.api.client.get(f"/api/flags?day={day}", headers=world.headers("admin"))
        assert r.status == 400 and (await r.json())["where"] == "query day", day
    r = await world.api.client.get("/api/flags?mine=yes", headers=world.headers("admin"))
    assert r.status == 400
    assert world.api.run(lambda s: s.scalar(select(Flag.id))) is None  # nothing refused was stored


async def test_the_csrf_token_is_required(world: World) -> None:
    cookie, _csrf = world.api.session_for("observer")
    from review_server.auth import SESSION_COOKIE

    r = await world.api.client.post("/api/live/S1/flags", json={"kind": "prompt"},
                                    headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
    assert r.status == 403


async def test_the_days_page_lists_flags_by_accreditation_number_and_links_the_moment(world: World) -> None:
    world.schedule("S1-0")
    _live(world)
    _, flag = await _post(world, "/api/live/S1/flags", {"kind": "technical", "camera": "cam0", "media_t": 99.0},
                          "observer")
    await _post(world, f"/api/flags/{flag['id']}/withdraw", {"reason": "камера ожила"}, "observer")
    r = await world.api.client.get("/flags", headers=world.headers("archivist"))
    html = await r.text()
    assert r.status == 200 and f'data-flag="{flag["id"]}"' in html
    assert "техническая проблема" in html and "камера ожила" in html and 'href="/attempts/S1-0?t=99.0"' in html
    r = await world.api.client.get("/flags?lang=en", headers=world.headers("observer"))
    html = await r.text()
    assert "technical problem" in html and "/attempts/S1-0" not in html  # observers cannot open the attempt page


async def test_two_withdrawals_at_once_make_one_and_the_other_is_told(world: World) -> None:
    """The author's two tabs withdraw the same flag at the same moment: one reason is kept and audited once, the
    other answer is 409 (on PostgreSQL the row lock is what makes the second wait)."""
    world.schedule("S1-0")
    _live(world)
    _, flag = await _post(world, "/api/live/S1/flags", {"kind": "technical"}, "observer")
    path = f"/api/flags/{flag['id']}/withdraw"
    answers = await asyncio.gather(*(_post(world, path, {"reason": f"причина {n}"}, "observer") for n in range(6)))
    assert sorted(status for status, _ in answers) == [200] + [409] * 5, answers
    kept = next(answer["withdraw_reason"] for status, answer in answers if status == 200)
    assert [e.details["reason"] for e in _audit(world, "flag.withdraw")] == [kept]

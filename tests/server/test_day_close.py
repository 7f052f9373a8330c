"""After the day: completeness (media uploaded and re-hashed, gaps explained by the station's health events, every
examiner's sheet signed, the protocol's results) with what is missing listed and linked; closing the day locks
its marks (station and page marks refused with 409 naming the day, the appeal path still open); reopening is an
admin's act with a reason; everything audited. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
import zoneinfo
from typing import Any

import pytest
from sqlalchemy import select

from checklists.loader import DATA_DIR, load_checklist
from checklists.marks import MarkEvent as WireEvent
from review_server import auth
from review_server.day_import import ScheduleImportError, import_day
from review_server.models import AuditEvent, DayMediaCheck, DaySlot, Fragment
from review_server.storage import LocalStorage
from review_server.web import CONFIG, STORAGE
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .conftest import Api, World
from .day_flow import STEMS, DayForms, table_rows

MSK = zoneinfo.ZoneInfo("Europe/Moscow")
CPR = load_checklist(DATA_DIR / "01_basic_cpr_adult.yaml")
NUMBERS = ["2612001", "2612002"]


class Day:
    def __init__(self, world: World, forms: DayForms, day_id: int, attempts: list[str], starts: dt.datetime) -> None:
        self.world, self.forms, self.id, self.attempts, self.starts = world, forms, day_id, attempts, starts

    @property
    def api(self) -> Api:
        return self.world.api

    async def put(self, key: str, seq: int, data: bytes, query: str, attempt: str | None = None) -> None:
        resp = await self.api.client.put(
            f"/api/recordings/{key}/tracks/cam0/fragments/{seq}?attempt_id={attempt or self.attempts[0]}{query}",
            data=data, headers={**self.world.headers("station"), "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
        assert resp.status == 201, await resp.text()

    async def marks(self, events: list[dict[str, Any]], expect: int = 200) -> dict[str, Any]:
        resp = await self.api.client.post("/api/marks", json={"events": self.world.sign(events)},
                                          headers=Api.station_headers(self.world.station_token))
        body = await resp.json()
        assert resp.status == expect, body
        return body

    def event(self, examiner: str, seq: int, kind: str = "mark", attempt: str | None = None,
              **fields: Any) -> dict[str, Any]:
        defaults: dict[str, Any] = {"item": 1, "done": True} if kind == "mark" else {}
        return WireEvent.new(attempt_id=attempt or self.attempts[0], station_id="S1", examiner=examiner, kind=kind,
                             checklist_hash=CPR.content_hash, seq=seq, recording_offset_s=1.0,
                             **{**defaults, **fields}).to_json()

    async def page(self, login: str = "admin", expect: int = 200) -> str:
        cookie, _ = self.api.session_for(login)
        resp = await self.api.client.get(f"/days/{self.id}/completeness",
                                         headers={"Cookie": f"{auth.SESSION_COOKIE}={cookie}",
                                                                  "Accept": "text/html"})
        text = await resp.text()
        assert resp.status == expect, text[:2000]
        return text

    async def check_media(self) -> None:
        await self.forms.post(f"/days/{self.id}/media-check", {})
        for _ in range(200):
            row = self.api.run(lambda s: s.get(DayMediaCheck, self.id))
            if row is not None and row.finished_at is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the media check did not finish")


@pytest.fixture
async def day(world: World) -> Day:
    """Today's day at S1 (short attempts: 4 s reading, 6 s performing), two candidates, examiner and examiner2
    assigned for the day; fixed."""
    api = world.api
    api.add_user("examiner2", "examiner")
    forms = DayForms(api)
    today = dt.datetime.now(MSK).date()
    day_id = await forms.create_day(today.isoformat(), reading_s="4", performing_s="6", changeover_s="5")
    await forms.stations(day_id, {"S1": STEMS[0]})
    for login in ("examiner2",):  # "examiner" is assigned to S1 for every day already
        await forms.post(f"/admin/days/{day_id}/examiners", {"examiner": login, "station": "S1"})
    from scripts.harness.candidate_files import HEADER, rows_for, xlsx_bytes

    await forms.import_list(day_id, xlsx_bytes(HEADER, rows_for(NUMBERS)))
    await forms.post(f"/admin/days/{day_id}/schedule", {})
    await forms.post(f"/admin/days/{day_id}/fix", {"confirm": "yes"})
    slots = api.run(lambda s: [(x.attempt_id, x.reading_starts_at) for x in s.scalars(
        select(DaySlot).where(DaySlot.exam_day_id == day_id).order_by(DaySlot.reading_starts_at))])
    return Day(world, forms, day_id, [a for a, _ in slots], slots[0][1])


async def record(day: Day, skip: int | None = None) -> None:
    """The first attempt's recording: init and five 2 s fragments over its 10 s (one left out if asked)."""
    media_from = day.starts.isoformat().replace("+00:00", "Z")
    await day.put("recA", 0, init_bytes(seed=1), f"&media_from={media_from}")
    for seq in range(1, 6):
        if seq != skip:
            await day.put("recA", seq, media_bytes(400, seed=seq), f"&start={2.0 * (seq - 1)}&end={2.0 * seq}")


async def sign_both(day: Day, attempt: str | None = None) -> list[dict[str, Any]]:
    """Both examiners mark every item and sign; the events sent."""
    sent = []
    for examiner in ("examiner", "examiner2"):
        marks = [day.event(examiner, n, item=n, done=True, attempt=attempt) for n in CPR.item_numbers]
        sent += [*marks, day.event(examiner, len(marks) + 1, "finalise", attempt=attempt)]
        await day.marks(sent[-len(marks) - 1:])
    return sent


def missing(page: str) -> list[str]:
    from html.parser import HTMLParser

    class Items(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.on, self.items = False, []  # type: ignore[var-annotated]

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "ul" and ("id", "missing-list") in attrs:
                self.on = True
            elif self.on and tag == "li":
                self.items.append("")

        def handle_endtag(self, tag: str) -> None:
            if tag == "ul":
                self.on = False

        def handle_data(self, data: str) -> None:
            if self.on and self.items:
                self.items[-1] += data

    p = Items()
    p.feed(page)
    return [" ".join(x.split()) for x in p.items]


async def test_completeness_lists_what_is_missing_until_the_day_is_whole(day: Day) -> None:
    a, b = day.attempts
    page = await day.page()
    assert missing(page) == [
        "хэши записей дня ещё не проверены",
        f"{a}: нет ни одной записи", f"{a}: лист члена комиссии examiner не подписан",
        f"{a}: лист члена комиссии examiner2 не подписан",
        f"{b}: нет ни одной записи", f"{b}: лист члена комиссии examiner не подписан",
        f"{b}: лист члена комиссии examiner2 не подписан",
    ]
    assert f'<a class="id" href="/attempts/{a}">{a}</a>' in page  # each item links to where it is seen
    await record(day, skip=3)
    await sign_both(day)
    items = missing(await day.page())
    assert f"{a}: дорожка cam0: нет фрагментов с 4.0 по 6.0 с, станция не сообщила причину" in items
    assert not any(x.startswith(f"{a}: лист") or x == f"{a}: нет ни одной записи" for x in items)

    # The station's warning over that time explains the gap (it reached the server through its health route).
    start = day.starts + dt.timedelta(seconds=4)
    ev = {"id": "h1", "code": "disk_low", "text": "Мало места на диске", "attempt_id": a,
          "started_at": start.isoformat(), "ended_at": (start + dt.timedelta(seconds=2)).isoformat()}
    resp = await day.api.client.put("/api/stations/S1/health-events", json={"events": [ev]},
                                    headers=Api.station_headers(day.world.station_token))
    assert resp.status == 200, await resp.text()
    page = await day.page()
    assert not any(x.startswith(f"{a}:") for x in missing(page))
    row = next(r for r in table_rows(page, "attempt-table") if r[3] == a)
    assert row[5] == "2,0 с: Мало места на диске" and row[6] == "✓ examiner, examiner2" and row[8] == "полна"

    await day.check_media()
    page = await day.page()
    assert "Проверено 5 фрагментов" in page  # the init and the four media fragments
    assert not any("хэш" in x for x in missing(page))
    await day.put("recA", 3, media_bytes(400, seed=3), "&start=4.0&end=6.0")  # the late fragment arrives
    assert "после проверки хэшей пришли новые фрагменты (1)" in missing(await day.page())
    await day.check_media()
    assert [x for x in missing(await day.page()) if x.startswith(a) or "хэш" in x] == []


async def test_the_media_check_finds_a_fragment_changed_in_storage(day: Day) -> None:
    await record(day)
    storage = day.api.app[STORAGE]
    assert isinstance(storage, LocalStorage)
    sha = day.api.run(lambda s: s.scalar(select(Fragment.sha256).where(Fragment.seq == 2)))
    path = storage.path_for(sha)
    path.chmod(0o644)
    path.write_bytes(media_bytes(400, seed=99))  # a hand in the media folder
    await day.check_media()
    page = await day.page()
    assert [r[1:] for r in table_rows(page, "media-failures")] == [["recA", "cam0 / 2", "хэш не совпадает"]]
    assert f"{day.attempts[0]}: фрагмент cam0/2 записи recA: хэш не совпадает" in missing(page)


async def test_closing_locks_marks_except_through_an_appeal_and_reopening_needs_a_reason(day: Day) -> None:
    a, b = day.attempts
    api, forms = day.api, day.forms
    await record(day)
    sent = await sign_both(day)
    await day.check_media()
    # Something is missing (the second candidate did not come): closing needs a reason, named as the field.
    _, page = await forms.post(f"/days/{day.id}/close", {"reason": ""}, expect=422)
    assert "Ошибка в поле «Причина (нужна, если чего-то не хватает)»: не хватает 3" in page
    await forms.post(f"/days/{day.id}/close", {"reason": "аккредитуемый 2612002 не явился"})
    closing = api.run(lambda s: s.scalar(select(AuditEvent).where(AuditEvent.action == "day.close")))
    assert closing.target == str(day.id) and closing.details["reason"] == "аккредитуемый 2612002 не явился"
    assert closing.details["missing"] == 3 and {i["attempt_id"] for i in closing.details["items"]} == {b}
    assert len(closing.details["protocol_pdf_sha256"]["34.02.01"]) == 64  # the protocol as built at closing
    assert "День закрыт" in await day.page()

    # A station's new mark: 409 naming the day, audited; nothing stored.
    late = day.event("examiner", 100, item=2, done=False)
    body = await day.marks([late], expect=409)
    assert body["where"] == "events[0].attempt_id" and body["exam_day"]["id"] == day.id
    assert f"exam day {dt.datetime.now(MSK).date().isoformat()} «Поток 1» (id {day.id}) was closed" in body["error"]
    assert "appeal" in body["error"]
    # A mark stored before the closing, sent again (a lost answer): still a duplicate, not a refusal.
    assert (await day.marks([sent[0]]))["duplicates"] == [sent[0]["event_id"]]

    # An examiner's correction on the server's page: 409 too ...
    examiner = Api.user_headers(api.session_for("examiner"))
    fix = {"event_id": str(uuid.uuid4()), "kind": "mark", "item": 2, "done": False, "reason": "по видео пункт 2 не "
           "выполнен", "checklist_hash": CPR.content_hash}
    resp = await api.client.post(f"/api/attempts/{a}/marks", json=fix, headers=examiner)
    assert resp.status == 409 and (await resp.json())["exam_day"]["id"] == day.id
    # ... until an appeal holds the attempt: then a correction with a reason goes through, one without does not.
    archivist = Api.user_headers(api.session_for("archivist"))
    resp = await api.client.post(f"/api/attempts/{a}/holds", json={"kind": "appeal", "reason": "апелляция №7"},
                                 headers=archivist)
    assert resp.status == 201, await resp.text()
    bare = fix | {"event_id": str(uuid.uuid4()), "reason": None}
    assert (await api.client.post(f"/api/attempts/{a}/marks", json=bare, headers=examiner)).status == 409
    resp = await api.client.post(f"/api/attempts/{a}/marks", json=fix, headers=examiner)
    assert resp.status == 200, await resp.text()
    assert (await day.marks([day.event("examiner", 101, item=3, done=False)], expect=409))["exam_day"]["id"] == day.id
    refusals = api.run(lambda s: list(s.scalars(select(AuditEvent.action).where(
        AuditEvent.action == "marks.refused.day_closed"))))
    assert len(refusals) == 3  # the station's burst (one row), the page's two

    # The day's schedule is not imported again while it is closed.
    def reimport(s: Any) -> None:
        import_day(s, {"attempts": [{"attempt_id": a, "candidate": NUMBERS[0], "station_id": "S1",
                                     "checklist": STEMS[0], "reading_starts_at": day.starts.isoformat()}]},
                   "34.02.01", "Сестринское дело", "Поток 1", "test", timezone="Europe/Moscow")

    with pytest.raises(ScheduleImportError, match="is closed"):
        api.run(reimport)

    # Reopening: a reason is required; then marks are taken again.
    _, page = await forms.post(f"/days/{day.id}/reopen", {"reason": " "}, expect=422)
    assert "Ошибка в поле «Причина»: нужна причина" in page
    await forms.post(f"/days/{day.id}/reopen", {"reason": "ошибка при закрытии"})
    assert (await day.marks([day.event("examiner", 102, item=3, done=False)]))["accepted"]
    reopened = api.run(lambda s: s.scalar(select(AuditEvent).where(AuditEvent.action == "day.reopen")))
    assert reopened.details["reason"] == "ошибка при закрытии" and reopened.actor == "user:admin"


async def test_an_archivist_sees_completeness_but_does_not_close(day: Day) -> None:
    page = await day.page("archivist")
    assert "Полнота дня" in page and 'action="/days/' + str(day.id) + '/close"' not in page
    cookie, csrf = day.api.session_for("archivist")
    resp = await day.api.client.post(f"/days/{day.id}/close", data={"csrf_token": csrf, "reason": "x"},
                                     headers={"Cookie": f"{auth.SESSION_COOKIE}={cookie}"})
    assert resp.status == 403
    await day.page("examiner", expect=403)


async def test_a_day_imported_from_a_schedule_file_has_its_completeness_too(world: World, tmp_path: Any) -> None:
    """`osce server schedule import` days (no plan in the browser) are checked and closed the same way; the planned
    length comes from the schedule file the exam clock serves."""
    api = world.api
    start = dt.datetime(2026, 6, 2, 6, 0, tzinfo=dt.UTC)
    entry = {"attempt_id": "cli-1", "candidate": "2614001", "station_id": "S1", "checklist": STEMS[0],
             "reading_starts_at": start.isoformat(), "reading_s": 4, "performing_s": 6}
    day_id = api.run(lambda s: import_day(s, {"attempts": [entry]}, "nursing", "Сестринское дело", "Из файла", "cli",
                                          timezone="Europe/Moscow").exam_day_id)
    forms = DayForms(api)
    page = await forms.get(f"/admin/days/{day_id}")
    assert "загружен из файла расписания" in page and 'id="stations"' not in page  # no plan to edit here
    schedule = tmp_path / "day.json"
    schedule.write_text(json.dumps({"attempts": [entry]}), encoding="utf-8")
    object.__setattr__(api.app[CONFIG], "schedule_file", schedule)  # the server's schedule_file, as configured
    day = Day(world, forms, day_id, ["cli-1"], start)
    await day.put("recC", 0, init_bytes(seed=3), f"&media_from={start.isoformat().replace('+00:00', 'Z')}", "cli-1")
    await day.put("recC", 1, media_bytes(400, seed=4), "&start=0.0&end=2.0", "cli-1")
    items = missing(await day.page())
    assert "cli-1: записано 2.0 с из 10.0 с" in items  # the file's reading_s + performing_s

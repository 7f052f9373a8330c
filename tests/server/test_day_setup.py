"""Exam day setup without JSON, over HTTP as the admin's browser posts the forms: a day, its stations and tasks,
the centre's candidate list (XLSX, CSV in Windows-1251 and UTF-8 with a BOM) mapped and checked, bad rows named
with nothing imported, the schedule in circuits, edited, fixed through the one schedule import and served by the
exam clock; examiners assigned; route sheets printed; every change audited. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo
from collections import Counter
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from review_server import route_sheets
from review_server.models import (
    Attempt,
    AuditEvent,
    CandidatePersonal,
    CandidateUpload,
    DayCandidate,
    DaySlot,
    ExamDay,
    ExaminerAssignment,
    Station,
)
from scripts.harness.candidate_files import HEADER, csv_bytes, rows_for, xlsx_bytes

from .conftest import Api, World
from .day_flow import STEMS, DayForms, table_rows

NUMBERS = [f"26110{n:02d}" for n in range(1, 7)]  # six candidates
MSK = zoneinfo.ZoneInfo("Europe/Moscow")


@pytest.fixture
def forms(world: World) -> DayForms:
    for code in ("st1", "st2", "st3"):
        world.api.add_station(code)
    return DayForms(world.api)


def actions(api: Api) -> list[str]:
    return api.run(lambda s: list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))))


def slots(api: Api, day_id: int) -> list[tuple[str, str, str, dt.datetime]]:
    """(attempt id, station code, accreditation number, reading start) of the day's slots."""
    from review_server.models import Candidate

    def q(s: Any) -> list[tuple[str, str, str, dt.datetime]]:
        rows = s.execute(select(DaySlot.attempt_id, Station.code, Candidate.accreditation_number,
                                DaySlot.reading_starts_at).join(Station, Station.id == DaySlot.station_id)
                         .join(Candidate, Candidate.id == DaySlot.candidate_id)
                         .where(DaySlot.exam_day_id == day_id).order_by(DaySlot.reading_starts_at, Station.code))
        return [tuple(r) for r in rows]

    return api.run(q)


async def test_a_day_from_an_xlsx_through_the_forms_reaches_the_exam_clock(world: World, forms: DayForms) -> None:
    api = world.api
    day_id = await forms.create_day()
    await forms.stations(day_id, dict(zip(("st1", "st2", "st3"), STEMS, strict=True)))
    page = await forms.get(f"/admin/days/{day_id}")
    # one circuit of three (each station and its task marked as data, not interface text)
    assert ('<span translate="no">st1 (Базовая сердечно-лёгочная реанимация взрослого)</span> → '
            '<span translate="no">st2') in page

    data = xlsx_bytes(HEADER, rows_for(NUMBERS, streams=(("1", "09:00"), ("2", "10:00"))))
    upload, _ = await forms.upload(day_id, "Список 2026-06-01.xlsx", data)
    mapping_page = await forms.get(f"/admin/days/{day_id}/candidates?upload={upload}")
    # The columns are guessed from the header's words; the first rows are shown to check them by.
    assert '<option value="1" selected>B (Номер аккредитации)</option>' in mapping_page
    assert '<option value="6" selected>G (Поток)</option>' in mapping_page
    fields = {"upload": str(upload), "map_number": "1", "map_last_name": "2", "map_first_name": "3",
              "map_middle_name": "4", "map_specialty": "5", "map_stream": "6", "map_stream_time": "7"}
    _, checked = await forms.post(f"/admin/days/{day_id}/candidates/map", fields | {"action": "check"}, expect=200)
    assert "Ошибок нет: аккредитуемых 6" in checked
    assert "Фамилия1" not in checked.split('id="preview"')[1]  # the preview shows numbers, not names
    assert api.run(lambda s: s.scalar(select(func.count()).select_from(DayCandidate))) == 0  # checked, not loaded
    resp, _ = await forms.post(f"/admin/days/{day_id}/candidates/map", fields | {"action": "import"})
    assert resp.headers["Location"] == f"/admin/days/{day_id}?done=imported&n=6#candidates"

    def listed(s: Any) -> tuple[list[tuple[str, str | None]], int, int]:
        rows = s.execute(select(DayCandidate.stream, DayCandidate.starts_at).order_by(DayCandidate.row)).all()
        return [tuple(r) for r in rows], s.scalar(select(func.count()).select_from(CandidatePersonal)), \
            s.scalar(select(func.count()).select_from(CandidateUpload))

    streams, named, uploads = api.run(listed)
    assert streams == [("1", "09:00")] * 3 + [("2", "10:00")] * 3
    assert named == 6 and uploads == 0  # names kept apart; the file (personal data) is gone once loaded

    await forms.post(f"/admin/days/{day_id}/schedule", {})
    made = slots(api, day_id)
    assert len(made) == 18  # six candidates × three tasks
    visits = Counter((number, station) for _a, station, number, _t in made)
    assert set(visits.values()) == {1} and len(visits) == 18  # each candidate at each station once
    at_once = Counter((station, t) for _a, station, _n, t in made) + Counter((n, t) for _a, _s, n, t in made)
    assert set(at_once.values()) == {1}  # no station and no candidate in two places at once
    local = sorted({t.astimezone(MSK).strftime("%H:%M") for *_x, t in made})
    assert local == ["09:00", "09:10", "09:20", "10:00", "10:10", "10:20"]  # stream 2 at its own time

    await forms.post(f"/admin/days/{day_id}/fix", {"confirm": "yes"})
    attempts = api.run(lambda s: s.scalar(select(func.count()).where(Attempt.exam_day_id == day_id)))
    assert attempts == 18
    token = world.api.add_station("st9")  # a station that runs nothing
    resp = await api.client.get("/api/stations/st9/schedule", headers=Api.station_headers(token))
    assert (await resp.json())["attempts"] == []
    st1 = await _station_token(api, "st1")
    served = await (await api.client.get("/api/stations/st1/schedule", headers=Api.station_headers(st1))).json()
    assert [a["attempt_id"] for a in served["attempts"]] == []  # 2026-06-01 is not near today: not served yet
    assert {"day.create", "day.stations", "day.candidates.upload", "day.candidates.import", "day.schedule.generate",
            "schedule.import", "day.fix"} <= set(actions(api))


async def _station_token(api: Api, code: str) -> str:
    """A fresh token for an existing station."""
    from review_server import auth

    def issue(s: Any) -> str:
        return auth.issue_station_token(s, s.scalar(select(Station).where(Station.code == code)))[0]

    return api.run(issue)


async def test_the_exam_clock_serves_a_fixed_day_of_today(world: World, forms: DayForms) -> None:
    api = world.api
    today = dt.datetime.now(MSK).date().isoformat()
    day_id = await forms.ready_day(NUMBERS[:3], dict(zip(("st1", "st2", "st3"), STEMS, strict=True)), day=today)
    token = await _station_token(api, "st2")
    body = await (await api.client.get("/api/stations/st2/schedule", headers=Api.station_headers(token))).json()
    got = body["attempts"]
    assert [a["attempt_id"] for a in got] == [f"d{day_id}-st2-{n:03d}" for n in (1, 2, 3)]
    assert {a["checklist"] for a in got} == {STEMS[1]} and {a["station_id"] for a in got} == {"st2"}
    assert sorted(a["candidate"] for a in got) == sorted(NUMBERS[:3])
    first = dt.datetime.fromisoformat(got[0]["reading_starts_at"]).astimezone(MSK)
    assert (first.strftime("%H:%M"), got[0]["reading_s"], got[0]["performing_s"]) == ("09:00", 30, 510)
    # The station agent's own parser takes it as it is (the contract of station_agent/lifecycle.py).
    from station_agent.lifecycle import parse_schedule

    _, parsed = parse_schedule(body, "st2", STEMS[1], 30, 510)
    assert [a.attempt_id for a in parsed] == [a["attempt_id"] for a in got]


@pytest.mark.parametrize("kind", ["cp1251", "utf-8-bom"])
async def test_bad_rows_are_named_and_nothing_is_imported(world: World, forms: DayForms, kind: str) -> None:
    api = world.api
    day_id = await forms.create_day()
    rows = rows_for(NUMBERS)
    rows[1][1] = "26 11 0 0 1"  # the same number as row 2, with spaces a person typed
    rows[2][1] = "Иванова"  # a name in the number column
    rows[3][5] = "31.02.01 Лечебное дело"  # another specialty
    rows[4][7] = "25:70"  # not a time
    if kind == "cp1251":
        data = csv_bytes(HEADER, rows, "cp1251")
    else:  # Windows-1251 cannot hold U+202E: that case is the UTF-8 file's
        rows[5][2] = "Пет\u202eрова"  # a bidirectional override inside a name
        data = csv_bytes(HEADER, rows, "utf-8", bom=True)
    upload, _ = await forms.upload(day_id, "список.csv", data)
    fields = {"upload": str(upload), "action": "import", "map_number": "1", "map_last_name": "2", "map_first_name": "3",
              "map_middle_name": "4", "map_specialty": "5", "map_stream": "6", "map_stream_time": "7"}
    _, page = await forms.post(f"/admin/days/{day_id}/candidates/map", fields, expect=422)
    found = [tuple(r) for r in table_rows(page, "problems")]
    expected = [
        ("3", "B (Номер аккредитации)", "Номер аккредитации", "номер 2611001 уже был в строке 2"),
        ("4", "B (Номер аккредитации)", "Номер аккредитации",
         "«Иванова» — не номер аккредитации (цифры, латинские буквы, дефис; до 40 символов)"),
        ("5", "F (Специальность)", "Специальность",
         "специальность «31.02.01 Лечебное дело» не совпадает со специальностью дня («Сестринское дело»)"),
        ("6", "H (Время)", "Начало потока", "время должно быть в виде ЧЧ:ММ, а не «25:70»"),
    ]
    if kind != "cp1251":
        expected.append(("7", "C (Фамилия)", "Фамилия",
                         "недопустимый символ (управляющий или невидимый): название — одна строка видимого текста"))
    assert found == expected
    assert "Ничего не загружено" in page
    counts = api.run(lambda s: (s.scalar(select(func.count()).select_from(DayCandidate)),
                                s.scalar(select(func.count()).select_from(CandidatePersonal))))
    assert counts == (0, 0)
    assert "day.candidates.import" not in actions(api)


async def test_both_csv_encodings_and_the_xlsx_give_the_same_list(world: World, forms: DayForms) -> None:
    api = world.api
    got = []
    for i, (name, data) in enumerate((
            ("a.csv", csv_bytes(HEADER, rows_for(NUMBERS), "cp1251")),
            ("b.csv", csv_bytes(HEADER, rows_for(NUMBERS), "utf-8", bom=True)),
            ("c.xlsx", xlsx_bytes(HEADER, rows_for(NUMBERS))))):
        day_id = await forms.create_day(title=f"Поток {i}")
        await forms.import_list(day_id, data, name)

        def q(s: Any, day_id: int = day_id) -> list[tuple[str, str, str]]:
            from review_server.models import Candidate

            return [(n, p.last_name, dc.starts_at) for dc, n, p in s.execute(
                select(DayCandidate, Candidate.accreditation_number, CandidatePersonal)
                .join(Candidate, Candidate.id == DayCandidate.candidate_id)
                .join(CandidatePersonal, CandidatePersonal.candidate_id == Candidate.id)
                .where(DayCandidate.exam_day_id == day_id).order_by(DayCandidate.row))]

        got.append(api.run(q))
    assert got[0] == got[1] == got[2]
    assert got[0][0] == ("2611001", "Фамилия1", "09:00")


async def test_an_edited_slot_refuses_a_double_booking_naming_the_field(world: World, forms: DayForms) -> None:
    api = world.api
    day_id = await forms.ready_day(NUMBERS[:3], dict(zip(("st1", "st2", "st3"), STEMS, strict=True)), fix=False)
    first = api.run(lambda s: s.scalar(select(DaySlot).where(DaySlot.exam_day_id == day_id)
                                       .order_by(DaySlot.reading_starts_at, DaySlot.id)))
    st = api.run(lambda s: s.get(Station, first.station_id).code)
    # 09:10 at the same station: it has the next candidate then.
    _, page = await forms.post(f"/admin/days/{day_id}/slots/{first.id}", {
        "time": "09:10", "station": st, "candidate": NUMBERS[0]}, expect=422)
    assert "Ошибка в поле «Время начала»: станция" in page and "в это время занята: 09:10" in page
    assert 'name="time" value="09:10" required aria-invalid="true"' in page
    await forms.post(f"/admin/days/{day_id}/slots/{first.id}", {"time": "11:30", "station": st,
                                                                "candidate": NUMBERS[0]})
    moved = api.run(lambda s: s.get(DaySlot, first.id).reading_starts_at.astimezone(MSK).strftime("%H:%M"))
    assert moved == "11:30"
    await forms.post(f"/admin/days/{day_id}/slots", {"time": "12:00", "station": "st3", "candidate": NUMBERS[1]})
    await forms.post(f"/admin/days/{day_id}/slots/{first.id}/delete", {})
    assert len(slots(api, day_id)) == 9  # one moved, one added, one removed
    assert actions(api).count("day.slot") == 3


async def test_a_fixed_day_is_read_only_and_forms_need_their_csrf_field(world: World, forms: DayForms) -> None:
    api = world.api
    day_id = await forms.ready_day(NUMBERS[:3], dict(zip(("st1", "st2", "st3"), STEMS, strict=True)))
    _, page = await forms.post(f"/admin/days/{day_id}/plan", {"starts_at": "10:00", "reading_s": "30",
                                                              "performing_s": "510", "changeover_s": "60"}, expect=409)
    assert "расписание утверждено" in page
    await forms.post(f"/admin/days/{day_id}/schedule", {}, expect=409)
    resp = await api.client.post(f"/admin/days/{day_id}/examiners", data={"examiner": "examiner", "station": "st1"},
                                 headers=forms.headers)
    assert resp.status == 403 and "CSRF" in (await resp.json())["error"]


async def test_examiners_are_assigned_for_the_day_and_removed_audited(world: World, forms: DayForms) -> None:
    api = world.api
    day_id = await forms.create_day()
    await forms.stations(day_id, {"st1": STEMS[0]})
    await forms.post(f"/admin/days/{day_id}/examiners", {"examiner": "examiner", "station": "st1"})
    _, page = await forms.post(f"/admin/days/{day_id}/examiners", {"examiner": "examiner", "station": "st1"},
                               expect=422)
    assert "Ошибка в поле «Член комиссии»: examiner уже назначен на станцию st1" in page
    _, page = await forms.post(f"/admin/days/{day_id}/examiners", {"examiner": "observer", "station": "st1"},
                               expect=422)
    assert "нет активного члена комиссии observer" in page
    row = api.run(lambda s: s.scalar(select(ExaminerAssignment).where(ExaminerAssignment.exam_day_id == day_id)))
    await forms.post(f"/admin/days/{day_id}/examiners/{row.id}/delete", {})
    assert api.run(lambda s: s.get(ExaminerAssignment, row.id)) is None
    assert actions(api)[-2:] == ["day.examiner.assign", "day.examiner.unassign"]


async def test_route_sheets_per_candidate_and_per_station(world: World, forms: DayForms) -> None:
    api = world.api
    day_id = await forms.ready_day(NUMBERS[:3], dict(zip(("st1", "st2", "st3"), STEMS, strict=True)))
    for kind, pages, must in (("candidates", 3, "МАРШРУТНЫЙ ЛИСТ АККРЕДИТУЕМОГО"), ("stations", 3, "ЛИСТ СТАНЦИИ")):
        resp = await api.client.get(f"/admin/days/{day_id}/route-sheets/{kind}.pdf", headers=forms.headers)
        assert resp.status == 200 and resp.content_type == "application/pdf"
        reader = PdfReader(io.BytesIO(await resp.read()))
        text = "\n".join(p.extract_text() for p in reader.pages)
        assert len(reader.pages) == pages and must in text
        assert "Фамилия" not in text  # accreditation numbers only
        assert "ЧЕРНОВИК" not in text  # fixed
    first = PdfReader(io.BytesIO(await (await api.client.get(
        f"/admin/days/{day_id}/route-sheets/candidates.pdf", headers=forms.headers)).read())).pages[0].extract_text()
    assert "Номер аккредитуемого: 2611001" in first
    # Candidate 1 starts at station 1 and moves on: st1 at 09:00, st2 at 09:10, st3 at 09:20.
    at = [first.index(x) for x in ("09:00", "st1", "Базовая сердечно-лёгочная", "09:10", "st2", "09:20", "st3")]
    assert at == sorted(at)
    assert actions(api).count("day.route_sheets") == 3


def test_long_route_sheet_cells_wrap_instead_of_being_cut() -> None:
    """A long task title or station name is printed whole, wrapped inside its cell (fpdf2's table), not cut off."""
    task = "Физикальное обследование пациента " * 6 + "конец задания"
    data = route_sheets.RouteData(dt.date(2026, 6, 2), "Поток 1", "Сестринское дело (34.02.01)", True, 30, 510,
                                  [route_sheets.Line("09:00", "st1", "Малая операционная, кабинет 214 " * 3, task,
                                                     "2611001", "d1-st1-001")])
    words = " ".join(PdfReader(io.BytesIO(route_sheets.by_candidate(data))).pages[0].extract_text().split())
    assert " ".join(task.split()) in words and "кабинет 214 Малая операционная, кабинет 214" in words


async def test_a_candidates_name_is_seen_only_where_it_is_kept(world: World, forms: DayForms) -> None:
    """Names go to candidate_personal (admins only, audited reads); the day's pages and schedule carry numbers."""
    api = world.api
    day_id = await forms.ready_day(NUMBERS[:3], dict(zip(("st1", "st2", "st3"), STEMS, strict=True)))
    page = await forms.get(f"/admin/days/{day_id}")
    assert "2611001" in page and "Фамилия1" not in page
    day = api.run(lambda s: s.get(ExamDay, day_id))
    assert day.title == "Поток 1"
    archivist = Api.user_headers(api.session_for("archivist"))
    resp = await api.client.get("/api/candidates/2611001/personal", headers=archivist)
    assert resp.status == 403

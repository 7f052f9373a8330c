"""Hostile input: each is refused with a clear 4xx naming what is wrong, nothing is stored, nothing crashes.

Identifiers (codes, logins, hashes, accreditation numbers, ids) must match strict patterns, so path- and
SQL-looking strings are refused there. Free text (names, titles, reasons) is data: SQL-looking text is
stored exactly as sent, through bound parameters, and changes nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, Text, func, select

from review_server.models import Attempt, Base, Fragment, MarkEvent, Recording, Station
from review_server.web import CONFIG, STORAGE
from scripts.harness.fmp4_bytes import media_bytes

from .conftest import World

SQL = "x'); DROP TABLE users; --"
SQL_STRINGS = [SQL, "' OR '1'='1", "1; SELECT pg_sleep(10) --", 'a" OR ""="', "admin'--"]
TRAVERSALS = ["..", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "a/../../b", "C:\\windows", "/abs"]
# Tables that record refused attempts on purpose (audit log, login throttling).
LOGS = {"audit_events", "login_attempts"}


def media_files(world: World) -> list[Path]:
    root = world.api.app[CONFIG].media_dir
    return [p for p in root.rglob("*") if p.is_file()]


def count(world: World, model: Any) -> int:
    return world.api.run(lambda s: s.scalar(select(func.count()).select_from(model)))


def tables_holding(world: World, value: str) -> set[str]:
    """The tables (other than the logs) where some text column holds exactly `value` (or, for a value no
    database can hold, its clean beginning)."""
    clean = re.match(r"[^\x00-\x1f\ud800-\udfff]*", value).group(0)  # type: ignore[union-attr]

    def scan(s):  # type: ignore[no-untyped-def]
        found = set()
        for table in Base.metadata.sorted_tables:
            if table.name in LOGS:
                continue
            for col in table.columns:
                if not isinstance(col.type, String | Text):
                    continue
                match = col == value if clean == value else col.startswith(clean)
                if s.scalar(select(func.count()).select_from(table).where(match)):
                    found.add(table.name)
        return found

    return world.api.run(scan)


async def put_fragment(world: World, path: str, data: bytes, sha: str | None = None) -> Any:
    headers = {**world.headers("station"), "X-Content-SHA256": sha or hashlib.sha256(data).hexdigest()}
    return await world.api.client.put(path, data=data, headers=headers)


# --- path traversal -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRAVERSALS)
async def test_path_traversal_in_url_names_is_refused(world: World, name: str) -> None:
    data = media_bytes(70)  # a well-formed fragment: only the names are wrong
    for path in (
        f"/api/recordings/{name}/tracks/cam1/fragments/1",
        f"/api/recordings/rec1/tracks/{name}/fragments/1",
        f"/api/recordings/rec1/tracks/cam1/fragments/{name}",
    ):
        resp = await put_fragment(world, path, data)
        assert 400 <= resp.status < 500, (path, resp.status)
    for method, path, who in (
        ("POST", f"/api/stations/{name}/tokens", "admin"),
        ("GET", f"/api/media/{name}", "observer"),
        ("GET", f"/api/recordings/{name}", "observer"),
        ("GET", f"/api/candidates/{name}/personal", "admin"),
        ("DELETE", f"/api/users/{name}", "admin"),
    ):
        resp = await world.api.client.request(method, path, headers=world.headers(who))
        assert resp.status in (400, 404), (path, resp.status)
    assert media_files(world) == []
    assert count(world, Fragment) == 0 and count(world, Recording) == 0


@pytest.mark.parametrize("name", TRAVERSALS)
async def test_path_traversal_in_json_identifiers_is_refused(world: World, name: str) -> None:
    admin = world.headers("admin")
    for path, body, field in (
        ("/api/stations", {"code": name}, "code"),
        ("/api/specialties", {"code": name, "name": "n"}, "code"),
        ("/api/tasks", {"code": name, "title": "t"}, "code"),
        ("/api/candidates", {"accreditation_number": name}, "accreditation_number"),
    ):
        resp = await world.api.client.post(path, json=body, headers=admin)
        assert resp.status == 422, (path, resp.status)
        assert (await resp.json())["where"] == field
    assert count(world, Station) == 2  # S1 and S2 from the fixture


# --- sizes, hashes, truncation --------------------------------------------------------------------


async def test_oversized_json_body_is_413_before_it_is_read(world: World) -> None:
    limit = world.api.app[CONFIG].max_json_bytes
    body = json.dumps({"code": "BIG", "name": "x" * (limit + 10)})
    resp = await world.api.client.post(
        "/api/specialties", data=body, headers={**world.headers("admin"), "Content-Type": "application/json"}
    )
    assert resp.status == 413 and (await resp.json())["where"] == "body"


async def test_oversized_chunked_json_body_is_413(world: World) -> None:
    limit = world.api.app[CONFIG].max_json_bytes

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"code": "BIG", "name": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    headers = {**world.headers("admin"), "Content-Type": "application/json"}
    resp = await world.api.client.post("/api/specialties", data=chunks(), headers=headers)
    assert resp.status == 413
    assert (await (await world.api.client.get("/api/specialties", headers=world.headers("admin"))).json()) == {
        "specialties": []
    }


async def test_oversized_fragment_is_413_and_too_many_events_too(world: World) -> None:
    limit = world.api.app[CONFIG].max_fragment_bytes
    data = b"\0" * (limit + 1)
    resp = await put_fragment(world, "/api/recordings/rec1/tracks/cam1/fragments/1", data)
    assert resp.status == 413
    batch = world.api.app[CONFIG].max_mark_batch + 1
    resp = await world.api.client.post("/api/marks", json={"events": [{}] * batch}, headers=world.headers("station"))
    assert resp.status == 413 and (await resp.json())["where"] == "events"
    assert media_files(world) == [] and count(world, Fragment) == 0


async def test_wrong_content_hash_is_refused_and_nothing_is_stored(world: World) -> None:
    data = media_bytes(1400)
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    resp = await put_fragment(world, "/api/recordings/rec1/tracks/cam1/fragments/1", data, sha=wrong)
    assert resp.status == 422
    assert (await resp.json())["where"] == "X-Content-SHA256"
    for bad in ("", "abc", "G" * 64, "0" * 63):
        resp = await put_fragment(world, "/api/recordings/rec1/tracks/cam1/fragments/1", data, sha=bad or " ")
        assert resp.status == 400, bad
    assert media_files(world) == []
    assert count(world, Fragment) == 0 and count(world, Recording) == 0


async def test_truncated_upload_is_refused_and_nothing_is_stored(world: World) -> None:
    server = world.api.client.server
    data = media_bytes(50_000)
    sha = hashlib.sha256(data).hexdigest()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"PUT /api/recordings/rec1/tracks/cam1/fragments/1 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {world.station_token}\r\nX-Content-SHA256: {sha}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data[: len(data) // 2])
    await writer.drain()
    writer.write_eof()  # the station lost its connection half-way
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    if reply:  # the server may answer before it sees the connection go
        assert reply.split(b"\r\n", 1)[0].split()[1].startswith(b"4"), reply[:200]
    await asyncio.sleep(0.2)
    assert media_files(world) == []
    assert count(world, Fragment) == 0
    assert (await world.api.client.get("/health")).status == 200


async def test_missing_or_empty_length_is_refused(world: World) -> None:
    headers = {**world.headers("station"), "X-Content-SHA256": hashlib.sha256(b"").hexdigest()}
    resp = await world.api.client.put("/api/recordings/rec1/tracks/cam1/fragments/1", data=b"", headers=headers)
    assert resp.status == 400

    async def chunked():  # type: ignore[no-untyped-def]
        yield b"abc"

    resp = await world.api.client.put("/api/recordings/rec1/tracks/cam1/fragments/1", data=chunked(), headers=headers)
    assert resp.status == 411
    assert count(world, Fragment) == 0


# --- malformed JSON ---------------------------------------------------------------------------------

MALFORMED = [
    (b"{not json", 400),
    (b'{"events": [}', 400),
    (b"[1, 2]", 400),
    (b'"just a string"', 400),
    (b'{"events": NaN}', 400),
    (b"\xff\xfe{}", 400),
    (b"", 400),
    (b"[" * 50_000, 400),
    (b'{"events": ' + b"9" * 20_000 + b"}", 400),
]


@pytest.mark.parametrize(("body", "status"), MALFORMED)
async def test_malformed_json_is_400_on_every_json_route(world: World, body: bytes, status: int) -> None:
    routes = [
        ("POST", "/api/marks", "station"),
        ("POST", "/api/users", "admin"),
        ("POST", "/api/stations", "admin"),
        ("POST", "/api/exam-days", "admin"),
        ("POST", "/api/specialties", "admin"),
        ("POST", "/api/tasks", "admin"),
        ("POST", "/api/assignments", "admin"),
        ("POST", "/api/candidates", "admin"),
        ("DELETE", "/api/recordings/rec1", "admin"),
        ("POST", "/api/attempts/att1/marks", "examiner"),
    ]
    for method, path, who in routes:
        headers = {**world.headers(who), "Content-Type": "application/json"}
        resp = await world.api.client.request(method, path, data=body, headers=headers)
        assert resp.status == status, (path, resp.status, await resp.text())
        assert "where" in await resp.json()
    wrong_type = await world.api.client.post(
        "/api/marks", data=b"{}", headers={**world.headers("station"), "Content-Type": "text/plain"}
    )
    assert wrong_type.status == 415
    assert count(world, MarkEvent) == 0 and count(world, Station) == 2


async def test_wrong_types_and_unknown_fields_are_422_naming_the_field(world: World) -> None:
    admin = world.headers("admin")
    cases = [
        ("/api/stations", {"code": 5}, "code"),
        ("/api/stations", {"code": "S9", "name": ["a"]}, "name"),
        ("/api/stations", {"code": "S9", "nmae": "typo"}, "nmae"),
        ("/api/exam-days", {"day": "2026-02-30"}, "day"),
        ("/api/exam-days", {"day": "2026-06-01", "title": "a\x00b"}, "title"),
        ("/api/assignments", {"login": "examiner", "station": "S1", "exam_day_id": True}, "exam_day_id"),
        ("/api/candidates", {"accreditation_number": "A1", "personal": {"last_name": 1}}, "personal.last_name"),
        ("/api/users", {"login": "x", "password": "p" * 20, "role": "root"}, "role"),
    ]
    for path, body, where in cases:
        resp = await world.api.client.post(path, json=body, headers=admin)
        assert resp.status == 422, (path, body, resp.status)
        assert (await resp.json())["where"] == where
    assert count(world, Station) == 2


# --- SQL-looking strings in every text field ------------------------------------------------------


def mark_event(**fields: Any) -> dict[str, Any]:
    ev = {
        "event_id": str(uuid.uuid4()),
        "attempt_id": "att1",
        "station_id": "S1",
        "examiner": "examiner",
        "kind": "mark",
        "item": 1,
        "done": True,
        "rating": None,
        "reason": None,
        "checklist_hash": "c" * 64,
        "wall_time": "2026-06-01T09:30:00+00:00",
        "recording_offset_s": None,
        "seq": 1,
    }
    return ev | fields


# (route, who, a valid body, the body's text fields as paths, the fields that are identifiers)
FORMS: list[tuple[str, str, str, Any, list[tuple[str, ...]], set[str]]] = [
    (
        "POST",
        "/api/users",
        "admin",
        {"login": "newuser", "password": "long enough password", "role": "observer", "display_name": "N"},
        [("login",), ("role",), ("display_name",)],
        {"login", "role"},
    ),
    (
        "POST",
        "/api/stations",
        "admin",
        {"code": "S9", "name": "Room 9"},
        [("code",), ("name",), ("specialty",), ("task",)],
        {"code", "specialty", "task"},
    ),
    ("POST", "/api/exam-days", "admin", {"day": "2026-06-01", "title": "t"}, [("day",), ("title",)], {"day"}),
    ("POST", "/api/specialties", "admin", {"code": "SP", "name": "n"}, [("code",), ("name",)], {"code"}),
    (
        "POST",
        "/api/tasks",
        "admin",
        {"code": "T1", "title": "t"},
        [("code",), ("title",), ("specialty",)],
        {"code", "specialty"},
    ),
    (
        "POST",
        "/api/assignments",
        "admin",
        {"login": "examiner", "station": "S1"},
        [("login",), ("station",)],
        {"login", "station"},
    ),
    (
        "POST",
        "/api/candidates",
        "admin",
        {"accreditation_number": "A-1", "personal": {"last_name": "L", "first_name": "F", "middle_name": "M"}},
        [
            ("accreditation_number",),
            ("specialty",),
            ("personal", "last_name"),
            ("personal", "first_name"),
            ("personal", "middle_name"),
        ],
        {"accreditation_number", "specialty"},
    ),
    (
        "POST",
        "/api/marks",
        "station",
        {"events": [mark_event()]},
        [("events", 0, k) for k in ("attempt_id", "station_id", "examiner", "kind", "checklist_hash", "wall_time")]
        + [("events", 0, "reason")],
        # the examiner is an account's login (who signed the mark on the tablet), not free text
        {"attempt_id", "station_id", "examiner", "kind", "checklist_hash", "wall_time"},
    ),
    (
        "POST",
        "/api/attempts/att1/marks",
        "examiner",
        {k: v for k, v in mark_event(reason="r", seq=2).items() if k not in ("attempt_id", "station_id", "examiner")},
        [("reason",), ("checklist_hash",)],
        {"checklist_hash"},
    ),
]


def with_value(body: Any, path: tuple[Any, ...], value: str) -> Any:
    body = json.loads(json.dumps(body))
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    if "events" in body:
        body["events"][0]["event_id"] = str(uuid.uuid4())
    if "event_id" in body:
        body["event_id"] = str(uuid.uuid4())
    return body


async def submit_everywhere(world: World, value: str, free_text_ok: bool) -> None:
    """Put `value` in each text field of each form in turn: identifiers must be refused (422 naming the
    field, nothing stored); free text is stored verbatim if `free_text_ok`, else refused the same way."""
    world.api.run(
        lambda s: s.add(Attempt(id="att1", station_id=s.scalar(select(Station.id).where(Station.code == "S1"))))
    )
    for method, path, who, valid, fields, identifiers in FORMS:
        for field in fields:
            body = with_value(valid, field, value)
            if path == "/api/marks":  # as the station's agent sends them: signed by the examiner's tablet key
                body = {"events": world.sign(body["events"])}
            resp = await world.api.client.request(method, path, json=body, headers=world.headers(who))
            reply = await resp.json()
            name = str(field[-1])
            if name in identifiers or not free_text_ok:
                assert resp.status == 422, (path, field, resp.status, reply)
                assert reply["where"].endswith(name)
                assert tables_holding(world, value) == set(), (path, field)
            else:
                assert resp.status in (200, 201), (path, field, resp.status, reply)
                assert tables_holding(world, value), (path, field)  # stored verbatim, as data
            if free_text_ok:  # undo what was stored, so the next field starts from the same state
                world.api.run(lambda s: _forget(s, value))
    # Still all there, still answering.
    assert count(world, Station) == 2
    assert (await world.api.client.get("/api/users", headers=world.headers("admin"))).status == 200
    for login, password in ((value, value), ("admin", value)):
        resp = await world.api.login(login, password)
        assert resp.status in (401, 422), (login, resp.status)


@pytest.mark.parametrize("sql", SQL_STRINGS)
async def test_sql_looking_strings_in_every_text_field(world: World, sql: str) -> None:
    await submit_everywhere(world, sql, free_text_ok=True)


@pytest.mark.parametrize("bad", ["zq-nul\x00inside", "zq-lone \ud800 surrogate", "zq-bell\x07", "zq-esc\x1b[31m"])
async def test_control_characters_and_broken_unicode_in_every_text_field(world: World, bad: str) -> None:
    await submit_everywhere(world, bad, free_text_ok=False)


def _forget(s, value: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete

    from review_server.models import CandidatePersonal, ExamDay, Specialty, Task, User

    s.execute(delete(CandidatePersonal))
    s.execute(delete(MarkEvent))
    for model, col in ((User, User.display_name), (Station, Station.name), (ExamDay, ExamDay.title)):
        s.execute(delete(model).where(col == value))
    s.execute(delete(Specialty).where(Specialty.name == value))
    s.execute(delete(Task).where(Task.title == value))
    from review_server.models import Candidate

    s.execute(delete(Candidate))


async def test_sql_in_the_search_query_and_login(world: World) -> None:
    resp = await world.api.client.get("/api/archive/search", params={"number": SQL}, headers=world.headers("archivist"))
    assert resp.status == 400 and (await resp.json())["where"] == "query number"
    resp = await world.api.login(SQL, SQL)
    assert resp.status in (401, 422)
    assert (await world.api.login("admin")).status == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"no boundary"),
        ("multipart/form-data; boundary=xx", b"--xx\r\nbroken part"),
        ("application/x-www-form-urlencoded", b"\xff\xfe=%zz&&=="),
    ],
)
async def test_malformed_forms_are_400(world: World, content_type: str, body: bytes) -> None:
    for path, who in (("/login", None), ("/logout", "observer"), ("/api/specialties", "admin")):
        headers = {k: v for k, v in world.headers(who).items() if k != "X-CSRF-Token"}
        resp = await world.api.client.post(path, data=body, headers={**headers, "Content-Type": content_type})
        assert resp.status == 400, (path, resp.status, await resp.text())
        assert (await resp.json())["where"] == "body"


async def test_conflicting_attempt_is_refused_before_any_byte_is_stored(world: World) -> None:
    world.schedule("att1", "att2")
    first = media_bytes(64, seed=1)
    assert (
        await put_fragment(world, "/api/recordings/rec1/tracks/cam1/fragments/1?attempt_id=att1", first)
    ).status == 201
    data = media_bytes(64, seed=2)
    # rec1 belongs to att1: a fragment claiming att2 is refused.
    resp = await put_fragment(world, "/api/recordings/rec1/tracks/cam1/fragments/2?attempt_id=att2", data)
    assert resp.status == 409
    # att1 belongs to S1: S2 cannot attach a recording to it.
    headers = {
        "Authorization": f"Bearer {world.other_station_token}",
        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
    }
    resp = await world.api.client.put(
        "/api/recordings/recX/tracks/cam1/fragments/1?attempt_id=att1", data=data, headers=headers
    )
    assert resp.status == 409
    assert not world.api.app[STORAGE].exists(hashlib.sha256(data).hexdigest())
    assert count(world, Fragment) == 1


async def test_duplicates_are_409_not_500(world: World) -> None:
    admin = world.headers("admin")
    for path, body in (
        ("/api/assignments", {"login": "examiner", "station": "S2"}),
        ("/api/specialties", {"code": "SP", "name": "n"}),
        ("/api/tasks", {"code": "T", "title": "t"}),
        ("/api/stations", {"code": "S3"}),
        ("/api/candidates", {"accreditation_number": "A-1"}),
    ):
        assert (await world.api.client.post(path, json=body, headers=admin)).status == 201, path
        again = await world.api.client.post(path, json=body, headers=admin)
        assert again.status == 409, path

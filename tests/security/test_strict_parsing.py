"""Lenient parsing that changes a decision. Python's int() and float() take "+0", "0_0", " 0", other scripts'
digits ("٠", "０") and "nan"; str.isdigit() takes "²", which int() then refuses. Wherever a client's text
becomes a number the decision must follow the grammar (ASCII digits) and be made on the parsed value, never on
the text: the attempt track's Range (what is sent, whether it is a new viewing that is audited), the station's
marks pull, the signed live URL, a manikin's CSV export."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from .conftest import PASSWORD, ROOT, Stand

CATEGORY = "lenient parsing"

TRACK = "/attempts/att-s1/recordings/rec-s1/cam0"


def fresh_archivist(stand: Stand) -> tuple[str, dict[str, str]]:
    """A new archivist's session, so that its first request is the first of a viewing."""
    login = f"arch{uuid.uuid4().hex[:8]}"
    made = stand.json_request("POST", "/api/users", {"login": login, "password": PASSWORD, "role": "archivist"},
                              stand.user("admin"))
    assert made.status == 201, made.body
    reply = stand.login(login)
    assert reply.status == 200
    return f"user:{login}", {"Cookie": f"osce_session={reply.cookies()['osce_session']}"}


def media_views(stand: Stand, actor: str) -> list[list[int]]:
    from review_server.models import AuditEvent

    rows = stand.db(lambda s: s.scalars(select(AuditEvent.details).where(
        AuditEvent.action == "attempt.media", AuditEvent.actor == actor)).all())
    return [r.get("bytes") for r in rows]


def whole_track(stand: Stand) -> bytes:
    return b"".join(stand.recordings["S1"]["parts"])


@pytest.mark.parametrize("header", ["bytes=+0-", "bytes=\u0660-", "bytes=\uff10-", "bytes=0_0-"],
                         ids=["plus sign", "arabic-indic zero", "fullwidth zero", "underscore"])
def test_a_range_outside_the_grammar_neither_serves_the_track_unaudited(stand: Stand, header: str) -> None:
    """The first request of a viewing, with a Range that Python's int() reads as 0: before, the whole track
    came back (206) while the textual "does it start at byte 0?" check said no, so no audit row was written."""
    actor, headers = fresh_archivist(stand)
    reply = stand.request("GET", TRACK, {**headers, "Range": header})
    if reply.status == 416:
        assert reply.headers["Content-Range"].startswith("bytes */") and whole_track(stand)[:64] not in reply.body
    else:
        assert reply.status in (200, 206), reply.status
        assert media_views(stand, actor), f"{header!r}: {len(reply.body)} bytes sent and no audit row"


def test_a_download_that_skips_the_first_byte_is_still_a_viewing(stand: Stand) -> None:
    """`bytes=1-` takes all but one byte: a first request is a new viewing whatever byte it starts at."""
    actor, headers = fresh_archivist(stand)
    reply = stand.request("GET", TRACK, {**headers, "Range": "bytes=1-"})
    assert reply.status == 206
    total = int(reply.headers["Content-Range"].rsplit("/", 1)[1])
    assert media_views(stand, actor) == [[1, total - 1]]


@pytest.mark.parametrize("after", ["%C2%B2", "%D9%A1", "%EF%BC%91"],
                         ids=["superscript two", "arabic-indic one", "fullwidth one"])
def test_the_marks_pull_takes_ascii_digits_only(stand: Stand, after: str) -> None:
    reply = stand.request("GET", f"/api/stations/S1/marks?after={after}", stand.station("S1"))
    assert reply.status == 400 and reply.json()["where"] == "query after", (reply.status, reply.body[:200])


def test_a_live_token_with_a_superscript_digit_is_refused_not_a_crash(stand: Stand) -> None:
    """An unauthenticated request: "²" passed str.isdigit() and then crashed int() (500)."""
    for token in ("%C2%B29999999999.0000", "%D9%A19999999999.0000"):
        reply = stand.request("GET", f"/live/S1/cam0/index.m3u8?token={token}")
        assert reply.status == 401, (token, reply.status, reply.body[:200])
    assert stand.alive()


@pytest.mark.parametrize("depth", ["nan", "\u0661\u0662", "1e3", "+52", "5_2"],
                         ids=["nan", "arabic-indic digits", "exponent", "plus sign", "underscore"])
def test_a_manikin_csv_number_outside_the_format_is_refused_naming_the_line(tmp_path: Path, depth: str) -> None:
    """`osce cpr import`: a depth of "1e3" mm or "nan" would have gone into the figures without a word."""
    csv = tmp_path / "session.csv"
    lines = ["# osce-cpr-feedback/1", "time_s,event,depth_mm,rate_per_min,recoil,hand_position,volume_ml",
             "97.250,compression,52,,1,ok,", f"97.807,compression,{depth},,1,ok,"]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "osce_cli", "cpr", "import", str(csv), "--recording",
                           str(tmp_path / "no-recording")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{csv}:4: {depth!r} is not a number" in done.stderr, done.stderr[-500:]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/exam-days", {"day": "2026-W27-3", "title": "неделя"}, "day"),
    ("/api/export-requests", {"number": "8", "date": "2026-W27-3", "requester": "суд"}, "date"),
], ids=["exam day", "export request"])
def test_a_date_in_the_iso_week_form_is_not_a_date(stand: Stand, path: str, body: dict[str, str], field: str) -> None:
    """date.fromisoformat() takes "2026-W27-3" (ten characters, as YYYY-MM-DD has): an exam day made by it."""
    who = "admin" if path == "/api/exam-days" else "archivist"
    reply = stand.json_request("POST", path, body, stand.user(who))
    assert reply.status == 422 and reply.json()["where"] == field, (reply.status, reply.body[:200])

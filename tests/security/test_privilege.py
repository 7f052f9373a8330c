"""Privilege escalation between roles: an examiner on the admin routes, an observer marking, an archivist
correcting marks, a station token acting for another station. The targets are real (S1's attempt, S2's token
and recording), so a request that got through would change what the last checks look at."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.server.test_route_matrix import ADMIN, ARCHIVIST, EXAMINER, EXPECTED, OBSERVER, PLACEHOLDERS, STATION

from .conftest import Stand, mark_event, tus_metadata

CATEGORY = "privilege escalation"

REAL = {**PLACEHOLDERS, "key": "rec-s1", "attempt_id": "att-s1", "code": "S1", "login": "admin", "token_id": "1",
        "station": "S1"}


CPR_REPORT = {"format": "osce-cpr-figures/1", "checklist": "01_basic_cpr_adult",
              "guidelines": {"rate_per_min": [100, 120]},
              "video": {"estimate": True, "confidence": 0.9, "rate_per_min": 112.0},
              "manikin": None, "alignment": None, "items": {"16": ["Частота: 112/мин"]}}


def real(path: str, values: dict[str, str] = REAL) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def routes_denied_to(principal: str, needing: set[str]) -> list[tuple[str, str]]:
    return sorted((m, p) for (m, p), allowed in EXPECTED.items()
                  if principal not in allowed and allowed & needing and None not in allowed)


def _refused(stand: Stand, principal: str, method: str, path: str) -> None:
    headers = stand.station("S2") if principal == STATION else stand.user(principal)
    body = b"{}" if method in ("POST", "PUT", "PATCH", "DELETE") else None
    reply = stand.request(method, real(path), {**headers, "Content-Type": "application/json",
                                               "Accept": "application/json"}, body)
    if path.startswith("/live/") and path.count("/") == 4:
        # The HLS leaves are public at the middleware (a signed ?token= or a viewer's session opens them).
        assert reply.status == 401 and b"#EXTM3U" not in reply.body, (reply.status, reply.body[:200])
        return
    assert reply.status == 403, (reply.status, reply.body[:200])
    if method != "HEAD":
        assert "may not do this" in reply.error


ESCALATIONS = (
    [(EXAMINER, m, p) for m, p in routes_denied_to(EXAMINER, {ADMIN})]
    + [(OBSERVER, m, p) for m, p in routes_denied_to(OBSERVER, {EXAMINER, STATION})
       if "marks" in p or "finalise" in p or "sheets" in p]
    + [(ARCHIVIST, m, p) for m, p in routes_denied_to(ARCHIVIST, {EXAMINER, STATION})
       if "marks" in p or "finalise" in p or "cpr-figures" in p]
    + [(STATION, m, p) for m, p in routes_denied_to(STATION, {ADMIN, EXAMINER, OBSERVER, ARCHIVIST})]
)


@pytest.mark.parametrize(("principal", "method", "path"), ESCALATIONS,
                         ids=[f"{who} {m} {p}" for who, m, p in ESCALATIONS])
def test_a_role_cannot_use_another_roles_route(stand: Stand, principal: str, method: str, path: str) -> None:
    _refused(stand, principal, method, path)


def test_an_examiner_cannot_mark_in_another_examiners_name(stand: Stand) -> None:
    body = {k: v for k, v in mark_event("att-s1", "S1", 4, reason="fix").items() if k != "station_id"}
    body["examiner"] = "examiner2"
    reply = stand.json_request("POST", "/api/attempts/att-s1/marks", body, stand.user("examiner"))
    assert reply.status == 422 and reply.json()["where"] == "examiner"
    body["examiner"] = None  # left out: the server fills in who is asking
    ok = stand.json_request("POST", "/api/attempts/att-s1/marks", body, stand.user("examiner"))
    assert ok.status == 200
    events = stand.request("GET", "/api/attempts/att-s1/marks", stand.user("archivist")).json()["events"]
    mine = next(e for e in events if e["event_id"] == body["event_id"])
    assert (mine["examiner"], mine["source"]) == ("examiner", "user:examiner")


def test_an_examiner_cannot_make_themselves_admin(stand: Stand) -> None:
    for method, path, body in (
        ("POST", "/api/users", {"login": "examiner", "password": "x" * 12, "role": "admin"}),
        ("POST", "/api/users", {"login": "newadmin", "password": "x" * 12, "role": "admin"}),
        ("POST", "/api/assignments", {"login": "examiner", "station": "S2"}),
    ):
        assert stand.json_request(method, path, body, stand.user("examiner")).status == 403
    assert stand.request("GET", "/api/me", stand.user("examiner")).json()["role"] == "examiner"
    assert stand.login("newadmin", "x" * 12).status == 401


# --- one station acting for another ----------------------------------------------------------------------


def test_station_cannot_put_fragments_into_another_stations_recording(stand: Stand) -> None:
    data = b"S2 trying to overwrite S1" * 10
    before = stand.request("GET", "/api/recordings/rec-s1", stand.user("observer")).json()["fragments"]
    for seq in (0, 1, 99):
        assert stand.put_fragment("S2", "rec-s1", "cam0", seq, data).status == 409
    assert stand.put_fragment("S2", "rec-s2-new", "cam0", 1, data, attempt="att-s1").status == 409
    after = stand.request("GET", "/api/recordings/rec-s1", stand.user("observer")).json()["fragments"]
    assert after == before
    assert not any(p.name == hashlib.sha256(data).hexdigest() for p in stand.media_files())


def test_station_cannot_create_a_tus_upload_for_another_stations_recording(stand: Stand) -> None:
    data = b"tus from S2" * 10
    meta = tus_metadata(sha256=hashlib.sha256(data).hexdigest(), recording="rec-s1", track="cam0", seq="7",
                        kind="media")
    reply = stand.request("POST", "/api/tus", {**stand.station("S2"), "Tus-Resumable": "1.0.0",
                                               "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert reply.status == 409, reply.body
    meta = tus_metadata(sha256=hashlib.sha256(data).hexdigest(), recording="rec-new", track="cam0", seq="7",
                        kind="media", attempt_id="att-s1")
    reply = stand.request("POST", "/api/tus", {**stand.station("S2"), "Tus-Resumable": "1.0.0",
                                               "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert reply.status == 409, reply.body


def test_station_cannot_touch_another_stations_tus_upload(stand: Stand) -> None:
    data = b"S1 partial upload " * 20
    meta = tus_metadata(sha256=hashlib.sha256(data).hexdigest(), recording="rec-s1-tus", track="cam0", seq="1",
                        kind="media")
    tus = {"Tus-Resumable": "1.0.0"}
    made = stand.request("POST", "/api/tus", {**stand.station("S1"), **tus, "Upload-Length": str(len(data)),
                                              "Upload-Metadata": meta})
    assert made.status == 201
    url = made.headers["Location"]
    half = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert stand.request("PATCH", url, {**stand.station("S1"), **tus, **half}, data[:100]).status == 204
    other = {**stand.station("S2"), **tus}
    assert stand.request("HEAD", url, other).status == 404
    assert stand.request("PATCH", url, {**other, **half, "Upload-Offset": "100"}, b"evil" * 25).status == 404
    assert stand.request("DELETE", url, other).status == 404
    head = stand.request("HEAD", url, {**stand.station("S1"), **tus})
    assert head.status == 200 and head.headers["Upload-Offset"] == "100"


def test_station_cannot_send_marks_for_another_station(stand: Stand) -> None:
    forged = mark_event("att-s1", "S1", 9)
    reply = stand.post_marks("S2", [forged])
    assert reply.status == 403 and reply.json()["where"] == "events[0].station_id"
    into_s1 = mark_event("att-s1", "S2", 9)
    assert stand.post_marks("S2", [into_s1]).status == 409
    # A replay of S1's own event ids, sent by S2 with S2's station id: refused, S1's events untouched.
    replay = mark_event("att-s2", "S2", 1, event_id=stand.recordings["S1"]["events"][0])
    assert stand.post_marks("S2", [replay]).status == 409
    events = stand.request("GET", "/api/attempts/att-s1/marks", stand.user("archivist")).json()["events"]
    assert {e["event_id"] for e in events}.isdisjoint({forged["event_id"], into_s1["event_id"]})
    assert all(e["source"] != "station:S2" for e in events)


@pytest.mark.parametrize(("method", "path"), sorted(
    (m, p) for (m, p), allowed in EXPECTED.items() if STATION in allowed and ("{code}" in p or "{station}" in p
                                                                               or "{attempt_id}" in p)))
def test_station_cannot_act_on_another_stations_url(stand: Stand, method: str, path: str) -> None:
    """S2's token on every station route that names a station or attempt, aimed at S1's."""
    headers = {**stand.station("S2"), "Content-Type": "application/json", "Accept": "application/json"}
    if path.endswith("/publish"):
        headers |= {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        headers.pop("Content-Type")
    body = json.dumps(CPR_REPORT).encode() if method in ("POST", "PUT") else None  # valid: only ownership fails
    reply = stand.request(method, real(path), headers, body)
    assert reply.status in (403, 409), (reply.status, reply.body[:200])
    assert b"att-s1" not in reply.body or reply.status == 409


def test_station_cannot_issue_itself_tokens_or_revoke_others(stand: Stand) -> None:
    s2 = {**stand.station("S2"), "Content-Type": "application/json"}
    assert stand.request("POST", "/api/stations/S2/tokens", s2, b"{}").status == 403
    assert stand.request("DELETE", "/api/stations/S1/tokens/1", s2, b"{}").status == 403
    assert stand.post_marks("S1", []).status == 200

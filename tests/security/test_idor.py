"""IDOR on attempts and recordings: the examiner is assigned to S1 only; every examiner route that names an
attempt, recording, media hash or station is aimed at S2's (which exist). Each must be refused and leak none of
S2's data; the same request aimed at S1's must work (so the refusal is the scope check, not a broken route).
Then guessing: recording keys, media hashes and review-link scope."""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import unquote

import pytest

from tests.server.test_route_matrix import EXAMINER, EXPECTED, PLACEHOLDERS

from .conftest import Stand, mark_event

CATEGORY = "IDOR"

SCOPED = sorted((m, p) for (m, p), allowed in EXPECTED.items()
                if EXAMINER in allowed and re.search(r"\{(attempt_id|key|sha256|station)\}", p)
                and not p.startswith("/review/"))
WS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def values(stand: Stand, code: str) -> dict[str, str]:
    rec = stand.recordings[code]
    return {**PLACEHOLDERS, "attempt_id": rec["attempt"], "key": rec["key"], "sha256": rec["hashes"][1],
            "station": code, "track": "cam0", "camera": "cam0"}


def fill(path: str, vals: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: vals[m.group(1)], path)


def _examiner_request(stand: Stand, method: str, path: str, vals: dict[str, str]):  # type: ignore[no-untyped-def]
    headers = {**stand.user("examiner"), "Accept": "application/json"}
    body = None
    if path.endswith("/ws"):
        headers |= WS
    if method == "POST":
        ev = mark_event(vals["attempt_id"], vals["station"], 5, reason="idor")
        body_obj = {k: v for k, v in ev.items() if k not in ("station_id", "attempt_id", "examiner")}
        if path.endswith("/finalise"):
            body_obj |= {"kind": "finalise", "item": None, "done": None, "reason": None}
        body = json.dumps(body_obj).encode()
        headers["Content-Type"] = "application/json"
    return stand.request(method, fill(path, vals), headers, body)


@pytest.mark.parametrize(("method", "path"), SCOPED, ids=[f"{m} {p}" for m, p in SCOPED])
def test_examiner_cannot_reach_an_unassigned_stations_attempt_or_media(
    stand: Stand, method: str, path: str
) -> None:
    theirs = values(stand, "S2")
    reply = _examiner_request(stand, method, path, theirs)
    assert reply.status in (403, 404), (reply.status, reply.body[:200])
    rec = stand.recordings["S2"]
    for secret in [*rec["hashes"], *rec["events"], *(p[:64] for p in rec["parts"][1:])]:
        needle = secret.encode() if isinstance(secret, str) else secret
        assert needle not in reply.body
    if method == "POST":
        events = stand.request("GET", f"/api/attempts/{rec['attempt']}/marks", stand.user("archivist")).json()
        assert all(e["source"] != "user:examiner" for e in events["events"])


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p in SCOPED if m == "GET" and "/live/" not in p],
                         ids=[f"control {m} {p}" for m, p in SCOPED if m == "GET" and "/live/" not in p])
def test_the_same_request_on_the_assigned_station_works(stand: Stand, method: str, path: str) -> None:
    """The control: what was refused above is the scope check, not a route that refuses everything."""
    reply = _examiner_request(stand, method, path, values(stand, "S1"))
    assert reply.status in (200, 206), (reply.status, reply.body[:200])


MISSING = {"attempt_id": "att-none", "key": "rec-none", "sha256": "0" * 64, "station": "S9"}


def _shape(reply, vals: dict[str, str]) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    """Status and body with the names from the URL blanked: what is left is what the answer tells."""
    body = reply.body
    for name in MISSING:
        body = body.replace(vals[name].encode(), b"{" + name.encode() + b"}")
    return reply.status, body


@pytest.mark.parametrize(("method", "path"), SCOPED, ids=[f"oracle {m} {p}" for m, p in SCOPED])
def test_an_unassigned_object_reads_exactly_like_a_missing_one(stand: Stand, method: str, path: str) -> None:
    """No existence oracle: S2's attempt, recording, media hash or station (which exist) answer the examiner
    with the same status and body, names aside, as ones that do not exist."""
    theirs = values(stand, "S2")
    missing = theirs | MISSING
    existing = _shape(_examiner_request(stand, method, path, theirs), theirs)
    absent = _shape(_examiner_request(stand, method, path, missing), missing)
    assert existing == absent, (existing, absent)
    assert existing[0] in (403, 404), existing


def test_examiner_cannot_fetch_another_attempts_recording_through_their_own_attempt(stand: Stand) -> None:
    """/attempts/{mine}/recordings/{theirs}/cam0: the recording must belong to the attempt named."""
    reply = stand.request("GET", f"/attempts/att-s1/recordings/{stand.recordings['S2']['key']}/cam0",
                          stand.user("examiner"))
    assert reply.status in (403, 404), reply.status
    assert stand.recordings["S2"]["parts"][0][:200] not in reply.body


GUESSES = ["rec-1", "rec-s3", "REC-S2", "rec-s2%20", "rec-s2%00", "rec-s%32", "rec-s2.", "rec-s2/..", "*", "%"]


@pytest.mark.parametrize("guess", GUESSES)
def test_guessed_recording_keys_reveal_nothing(stand: Stand, guess: str) -> None:
    for role in ("examiner", "observer"):
        reply = stand.request("GET", f"/api/recordings/{guess}", stand.user(role))
        if unquote(guess) == "rec-s2" and role == "observer":  # an encoding of a key observers may see
            assert reply.status == 200
            continue
        assert reply.status in (400, 403, 404), (role, guess, reply.status)
        assert b"sha256" not in reply.body and b"fragments" not in reply.body


def _hash_guesses(stand: Stand) -> list[str]:
    s2 = stand.recordings["S2"]["hashes"][1]
    return [hashlib.sha256(b"").hexdigest(), "0" * 64, "f" * 64, s2.upper(), s2[:63], s2 + "0", f" {s2}",
            s2[:32], s2.replace(s2[0], "%" + format(ord(s2[0]), "02x"), 1), "../" + s2[3:]]


@pytest.mark.parametrize("index", range(10))
def test_guessed_media_hashes_reveal_nothing(stand: Stand, index: int) -> None:
    guess = _hash_guesses(stand)[index]
    for role in ("examiner", "observer"):
        reply = stand.request("GET", f"/api/media/{guess}", stand.user(role))
        if reply.status == 200:  # only the exact hash of a fragment the role may see
            assert role == "observer" and unquote(guess) in stand.recordings["S2"]["hashes"]
            continue
        assert reply.status in (400, 403, 404), (role, guess, reply.status)
        assert all(p[:64] not in reply.body for p in stand.recordings["S2"]["parts"])


def test_a_review_link_opens_its_own_attempt_only(stand: Stand) -> None:
    made = stand.json_request("POST", "/api/attempts/att-s1/review-links", {"reviewer": "Апелляция", "minutes": 5},
                              stand.user("admin"))
    assert made.status == 201, made.body
    link = made.json()
    url = link["url"]
    own = stand.request("GET", f"{url}/recordings/rec-s1/cam0")
    assert own.status in (200, 206) and own.body.startswith(stand.recordings["S1"]["parts"][0][:64])
    for key in ("rec-s2", "rec-s1-tus", "..%2frec-s2", "rec-s2%00"):
        reply = stand.request("GET", f"{url}/recordings/{key}/cam0")
        assert reply.status in (400, 404), (key, reply.status)
        assert stand.recordings["S2"]["parts"][0][:64] not in reply.body
    assert stand.request("DELETE", f"/api/review-links/{link['id']}", stand.user("admin")).status == 200
    assert stand.request("GET", url).status in (404, 410)
    assert stand.request("GET", f"{url}/recordings/rec-s1/cam0").status in (404, 410)

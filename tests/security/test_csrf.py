"""CSRF: every state-changing user route, sent with a valid session cookie of a role allowed to use it but
without the session's own CSRF token (missing, wrong, another session's, in the wrong place, a cross-origin
form, a text/plain "JSON" post). Each must be refused by the CSRF check before the handler runs.
The URLs name real things (S1's recording, attempt and token), so a request that got through would change
something that the next assertion sees."""

from __future__ import annotations

import re

import pytest

from tests.server.test_route_matrix import EXPECTED, PLACEHOLDERS, USERS

from .conftest import Stand

CATEGORY = "CSRF"

UNSAFE = sorted(
    (m, p, sorted(a & USERS)[0])
    for (m, p), a in EXPECTED.items()
    if m in ("POST", "PUT", "PATCH", "DELETE") and a & USERS and None not in a
)
REAL = {**PLACEHOLDERS, "key": "rec-s1", "attempt_id": "att-s1", "code": "S1", "login": "observer", "token_id": "1"}


def real(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: REAL[m.group(1)], path)


_LOGIN_TOKEN: dict[str, str] = {}  # one login page's double-submit token, fetched once


def variants(stand: Stand, role: str) -> dict[str, tuple[dict[str, str], str, bytes]]:
    cookie, token = stand.sessions[role]
    other = stand.sessions["examiner2" if role != "examiner2" else "observer"][1]
    if "login" not in _LOGIN_TOKEN:
        _LOGIN_TOKEN["login"] = stand.request("GET", "/login").headers["X-CSRF-Token"]
    login_token = _LOGIN_TOKEN["login"]
    base = {"Cookie": f"osce_session={cookie}"}
    js = "application/json"
    return {
        "no token": (base, js, b"{}"),
        "empty token": ({**base, "X-CSRF-Token": ""}, js, b"{}"),
        "wrong token": ({**base, "X-CSRF-Token": "A" * len(token)}, js, b"{}"),
        "another session's token": ({**base, "X-CSRF-Token": other}, js, b"{}"),
        "the login page's token": (
            {"Cookie": f"osce_session={cookie}; osce_login_csrf={login_token}", "X-CSRF-Token": login_token},
            js, b"{}"),
        "token as a cookie": ({"Cookie": f"osce_session={cookie}; csrf_token={token}"}, js, b"{}"),
        "token in the query": (base, js, b"{}"),  # the query is added below
        "cross-origin form": ({**base, "Origin": "https://evil.example", "Referer": "https://evil.example/x"},
                              "application/x-www-form-urlencoded", b"code=EVIL&name=evil&reason=x"),
        "cross-origin multipart": ({**base, "Origin": "https://evil.example"}, "multipart/form-data; boundary=zz",
                                   b'--zz\r\nContent-Disposition: form-data; name="code"\r\n\r\nEVIL\r\n--zz--\r\n'),
        "text/plain JSON": ({**base, "Origin": "null"}, "text/plain", b'{"code": "EVIL", "name": "x"}'),
    }


VARIANTS = ["no token", "empty token", "wrong token", "another session's token", "the login page's token",
            "token as a cookie", "token in the query", "cross-origin form", "cross-origin multipart",
            "text/plain JSON"]
CASES = [(m, p, role, v) for m, p, role in UNSAFE for v in VARIANTS]


@pytest.mark.parametrize(("method", "path", "role", "variant"), CASES,
                         ids=[f"{m} {p} [{v}]" for m, p, _, v in CASES])
def test_state_change_without_the_sessions_csrf_token_is_refused(
    stand: Stand, method: str, path: str, role: str, variant: str
) -> None:
    headers, content_type, body = variants(stand, role)[variant]
    target = real(path)
    if variant == "token in the query":
        target += f"?csrf_token={stand.sessions[role][1]}&X-CSRF-Token={stand.sessions[role][1]}"
    reply = stand.request(method, target, {**headers, "Content-Type": content_type, "Accept": "application/json"},
                          body)
    assert reply.status == 403, (reply.status, reply.body[:300])
    assert "CSRF" in reply.error


def test_the_refused_requests_changed_nothing(stand: Stand) -> None:
    """Run after the CSRF cases (same module): S1's recording, its attempt's marks and tokens are intact."""
    observer = stand.user("observer")
    rec = stand.request("GET", "/api/recordings/rec-s1", observer)
    assert rec.status == 200 and len(rec.json()["fragments"]) == len(stand.recordings["S1"]["hashes"])
    marks = stand.request("GET", "/api/attempts/att-s1/marks", stand.user("archivist")).json()["events"]
    assert {e["event_id"] for e in marks} >= set(stand.recordings["S1"]["events"])
    assert all(e["source"].startswith("station:") for e in marks)
    specialties = stand.request("GET", "/api/specialties", stand.user("admin")).json()["specialties"]
    assert all(sp["code"] != "EVIL" for sp in specialties)
    assert stand.post_marks("S1", []).status == 200  # S1's token was not revoked
    for role in ("admin", "examiner", "archivist", "observer"):  # no refused request ended a session
        assert stand.request("GET", "/api/me", stand.user(role)).status == 200


LOGIN_CASES = {
    "no login token at all": ({}, None),
    "header without the cookie": ({}, "header"),
    "cookie without the header": ({"cookie": True}, None),
    "mismatched cookie and header": ({"cookie": "B" * 43}, "header"),
    "cross-origin form without the field": ({"cookie": True, "form": True}, None),
}


@pytest.mark.parametrize("case", sorted(LOGIN_CASES))
def test_login_csrf_is_checked_before_the_password(stand: Stand, case: str) -> None:
    """Login CSRF (signing a victim into the attacker's account) needs the double-submit token."""
    opts, header = LOGIN_CASES[case]
    token = stand.request("GET", "/login").headers["X-CSRF-Token"]
    headers: dict[str, str] = {"Origin": "https://evil.example"}
    if opts.get("cookie"):
        headers["Cookie"] = f"osce_login_csrf={token if opts['cookie'] is True else opts['cookie']}"
    if header:
        headers["X-CSRF-Token"] = token
    if opts.get("form"):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = b"login=admin&password=correct+horse+battery"
    else:
        headers["Content-Type"] = "application/json"
        body = b'{"login": "admin", "password": "correct horse battery"}'
    reply = stand.request("POST", "/login", headers, body)
    assert reply.status == 403, (reply.status, reply.body[:200])
    assert "osce_session" not in reply.cookies()

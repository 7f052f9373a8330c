"""Authentication bypass: every non-public route without credentials, forged, expired and garbled session
cookies, and bearer tokens on the user routes, against the real server process."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest

from tests.server.test_route_matrix import ANON, EXPECTED, STATION, USERS, fill

from .conftest import PASSWORD, Stand

CATEGORY = "authentication bypass"

PROTECTED = sorted((m, p) for (m, p), allowed in EXPECTED.items() if ANON not in allowed)
USER_ONLY = sorted((m, p) for (m, p), allowed in EXPECTED.items() if STATION not in allowed and allowed & USERS
                   and ANON not in allowed)


def _send(stand: Stand, method: str, path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    body = b"{}" if method in ("POST", "PUT", "PATCH", "DELETE") else None
    headers = {"Accept": "application/json", **headers}
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    return stand.request(method, fill(path), headers, body)


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_protected_route_without_credentials_is_401(stand: Stand, method: str, path: str) -> None:
    reply = _send(stand, method, path, {})
    assert reply.status == 401, (reply.status, reply.body[:200])
    if method != "HEAD":
        assert reply.json()["error"]  # says what is missing; nothing of the resource


def test_an_html_page_without_credentials_goes_to_login_and_shows_nothing(stand: Stand) -> None:
    reply = stand.request("GET", "/", {"Accept": "text/html"})
    assert reply.status == 303 and reply.headers["Location"] == "/login"
    assert b"csrf" not in reply.body.lower()


def _past_session(stand: Stand) -> str:
    """A real session row of the observer that expired a second ago."""
    from sqlalchemy import select

    from review_server import auth
    from review_server.models import User

    def make(s):  # type: ignore[no-untyped-def]
        user = s.scalar(select(User).where(User.login == "observer"))
        token, row = auth.create_session(s, user, 3600)
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        return token

    return stand.db(make)


FORGED = {
    "random": lambda st: "A" * 43,
    "empty": lambda st: "",
    "long": lambda st: "x" * 4000,
    "quotes": lambda st: "\"' OR '1'='1",
    "non-ascii": lambda st: "сессия",
    "semicolon": lambda st: f"x; osce_session={st.sessions['admin'][0]}x",
    "truncated admin": lambda st: st.sessions["admin"][0][:-1],
    "admin + 1 char": lambda st: st.sessions["admin"][0] + "A",
    "admin upper-cased": lambda st: st.sessions["admin"][0].upper(),
    "the db's sha256 of it": lambda st: hashlib.sha256(st.sessions["admin"][0].encode()).hexdigest(),
    "the csrf token": lambda st: st.sessions["admin"][1],
    "a station token": lambda st: st.tokens["S1"],
    "login csrf cookie value": lambda st: st.request("GET", "/login").headers["X-CSRF-Token"],
    "expired": _past_session,
}


@pytest.mark.parametrize("kind", sorted(FORGED))
def test_forged_session_cookie_is_anonymous(stand: Stand, kind: str) -> None:
    cookie = FORGED[kind](stand)
    if not re.fullmatch(r"[\x21-\x7e]*", cookie):  # a browser would send it encoded; send the raw bytes too
        for raw in (cookie, cookie.encode().decode("latin-1")):
            reply = stand.request("GET", "/api/me", {"Cookie": f"osce_session={raw}"})
            assert reply.status in (400, 401)
        return
    headers = {"Cookie": f"osce_session={cookie}", "X-CSRF-Token": stand.sessions["admin"][1]}
    assert stand.request("GET", "/api/me", headers).status == 401
    made = stand.json_request("POST", "/api/specialties", {"code": "FORGED", "name": "x"}, headers)
    assert made.status == 401
    listed = stand.request("GET", "/api/specialties", stand.user("admin")).json()
    assert all(sp["code"] != "FORGED" for sp in listed["specialties"])


def test_a_disabled_users_session_dies_with_the_account(stand: Stand) -> None:
    admin = stand.user("admin")
    made = stand.json_request("POST", "/api/users", {"login": "leaver", "password": PASSWORD, "role": "admin"}, admin)
    assert made.status == 201
    reply = stand.login("leaver")
    cookie = reply.cookies()["osce_session"]
    headers = {"Cookie": f"osce_session={cookie}", "X-CSRF-Token": reply.json()["csrf_token"]}
    assert stand.request("GET", "/api/users", headers).status == 200
    assert stand.request("DELETE", "/api/users/leaver", admin).status == 200
    assert stand.request("GET", "/api/users", headers).status == 401
    assert stand.login("leaver").status == 401


BEARERS = {
    "session cookie as bearer": lambda st: f"Bearer {st.sessions['admin'][0]}",
    "csrf token as bearer": lambda st: f"Bearer {st.sessions['admin'][1]}",
    "station prefix only": lambda st: "Bearer osce_st_",
    "basic auth": lambda st: "Basic YWRtaW46Y29ycmVjdCBob3JzZSBiYXR0ZXJ5",  # admin:correct horse battery
    "lower-case scheme, forged": lambda st: "bearer osce_st_" + "A" * 43,
}


@pytest.mark.parametrize("kind", sorted(BEARERS))
def test_bearer_tokens_do_not_open_user_routes(stand: Stand, kind: str) -> None:
    header = BEARERS[kind](stand)
    let_through = []
    for method, path in USER_ONLY:
        reply = _send(stand, method, path, {"Authorization": header})
        if reply.status not in (401, 403):
            let_through.append((method, path, reply.status))
    assert let_through == []


def test_a_station_token_beside_an_admin_cookie_is_still_only_a_station(stand: Stand) -> None:
    """Authorization wins over the cookie, so a station cannot borrow a session (nor a session a station)."""
    headers = {**stand.user("admin"), **stand.station("S1")}
    assert stand.request("GET", "/api/users", headers).status == 403
    made = stand.json_request("POST", "/api/stations", {"code": "MIXED"}, headers)
    assert made.status == 403
    assert "MIXED" not in stand.request("GET", "/api/stations", stand.user("admin")).body.decode()


@pytest.mark.parametrize("token", ["A" * 43, "../../etc/passwd", "%2e%2e", "x" * 300, "' OR 1=1 --"])
def test_forged_review_link_tokens_show_nothing(stand: Stand, token: str) -> None:
    rec = stand.recordings["S1"]
    for target in (f"/review/{token}", f"/review/{token}/recordings/{rec['key']}/cam0"):
        reply = stand.request("GET", target)
        assert reply.status in (400, 404), (target, reply.status)
        assert rec["attempt"].encode() not in reply.body


@pytest.mark.parametrize("token", ["", "0" * 40, "9999999999.abc", "x" * 500])
def test_forged_signed_hls_urls_are_refused(stand: Stand, token: str) -> None:
    for leaf in ("index.m3u8", "init.mp4", "1.m4s", "master.m3u8", "ident.m3u8", "1.vtt"):
        reply = stand.request("GET", f"/live/S1/cam0/{leaf}?token={token}")
        assert reply.status in (401, 403), (leaf, reply.status)

"""Session fixation and session lifetime: a session id planted before login is never the one after it, a
login never upgrades someone else's session, logout ends the session on the server (a replayed cookie is
dead), and the cookie is out of reach of scripts and other sites."""

from __future__ import annotations

import pytest

from .conftest import Stand

CATEGORY = "session fixation"


def _sha(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def _session_rows(stand: Stand, cookie: str) -> int:
    from sqlalchemy import func, select

    from review_server.models import UserSession

    return stand.db(lambda s: s.scalar(select(func.count()).where(UserSession.token_sha256 == _sha(cookie))))


@pytest.mark.parametrize("planted", ["A" * 43, "attacker-chosen", "0"])
def test_a_planted_session_id_is_replaced_at_login(stand: Stand, planted: str) -> None:
    reply = stand.login("archivist", cookie=f"osce_session={planted}")
    assert reply.status == 200
    issued = reply.cookies()["osce_session"]
    assert issued != planted and len(issued) >= 40
    assert stand.request("GET", "/api/me", {"Cookie": f"osce_session={planted}"}).status == 401
    assert _session_rows(stand, planted) == 0  # the server never adopted the planted id


def test_logging_in_over_someone_elses_session_does_not_upgrade_it(stand: Stand) -> None:
    """The attacker plants their own live (observer) session in the victim's browser; the victim signs in
    as admin: the attacker's id stays an observer's, the admin session is a new id."""
    attacker = stand.login("observer")
    planted = attacker.cookies()["osce_session"]
    victim = stand.login("admin", cookie=f"osce_session={planted}")
    assert victim.status == 200 and victim.cookies()["osce_session"] != planted
    me = stand.request("GET", "/api/me", {"Cookie": f"osce_session={planted}"})
    assert me.status == 200 and me.json()["role"] == "observer"


def test_each_login_gets_a_new_session_and_csrf_token(stand: Stand) -> None:
    first, second = stand.login("observer"), stand.login("observer")
    assert first.cookies()["osce_session"] != second.cookies()["osce_session"]
    assert first.json()["csrf_token"] != second.json()["csrf_token"]
    # One session's CSRF token does not work with the other's cookie.
    headers = {"Cookie": f"osce_session={second.cookies()['osce_session']}",
               "X-CSRF-Token": first.json()["csrf_token"], "Content-Type": "application/json"}
    assert stand.request("POST", "/logout", headers, b"{}").status == 403


def test_logout_ends_the_session_on_the_server(stand: Stand) -> None:
    reply = stand.login("examiner")
    cookie, csrf = reply.cookies()["osce_session"], reply.json()["csrf_token"]
    headers = {"Cookie": f"osce_session={cookie}", "X-CSRF-Token": csrf, "Content-Type": "application/json"}
    assert _session_rows(stand, cookie) == 1
    out = stand.request("POST", "/logout", headers, b"{}")
    assert out.status == 200
    assert out.cookies().get("osce_session", "") == ""  # the browser is told to drop it...
    assert _session_rows(stand, cookie) == 0  # ...and the server forgot it: a copy of the cookie is dead
    for method, path in (("GET", "/api/me"), ("GET", "/api/attempts/att-s1/marks"), ("POST", "/logout")):
        assert stand.request(method, path, headers, b"{}" if method == "POST" else None).status == 401


def test_logout_without_the_csrf_token_does_not_end_the_session(stand: Stand) -> None:
    """Otherwise any site could sign users out (logout CSRF)."""
    reply = stand.login("observer")
    cookie = reply.cookies()["osce_session"]
    form = {"Cookie": f"osce_session={cookie}", "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example"}
    assert stand.request("POST", "/logout", form, b"").status == 403
    assert stand.request("GET", "/api/me", {"Cookie": f"osce_session={cookie}"}).status == 200


def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_site(stand: Stand) -> None:
    reply = stand.login("observer")
    header = next(h for h in reply.headers.get_all("Set-Cookie") if h.startswith("osce_session="))
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in header.split(";")[1:]}
    assert "httponly" in attrs
    assert attrs["samesite"].lower() == "samesite=strict"
    assert attrs["path"] == "Path=/"
    assert "domain" not in attrs  # host-only: no sibling domain receives it


def test_the_session_id_is_never_echoed_in_a_body_or_url(stand: Stand) -> None:
    reply = stand.login("admin")
    cookie = reply.cookies()["osce_session"]
    headers = {"Cookie": f"osce_session={cookie}", "Accept": "text/html"}
    for path in ("/", "/api/me", "/live"):
        page = stand.request("GET", path, headers)
        assert cookie.encode() not in page.body, path
        assert cookie not in page.headers.get("Location", "")

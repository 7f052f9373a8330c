"""Accounts and access: Argon2 passwords, session cookies, CSRF, login throttling, station tokens."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from review_server import audit, auth
from review_server.models import AuditEvent, User, UserSession
from review_server.web import CONFIG, THROTTLE

from .conftest import PASSWORD, Api, World


async def test_passwords_are_argon2id_and_never_stored_plain(api: Api) -> None:
    api.add_user("alice", "observer")
    stored = api.run(lambda s: s.scalar(select(User.password_hash).where(User.login == "alice")))
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert auth.check_password(stored, PASSWORD)
    assert not auth.check_password(stored, PASSWORD + "x")


async def test_login_sets_a_secure_httponly_strict_cookie_and_is_audited(api: Api) -> None:
    api.add_user("alice", "observer")
    resp = await api.login("alice")
    assert resp.status == 200
    body = await resp.json()
    assert body["role"] == "observer" and len(body["csrf_token"]) > 20
    cookie = resp.cookies[auth.SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    me = await api.client.get("/api/me")
    assert (await me.json())["login"] == "alice"
    # Only the SHA-256 of the session token is in the database.
    assert api.run(lambda s: s.scalar(select(UserSession.token_sha256))) == auth.sha256_hex(cookie.value)
    actions = api.run(lambda s: list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))))
    assert actions[-1] == audit.LOGIN


async def test_cookies_are_secure_unless_configured_for_plain_http(config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aiohttp.test_utils import TestClient, TestServer

    from review_server.app import create_app
    from review_server.storage import LocalStorage

    config.insecure_cookies = False
    app = create_app(config, storage=LocalStorage(tmp_path / "m"))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/login")
        assert "Secure" in resp.headers["Set-Cookie"]


async def test_wrong_password_unknown_user_and_missing_login_csrf(api: Api) -> None:
    api.add_user("alice", "observer")
    assert (await api.login("alice", "wrong password!")).status == 401
    assert (await api.login("nobody")).status == 401
    resp = await api.client.post("/login", json={"login": "alice", "password": PASSWORD})
    assert resp.status == 403 and "CSRF" in (await resp.json())["error"]
    assert (await api.client.get("/api/me")).status == 401
    failed = api.run(lambda s: s.scalar(select(func.count()).where(AuditEvent.action == audit.LOGIN_FAILED)))
    assert failed == 2


async def test_login_throttling_refuses_even_the_right_password(api: Api) -> None:
    api.add_user("alice", "observer")
    limit = api.app[CONFIG].login_max_failures_per_account
    for _ in range(limit):
        assert (await api.login("alice", "wrong password!")).status == 401
    resp = await api.login("alice")
    assert resp.status == 429
    assert "Retry-After" in resp.headers
    assert (await api.client.get("/api/me")).status == 401
    # Another account from the same address is not locked by alice's failures (below the per-address limit).
    api.add_user("bob", "observer")
    assert (await api.login("bob")).status == 200


async def test_form_posts_need_the_session_csrf_token(world: World) -> None:
    session = world.api.session_for("admin")
    cookie = {"Cookie": f"{auth.SESSION_COOKIE}={session[0]}"}
    client = world.api.client
    resp = await client.post("/api/specialties", json={"code": "CARD", "name": "Cardiology"}, headers=cookie)
    assert resp.status == 403 and "CSRF" in (await resp.json())["error"]
    bad = {**cookie, auth.CSRF_HEADER: "x" * 43}
    assert (await client.post("/api/specialties", json={"code": "CARD", "name": "C"}, headers=bad)).status == 403
    assert (await client.get("/api/specialties", headers=cookie)).status == 200  # reads need no token
    ok = await client.post("/api/specialties", json={"code": "CARD", "name": "C"}, headers=Api.user_headers(session))
    assert ok.status == 201
    # A form post carries the token as a field.
    form = await client.post("/logout", data={"csrf_token": session[1]}, headers=cookie)
    assert form.status == 200
    assert (await client.get("/api/me", headers=cookie)).status == 401


async def test_logout_ends_the_session(api: Api) -> None:
    api.add_user("alice", "observer")
    body = await (await api.login("alice")).json()
    assert (await api.client.post("/logout", headers={auth.CSRF_HEADER: body["csrf_token"]})).status == 200
    assert (await api.client.get("/api/me")).status == 401
    assert api.run(lambda s: s.scalar(select(func.count()).select_from(UserSession))) == 0


async def test_disabled_user_loses_sessions_and_cannot_log_in(world: World) -> None:
    client = world.api.client
    observer = world.headers("observer")
    assert (await client.get("/api/me", headers=observer)).status == 200
    resp = await client.delete("/api/users/observer", headers=world.headers("admin"))
    assert resp.status == 200 and (await resp.json())["active"] is False
    assert (await client.get("/api/me", headers=observer)).status == 401
    assert (await world.api.login("observer")).status == 401


async def test_admin_adds_users_and_the_new_user_can_log_in(world: World) -> None:
    client = world.api.client
    resp = await client.post(
        "/api/users",
        json={"login": "ivanov", "password": PASSWORD, "role": "examiner", "display_name": "Иванов И. И."},
        headers=world.headers("admin"),
    )
    assert resp.status == 201
    again = await client.post(
        "/api/users", json={"login": "ivanov", "password": PASSWORD, "role": "examiner"}, headers=world.headers("admin")
    )
    assert again.status == 409
    short = await client.post(
        "/api/users", json={"login": "petrov", "password": "short", "role": "admin"}, headers=world.headers("admin")
    )
    assert short.status == 422 and (await short.json())["where"] == "password"
    assert (await world.api.login("ivanov")).status == 200


async def test_station_tokens_authenticate_until_revoked(world: World) -> None:
    client = world.api.client
    admin = world.headers("admin")
    resp = await client.post("/api/stations/S1/tokens", headers=admin)
    assert resp.status == 201
    issued = await resp.json()
    token, token_id = issued["token"], issued["token_id"]
    station = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/api/marks", json={"events": []}, headers=station)).status == 200
    listed = await (await client.get("/api/stations", headers=admin)).json()
    s1 = next(st for st in listed["stations"] if st["code"] == "S1")
    assert token not in str(listed) and any(t["id"] == token_id for t in s1["tokens"])
    assert (await client.delete(f"/api/stations/S1/tokens/{token_id}", headers=admin)).status == 200
    refused = await client.post("/api/marks", json={"events": []}, headers=station)
    assert refused.status == 401 and "revoked" in (await refused.json())["error"]
    # The station's other token still works; a token of S2 cannot be revoked through S1.
    assert (await client.post("/api/marks", json={"events": []}, headers=world.headers("station"))).status == 200
    assert (await client.delete("/api/stations/S2/tokens/1", headers=admin)).status == 404


async def test_malformed_authorization_headers_are_401(world: World) -> None:
    for header in ("Basic abc", "Bearer ", "Bearer osce_st_nope", "Bearer " + "x" * 500):
        resp = await world.api.client.post("/api/marks", json={"events": []}, headers={"Authorization": header})
        assert resp.status == 401, header


async def test_the_html_login_form_round_trip(api: Api) -> None:
    api.add_user("alice", "admin")
    page = await api.client.get("/login?lang=en")
    assert page.status == 200 and 'name="csrf_token"' in await page.text()
    token = page.headers[auth.CSRF_HEADER]
    bad = await api.client.post("/login", data={"login": "alice", "password": "wrong password!", "csrf_token": token})
    assert bad.status == 401 and "Wrong user name or password" not in await bad.text()  # Russian by default
    resp = await api.client.post(
        "/login?lang=en", data={"login": "alice", "password": PASSWORD, "csrf_token": token}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/?lang=en"
    index = await api.client.get("/?lang=en", headers={"Accept": "text/html"})
    html = await index.text()
    assert index.status == 200 and "Signed in as" in html and "alice" in html


async def test_throttling_per_address_across_accounts(api: Api) -> None:
    api.app[THROTTLE].max_per_ip = 3
    for i in range(3):
        assert (await api.login(f"nobody{i}", "wrong password!")).status == 401
    api.add_user("carol", "observer")
    assert (await api.login("carol")).status == 429
    throttled = api.run(lambda s: s.scalar(select(func.count()).where(AuditEvent.action == audit.LOGIN_THROTTLED)))
    assert throttled == 1


async def test_expired_sessions_are_refused(world: World) -> None:
    session = world.api.session_for("observer")
    headers = Api.user_headers(session)
    assert (await world.api.client.get("/api/me", headers=headers)).status == 200

    def expire(s):  # type: ignore[no-untyped-def]
        row = s.scalar(select(UserSession).where(UserSession.token_sha256 == auth.sha256_hex(session[0])))
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    world.api.run(expire)
    assert (await world.api.client.get("/api/me", headers=headers)).status == 401


async def test_password_hashes_are_upgraded_at_login_when_the_cost_changes(api: Api) -> None:
    api.add_user("alice", "observer")
    old = api.run(lambda s: s.scalar(select(User.password_hash).where(User.login == "alice")))
    assert "m=8,t=1" in old
    auth.configure_passwords(2, 16, 1)
    try:
        assert (await api.login("alice")).status == 200
        new = api.run(lambda s: s.scalar(select(User.password_hash).where(User.login == "alice")))
        assert "m=16,t=2" in new and auth.check_password(new, PASSWORD)
    finally:
        auth.configure_passwords(1, 8, 1)


async def test_personal_details_are_admin_only_and_their_views_audited(world: World) -> None:
    admin = world.headers("admin")
    body = {"accreditation_number": "2026-0042", "personal": {"last_name": "Петрова", "first_name": "Анна"}}
    assert (await world.api.client.post("/api/candidates", json=body, headers=admin)).status == 201
    listed = await world.api.client.get("/api/candidates", headers=world.headers("archivist"))
    assert "Петрова" not in await listed.text()
    resp = await world.api.client.get("/api/candidates/2026-0042/personal", headers=admin)
    assert (await resp.json())["personal"] == {"last_name": "Петрова", "first_name": "Анна", "middle_name": ""}
    last = world.api.run(lambda s: s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)))
    assert (last.action, last.target, last.actor) == (audit.PERSONAL_VIEW, "2026-0042", "user:admin")


async def test_examiner_assignment_can_be_limited_to_one_day(world: World) -> None:
    from review_server.models import Attempt, ExamDay, ExaminerAssignment, Station

    def setup(s):  # type: ignore[no-untyped-def]
        d1, d2 = ExamDay(day=dt.date(2026, 6, 1)), ExamDay(day=dt.date(2026, 6, 2))
        s.add_all([d1, d2])
        s.flush()
        s2 = s.scalar(select(Station.id).where(Station.code == "S2"))
        uid = s.scalar(select(User.id).where(User.login == "examiner"))
        s.add(ExaminerAssignment(user_id=uid, station_id=s2, exam_day_id=d1.id))
        s.add(Attempt(id="on-day-1", station_id=s2, exam_day_id=d1.id))
        s.add(Attempt(id="on-day-2", station_id=s2, exam_day_id=d2.id))

    world.api.run(setup)
    examiner = world.headers("examiner")
    assert (await world.api.client.get("/api/attempts/on-day-1/marks", headers=examiner)).status == 200
    refused = await world.api.client.get("/api/attempts/on-day-2/marks", headers=examiner)
    # Outside the assignment reads exactly like a missing attempt: a 403 would say that it exists.
    assert refused.status == 404
    assert await refused.json() == {"error": "no attempt 'on-day-2'", "where": "URL attempt_id"}
    # Archivists are not scoped.
    assert (
        await world.api.client.get("/api/attempts/on-day-2/marks", headers=world.headers("archivist"))
    ).status == 200

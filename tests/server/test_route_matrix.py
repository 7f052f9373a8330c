"""Every route of the app, walked with every role, a station token and nobody: the allowed set is exact.

The expected table is written out here by hand, independently of roles.PERMISSIONS, and must name
exactly the app's routes: a new route fails this test until someone decides who may use it.
"""

from __future__ import annotations

import re

from review_server.roles import permission_of

from .conftest import ROLES, World

ANON = None
ADMIN, EXAMINER, OBSERVER, ARCHIVIST, STATION = "admin", "examiner", "observer", "archivist", "station"
EVERYONE = frozenset({ANON, *ROLES, STATION})
USERS = frozenset(ROLES)
VIEWERS = frozenset({OBSERVER, ARCHIVIST, EXAMINER})  # recordings.view: live and recorded video

EXPECTED: dict[tuple[str, str], frozenset[str | None]] = {
    ("GET", "/health"): EVERYONE,
    ("GET", "/login"): EVERYONE,
    ("POST", "/login"): EVERYONE,
    ("POST", "/logout"): USERS,
    ("GET", "/"): USERS,
    ("GET", "/api/me"): USERS,
    ("GET", "/api/users"): frozenset({ADMIN}),
    ("POST", "/api/users"): frozenset({ADMIN}),
    ("DELETE", "/api/users/{login}"): frozenset({ADMIN}),
    ("GET", "/api/stations"): frozenset({ADMIN}),
    ("POST", "/api/stations"): frozenset({ADMIN}),
    ("POST", "/api/stations/{code}/tokens"): frozenset({ADMIN}),
    ("DELETE", "/api/stations/{code}/tokens/{token_id}"): frozenset({ADMIN}),
    ("GET", "/api/exam-days"): USERS,
    ("POST", "/api/exam-days"): frozenset({ADMIN}),
    ("GET", "/api/specialties"): USERS,
    ("POST", "/api/specialties"): frozenset({ADMIN}),
    ("GET", "/api/tasks"): USERS,
    ("POST", "/api/tasks"): frozenset({ADMIN}),
    ("POST", "/api/assignments"): frozenset({ADMIN}),
    ("GET", "/api/candidates"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/api/candidates"): frozenset({ADMIN}),
    ("GET", "/api/candidates/{number}/personal"): frozenset({ADMIN}),
    ("GET", "/api/audit/verify"): frozenset({ADMIN}),
    ("PUT", "/api/recordings/{key}/tracks/{track}/fragments/{seq}"): frozenset({STATION}),
    ("GET", "/api/recordings/{key}"): frozenset({OBSERVER, ARCHIVIST, EXAMINER}),
    ("DELETE", "/api/recordings/{key}"): frozenset({ADMIN}),
    ("GET", "/api/media/{sha256}"): frozenset({OBSERVER, ARCHIVIST, EXAMINER}),
    ("POST", "/api/marks"): frozenset({STATION}),
    ("PUT", "/api/attempts/{attempt_id}/cpr-figures"): frozenset({STATION}),
    ("GET", "/api/attempts/{attempt_id}/marks"): frozenset({EXAMINER, ARCHIVIST}),
    ("POST", "/api/attempts/{attempt_id}/marks"): frozenset({EXAMINER}),
    ("GET", "/api/attempts/{attempt_id}/sheets"): frozenset({EXAMINER, ARCHIVIST}),
    ("POST", "/api/attempts/{attempt_id}/finalise"): frozenset({EXAMINER}),
    ("GET", "/api/live/streams"): VIEWERS,
    ("GET", "/api/live/{station}/{camera}/publish"): frozenset({STATION}),
    ("GET", "/api/live/{station}/{camera}/ws"): VIEWERS,
    ("GET", "/api/live/{station}/{camera}/hls"): VIEWERS,
    ("GET", "/live"): VIEWERS,
    ("GET", "/live/assets/{name}"): VIEWERS,
    # Public at the middleware so that ffmpeg can open them with a signed ?token=; a session works too.
    ("GET", "/live/{station}/{camera}/index.m3u8"): VIEWERS,
    ("GET", "/live/{station}/{camera}/init.mp4"): VIEWERS,
    ("GET", "/live/{station}/{camera}/{seq}.m4s"): VIEWERS,
    ("GET", "/live/{station}/{camera}/master.m3u8"): VIEWERS,
    ("GET", "/live/{station}/{camera}/ident.m3u8"): VIEWERS,
    ("GET", "/live/{station}/{camera}/{seq}.vtt"): VIEWERS,
    ("GET", "/api/stations/{code}/schedule"): frozenset({STATION}),
    ("PUT", "/api/stations/{code}/health-events"): frozenset({STATION}),
    ("GET", "/api/stations/{code}/marks"): frozenset({STATION}),
    ("GET", "/api/stations/{code}/roster"): frozenset({STATION}),
    ("POST", "/api/stations/{code}/tablet-credentials"): frozenset({ADMIN}),
    ("GET", "/api/stations/{code}/tablet-credentials"): frozenset({ADMIN}),
    ("DELETE", "/api/tablet-credentials/{key_id}"): frozenset({ADMIN}),
    ("GET", "/api/live/{station}/attempt"): VIEWERS,
    ("OPTIONS", "/api/tus"): frozenset({STATION}),
    ("POST", "/api/tus"): frozenset({STATION}),
    ("HEAD", "/api/tus/{upload_id}"): frozenset({STATION}),
    ("PATCH", "/api/tus/{upload_id}"): frozenset({STATION}),
    ("DELETE", "/api/tus/{upload_id}"): frozenset({STATION}),
    ("GET", "/api/archive/search"): frozenset({ARCHIVIST}),
    ("GET", "/api/archive/attempts/{attempt_id}/export"): frozenset({ARCHIVIST}),
    ("POST", "/api/export-requests"): frozenset({ARCHIVIST}),
    ("GET", "/api/export-requests"): frozenset({ARCHIVIST}),
    ("GET", "/api/export-requests/{request_id}"): frozenset({ARCHIVIST}),
    ("POST", "/api/export-requests/{request_id}/attempts"): frozenset({ARCHIVIST}),
    ("POST", "/api/export-requests/{request_id}/exports"): frozenset({ARCHIVIST}),
    ("GET", "/api/exports/{package_id}/download"): frozenset({ARCHIVIST}),
    ("GET", "/api/exports/{package_id}"): frozenset({ARCHIVIST}),  # export progress
    ("POST", "/api/exports/{package_id}/resume"): frozenset({ARCHIVIST}),
    ("GET", "/export-requests/{request_id}"): frozenset({ARCHIVIST}),  # request page with progress bars
    ("GET", "/exports/assets/{name}"): frozenset({ARCHIVIST}),
    ("GET", "/api/reports/quality"): frozenset({ADMIN, ARCHIVIST}),  # station quality report
    ("GET", "/reports/quality"): frozenset({ADMIN, ARCHIVIST}),
    ("GET", "/api/export-key"): EVERYONE,  # the key that signs export packages is published
    ("GET", "/api/protocols"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/api/checklist-versions"): frozenset({ADMIN}),
    ("GET", "/api/archive/attempts"): frozenset({ARCHIVIST}),
    ("GET", "/api/retention-policies"): frozenset({ADMIN}),
    ("PUT", "/api/retention-policies/{code}"): frozenset({ADMIN}),
    ("GET", "/api/attempts/{attempt_id}/holds"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/api/attempts/{attempt_id}/holds"): frozenset({ADMIN, ARCHIVIST}),
    ("DELETE", "/api/holds/{hold_id}"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/api/attempts/{attempt_id}/review-links"): frozenset({ADMIN}),
    ("DELETE", "/api/review-links/{link_id}"): frozenset({ADMIN}),
    ("GET", "/review/{token}"): EVERYONE,  # the unguessable, expiring token is the credential (checked inside)
    ("GET", "/review/{token}/recordings/{key}/{track}"): EVERYONE,
    ("GET", "/attempts/{attempt_id}"): frozenset({EXAMINER, ARCHIVIST}),  # attempt page: video and marks
    ("GET", "/attempts/{attempt_id}/recordings/{key}/{track}"): frozenset({EXAMINER, ARCHIVIST}),
    ("GET", "/archive"): frozenset({ARCHIVIST}),
    # Readiness before the day: the admin's page, runs and acts; the station's side of the check (long poll, report).
    ("GET", "/admin/readiness"): frozenset({ADMIN}),
    ("GET", "/admin/readiness/runs/{run_id}"): frozenset({ADMIN}),
    ("GET", "/admin/readiness/runs/{run_id}/act.pdf"): frozenset({ADMIN}),
    ("GET", "/api/readiness"): frozenset({ADMIN}),
    ("POST", "/api/readiness/runs"): frozenset({ADMIN}),
    ("GET", "/api/readiness/runs/{run_id}"): frozenset({ADMIN}),
    ("GET", "/api/stations/{code}/readiness/next"): frozenset({STATION}),
    ("POST", "/api/stations/{code}/readiness/{check_id}/progress"): frozenset({STATION}),
    ("POST", "/api/stations/{code}/readiness/{check_id}/report"): frozenset({STATION}),
    # Exam day setup (admin) and, after the day, completeness (admin, archivist) and closing (admin).
    ("GET", "/admin/days"): frozenset({ADMIN}),
    ("POST", "/admin/days"): frozenset({ADMIN}),
    ("GET", "/admin/days/{day_id}"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/plan"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/stations"): frozenset({ADMIN}),
    ("GET", "/admin/days/{day_id}/candidates"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/candidates"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/candidates/map"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/schedule"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/slots"): frozenset({ADMIN}),
    ("GET", "/admin/days/{day_id}/slots/{slot_id}"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/slots/{slot_id}"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/slots/{slot_id}/delete"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/fix"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/examiners"): frozenset({ADMIN}),
    ("POST", "/admin/days/{day_id}/examiners/{assignment_id}/delete"): frozenset({ADMIN}),
    ("GET", "/admin/days/{day_id}/route-sheets/{kind}.pdf"): frozenset({ADMIN}),
    ("GET", "/days/{day_id}/completeness"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/days/{day_id}/media-check"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/days/{day_id}/close"): frozenset({ADMIN}),
    ("POST", "/days/{day_id}/reopen"): frozenset({ADMIN}),
    # The pages' shared CSS and JS (no inline script or style under the CSP); public: the login and review-link
    # pages have no session, and the files are the repository's own.
    ("GET", "/static/{name}"): EVERYONE,
    # The stations' status reports and the centre console (issue 18): each role's own pages, forms posted here.
    ("PUT", "/api/stations/{code}/status"): frozenset({STATION}),
    ("GET", "/admin"): frozenset({ADMIN}),  # the stations board
    ("GET", "/admin/board"): frozenset({ADMIN}),  # its rows, fetched again by the page
    ("GET", "/admin/users"): frozenset({ADMIN}),
    ("POST", "/admin/users"): frozenset({ADMIN}),
    ("POST", "/admin/users/{login}/active"): frozenset({ADMIN}),
    ("POST", "/admin/users/{login}/role"): frozenset({ADMIN}),
    ("POST", "/admin/users/{login}/password"): frozenset({ADMIN}),
    ("POST", "/admin/users/{login}/assignments"): frozenset({ADMIN}),
    ("POST", "/admin/assignments/{assignment_id}/delete"): frozenset({ADMIN}),
    ("POST", "/admin/tablet-credentials"): frozenset({ADMIN}),
    ("POST", "/admin/tablet-credentials/{key_id}/revoke"): frozenset({ADMIN}),
    ("GET", "/admin/stations"): frozenset({ADMIN}),
    ("POST", "/admin/stations"): frozenset({ADMIN}),
    ("POST", "/admin/stations/{code}/tokens"): frozenset({ADMIN}),
    ("POST", "/admin/stations/{code}/tokens/{token_id}/revoke"): frozenset({ADMIN}),
    ("GET", "/admin/retention"): frozenset({ADMIN}),
    ("POST", "/admin/retention/{code}"): frozenset({ADMIN}),
    ("GET", "/admin/audit"): frozenset({ADMIN}),
    ("POST", "/admin/audit/anchor"): frozenset({ADMIN}),
    ("GET", "/holds"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/holds"): frozenset({ADMIN, ARCHIVIST}),
    ("POST", "/holds/{hold_id}/release"): frozenset({ADMIN, ARCHIVIST}),
    ("GET", "/requests"): frozenset({ARCHIVIST}),  # Ministry requests
    ("GET", "/requests/rows"): frozenset({ARCHIVIST}),
    ("POST", "/requests"): frozenset({ARCHIVIST}),
    ("POST", "/requests/{request_id}/build"): frozenset({ARCHIVIST}),
    ("POST", "/requests/{request_id}/sent"): frozenset({ARCHIVIST}),
    ("GET", "/examiner"): frozenset({EXAMINER}),  # the examiner's day
    ("GET", "/examiner/stations"): frozenset({EXAMINER}),
    # Flags on what was seen live (issue 19): made by observers, examiners (their stations) and admins, withdrawn by
    # their author; the day's list for the commission's chair and an attempt's flags for everyone who reviews.
    ("POST", "/api/live/{station}/flags"): frozenset({OBSERVER, EXAMINER, ADMIN}),
    ("POST", "/api/flags/{flag_id}/withdraw"): frozenset({OBSERVER, EXAMINER, ADMIN}),
    ("GET", "/api/attempts/{attempt_id}/flags"): frozenset({ADMIN, OBSERVER, EXAMINER, ARCHIVIST}),
    ("GET", "/api/flags"): frozenset({ADMIN, OBSERVER, EXAMINER, ARCHIVIST}),
    ("GET", "/flags"): frozenset({ADMIN, OBSERVER, EXAMINER, ARCHIVIST}),
}

# Values for the URL's variable parts: well-formed, naming nothing that exists (so nothing is changed).
PLACEHOLDERS = {
    "login": "nobody",
    "code": "S1",
    "token_id": "999999",
    "number": "ACC-404",
    "key": "no-such-recording",
    "track": "cam1",
    "seq": "1",
    "sha256": "0" * 64,
    "attempt_id": "no-such-attempt",
    "request_id": "999999",
    "package_id": "999999",
    "hold_id": "999999",
    "link_id": "999999",
    "token": "A" * 43,
    "upload_id": "0" * 32,
    "key_id": "0" * 32,
    "station": "S1",
    "camera": "cam0",
    "name": "live.js",
    "run_id": "999999",
    "check_id": "999999",
    "day_id": "999999",
    "slot_id": "999999",
    "assignment_id": "999999",
    "kind": "stations",
    "flag_id": "999999",
}


def app_routes(app) -> dict[tuple[str, str], object]:  # type: ignore[no-untyped-def]
    out = {}
    for route in app.router.routes():
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        out[(route.method, path)] = route.handler
    return out


def fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS[m.group(1)], path)


async def test_every_route_is_in_the_table_and_declares_a_permission(world: World) -> None:
    routes = app_routes(world.api.app)
    assert set(routes) == set(EXPECTED), "a route was added or removed: declare who may use it here"
    undeclared = [key for key, handler in routes.items() if permission_of(handler) is None]
    assert undeclared == []
    public = {key for key, allowed in EXPECTED.items() if ANON in allowed}
    assert public == {
        ("GET", "/health"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/api/export-key"),
        ("GET", "/static/{name}"),
        ("GET", "/review/{token}"),
        ("GET", "/review/{token}/recordings/{key}/{track}"),
    }


async def test_every_route_with_every_principal(world: World) -> None:
    client = world.api.client
    mismatches = []
    for (method, path), allowed in sorted(EXPECTED.items(), key=str):
        for principal in sorted(EVERYONE, key=str):
            resp = await client.request(method, fill(path), json={}, headers=world.headers(principal))
            body = (await resp.json() if resp.content_type == "application/json" else None) or {}
            # HEAD answers carry no body: a 403 there is the permission check's (tus.py has no other 403).
            forbidden = "may not do this" in body.get("error", "") or method == "HEAD"
            denied = resp.status == 401 or (resp.status == 403 and forbidden)
            if principal in allowed and (denied or resp.status >= 500):
                mismatches.append((method, path, principal, "refused", resp.status, body))
            if principal not in allowed and not denied:
                mismatches.append((method, path, principal, "let through", resp.status, body))
            if principal is ANON and principal not in allowed:
                assert resp.status == 401, (method, path, resp.status)
    assert mismatches == []


async def test_anonymous_browser_is_sent_to_login(world: World) -> None:
    resp = await world.api.client.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login"


async def test_unknown_route_is_404_not_500(world: World) -> None:
    resp = await world.api.client.get("/api/no-such-thing")
    assert resp.status == 404
    assert (await resp.json())["where"] == "GET /api/no-such-thing"


async def test_a_route_without_permission_is_refused(world: World) -> None:
    from aiohttp import web

    async def undeclared(request: web.Request) -> web.Response:
        return web.Response(text="secret")

    app = world.api.app
    app.router._frozen = False  # add a route the way a careless new module would
    try:
        app.router.add_get("/api/undeclared", undeclared)
    finally:
        app.router._frozen = True
    for principal in (ANON, ADMIN, STATION):
        resp = await world.api.client.get("/api/undeclared", headers=world.headers(principal))
        assert resp.status == 500
        assert (await resp.json())["error"] == "route declares no permission"

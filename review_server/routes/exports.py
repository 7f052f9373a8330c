"""Export requests (e.g. from the Ministry), their packages (background jobs with progress, resumable), download
with resume, the request's page (archivists) and the public key.

Every request, selection, export and download is
written to the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import audit
from ..export import (
    PENDING,
    ExportError,
    ExportNotFound,
    Gathered,
    exports_dir,
    package_json,
    package_status,
    request_json,
    restart_export,
    start_export,
    start_job,
)
from ..i18n import lang_of, section
from ..models import Attempt, Candidate, ExamDay, ExportPackage, ExportRequest, ExportRequestAttempt, Station, Task
from ..retention import add_hold
from ..roles import PUBLIC, requires
from ..signing import data_dir, fingerprint, load_or_create, public_pem
from ..validate import CODE_RE, Fields, path_int
from ..web import CONFIG, DB, STORAGE, ApiError, db_run, identity, read_json, render

routes = web.RouteTableDef()

REQUEST_ADD = "archive.request.add"
REQUEST_SELECT = "archive.request.select"
EXPORT_DOWNLOAD = "archive.export.download"
MAX_SELECT = 10_000


def _request(s: Session, request_id: int) -> ExportRequest:
    req = s.get(ExportRequest, request_id)
    if req is None:
        raise ApiError(404, f"no export request {request_id}", "URL request_id")
    return req


@routes.post("/api/export-requests")
@requires("archive.export")
async def add_request(request: web.Request) -> web.Response:
    """Body {"number", "date": YYYY-MM-DD, "requester", "subject"}: what was asked, by whom, when."""
    f = Fields(await read_json(request), allowed={"number", "date", "requester", "subject"})
    number, date = f.name("number", max_len=64), f.date("date")
    requester, subject = f.name("requester", max_len=300), f.text("subject", max_len=5000, required=False, default="")
    for name, value in (("number", number), ("requester", requester)):
        if not value.strip():
            raise ApiError(422, "required", name)
    who = identity(request)

    def add(s: Session) -> dict[str, Any]:
        req = ExportRequest(
            number=number, request_date=date, requester=requester, subject=subject, created_by=who.actor
        )
        s.add(req)
        s.flush()
        audit.append(s, who.actor, REQUEST_ADD, f"request:{req.id}", {"number": number, "requester": requester})
        return request_json(req)

    return web.json_response(await db_run(request, add), status=201)


def _attempt_rows(s: Session, ids: Sequence[str]) -> list[dict[str, Any]]:
    """What the request page shows of each selected attempt (accreditation number, never a name)."""
    rows = []
    for i in range(0, len(ids), 500):
        q = (
            select(Attempt.id, Candidate.accreditation_number, ExamDay.day, Station.code, Task.code)
            .join(Station, Station.id == Attempt.station_id)
            .outerjoin(Candidate, Candidate.id == Attempt.candidate_id)
            .outerjoin(ExamDay, ExamDay.id == Attempt.exam_day_id)
            .outerjoin(Task, Task.id == func.coalesce(Attempt.task_id, Station.task_id))
            .where(Attempt.id.in_(ids[i : i + 500]))
        )
        for attempt_id, number, day, station, task in s.execute(q):
            rows.append({"attempt_id": attempt_id, "accreditation_number": number,
                         "exam_day": day.isoformat() if day else None, "station": station, "task": task})
    return sorted(rows, key=lambda r: r["attempt_id"])


@routes.get("/api/export-requests", allow_head=False)
@requires("archive.export")
async def list_requests(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict[str, Any]]:
        return [request_json(r) for r in s.scalars(select(ExportRequest).order_by(ExportRequest.id.desc()).limit(500))]

    return web.json_response({"requests": await db_run(request, q)})


@routes.get("/api/export-requests/{request_id}", allow_head=False)
@requires("archive.export")
async def get_request(request: web.Request) -> web.Response:
    request_id = path_int(request, "request_id")
    config = request.app[CONFIG]

    def q(s: Session) -> dict[str, Any]:
        req = _request(s, request_id)
        ids = s.scalars(
            select(ExportRequestAttempt.attempt_id)
            .where(ExportRequestAttempt.request_id == request_id)
            .order_by(ExportRequestAttempt.attempt_id)
        ).all()
        pkgs = s.scalars(select(ExportPackage).where(ExportPackage.request_id == request_id).order_by(ExportPackage.id))
        packages = [package_json(p, config) for p in pkgs]
        return request_json(req) | {"attempts": list(ids), "attempt_rows": _attempt_rows(s, ids), "packages": packages}

    return web.json_response(await db_run(request, q))


@routes.post("/api/export-requests/{request_id}/attempts")
@requires("archive.export")
async def select_attempts(request: web.Request) -> web.Response:
    """Body {"attempt_ids": [...]} (from the archive search): added to the request's selection."""
    request_id = path_int(request, "request_id")
    body = await read_json(request)
    Fields(body, allowed={"attempt_ids"})
    ids = body.get("attempt_ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_SELECT:
        raise ApiError(422, f"expected a list of 1 to {MAX_SELECT} attempt ids", "attempt_ids")
    for i, a in enumerate(ids):
        if not isinstance(a, str) or not CODE_RE.fullmatch(a):
            raise ApiError(422, f"not a valid attempt id (must match {CODE_RE.pattern})", f"attempt_ids[{i}]")
    who = identity(request)

    def add(s: Session) -> dict[str, Any]:
        req = _request(s, request_id)
        have = set(
            s.scalars(select(ExportRequestAttempt.attempt_id).where(ExportRequestAttempt.request_id == request_id))
        )
        added = []
        for i, a in enumerate(dict.fromkeys(ids)):
            if s.get(Attempt, a) is None:
                raise ApiError(422, f"no attempt {a!r}", f"attempt_ids[{i}]")
            if a not in have:
                s.add(ExportRequestAttempt(request_id=request_id, attempt_id=a))
                added.append(a)
        s.flush()
        for a in added:  # selected material is kept until the request is answered (release the hold then)
            add_hold(s, a, "request", f"export request {req.number} of {req.request_date.isoformat()}", who.actor)
        if added:
            audit.append(s, who.actor, REQUEST_SELECT, f"request:{request_id}", {"attempts": added})
        return {"request_id": request_id, "added": added, "attempts": sorted(have | set(added))}

    return web.json_response(await db_run(request, add))


def _job_error(exc: ExportError) -> ApiError:
    return ApiError(404 if isinstance(exc, ExportNotFound) else 409, str(exc), "URL package_id")


async def _run_job(request: web.Request, package_id: int, g: Gathered, actor: str) -> web.Response:
    """Start writing on a background thread; ?background=1 replies 202 at once (the page polls the status
    URL), otherwise the reply waits for the package (201). A client that goes away does not stop the export."""
    app = request.app
    try:
        job = start_job(app[DB], app[STORAGE], app[CONFIG], package_id, g, actor)
    except ExportError as exc:
        raise _job_error(exc) from None
    if request.query.get("background") in ("1", "true"):
        pkg = await db_run(request, lambda s: s.get(ExportPackage, package_id))
        assert pkg is not None  # start_job found it
        body = package_json(pkg, app[CONFIG])
        return web.json_response(body, status=202, headers={"Location": body["status_url"]})
    await asyncio.shield(asyncio.to_thread(job.done.wait))
    if job.error is not None:
        raise ApiError(500, f"export failed: {job.error}", f"export package {package_id}")
    assert job.result is not None
    return web.json_response(job.result, status=201)


@routes.post("/api/export-requests/{request_id}/exports")
@requires("archive.export")
async def export(request: web.Request) -> web.Response:
    """Start a package for the request: written by a background job with progress at GET /api/exports/{id}.
    ?background=1: 202 at once with the status URL; otherwise 201 with the package when it is written."""
    request_id = path_int(request, "request_id")
    await db_run(request, lambda s: _request(s, request_id))
    app, who = request.app, identity(request)
    try:
        package_id, g = await asyncio.to_thread(start_export, app[DB], app[CONFIG], request_id, who.actor)
    except ExportError as exc:
        raise ApiError(409, str(exc), "URL request_id") from None
    return await _run_job(request, package_id, g, who.actor)


@routes.get("/api/exports/{package_id}", allow_head=False)
@requires("archive.export")
async def export_status(request: web.Request) -> web.Response:
    """The package with its status (running, done, failed, interrupted, missing) and progress: bytes of the
    member files written of their total, files done of all."""
    package_id = path_int(request, "package_id")
    config = request.app[CONFIG]

    def q(s: Session) -> dict[str, Any]:
        pkg = s.get(ExportPackage, package_id)
        if pkg is None:
            raise ApiError(404, f"no export package {package_id}", "URL package_id")
        return package_json(pkg, config)

    return web.json_response(await db_run(request, q), headers={"Cache-Control": "no-store"})


@routes.post("/api/exports/{package_id}/resume")
@requires("archive.export")
async def resume(request: web.Request) -> web.Response:
    """Take up an interrupted or failed export again (same package id; audited); 202, or 201 when waited for."""
    package_id = path_int(request, "package_id")
    app, who = request.app, identity(request)
    try:
        g = await asyncio.to_thread(restart_export, app[DB], app[CONFIG], package_id, who.actor)
    except ExportError as exc:
        raise _job_error(exc) from None
    return await _run_job(request, package_id, g, who.actor)


@routes.get("/api/exports/{package_id}/download", allow_head=False)
@requires("archive.export")
async def download(request: web.Request) -> web.StreamResponse:
    """The package's ZIP; supports Range / If-Range, so an interrupted download can resume. Audited."""
    package_id = path_int(request, "package_id")
    who = identity(request)
    config = request.app[CONFIG]

    def q(s: Session) -> ExportPackage:
        pkg = s.get(ExportPackage, package_id)
        if pkg is None:
            raise ApiError(404, f"no export package {package_id}", "URL package_id")
        if pkg.sha256 == PENDING:
            st = package_status(config, pkg)
            raise ApiError(409, f"the package is not written yet ({st['status']}, {st['progress']['percent']} %)",
                           "URL package_id", export_status=st["status"])
        details = {"package_id": pkg.id, "range": request.headers.get("Range")}
        audit.append(s, who.actor, EXPORT_DOWNLOAD, f"request:{pkg.request_id}", details)
        return pkg

    pkg = await db_run(request, q)
    path = exports_dir(config) / pkg.file_name
    if not path.is_file():
        raise ApiError(410, "the package file is no longer in the exports folder; export again", "URL package_id")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{pkg.file_name}"',
            "ETag": f'"{pkg.sha256}"',
            "X-Content-SHA256": pkg.sha256,
        },
    )


STATIC = Path(__file__).resolve().parent.parent / "static" / "exports"
ASSETS = {"export.js": "text/javascript; charset=utf-8", "export.css": "text/css; charset=utf-8"}


@routes.get("/export-requests/{request_id}", allow_head=False)
@requires("archive.export")
async def request_page(request: web.Request) -> web.Response:
    """The request's page: what was asked, the attempts selected, its packages with a progress bar that polls
    GET /api/exports/{id}, download links when done, resume for an interrupted export (templates/export_request.html,
    static/exports/export.js; the script's texts come from the catalogue through the page's data-texts)."""
    request_id = path_int(request, "request_id")
    await db_run(request, lambda s: _request(s, request_id))
    meta = {"csrf-token": identity(request).csrf_token or "", "export-request-id": str(request_id)}
    texts = section(lang_of(request), "export")
    return render(request, "export_request.html", {"meta": meta, "texts": texts}, headers={"Cache-Control": "no-store"})


@routes.get("/exports/assets/{name}", allow_head=False)
@requires("archive.export")
async def page_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:  # a fixed list: no path from the URL reaches the file system
        raise ApiError(404, f"no asset {name!r}", "URL name")
    return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name], "Cache-Control": "no-cache"})


@routes.get("/api/export-key", allow_head=False)
@requires(PUBLIC)
async def export_key(request: web.Request) -> web.Response:
    """The public key that signs export packages (PEM), with its fingerprint in a header."""
    key = await asyncio.to_thread(load_or_create, data_dir(request.app[CONFIG]))
    return web.Response(
        body=public_pem(key), content_type="application/x-pem-file", headers={"X-Key-SHA256": fingerprint(key)}
    )

"""Export requests (e.g. from the Ministry), their packages, download with resume, and the public key.

Registered through routes/archive.py (ROUTES below). Every request, selection, export and download is
written to the audit log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..app import CONFIG, DB, STORAGE, ApiError, db_run, identity
from ..export import ExportError, exports_dir, package_json, request_json, run_export
from ..models import Attempt, ExportPackage, ExportRequest, ExportRequestAttempt
from ..retention import add_hold
from ..roles import PUBLIC, requires
from ..signing import data_dir, fingerprint, load_or_create, public_pem
from ..validate import CODE_RE, Fields, path_int, read_json

REQUEST_ADD = "archive.request.add"
REQUEST_SELECT = "archive.request.select"
EXPORT_DOWNLOAD = "archive.export.download"
MAX_SELECT = 10_000


def _request(s: Session, request_id: int) -> ExportRequest:
    req = s.get(ExportRequest, request_id)
    if req is None:
        raise ApiError(404, f"no export request {request_id}", "URL request_id")
    return req


@requires("archive.export")
async def add_request(request: web.Request) -> web.Response:
    """Body {"number", "date": YYYY-MM-DD, "requester", "subject"}: what was asked, by whom, when."""
    f = Fields(await read_json(request), allowed={"number", "date", "requester", "subject"})
    number, date = f.text("number", max_len=64), f.date("date")
    requester, subject = f.text("requester", max_len=300), f.text("subject", max_len=5000, required=False, default="")
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


@requires("archive.export")
async def list_requests(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict[str, Any]]:
        return [request_json(r) for r in s.scalars(select(ExportRequest).order_by(ExportRequest.id.desc()).limit(500))]

    return web.json_response({"requests": await db_run(request, q)})


@requires("archive.export")
async def get_request(request: web.Request) -> web.Response:
    request_id = path_int(request, "request_id")

    def q(s: Session) -> dict[str, Any]:
        req = _request(s, request_id)
        ids = s.scalars(
            select(ExportRequestAttempt.attempt_id)
            .where(ExportRequestAttempt.request_id == request_id)
            .order_by(ExportRequestAttempt.attempt_id)
        ).all()
        pkgs = s.scalars(select(ExportPackage).where(ExportPackage.request_id == request_id).order_by(ExportPackage.id))
        return request_json(req) | {"attempts": list(ids), "packages": [package_json(p) for p in pkgs]}

    return web.json_response(await db_run(request, q))


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


@requires("archive.export")
async def export(request: web.Request) -> web.Response:
    """Write the request's package now (the reply comes when it is written); 201 with its download URL."""
    request_id = path_int(request, "request_id")
    await db_run(request, lambda s: _request(s, request_id))
    app, who = request.app, identity(request)
    try:
        pkg = await asyncio.to_thread(run_export, app[DB], app[STORAGE], app[CONFIG], request_id, who.actor)
    except ExportError as exc:
        raise ApiError(409, str(exc), "URL request_id") from None
    return web.json_response(pkg, status=201)


@requires("archive.export")
async def download(request: web.Request) -> web.StreamResponse:
    """The package's ZIP; supports Range / If-Range, so an interrupted download can resume. Audited."""
    package_id = path_int(request, "package_id")
    who = identity(request)

    def q(s: Session) -> ExportPackage:
        pkg = s.get(ExportPackage, package_id)
        if pkg is None:
            raise ApiError(404, f"no export package {package_id}", "URL package_id")
        details = {"package_id": pkg.id, "range": request.headers.get("Range")}
        audit.append(s, who.actor, EXPORT_DOWNLOAD, f"request:{pkg.request_id}", details)
        return pkg

    pkg = await db_run(request, q)
    path = exports_dir(request.app[CONFIG]) / pkg.file_name
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


@requires(PUBLIC)
async def export_key(request: web.Request) -> web.Response:
    """The public key that signs export packages (PEM), with its fingerprint in a header."""
    key = await asyncio.to_thread(load_or_create, data_dir(request.app[CONFIG]))
    return web.Response(
        body=public_pem(key), content_type="application/x-pem-file", headers={"X-Key-SHA256": fingerprint(key)}
    )


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/export-requests", add_request),
    ("GET", "/api/export-requests", list_requests),
    ("GET", "/api/export-requests/{request_id}", get_request),
    ("POST", "/api/export-requests/{request_id}/attempts", select_attempts),
    ("POST", "/api/export-requests/{request_id}/exports", export),
    ("GET", "/api/exports/{package_id}/download", download),
    ("GET", "/api/export-key", export_key),
]

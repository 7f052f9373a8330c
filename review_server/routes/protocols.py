"""Results protocols (per exam day and specialty) and checklist versions for scoring."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from checklists.loader import ChecklistError, parse_checklist

from .. import audit
from ..models import ChecklistVersion, Task
from ..protocol import Protocol, ProtocolError, build, to_csv, to_pdf, to_xlsx
from ..roles import requires
from ..validate import CODE_RE
from ..web import CONFIG, ApiError, db_run, identity
from .params import day_and_specialty

routes = web.RouteTableDef()

CHECKLIST_UPLOAD = "checklist.upload"
PROTOCOL_VIEW = "protocol.view"
FORMATS: dict[str, tuple[str, Any]] = {
    "csv": ("text/csv; charset=utf-8", to_csv),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", to_xlsx),
    "pdf": ("application/pdf", to_pdf),
}


@routes.get("/api/protocols", allow_head=False)
@requires("protocol.view")
async def get_protocol(request: web.Request) -> web.Response:
    """?day=YYYY-MM-DD&specialty=CODE[&format=json|csv|xlsx|pdf]"""
    q = request.query
    day, specialty = day_and_specialty(q, "day")
    fmt = q.get("format", "json")
    if fmt != "json" and fmt not in FORMATS:
        raise ApiError(400, "expected json, csv, xlsx or pdf", "query format")
    who = identity(request)

    def make(s: Session) -> Protocol:
        try:
            p = build(s, day, specialty)
        except ProtocolError as exc:
            raise ApiError(404, str(exc), exc.where) from None
        audit.append(s, who.actor, PROTOCOL_VIEW, f"protocol:{day.isoformat()}:{specialty}", {"format": fmt})
        return p

    protocol = await db_run(request, make)
    if fmt == "json":
        return web.json_response(protocol.to_json())
    content_type, render = FORMATS[fmt]
    body = render(protocol)
    name = f"protocol-{day.isoformat()}-{specialty}.{fmt}"
    return web.Response(
        body=body, headers={"Content-Type": content_type, "Content-Disposition": f'attachment; filename="{name}"'}
    )


@routes.post("/api/checklist-versions")
@requires("checklists.manage")
async def upload_checklist(request: web.Request) -> web.Response:
    """Body: the checklist's YAML (checklists/FORMAT.md); ?task=CODE links it to a task. Stored once per
    content hash: 201 when new, 200 when that version was already there."""
    raw = await request.read()
    if len(raw) > request.app[CONFIG].max_json_bytes:
        raise ApiError(413, "checklist file too large", "body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "not UTF-8 text", "body") from None
    try:
        cl = await asyncio.to_thread(parse_checklist, text, "upload")  # not on the event loop: YAML is slow
    except ChecklistError as exc:
        p = exc.problems[0]
        raise ApiError(422, f"not a valid checklist: {p.field}: {p.message}", f"body line {p.line}") from None
    task_code = request.query.get("task")
    if task_code is not None and not CODE_RE.fullmatch(task_code):
        raise ApiError(400, f"must match {CODE_RE.pattern}", "query task")
    who = identity(request)

    def store(s: Session) -> tuple[dict[str, Any], bool]:
        task_id = None
        if task_code is not None:
            task_id = s.scalar(select(Task.id).where(Task.code == task_code))
            if task_id is None:
                raise ApiError(422, f"no task {task_code!r}", "query task")
        row = s.scalar(select(ChecklistVersion).where(ChecklistVersion.sha256 == cl.content_hash))
        new = row is None
        if row is None:
            row = ChecklistVersion(
                sha256=cl.content_hash, task_id=task_id, version=cl.version, title=cl.title[:300], source=text
            )
            s.add(row)
            s.flush()
            audit.append(s, who.actor, CHECKLIST_UPLOAD, cl.content_hash, {"title": cl.title, "version": cl.version})
        return {"sha256": row.sha256, "title": row.title, "version": row.version, "items": len(cl.items)}, new

    out, new = await db_run(request, store)
    return web.json_response(out, status=201 if new else 200)

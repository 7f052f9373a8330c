"""Export package for a request (e.g. the Ministry's): the attempts selected for it, with their original
recording files (byte for byte from media storage), marks and corrections (JSON and readable text), the
station's CPR figures report where one was uploaded (`attempts/<id>/cpr_figures.json`), a results protocol
(CSV), the audit events concerning them, a signed manifest and SHA256SUMS.

The ZIP is written to `<data dir>/exports/` through a write-only stream (constant memory; its SHA-256 is
computed on the way) and then served with HTTP Range support, so a download can resume.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .db import Database
from .models import (
    Attempt,
    AuditEvent,
    Candidate,
    CprFigures,
    ExamDay,
    ExportPackage,
    ExportRequest,
    ExportRequestAttempt,
    Fragment,
    MarkEvent,
    Recording,
    Specialty,
    Station,
    Task,
)
from .package import HashingWriter, PackageWriter
from .scores import Outcome, attempt_outcome, wire
from .signing import data_dir, load_or_create
from .storage import MediaStorage, NotFound

Progress = Callable[[int, int, str], None]  # (bytes done, bytes in all, current file)


class ExportError(Exception):
    """The export cannot be made; says what and where."""


def exports_dir(config) -> Path:  # type: ignore[no-untyped-def]
    return data_dir(config) / "exports"


def request_json(req: ExportRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "number": req.number,
        "date": req.request_date.isoformat(),
        "requester": req.requester,
        "subject": req.subject,
        "created_by": req.created_by,
        "created_at": req.created_at.isoformat(),
    }


@dataclass
class Gathered:
    request: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    total_bytes: int = 0
    cpr_figures: dict[str, bytes] = field(default_factory=dict)  # attempt id -> the uploaded report


def _code(s: Session, model: Any, row_id: int | None) -> str | None:
    row = s.get(model, row_id) if row_id is not None else None
    return getattr(row, "code", None) if row is not None else None


def media_name(frag: Fragment) -> str:
    """The file's name as the recorder writes it (media/recorder.py): init.mp4, 000001.m4s, ..."""
    return "init.mp4" if frag.kind == "init" else f"{frag.seq:06d}.m4s"


def gather(s: Session, request_id: int) -> Gathered:
    req = s.get(ExportRequest, request_id)
    if req is None:
        raise ExportError(f"no export request {request_id}")
    ids = s.scalars(
        select(ExportRequestAttempt.attempt_id)
        .where(ExportRequestAttempt.request_id == request_id)
        .order_by(ExportRequestAttempt.attempt_id)
    ).all()
    if not ids:
        raise ExportError(f"export request {request_id} has no attempts selected")
    g = Gathered(request=request_json(req))
    targets: set[str] = {f"request:{request_id}"}
    cache: dict[str, Any] = {}
    for attempt_id in ids:
        att = s.get(Attempt, attempt_id)
        assert att is not None  # foreign key
        station = s.get(Station, att.station_id)
        cand = s.get(Candidate, att.candidate_id) if att.candidate_id else None
        day = s.get(ExamDay, att.exam_day_id) if att.exam_day_id else None
        rows = s.scalars(select(MarkEvent).where(MarkEvent.attempt_id == attempt_id).order_by(MarkEvent.id)).all()
        recordings = []
        for rec in s.scalars(select(Recording).where(Recording.attempt_id == attempt_id).order_by(Recording.key)):
            tracks: dict[str, list[dict[str, Any]]] = {}
            for f in sorted(rec.fragments, key=lambda f: (f.track, f.kind != "init", f.seq)):
                tracks.setdefault(f.track, []).append(
                    {
                        "seq": f.seq,
                        "kind": f.kind,
                        "file": media_name(f),
                        "sha256": f.sha256,
                        "size": f.size,
                        "start": f.start_s,
                        "end": f.end_s,
                    }
                )
                g.total_bytes += f.size
                targets.add(f.sha256)
            recordings.append({"key": rec.key, "created_at": rec.created_at.isoformat(), "tracks": tracks})
            targets.add(rec.key)
        g.attempts.append(
            {
                "attempt_id": att.id,
                "accreditation_number": cand.accreditation_number if cand else None,
                "exam_day": day.day.isoformat() if day else None,
                "station": station.code if station else None,
                "specialty": _code(s, Specialty, (station.specialty_id if station else None))
                or _code(s, Specialty, cand.specialty_id if cand else None),
                "task": _code(s, Task, att.task_id or (station.task_id if station else None)),
                "created_at": att.created_at.isoformat(),
                "recordings": recordings,
                "events": [wire(r) | {"source": r.source, "received_at": r.received_at.isoformat()} for r in rows],
            }
        )
        g.outcomes[attempt_id] = attempt_outcome(s, attempt_id, cache)
        figures = s.get(CprFigures, attempt_id)
        if figures is not None:
            g.cpr_figures[attempt_id] = figures.body.encode("utf-8")
        targets.add(attempt_id)
    found = []
    ordered = sorted(targets)
    for i in range(0, len(ordered), 500):
        found += s.scalars(select(AuditEvent).where(AuditEvent.target.in_(ordered[i : i + 500]))).all()
    g.audit = [
        {
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "details": e.details,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }
        for e in sorted(found, key=lambda e: e.seq)
    ]
    return g


def marks_text(att: dict[str, Any], out: Outcome) -> str:
    """The checklists of one attempt as a person reads them: each examiner's sheet, then every event."""
    lines = [
        f"Попытка {att['attempt_id']} · аккредитуемый {att['accreditation_number'] or '—'}",
        f"Дата: {att['exam_day'] or '—'} · станция {att['station'] or '—'} · задание {att['task'] or '—'}",
    ]
    cl = out.checklist
    if cl is not None:
        lines.append(f"Чек-лист: {cl.title} (версия {cl.version}, sha256 {cl.content_hash})")
    elif out.checklist_hash:
        lines.append(f"Чек-лист sha256 {out.checklist_hash} (текста нет на сервере)")
    if out.percent is not None:
        lines.append(f"Результат: {out.percent:.2f} % — {out.result}{'' if out.final else ' (не окончательно)'}")
    elif out.note:
        lines.append(f"Результат: нет ({out.note})")
    for examiner, sheet in sorted(out.sheets.items()):
        state = "подписан" if sheet.finalised else "не подписан"
        rating = "—" if sheet.rating is None else sheet.rating
        lines += ["", f"Член комиссии: {examiner} · лист {state} · оценка {rating}"]
        numbers = cl.item_numbers if cl is not None else sorted(sheet.marks)
        for n in numbers:
            mark = {True: "да", False: "нет"}.get(sheet.marks.get(n), "—")  # type: ignore[arg-type]
            action = cl.item(n).action if cl is not None else ""
            lines.append(f"  {n:>3}. [{mark:^3}] {action}".rstrip())
        sc = out.scores.get(examiner)
        if sc is not None:
            lines.append(f"  Итого: {sc.done} из {sc.total} = {sc.percent:.2f} %")
    lines += ["", "События (в порядке поступления):"]
    for e in att["events"]:
        what = {"mark": f"пункт {e['item']} = {'да' if e['done'] else 'нет'}", "rating": f"оценка {e['rating']}"}.get(
            e["kind"], e["kind"]
        )
        reason = f" · причина: {e['reason']}" if e["reason"] else ""
        lines.append(f"  {e['wall_time']} {e['examiner']} seq {e['seq']}: {what}{reason} [{e['source']}]")
    return "\n".join(lines) + "\n"


PROTOCOL_COLUMNS = [
    "accreditation_number",
    "attempt_id",
    "exam_day",
    "specialty",
    "station",
    "task",
    "examiners",
    "percent",
    "result",
    "final",
    "note",
]


def protocol_csv(g: Gathered) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PROTOCOL_COLUMNS)
    for att in g.attempts:
        out = g.outcomes[att["attempt_id"]]
        pct = "" if out.percent is None else f"{out.percent:.2f}"
        w.writerow(
            [
                att["accreditation_number"] or "",
                att["attempt_id"],
                att["exam_day"] or "",
                att["specialty"] or "",
                att["station"] or "",
                att["task"] or "",
                ";".join(sorted(out.sheets)),
                pct,
                out.result,
                "да" if out.final else "нет",
                out.note,
            ]
        )
    return buf.getvalue().encode("utf-8")


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8") + b"\n"


def write_package(
    out: Any,
    g: Gathered,
    storage: MediaStorage,
    key: Any,
    actor: str,
    now: dt.datetime,
    progress: Progress | None = None,
) -> dict[str, Any]:
    total = g.total_bytes
    pw = PackageWriter(out, now.timetuple()[:6], (lambda done, path: progress(done, total, path)) if progress else None)
    pw.add_bytes("request.json", _json(g.request))
    absent: list[dict[str, Any]] = []
    for att in g.attempts:
        base = f"attempts/{att['attempt_id']}"
        out_ = g.outcomes[att["attempt_id"]]
        info = {k: v for k, v in att.items() if k != "events"}
        pw.add_bytes(f"{base}/attempt.json", _json(info))
        sheets = {
            ex: {
                "checklist_hash": sh.checklist_hash,
                "marks": {str(k): v for k, v in sorted(sh.marks.items())},
                "rating": sh.rating,
                "finalised": sh.finalised,
                "corrections": [e.to_json() for e in sh.corrections],
                "rejected": [e.to_json() for e in sh.rejected],
            }
            for ex, sh in sorted(out_.sheets.items())
        }
        pw.add_bytes(f"{base}/marks.json", _json({"events": att["events"], "sheets": sheets, "result": out_.to_json()}))
        pw.add_bytes(f"{base}/marks.txt", marks_text(att, out_).encode("utf-8"))
        if att["attempt_id"] in g.cpr_figures:  # measured CPR figures, as the station sent them
            pw.add_bytes(f"{base}/cpr_figures.json", g.cpr_figures[att["attempt_id"]])
        for rec in att["recordings"]:
            for track, frags in rec["tracks"].items():
                for f in frags:
                    path = f"{base}/recordings/{rec['key']}/{track}/{f['file']}"
                    try:
                        fh = storage.open(f["sha256"])
                    except NotFound:
                        absent.append({"path": path, "sha256": f["sha256"], "reason": "not in media storage"})
                        continue
                    try:
                        sha, size = pw.add_stream(path, fh)
                    finally:
                        fh.close()
                    if sha != f["sha256"] or size != f["size"]:
                        raise ExportError(f"{path}: media storage returned other bytes than sha256 {f['sha256']}")
    pw.add_bytes("protocol.csv", protocol_csv(g))
    pw.add_bytes(
        "audit.jsonl", b"".join(json.dumps(e, ensure_ascii=False, sort_keys=True).encode() + b"\n" for e in g.audit)
    )
    meta = {
        "request": g.request,
        "created_at": now.isoformat(),
        "created_by": actor,
        "attempts": [a["attempt_id"] for a in g.attempts],
        "absent_media": absent,
    }
    manifest = pw.finish(key, meta)
    if progress:
        progress(total, total, "(written)")
    return manifest


def run_export(
    db: Database, storage: MediaStorage, config: Any, request_id: int, actor: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Write a package for the request into the exports folder; record and audit it. Returns its row as JSON."""
    g = db.run(lambda s: gather(s, request_id))
    key = load_or_create(data_dir(config))
    now = dt.datetime.now(dt.UTC)
    folder = exports_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"request-{request_id}-{now.strftime('%Y%m%dT%H%M%S%fZ')}.zip"
    partial = folder / (name + ".partial")
    try:
        with partial.open("wb") as fh:
            hw = HashingWriter(fh)
            manifest = write_package(hw, g, storage, key, actor, now, progress)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, folder / name)
    finally:
        partial.unlink(missing_ok=True)

    def record(s: Session) -> dict[str, Any]:
        pkg = ExportPackage(
            request_id=request_id,
            file_name=name,
            sha256=hw.sha.hexdigest(),
            size=hw.size,
            files=len(manifest["files"]),
            created_by=actor,
            created_at=now,
        )
        s.add(pkg)
        s.flush()
        audit.append(
            s,
            actor,
            audit.EXPORT,
            f"request:{request_id}",
            {
                "package_id": pkg.id,
                "file": name,
                "sha256": pkg.sha256,
                "size": pkg.size,
                "attempts": manifest["attempts"],
                "files": pkg.files,
                "absent_media": len(manifest["absent_media"]),
            },
        )
        return package_json(pkg)

    return db.run(record)


def package_json(pkg: ExportPackage) -> dict[str, Any]:
    return {
        "id": pkg.id,
        "request_id": pkg.request_id,
        "file_name": pkg.file_name,
        "sha256": pkg.sha256,
        "size": pkg.size,
        "files": pkg.files,
        "created_by": pkg.created_by,
        "created_at": pkg.created_at.isoformat(),
        "url": f"/api/exports/{pkg.id}/download",
    }

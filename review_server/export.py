"""Export package for a request (e.g. the Ministry's): the attempts selected for it, with their original
recording files (byte for byte from media storage), marks and corrections (JSON and readable text), the
station's CPR figures report where one was uploaded (`attempts/<id>/cpr_figures.json`), the observers' flags
(`attempts/<id>/flags.json`, withdrawn ones included, with the moment seen: review_server/flags.py), a results protocol
(CSV), the audit events concerning them, a signed manifest and SHA256SUMS.

The ZIP is written to `<data dir>/exports/` through a write-only stream (constant memory; its SHA-256 is
computed on the way) and then served with HTTP Range support, so a download can resume.

An export is a job: `start_export` records the package (sha256 still empty) and audits the start;
`write_export` writes it, reporting progress (bytes of the members and files, out of totals known in advance)
and keeping a small state file `<name>.zip.job.json` beside it (status, progress, owning process), so another
process (the server's page while `osce server export` runs) sees the progress and a package whose process died
(server restart, killed CLI) shows as interrupted. `restart_export` takes such a package up again (audited);
it is written anew from the start (a ZIP stream cannot be continued without its central directory's state),
and a finished package is downloaded again at any time, with Range.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, audit_anchor, burn_in, ident
from . import flags as observer_flags
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
from .package import PackageSink, PackageWriter
from .retention import add_hold
from .scores import Outcome, attempt_outcome, wire
from .signing import data_dir, load_or_create
from .spreadsheet import csv_bytes
from .station_health import events_between
from .storage import MediaStorage, NotFound


class ExportError(Exception):
    """The export cannot be made; says what and where."""


REQUEST_ADD = "archive.request.add"
REQUEST_SELECT = "archive.request.select"


def select_for_request(s: Session, req: ExportRequest, attempt_ids: list[str],
                       actor: str) -> tuple[list[str], list[str]]:
    """Add existing attempts to the request's selection, each held (kind `request`) until the request is
    answered; audited. (added, the whole selection now)."""
    have = set(s.scalars(select(ExportRequestAttempt.attempt_id).where(ExportRequestAttempt.request_id == req.id)))
    added = [a for a in dict.fromkeys(attempt_ids) if a not in have]
    for a in added:
        s.add(ExportRequestAttempt(request_id=req.id, attempt_id=a))
    s.flush()
    for a in added:  # selected material is kept until the request is answered (release the hold then)
        add_hold(s, a, "request", f"export request {req.number} of {req.request_date.isoformat()}", actor)
    if added:
        audit.append(s, actor, REQUEST_SELECT, f"request:{req.id}", {"attempts": added})
    return added, sorted(have | set(added))


def exports_dir(config) -> Path:
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
        "asked": {"number": req.asked_number, "day": req.asked_day.isoformat() if req.asked_day else None,
                  "stage": req.asked_stage},
        "sent": None if req.sent_at is None else {"at": req.sent_at.isoformat(), "by": req.sent_by,
                                                  "note": req.sent_note},
    }


@dataclass
class Gathered:
    request: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    total_bytes: int = 0
    cpr_figures: dict[str, bytes] = field(default_factory=dict)  # attempt id -> the uploaded report
    audit_anchor: dict[str, Any] = field(default_factory=dict)  # the chain's head when gathered (audit_anchor.py)
    flags: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # attempt id -> observers' flags


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
            recordings.append({"key": rec.key, "created_at": rec.created_at.isoformat(), "tracks": tracks,
                               "media_from": rec.media_from.isoformat() if rec.media_from else None})
            targets.add(rec.key)
        g.attempts.append(
            {
                "attempt_id": att.id,
                "accreditation_number": cand.accreditation_number if cand else None,
                "exam_day": day.day.isoformat() if day else None,
                "station": station.code if station else None,
                "room": station.room if station else None,
                "specialty": _code(s, Specialty, (station.specialty_id if station else None))
                or _code(s, Specialty, cand.specialty_id if cand else None),
                "task": _code(s, Task, att.task_id or (station.task_id if station else None)),
                "created_at": att.created_at.isoformat(),
                "recordings": recordings,
                "events": [wire(r) | {"source": r.source, "received_at": r.received_at.isoformat()} for r in rows],
                "health_events": events_between(s, att.station_id, None, None, att.id),
            }
        )
        g.outcomes[attempt_id] = attempt_outcome(s, attempt_id, cache)
        g.flags[attempt_id] = observer_flags.of_attempt(s, attempt_id)
        targets.update(f"flag:{f['id']}" for f in g.flags[attempt_id])  # their audit events (made, withdrawn)
        figures = s.get(CprFigures, attempt_id)
        if figures is not None:
            g.cpr_figures[attempt_id] = figures.body.encode("utf-8")
        targets.add(attempt_id)
    found: list[AuditEvent] = []
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
    g.audit_anchor = audit_anchor.head(s)
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
    rows: list[list[str]] = [PROTOCOL_COLUMNS]
    for att in g.attempts:
        out = g.outcomes[att["attempt_id"]]
        pct = "" if out.percent is None else f"{out.percent:.2f}"
        rows.append(
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
    return csv_bytes(rows)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8") + b"\n"


# --- the package's members, written in this order -----------------------------------------------------


@dataclass
class Member:
    """One file of the package: metadata rendered in memory (`data`), or a recording file from media storage."""

    path: str
    data: bytes | None = None
    sha256: str = ""  # media: the storage key (its bytes' SHA-256)
    size: int = 0
    file: Path | None = None  # made for the package on disk (the identification video, burn_in.py)


ENVELOPE = 4  # public_key.pem, manifest.json, manifest.sig, SHA256SUMS: written by PackageWriter.finish


def plan(g: Gathered, videos: dict[str, Path] | None = None) -> list[Member]:
    """Every member but the envelope, with its size, so progress has a true total before the first byte;
    `videos`: each attempt's identification video made beforehand (burn_in.py)."""
    members = [Member("request.json", _json(g.request))]
    for att in g.attempts:
        base = f"attempts/{att['attempt_id']}"
        out_ = g.outcomes[att["attempt_id"]]
        info = {k: v for k, v in att.items() if k != "events"}
        members.append(Member(f"{base}/attempt.json", _json(info)))
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
        marks = {"events": att["events"], "sheets": sheets, "result": out_.to_json()}
        members.append(Member(f"{base}/marks.json", _json(marks)))
        members.append(Member(f"{base}/marks.txt", marks_text(att, out_).encode("utf-8")))
        if att["attempt_id"] in g.cpr_figures:  # measured CPR figures, as the station sent them
            members.append(Member(f"{base}/cpr_figures.json", g.cpr_figures[att["attempt_id"]]))
        members.append(Member(f"{base}/flags.json", _json({"attempt_id": att["attempt_id"],
                                                            "flags": g.flags.get(att["attempt_id"], [])})))
        for rec in att["recordings"]:
            for track, frags in rec["tracks"].items():
                for f in frags:
                    path = f"{base}/recordings/{rec['key']}/{track}/{f['file']}"
                    members.append(Member(path, None, f["sha256"], f["size"]))
        if (video := (videos or {}).get(att["attempt_id"])) is not None:
            members.append(Member(f"{base}/{burn_in.FILE_NAME}", size=video.stat().st_size, file=video))
    members.append(Member("protocol.csv", protocol_csv(g)))
    audit_lines = b"".join(json.dumps(e, ensure_ascii=False, sort_keys=True).encode() + b"\n" for e in g.audit)
    members.append(Member("audit.jsonl", audit_lines))
    for m in members:
        if m.data is not None:
            m.size = len(m.data)
    return members


@dataclass
class ExportProgress:
    """Bytes of the members written (ZIP headers not counted) and files done, out of the totals."""

    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    current: str = ""

    @property
    def percent(self) -> float:
        if not self.bytes_total:  # nothing known yet (0 %), or a package of empty files only
            return 100.0 if self.files_total and self.files_done >= self.files_total else 0.0
        return min(100.0, 100.0 * self.bytes_done / self.bytes_total)

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "percent": round(self.percent, 2),
            "current": self.current,
        }


ProgressFn = Callable[[ExportProgress], None]


def write_package(
    out: PackageSink,
    g: Gathered,
    storage: MediaStorage,
    key: Any,
    actor: str,
    now: dt.datetime,
    progress: ProgressFn | None = None,
    videos: IdentVideos | None = None,
) -> dict[str, Any]:
    members = plan(g, videos.files if videos else None)
    prog = ExportProgress(bytes_total=sum(m.size for m in members), files_total=len(members) + ENVELOPE)
    skipped = [0, 0]  # bytes and files of media that storage no longer holds: accounted for, not written

    def on_write(written: int, files: int, path: str) -> None:
        assert progress is not None
        prog.bytes_done = min(written + skipped[0], prog.bytes_total)  # the envelope is not in the total
        prog.files_done = min(files + skipped[1], prog.files_total)
        prog.current = path
        progress(prog)

    pw = PackageWriter(out, now.timetuple()[:6], on_write if progress else None)
    manifest = _write_members(pw, members, g, storage, key, actor, now, prog, skipped, progress, videos)
    if progress:
        prog.bytes_done, prog.files_done, prog.current = prog.bytes_total, prog.files_total, "(written)"
        progress(prog)
    return manifest


def _write_members(
    pw: PackageWriter,
    members: list[Member],
    g: Gathered,
    storage: MediaStorage,
    key: Any,
    actor: str,
    now: dt.datetime,
    prog: ExportProgress,
    skipped: list[int],
    progress: ProgressFn | None,
    videos: IdentVideos | None = None,
) -> dict[str, Any]:
    if progress:
        progress(prog)
    absent: list[dict[str, Any]] = []
    for m in members:
        if m.data is not None:
            pw.add_bytes(m.path, m.data)
            continue
        if m.file is not None:
            with m.file.open("rb") as made:
                pw.add_stream(m.path, made)
            continue
        try:
            fh = storage.open(m.sha256)
        except NotFound:
            absent.append({"path": m.path, "sha256": m.sha256, "reason": "not in media storage"})
            skipped[0] += m.size
            skipped[1] += 1
            continue
        try:
            sha, size = pw.add_stream(m.path, fh)
        finally:
            fh.close()
        if sha != m.sha256 or size != m.size:
            raise ExportError(f"{m.path}: media storage returned other bytes than sha256 {m.sha256}")
    meta = {
        "request": g.request,
        "created_at": now.isoformat(),
        "created_by": actor,
        "attempts": [a["attempt_id"] for a in g.attempts],
        "absent_media": absent,
        "audit_anchor": g.audit_anchor,  # signed with the manifest: the recipient holds the chain's head of today
    }
    if videos is not None:  # what the identification videos are, and the attempts that have none and why
        meta["identification_videos"] = {"what": burn_in.DESCRIPTION, "failed": videos.failed,
                                         "files": [m.path for m in members if m.file is not None]}
    return pw.finish(key, meta)


# --- the identification videos (burn_in.py), made before the ZIP so that its sizes are known --------------


@dataclass
class IdentVideos:
    files: dict[str, Path] = field(default_factory=dict)  # attempt id -> its video in the work folder
    failed: list[dict[str, str]] = field(default_factory=list)  # {attempt_id, error}: the package goes without


def make_ident_videos(g: Gathered, storage: MediaStorage, config: Any, work: Path,
                      progress: ProgressFn | None = None) -> IdentVideos:
    """One identification video per attempt with recordings, each by ffmpeg at the lowest priority (this runs in
    the export's background job). An attempt whose video cannot be made is named in the manifest, not fatal: the
    originals are what the package is for."""
    out = IdentVideos()
    centre = ident.centre_of(config)
    for att in g.attempts:
        if not att["recordings"]:
            continue
        if progress:
            # The package's totals are known once the videos are made: until then, only what is being made.
            progress(ExportProgress(current=f"attempts/{att['attempt_id']}/{burn_in.FILE_NAME}"))
        who = ident.Ident(**centre, room=att.get("room") or "", station=att["station"] or "",
                          number=att["accreditation_number"] or "")
        folder = work / att["attempt_id"]
        target = work / f"{att['attempt_id']}.mp4"
        try:
            burn_in.burn_attempt(att["recordings"], storage.open, who, config.timezone, folder, target)
        except Exception as exc:  # noqa: BLE001 - any cause (undecodable media, ffmpeg, disk): named, not fatal
            out.failed.append({"attempt_id": att["attempt_id"], "error": str(exc)[:500]})
            continue
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        out.files[att["attempt_id"]] = target
    return out


# --- export jobs: a package row while it is written, its state file, resume ---------------------------

EXPORT_START = "archive.export.start"
EXPORT_RESUME = "archive.export.resume"
EXPORT_FAIL = "archive.export.fail"
PENDING = ""  # export_packages.sha256 of a package not written yet
STATE_SUFFIX = ".job.json"
STATE_EVERY_S = 0.5  # how often a running export rewrites its state file (progress seen by other processes)
PROCESS_TOKEN = secrets.token_hex(8)  # tells this process's jobs from those of an earlier one with the same pid


class ExportNotFound(ExportError):
    """No such export package."""


class ExportConflict(ExportError):
    """The package is not in a state where this can be done (e.g. resume a running export)."""


@dataclass
class Job:
    """An export running in this process (the server's background thread)."""

    package_id: int
    progress: ExportProgress = field(default_factory=ExportProgress)
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: BaseException | None = None


JOBS: dict[tuple[str, int], Job] = {}  # (exports folder, package id) -> live job of this process
_JOBS_LOCK = threading.Lock()


def _job_key(config: Any, package_id: int) -> tuple[str, int]:
    return (str(exports_dir(config)), package_id)


def state_path(config: Any, file_name: str) -> Path:
    return exports_dir(config) / (file_name + STATE_SUFFIX)


def read_state(config: Any, file_name: str) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(config, file_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class _State:
    """The job's state file: status, progress, owner (host, pid, process token); replaced atomically."""

    def __init__(self, config: Any, file_name: str, base: dict[str, Any]) -> None:
        self.path = state_path(config, file_name)
        self.data = base | {"host": socket.gethostname(), "pid": os.getpid(), "token": PROCESS_TOKEN}
        self.last = 0.0

    def save(self, **changes: Any) -> None:
        self.data.update(changes, updated_at=dt.datetime.now(dt.UTC).isoformat())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)
        self.last = time.monotonic()

    def progress(self, p: ExportProgress) -> None:
        if time.monotonic() - self.last >= STATE_EVERY_S:
            self.save(progress=p.to_json())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def package_status(config: Any, pkg: ExportPackage) -> dict[str, Any]:
    """done | missing (file gone from the exports folder) | running | failed | interrupted, with progress."""
    if pkg.sha256 != PENDING:
        there = (exports_dir(config) / pkg.file_name).is_file()
        state = read_state(config, pkg.file_name) or {}
        full = state.get("progress")  # the job's own last figures (saved before the row was completed)
        full = full or ExportProgress(pkg.size, pkg.size, pkg.files, pkg.files, "").to_json()
        return {"status": "done" if there else "missing", "progress": full, "error": ""}
    job = JOBS.get(_job_key(config, pkg.id))
    if job is not None and not job.done.is_set():
        return {"status": "running", "progress": job.progress.to_json(), "error": ""}
    state = read_state(config, pkg.file_name) or {}
    progress = state.get("progress") or ExportProgress().to_json()
    status = state.get("status", "interrupted")
    if status == "running":
        other = state.get("token") != PROCESS_TOKEN and state.get("host") == socket.gethostname()
        alive = other and isinstance(state.get("pid"), int) and _pid_alive(state["pid"])
        status = "running" if alive else "interrupted"  # its process is gone (server restart, killed CLI)
    return {"status": status, "progress": progress, "error": state.get("error", "")}


def package_json(pkg: ExportPackage, config: Any | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": pkg.id,
        "request_id": pkg.request_id,
        "file_name": pkg.file_name,
        "sha256": pkg.sha256 or None,
        "size": pkg.size,
        "files": pkg.files,
        "created_by": pkg.created_by,
        "created_at": pkg.created_at.isoformat(),
        "url": f"/api/exports/{pkg.id}/download",
        "status_url": f"/api/exports/{pkg.id}",
    }
    if config is not None:
        out |= package_status(config, pkg)
    return out


def start_export(db: Database, config: Any, request_id: int, actor: str) -> tuple[int, Gathered]:
    """Gather what the request selected and record the package as started (audited); nothing written yet."""
    g = db.run(lambda s: gather(s, request_id))
    now = dt.datetime.now(dt.UTC)
    name = f"request-{request_id}-{now.strftime('%Y%m%dT%H%M%S%fZ')}.zip"

    def add(s: Session) -> int:
        pkg = ExportPackage(
            request_id=request_id, file_name=name, sha256=PENDING, size=0, files=0, created_by=actor, created_at=now
        )
        s.add(pkg)
        s.flush()
        details = {"package_id": pkg.id, "file": name, "attempts": [a["attempt_id"] for a in g.attempts],
                   "media_bytes": g.total_bytes}
        audit.append(s, actor, EXPORT_START, f"request:{request_id}", details)
        return pkg.id

    package_id = db.run(add)
    _State(config, name, {"package_id": package_id, "request_id": request_id, "actor": actor, "runs": 1}).save(
        status="running", progress=ExportProgress(bytes_total=g.total_bytes).to_json(), error=""
    )
    return package_id, g


def restart_export(db: Database, config: Any, package_id: int, actor: str) -> Gathered:
    """Take up an interrupted or failed export again under the same package id (audited). The ZIP is written
    again from its first byte with what the request selects now; the finished package's download resumes."""

    def take(s: Session) -> tuple[ExportPackage, Gathered, int]:
        pkg = s.get(ExportPackage, package_id)
        if pkg is None:
            raise ExportNotFound(f"no export package {package_id}")
        st = package_status(config, pkg)
        if st["status"] not in ("interrupted", "failed"):
            raise ExportConflict(f"export package {package_id} is {st['status']}; only an interrupted or failed "
                                 "export can be resumed")
        g = gather(s, pkg.request_id)
        runs = int((read_state(config, pkg.file_name) or {}).get("runs", 1)) + 1
        details = {"package_id": pkg.id, "file": pkg.file_name, "was": st["status"], "run": runs,
                   "progress_before": st["progress"]}
        audit.append(s, actor, EXPORT_RESUME, f"request:{pkg.request_id}", details)
        return pkg, g, runs

    pkg, g, runs = db.run(take)
    base = {"package_id": pkg.id, "request_id": pkg.request_id, "actor": actor, "runs": runs}
    _State(config, pkg.file_name, base).save(
        status="running", progress=ExportProgress(bytes_total=g.total_bytes).to_json(), error=""
    )
    return g


def write_export(
    db: Database,
    storage: MediaStorage,
    config: Any,
    package_id: int,
    g: Gathered,
    actor: str,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write the started package's ZIP (to `<name>.partial`, renamed when complete and fsynced), then record
    its hash and size and audit the export. A failure is audited and leaves the package resumable."""
    pkg = db.run(lambda s: s.get(ExportPackage, package_id))
    if pkg is None:
        raise ExportNotFound(f"no export package {package_id}")
    request_id, name, now = pkg.request_id, pkg.file_name, pkg.created_at
    state = _State(config, name, read_state(config, name) or {"package_id": package_id, "request_id": request_id})
    key = load_or_create(data_dir(config))
    folder = exports_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (name + ".partial")

    last = [ExportProgress()]

    def report(p: ExportProgress) -> None:
        last[0] = p
        state.progress(p)
        if progress:
            progress(p)

    work = folder / (name + ".work")
    try:
        videos = make_ident_videos(g, storage, config, work, report) if config.export_identified_video else None
        with partial.open("wb") as fh:
            hw = PackageSink(fh)
            try:
                manifest = write_package(hw, g, storage, key, actor, now, report, videos)
            finally:
                hw.close()
            os.fsync(fh.fileno())
        os.replace(partial, folder / name)
        shutil.rmtree(work, ignore_errors=True)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"  # Ctrl-C in the CLI
        error = str(exc) or type(exc).__name__
        state.save(status=status, error=error)
        with contextlib.suppress(Exception):  # the failure itself must not be hidden by a database error
            db.run(lambda s: audit.append(s, actor, EXPORT_FAIL, f"request:{request_id}",
                                          {"package_id": package_id, "status": status, "error": error[:500]}))
        raise

    state.save(progress=last[0].to_json())  # final figures first: the row below says "done" once committed

    def record(s: Session) -> dict[str, Any]:
        row = s.get(ExportPackage, package_id)
        assert row is not None
        row.sha256, row.size, row.files = hw.sha.hexdigest(), hw.size, len(manifest["files"])
        s.flush()
        audit.append(
            s,
            actor,
            audit.EXPORT,
            f"request:{request_id}",
            {
                "package_id": row.id,
                "file": name,
                "sha256": row.sha256,
                "size": row.size,
                "attempts": manifest["attempts"],
                "files": row.files,
                "absent_media": len(manifest["absent_media"]),
            },
        )
        return package_json(row)

    out = db.run(record)
    state.save(status="done")
    return out | {"status": "done"}


def run_export(
    db: Database, storage: MediaStorage, config: Any, request_id: int, actor: str, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Start and write a package for the request in this thread (the CLI, tests). Returns its row as JSON."""
    package_id, g = start_export(db, config, request_id, actor)
    return write_export(db, storage, config, package_id, g, actor, progress)


def start_job(db: Database, storage: MediaStorage, config: Any, package_id: int, g: Gathered, actor: str) -> Job:
    """Write the package on a background thread of this process (a daemon: if the server stops, the package is
    left interrupted and can be resumed); its progress is read from the returned Job."""
    key = _job_key(config, package_id)
    with _JOBS_LOCK:
        running = JOBS.get(key)
        if running is not None and not running.done.is_set():
            raise ExportConflict(f"export package {package_id} is already being written")
        job = JOBS[key] = Job(package_id)

    def progress(p: ExportProgress) -> None:
        job.progress = p

    def target() -> None:
        try:
            job.result = write_export(db, storage, config, package_id, g, actor, progress)
        except BaseException as exc:  # kept for whoever waits; the state file and audit say it too
            job.error = exc
        finally:
            job.done.set()
            with _JOBS_LOCK:
                if JOBS.get(key) is job:
                    del JOBS[key]

    threading.Thread(target=target, name=f"export-{package_id}", daemon=True).start()
    return job

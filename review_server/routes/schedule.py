"""The schedule (exam days, specialties, tasks, examiner assignments) and candidates. Candidates are
listed by accreditation number only; their personal details are a separate, admin-only, audited read."""

from __future__ import annotations

import json

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, auth
from ..models import Candidate, CandidatePersonal, ExamDay, ExaminerAssignment, Specialty, Station, Task, User
from ..roles import Role, requires
from ..validate import ACCRED_RE, Fields, path_ident
from ..web import ApiError, db_run, identity, read_json

routes = web.RouteTableDef()


def by_code(s: Session, model, code: str | None, where: str):
    if code is None:
        return None
    row = s.scalar(select(model).where(model.code == code))
    if row is None:
        raise ApiError(422, f"no {model.__tablename__[:-1]} with code {code!r}", where)
    return row


# --- schedule: exam days, specialties, tasks ----------------------------------------------------


@routes.get("/api/exam-days", allow_head=False)
@requires("schedule.view")
async def list_days(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict]:
        days = s.scalars(select(ExamDay).order_by(ExamDay.day, ExamDay.id))
        return [{"id": d.id, "day": d.day.isoformat(), "title": d.title} for d in days]

    return web.json_response({"exam_days": await db_run(request, q)})


@routes.post("/api/exam-days")
@requires("schedule.manage")
async def add_day(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"day", "title"})
    day, title = f.date("day"), f.name("title", required=False, default="")

    def add(s: Session) -> dict:
        d = ExamDay(day=day, title=title)
        s.add(d)
        s.flush()
        return {"id": d.id, "day": d.day.isoformat(), "title": d.title}

    return web.json_response(await db_run(request, add), status=201)


@routes.get("/api/specialties", allow_head=False)
@requires("schedule.view")
async def list_specialties(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict]:
        return [{"code": x.code, "name": x.name} for x in s.scalars(select(Specialty).order_by(Specialty.code))]

    return web.json_response({"specialties": await db_run(request, q)})


@routes.post("/api/specialties")
@requires("schedule.manage")
async def add_specialty(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"code", "name"})
    code, name = f.ident("code"), f.name("name")

    def add(s: Session) -> dict:
        if s.scalar(select(Specialty.id).where(Specialty.code == code)) is not None:
            raise ApiError(409, f"specialty {code!r} already exists", "code")
        s.add(Specialty(code=code, name=name))
        return {"code": code, "name": name}

    return web.json_response(await db_run(request, add), status=201)


@routes.get("/api/tasks", allow_head=False)
@requires("schedule.view")
async def list_tasks(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict]:
        return [{"code": t.code, "title": t.title} for t in s.scalars(select(Task).order_by(Task.code))]

    return web.json_response({"tasks": await db_run(request, q)})


@routes.post("/api/tasks")
@requires("schedule.manage")
async def add_task(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"code", "title", "specialty"})
    code, title, specialty = f.ident("code"), f.name("title", max_len=300), f.ident("specialty", required=False)

    def add(s: Session) -> dict:
        if s.scalar(select(Task.id).where(Task.code == code)) is not None:
            raise ApiError(409, f"task {code!r} already exists", "code")
        sp = by_code(s, Specialty, specialty, "specialty")
        s.add(Task(code=code, title=title, specialty_id=sp.id if sp else None))
        return {"code": code, "title": title}

    return web.json_response(await db_run(request, add), status=201)


@routes.post("/api/assignments")
@requires("schedule.manage")
async def add_assignment(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"login", "station", "exam_day_id"})
    login, station, day_id = (
        f.ident("login", auth.LOGIN_RE),
        f.ident("station"),
        f.integer("exam_day_id", required=False),
    )

    def add(s: Session) -> dict:
        user = s.scalar(select(User).where(User.login == login))
        if user is None or user.role != Role.EXAMINER:
            raise ApiError(422, f"no examiner {login!r}", "login")
        st = s.scalar(select(Station).where(Station.code == station))
        if st is None:
            raise ApiError(422, f"no station {station!r}", "station")
        if day_id is not None and s.get(ExamDay, day_id) is None:
            raise ApiError(422, f"no exam day {day_id}", "exam_day_id")
        day_match = (
            ExaminerAssignment.exam_day_id.is_(None) if day_id is None else ExaminerAssignment.exam_day_id == day_id
        )
        same = select(ExaminerAssignment.id).where(
            ExaminerAssignment.user_id == user.id, ExaminerAssignment.station_id == st.id, day_match
        )
        if s.scalar(same) is not None:
            raise ApiError(409, f"{login!r} is already assigned to {station!r} for this day", "station")
        s.add(ExaminerAssignment(user_id=user.id, station_id=st.id, exam_day_id=day_id))
        return {"login": login, "station": station, "exam_day_id": day_id}

    return web.json_response(await db_run(request, add), status=201)


# --- candidates ---------------------------------------------------------------------------------


@routes.get("/api/candidates", allow_head=False)
@requires("candidates.view")
async def list_candidates(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict]:
        rows = s.scalars(select(Candidate).order_by(Candidate.accreditation_number))
        return [{"accreditation_number": c.accreditation_number} for c in rows]  # never names here

    return web.json_response({"candidates": await db_run(request, q)})


@routes.post("/api/candidates")
@requires("schedule.manage")
async def add_candidate(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"accreditation_number", "specialty", "personal"})
    number = f.ident("accreditation_number", ACCRED_RE)
    specialty = f.ident("specialty", required=False)
    personal = None
    if f.obj.get("personal") is not None:
        p = Fields(f.obj["personal"], "personal", allowed={"last_name", "first_name", "middle_name"})
        personal = {k: p.name(k, required=False, default="") for k in ("last_name", "first_name", "middle_name")}

    def add(s: Session) -> dict:
        if s.scalar(select(Candidate.id).where(Candidate.accreditation_number == number)) is not None:
            raise ApiError(409, f"candidate {number!r} already exists", "accreditation_number")
        sp = by_code(s, Specialty, specialty, "specialty")
        c = Candidate(accreditation_number=number, specialty_id=sp.id if sp else None)
        s.add(c)
        s.flush()
        if personal:
            s.add(CandidatePersonal(candidate_id=c.id, **personal))
        return {"accreditation_number": number}

    return web.json_response(await db_run(request, add), status=201)


@routes.get("/api/candidates/{number}/personal", allow_head=False)
@requires("candidates.personal")
async def candidate_personal(request: web.Request) -> web.Response:
    number = path_ident(request, "number", ACCRED_RE)
    who = identity(request)

    def q(s: Session) -> dict:
        c = s.scalar(select(Candidate).where(Candidate.accreditation_number == number))
        if c is None:
            raise ApiError(404, f"no candidate {number!r}", "URL number")
        p = s.get(CandidatePersonal, c.id)
        audit.append(s, who.actor, audit.PERSONAL_VIEW, number)
        names = {"last_name": p.last_name, "first_name": p.first_name, "middle_name": p.middle_name} if p else None
        return {"accreditation_number": number, "personal": names}

    return web.json_response(await db_run(request, q), dumps=_dumps)


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)

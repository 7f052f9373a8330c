"""Administration: users, stations and their tokens, exam days, specialties, tasks, candidates,
examiner assignments, and the audit-chain check."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, auth
from ..app import ApiError, db_run, identity
from ..models import (
    Candidate,
    CandidatePersonal,
    ExamDay,
    ExaminerAssignment,
    Specialty,
    Station,
    StationToken,
    Task,
    User,
)
from ..roles import Role, requires
from ..validate import ACCRED_RE, Fields, path_ident, path_int, read_json

routes = web.RouteTableDef()


def _user_json(u: User) -> dict:
    return {"login": u.login, "role": u.role, "display_name": u.display_name, "active": u.active}


def _by_code(s: Session, model, code: str | None, where: str):  # type: ignore[no-untyped-def]
    if code is None:
        return None
    row = s.scalar(select(model).where(model.code == code))
    if row is None:
        raise ApiError(422, f"no {model.__tablename__[:-1]} with code {code!r}", where)
    return row


# --- users --------------------------------------------------------------------------------------


@routes.get("/api/users", allow_head=False)
@requires("users.manage")
async def list_users(request: web.Request) -> web.Response:
    users = await db_run(request, lambda s: [_user_json(u) for u in s.scalars(select(User).order_by(User.login))])
    return web.json_response({"users": users})


@routes.post("/api/users")
@requires("users.manage")
async def add_user(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"login", "password", "role", "display_name"})
    login = f.ident("login", auth.LOGIN_RE)
    password = f._get("password", True)
    try:
        auth.validate_password(password)
    except ValueError as exc:
        raise ApiError(422, str(exc), "password") from None
    role = f.choice("role", tuple(r.value for r in Role))
    display_name = f.text("display_name", required=False, default="")
    who = identity(request)

    def add(s: Session) -> dict:
        if s.scalar(select(User.id).where(User.login == login)) is not None:
            raise ApiError(409, f"user {login!r} already exists", "login")
        user = auth.add_user(s, login, password, role, display_name)
        audit.append(s, who.actor, audit.USER_ADD, login, {"role": role})
        return _user_json(user)

    return web.json_response(await db_run(request, add), status=201)


@routes.delete("/api/users/{login}")
@requires("users.manage")
async def disable_user(request: web.Request) -> web.Response:
    login = path_ident(request, "login", auth.LOGIN_RE)
    who = identity(request)

    def disable(s: Session) -> dict:
        user = s.scalar(select(User).where(User.login == login))
        if user is None:
            raise ApiError(404, f"no user {login!r}", "URL login")
        if user.id == who.user_id:
            raise ApiError(409, "you cannot disable yourself", "URL login")
        user.active = False  # kept, not deleted: the audit log refers to it
        from ..models import UserSession

        for us in s.scalars(select(UserSession).where(UserSession.user_id == user.id)):
            s.delete(us)
        audit.append(s, who.actor, audit.USER_DISABLE, login)
        return _user_json(user)

    return web.json_response(await db_run(request, disable))


# --- stations and tokens ------------------------------------------------------------------------


def _station_json(st: Station, tokens: list[StationToken] | None = None) -> dict:
    out = {"code": st.code, "name": st.name}
    if tokens is not None:
        out["tokens"] = [
            {"id": t.id, "created_at": t.created_at.isoformat(), "revoked": t.revoked_at is not None} for t in tokens
        ]
    return out


@routes.get("/api/stations", allow_head=False)
@requires("stations.manage")
async def list_stations(request: web.Request) -> web.Response:
    def q(s: Session) -> list[dict]:
        return [_station_json(st, list(st.tokens)) for st in s.scalars(select(Station).order_by(Station.code))]

    return web.json_response({"stations": await db_run(request, q)})


@routes.post("/api/stations")
@requires("stations.manage")
async def add_station(request: web.Request) -> web.Response:
    f = Fields(await read_json(request), allowed={"code", "name", "specialty", "task"})
    code, name = f.ident("code"), f.text("name", required=False, default="")
    specialty, task = f.ident("specialty", required=False), f.ident("task", required=False)
    who = identity(request)

    def add(s: Session) -> dict:
        if s.scalar(select(Station.id).where(Station.code == code)) is not None:
            raise ApiError(409, f"station {code!r} already exists", "code")
        sp = _by_code(s, Specialty, specialty, "specialty")
        tk = _by_code(s, Task, task, "task")
        st = Station(code=code, name=name, specialty_id=sp.id if sp else None, task_id=tk.id if tk else None)
        s.add(st)
        s.flush()
        audit.append(s, who.actor, audit.STATION_ADD, code)
        return _station_json(st)

    return web.json_response(await db_run(request, add), status=201)


def _station(s: Session, code: str) -> Station:
    st = s.scalar(select(Station).where(Station.code == code))
    if st is None:
        raise ApiError(404, f"no station {code!r}", "URL code")
    return st


@routes.post("/api/stations/{code}/tokens")
@requires("stations.manage")
async def issue_token(request: web.Request) -> web.Response:
    code = path_ident(request, "code")
    who = identity(request)

    def issue(s: Session) -> dict:
        st = _station(s, code)
        token, row = auth.issue_station_token(s, st)
        audit.append(s, who.actor, audit.STATION_TOKEN_ISSUE, code, {"token_id": row.id})
        return {"station": code, "token_id": row.id, "token": token}

    # The token is shown this once; only its hash is kept.
    return web.json_response(await db_run(request, issue), status=201)


@routes.delete("/api/stations/{code}/tokens/{token_id}")
@requires("stations.manage")
async def revoke_token(request: web.Request) -> web.Response:
    code, token_id = path_ident(request, "code"), path_int(request, "token_id")
    who = identity(request)

    def revoke(s: Session) -> dict:
        st = _station(s, code)
        if s.get(StationToken, token_id) is None or s.get(StationToken, token_id).station_id != st.id:
            raise ApiError(404, f"station {code!r} has no token {token_id}", "URL token_id")
        n = auth.revoke_station_tokens(s, st, token_id)
        audit.append(s, who.actor, audit.STATION_TOKEN_REVOKE, code, {"token_id": token_id})
        return {"station": code, "token_id": token_id, "revoked": n}

    return web.json_response(await db_run(request, revoke))


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
    day, title = f.date("day"), f.text("title", required=False, default="")

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
    code, name = f.ident("code"), f.text("name")

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
    code, title, specialty = f.ident("code"), f.text("title", max_len=300), f.ident("specialty", required=False)

    def add(s: Session) -> dict:
        if s.scalar(select(Task.id).where(Task.code == code)) is not None:
            raise ApiError(409, f"task {code!r} already exists", "code")
        sp = _by_code(s, Specialty, specialty, "specialty")
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
        personal = {k: p.text(k, required=False, default="") for k in ("last_name", "first_name", "middle_name")}

    def add(s: Session) -> dict:
        if s.scalar(select(Candidate.id).where(Candidate.accreditation_number == number)) is not None:
            raise ApiError(409, f"candidate {number!r} already exists", "accreditation_number")
        sp = _by_code(s, Specialty, specialty, "specialty")
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
    import json

    return json.dumps(obj, ensure_ascii=False)


# --- audit --------------------------------------------------------------------------------------


@routes.get("/api/audit/verify", allow_head=False)
@requires("audit.verify")
async def audit_verify(request: web.Request) -> web.Response:
    result = await db_run(request, audit.verify)
    return web.json_response(result.as_dict())

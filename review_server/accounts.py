"""What an admin does to accounts, in one place for the JSON API (routes/admin.py) and the Users page
(routes/console_users.py): each change in the caller's transaction, with its audit row. A refusal is an
`AccountError` naming the input it is about (`field`) and why (`key`: the catalogue's "form" section; `message`:
the API's English)."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, auth
from .models import ExamDay, ExaminerAssignment, Station, User, UserSession
from .roles import Role

USER_ENABLE = "user.enable"
USER_ROLE = "user.role"
USER_PASSWORD_RESET = "user.password.reset"
ASSIGNMENT_ADD = "assignment.add"
ASSIGNMENT_REMOVE = "assignment.remove"


class AccountError(ValueError):
    def __init__(self, field: str, key: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.key, self.status = field, key, status


def new_password() -> str:
    """A password an admin hands over once (16 characters, ~96 bits)."""
    return secrets.token_urlsafe(12)


def user(s: Session, login: str) -> User:
    found = s.scalar(select(User).where(User.login == login))
    if found is None:
        raise AccountError("login", "unknown", f"no user {login!r}", 404)
    return found


def _end_sessions(s: Session, u: User) -> None:
    for us in s.scalars(select(UserSession).where(UserSession.user_id == u.id)):
        s.delete(us)


def add(s: Session, login: str, password: str, role: str, display_name: str, actor: str) -> User:
    if s.scalar(select(User.id).where(User.login == login)) is not None:
        raise AccountError("login", "exists", f"user {login!r} already exists", 409)
    u = auth.add_user(s, login, password, role, display_name)
    audit.append(s, actor, audit.USER_ADD, login, {"role": role})
    return u


def set_active(s: Session, login: str, active: bool, actor: str, actor_id: int | None) -> User:
    """Disable (kept, not deleted: the audit log refers to it; its sessions end at once) or enable again."""
    u = user(s, login)
    if u.id == actor_id:
        raise AccountError("login", "self", "you cannot disable yourself", 409)
    u.active = active
    if not active:
        _end_sessions(s, u)
    audit.append(s, actor, audit.USER_DISABLE if not active else USER_ENABLE, login)
    return u


def set_role(s: Session, login: str, role: str, actor: str, actor_id: int | None) -> User:
    u = user(s, login)
    if u.id == actor_id:
        raise AccountError("role", "self", "you cannot change your own role", 409)
    was, u.role = u.role, role
    _end_sessions(s, u)  # what the sessions may do changed
    audit.append(s, actor, USER_ROLE, login, {"role": role, "was": was})
    return u


def reset_password(s: Session, login: str, actor: str) -> str:
    """A new password for the user (shown once to the admin, only its hash kept); their sessions end."""
    u = user(s, login)
    password = new_password()
    u.password_hash = auth.hash_password(password)
    _end_sessions(s, u)
    audit.append(s, actor, USER_PASSWORD_RESET, login)
    return password


def assign(s: Session, login: str, station_code: str, day_id: int | None, actor: str) -> ExaminerAssignment:
    """The examiner marks at the station on that exam day (None: on every day)."""
    u = s.scalar(select(User).where(User.login == login))
    if u is None or u.role != Role.EXAMINER:
        raise AccountError("login", "not_examiner", f"no examiner {login!r}")
    st = s.scalar(select(Station).where(Station.code == station_code))
    if st is None:
        raise AccountError("station", "unknown", f"no station {station_code!r}")
    if day_id is not None and s.get(ExamDay, day_id) is None:
        raise AccountError("exam_day_id", "unknown", f"no exam day {day_id}")
    day_match = ExaminerAssignment.exam_day_id.is_(None) if day_id is None else ExaminerAssignment.exam_day_id == day_id
    same = select(ExaminerAssignment.id).where(ExaminerAssignment.user_id == u.id,
                                               ExaminerAssignment.station_id == st.id, day_match)
    if s.scalar(same) is not None:
        raise AccountError("station", "exists", f"{login!r} is already assigned to {station_code!r} for this day", 409)
    row = ExaminerAssignment(user_id=u.id, station_id=st.id, exam_day_id=day_id)
    s.add(row)
    s.flush()
    audit.append(s, actor, ASSIGNMENT_ADD, login, {"station": station_code, "exam_day_id": day_id})
    return row


def unassign(s: Session, assignment_id: int, actor: str) -> None:
    row = s.get(ExaminerAssignment, assignment_id)
    if row is None:
        raise AccountError("assignment", "unknown", f"no assignment {assignment_id}", 404)
    u, st = s.get(User, row.user_id), s.get(Station, row.station_id)
    s.delete(row)
    audit.append(s, actor, ASSIGNMENT_REMOVE, u.login if u else "",
                 {"station": st.code if st else None, "exam_day_id": row.exam_day_id})


def days_on(s: Session, day: dt.date) -> list[ExamDay]:
    return list(s.scalars(select(ExamDay).where(ExamDay.day == day).order_by(ExamDay.id)))

"""Accounts, sessions, CSRF, login throttling and station tokens.

- Passwords: Argon2id (argon2-cffi), rehashed on login when the parameters change.
- Sessions: a random token in a Secure, HttpOnly, SameSite=Strict cookie; the database keeps only
  its SHA-256, so a leaked database does not leak live sessions. Each session has its own CSRF token.
- Throttling: review_server/throttle.py (per account and address, and per address; counted before the
  password is compared).
- Station tokens: random, shown once, stored as SHA-256, revocable; sent as `Authorization: Bearer`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import Station, StationToken, User, UserSession, utcnow
from .names import name_problem
from .roles import STATION, Role

SESSION_COOKIE = "osce_session"
LOGIN_CSRF_COOKIE = "osce_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
STATION_TOKEN_PREFIX = "osce_st_"

LOGIN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
# Verifying against this keeps the timing of "no such user" close to "wrong password".
_DUMMY_HASH = _hasher.hash("not a password, only for timing")


def configure_passwords(time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Set the Argon2id cost for new hashes (from ServerConfig). Existing hashes keep verifying and are
    rehashed at the next successful login when their parameters differ."""
    global _hasher, _DUMMY_HASH
    if (time_cost, memory_kib, parallelism) == (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism):
        return
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _DUMMY_HASH = _hasher.hash("not a password, only for timing")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def validate_login(login: object) -> str:
    if not isinstance(login, str) or not LOGIN_RE.fullmatch(login):
        raise ValueError("login: 1-64 characters: lowercase latin letters, digits, '.', '_' or '-'")
    return login


def validate_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 1024:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    if not encodable(password):
        raise ValueError("password: invalid Unicode (unpaired surrogate)")
    return password


def encodable(text: str) -> bool:
    """True if the text is valid Unicode (JSON can carry unpaired surrogates that UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def add_user(session: Session, login: str, password: str, role: str, display_name: str = "") -> User:
    validate_login(login)
    validate_password(password)
    if problem := name_problem(display_name):
        raise ValueError(f"display name: {problem}")
    role = Role(role).value
    if session.scalar(select(User.id).where(User.login == login)) is not None:
        raise ValueError(f"login: user {login!r} already exists")
    user = User(login=login, password_hash=hash_password(password), role=role, display_name=display_name)
    session.add(user)
    session.flush()
    return user


@dataclass(frozen=True)
class Identity:
    """Who is making a request: a user (by session), a station (by token) or nobody."""

    kind: str  # "user" | "station" | "anonymous"
    principal: str | None  # a Role value, STATION, or None
    user_id: int | None = None
    login: str | None = None
    station_id: int | None = None
    station_code: str | None = None
    session_id: int | None = None
    csrf_token: str | None = None

    @property
    def actor(self) -> str:
        if self.kind == "user":
            return f"user:{self.login}"
        if self.kind == "station":
            return f"station:{self.station_code}"
        return "anonymous"


ANONYMOUS = Identity("anonymous", None)


# --- sessions -----------------------------------------------------------------------------------


def create_session(session: Session, user: User, ttl_s: int) -> tuple[str, UserSession]:
    """Return (cookie token, row). The token is shown to the client only."""
    token = secrets.token_urlsafe(32)
    row = UserSession(
        token_sha256=sha256_hex(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + dt.timedelta(seconds=ttl_s),
    )
    session.add(row)
    session.flush()
    return token, row


def identity_from_session(session: Session, token: str) -> Identity | None:
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_sha256 == sha256_hex(token))
    ).first()
    if row is None:
        return None
    us, user = row
    if us.expires_at <= utcnow() or not user.active:
        return None
    return Identity("user", user.role, user_id=user.id, login=user.login, session_id=us.id, csrf_token=us.csrf_token)


def end_session(session: Session, session_id: int) -> None:
    session.execute(delete(UserSession).where(UserSession.id == session_id))


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest((expected or "").encode(), (given or "").encode())


# --- passwords at login ---------------------------------------------------------------------------


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Compare a password with an account's stored hash; with no account (None) a dummy hash is compared, so
    that "no such user" takes as long as a wrong password. Slow by design (Argon2id): call it off the event
    loop and outside a database transaction."""
    if stored_hash is None:
        check_password(_DUMMY_HASH, password)
        return False
    return check_password(stored_hash, password)


def rehash_if_needed(user: User, password: str) -> None:
    """After a successful login: rehash the password if the Argon2id parameters changed."""
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The active user with this login and password, or None (for the CLI and tests; the login route throttles
    first, see routes/session.py)."""
    user = session.scalar(select(User).where(User.login == login))
    ok = password_matches(user.password_hash if user is not None and user.active else None, password)
    if user is None or not ok:
        return None
    rehash_if_needed(user, password)
    return user


# --- station tokens -----------------------------------------------------------------------------


def issue_station_token(session: Session, station: Station) -> tuple[str, StationToken]:
    token = STATION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = StationToken(station_id=station.id, token_sha256=sha256_hex(token))
    session.add(row)
    session.flush()
    return token, row


def revoke_station_tokens(session: Session, station: Station, token_id: int | None = None) -> int:
    """Revoke one token (by id) or all of a station's live tokens; return how many were revoked."""
    q = select(StationToken).where(StationToken.station_id == station.id, StationToken.revoked_at.is_(None))
    if token_id is not None:
        q = q.where(StationToken.id == token_id)
    n = 0
    for tok in session.scalars(q):
        tok.revoked_at = utcnow()
        n += 1
    return n


def identity_from_station_token(session: Session, token: str) -> Identity | None:
    if not token.startswith(STATION_TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.execute(
        select(StationToken, Station)
        .join(Station, Station.id == StationToken.station_id)
        .where(StationToken.token_sha256 == sha256_hex(token), StationToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    _tok, station = row
    return Identity("station", STATION, station_id=station.id, station_code=station.code)

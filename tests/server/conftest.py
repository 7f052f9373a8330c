"""Fixtures for the review server tests.

Every database test runs twice: on SQLite (a fresh file) and on PostgreSQL (a fresh schema in the
database named by OSCE_TEST_PG_URL, dropped afterwards). Without OSCE_TEST_PG_URL the PostgreSQL half is
skipped locally and fails under CI, so CI cannot silently test SQLite only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import create_engine, text

from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.db import Database
from review_server.migrations import upgrade
from review_server.models import Station
from review_server.roles import Role
from review_server.storage import LocalStorage
from review_server.web import DB

PASSWORD = "correct horse battery"
ROLES = [r.value for r in Role]
# TEST-ONLY Argon2id cost: the production default (64 MiB, 3 passes) would make the suite take minutes.
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> None:
    auth.configure_passwords(1, 8, 1)


def _pg_base_url() -> str:
    url = os.environ.get("OSCE_TEST_PG_URL")
    if not url:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("OSCE_TEST_PG_URL is not set under CI: PostgreSQL tests must run (see scripts/services.sh)")
        pytest.skip('OSCE_TEST_PG_URL not set: start PostgreSQL with `eval "$(bash scripts/services.sh)"`')
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (nothing migrated yet) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'osce.db'}"
        return
    base = _pg_base_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def migrated_url(db_url: str) -> str:
    upgrade(db_url)
    return db_url


@pytest.fixture
def db(migrated_url: str) -> Iterator[Database]:
    database = Database(migrated_url)
    yield database
    database.dispose()


@pytest.fixture
def config(migrated_url: str, tmp_path: Path) -> ServerConfig:
    return ServerConfig(
        database_url=migrated_url,
        media_dir=tmp_path / "media",
        insecure_cookies=True,  # the test client speaks plain http
        max_json_bytes=64 * 1024,
        max_fragment_bytes=4 * 1024 * 1024,
        **CHEAP_ARGON2,  # type: ignore[arg-type]
    )


class Api:
    """A test client plus helpers to sign in as any role and to act as a station."""

    def __init__(self, client: TestClient, app: Any) -> None:
        self.client = client
        self.app = app
        self.db: Database = app[DB]

    def run(self, fn: Any) -> Any:
        return self.db.run(fn)

    def add_user(self, login: str, role: str) -> None:
        self.run(lambda s: auth.add_user(s, login, PASSWORD, role))

    def session_for(self, login: str) -> tuple[str, str]:
        """A real session row for `login` (as a login would create): (cookie token, CSRF token)."""
        from sqlalchemy import select

        from review_server.models import User

        def make(s):  # type: ignore[no-untyped-def]
            user = s.scalar(select(User).where(User.login == login))
            token, row = auth.create_session(s, user, 3600)
            return token, row.csrf_token

        return self.run(make)

    def add_station(self, code: str) -> str:
        def make(s):  # type: ignore[no-untyped-def]
            st = Station(code=code, name=code)
            s.add(st)
            s.flush()
            return auth.issue_station_token(s, st)[0]

        return self.run(make)

    async def login(self, login: str, password: str = PASSWORD, *, ip_header: str | None = None) -> Any:
        """Sign in through the login form's JSON variant (GET /login first, for the login CSRF token)."""
        r = await self.client.get("/login")
        token = r.headers["X-CSRF-Token"]
        return await self.client.post(
            "/login", json={"login": login, "password": password}, headers={"X-CSRF-Token": token}
        )

    @staticmethod
    def user_headers(session: tuple[str, str]) -> dict[str, str]:
        return {"Cookie": f"{auth.SESSION_COOKIE}={session[0]}", "X-CSRF-Token": session[1]}

    @staticmethod
    def station_headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(config: ServerConfig) -> AsyncIterator[Api]:
    app = create_app(config, storage=LocalStorage(config.media_dir))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Api(client, app)


class World:
    """One user per role (login = role name), station S1 with a token, the examiner assigned to S1."""

    def __init__(self, api: Api) -> None:
        self.api = api
        for role in ROLES:
            api.add_user(role, role)
        self.station_token = api.add_station("S1")
        self.other_station_token = api.add_station("S2")

        def assign(s):  # type: ignore[no-untyped-def]
            from sqlalchemy import select

            from review_server.models import ExaminerAssignment, User

            uid = s.scalar(select(User.id).where(User.login == "examiner"))
            sid = s.scalar(select(Station.id).where(Station.code == "S1"))
            s.add(ExaminerAssignment(user_id=uid, station_id=sid, exam_day_id=None))

        api.run(assign)

    def schedule(self, *attempt_ids: str, station: str = "S1") -> None:
        """Put attempts on the schedule of `station` (what `osce server schedule import` does): a station sends
        marks, media, CPR figures and health events only for its own scheduled attempts."""

        def make(s):  # type: ignore[no-untyped-def]
            from sqlalchemy import select

            from review_server.models import Attempt

            sid = s.scalar(select(Station.id).where(Station.code == station))
            for attempt_id in attempt_ids:
                if s.get(Attempt, attempt_id) is None:
                    s.add(Attempt(id=attempt_id, station_id=sid))

        self.api.run(make)

    def sign(self, events: list[dict[str, Any]], token: str | None = None) -> list[dict[str, Any]]:
        """The events as the station's agent sends them: signed by each examiner's tablet key (tests/mark_signing.py)
        for the station of `token` (default S1)."""
        from tests.mark_signing import Signer

        if not hasattr(self, "_signer"):
            self._signer = Signer(self.api.run)
        station = "S2" if token is not None and token == self.other_station_token else "S1"
        return self._signer.sign(station, events)

    def headers(self, principal: str | None) -> dict[str, str]:
        """Request headers for a principal: None (anonymous), a role name (a fresh session) or 'station'."""
        if principal is None:
            return {}
        if principal == "station":
            return Api.station_headers(self.station_token)
        return Api.user_headers(self.api.session_for(principal))


@pytest.fixture
def world(api: Api) -> World:
    return World(api)

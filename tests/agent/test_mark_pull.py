"""Marks made on the server come back to the station's journal (station_agent/mark_pull.py) from a real review
server (SQLite) over HTTP: once each, as already synced (never uploaded again), only the station's own, and the
in-room page's next mark follows them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from checklists.loader import DATA_DIR, load_checklist
from checklists.marks import MarkEvent
from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.migrations import upgrade
from review_server.models import Attempt, ExaminerAssignment, Station, User
from review_server.storage import LocalStorage
from review_server.web import DB
from station_agent.journal import Journal
from station_agent.mark_pull import MarkPull
from tests.mark_signing import Signer

HASH = load_checklist(DATA_DIR / "01_basic_cpr_adult.yaml").content_hash


class Server:
    def __init__(self, client: TestClient, app: Any) -> None:
        self.client, self.db = client, app[DB]
        self.url = str(client.make_url("")).rstrip("/")
        self.tokens = {code: self._station(code) for code in ("st1", "st2")}
        self.db.run(lambda s: auth.add_user(s, "examiner1", "a long demo password", "examiner"))

        def assign(s):  # type: ignore[no-untyped-def]
            uid = s.scalar(select(User.id).where(User.login == "examiner1"))
            sid = s.scalar(select(Station.id).where(Station.code == "st1"))
            s.add(ExaminerAssignment(user_id=uid, station_id=sid, exam_day_id=None))
            token, row = auth.create_session(s, s.get(User, uid), 3600)
            return {"Cookie": f"{auth.SESSION_COOKIE}={token}", "X-CSRF-Token": row.csrf_token}

        self.examiner = self.db.run(assign)

    def _station(self, code: str) -> str:
        def make(s):  # type: ignore[no-untyped-def]
            st = Station(code=code, name=code)
            s.add(st)
            s.flush()
            s.add(Attempt(id={"st1": "A1", "st2": "B1"}[code], station_id=st.id))  # on the schedule
            return auth.issue_station_token(s, st)[0]

        return self.db.run(make)

    async def station_upload(self, code: str, *events: MarkEvent) -> None:
        signed = Signer(self.db.run).sign(code, [e.to_json() for e in events])  # as the tablet signs them
        r = await self.client.post("/api/marks", json={"events": signed},
                                   headers={"Authorization": f"Bearer {self.tokens[code]}"})
        assert r.status == 200, await r.text()

    async def examiner_mark(self, attempt: str, item: int, done: bool, seq: int) -> str:
        event_id = str(uuid.uuid4())
        body = {"event_id": event_id, "kind": "mark", "item": item, "done": done, "reason": "комната наблюдения",
                "checklist_hash": HASH, "wall_time": "2026-06-01T09:30:00.000Z", "seq": seq}
        r = await self.client.post(f"/api/attempts/{attempt}/marks", json=body, headers=self.examiner)
        assert r.status == 200, await r.text()
        return event_id


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    auth.configure_passwords(1, 8, 1)
    url = f"sqlite:///{tmp_path / 'server.db'}"
    upgrade(url)
    config = ServerConfig(database_url=url, media_dir=tmp_path / "media", insecure_cookies=True,
                          argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
    app = create_app(config, storage=LocalStorage(config.media_dir))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Server(client, app)


def tablet_event(attempt: str, seq: int, item: int, station: str = "st1") -> MarkEvent:
    return MarkEvent.new(attempt_id=attempt, station_id=station, examiner="examiner1", kind="mark", item=item,
                         done=True, checklist_hash=HASH, seq=seq)


async def test_server_marks_reach_the_journal_once_and_are_not_sent_back(server: Server, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "marks.db")
    own = tablet_event("A1", 1, 1)
    journal.append(own)  # marked on the tablet, then uploaded by the uploader
    await server.station_upload("st1", own)
    journal.mark_synced([own.event_id])
    from_room = await server.examiner_mark("A1", 2, False, seq=2)
    await server.station_upload("st2", tablet_event("B1", 1, 1, station="st2"))  # another station's attempt

    state = tmp_path / "state" / "mark-pull.json"
    pull = MarkPull(journal, server.url, "st1", server.tokens["st1"], state)
    async with aiohttp.ClientSession() as http:
        assert await pull.pull_once(http) == 1  # the tablet's own event was already there
        assert await pull.pull_once(http) == 0
    assert {e.event_id for e in journal.events("A1")} == {own.event_id, from_room}
    assert journal.events("B1") == []
    assert journal.pending() == []  # nothing to upload: the server has it all
    assert journal.sheets("A1")["examiner1"].marks == {1: True, 2: False}
    assert json.loads(state.read_text())["after"] == pull.after > 0

    # The tablet's next mark follows the room's (seq after it), and a restarted agent resumes at its cursor.
    assert journal.next_seq("A1", "examiner1") == 3
    journal.append(tablet_event("A1", journal.next_seq("A1", "examiner1"), 3))
    again = MarkPull(journal, server.url, "st1", server.tokens["st1"], state)
    assert again.after == pull.after
    later = await server.examiner_mark("A1", 4, True, seq=4)
    async with aiohttp.ClientSession() as http:
        assert await again.pull_once(http) == 1
    assert journal.get(later) is not None and [e.event_id for e in journal.pending()] != [later]
    journal.close()


async def test_an_id_known_with_other_content_is_reported_not_overwritten(server: Server, tmp_path: Path) -> None:
    await server.station_upload("st1", tablet_event("A1", 1, 1))
    event_id = await server.examiner_mark("A1", 5, True, seq=2)
    journal = Journal(tmp_path / "marks.db")
    local = MarkEvent.new(attempt_id="A1", station_id="st1", examiner="examiner1", kind="mark", item=5, done=False,
                          checklist_hash=HASH, seq=2, event_id=event_id)
    journal.append(local)
    pull = MarkPull(journal, server.url, "st1", server.tokens["st1"], tmp_path / "cursor.json")
    async with aiohttp.ClientSession() as http:
        assert await pull.pull_once(http) == 1  # the other event only
    assert pull.conflicts == [event_id]
    assert journal.get(event_id) == local
    journal.close()


async def test_the_station_route_serves_only_the_tokens_own_station(server: Server) -> None:
    st1 = {"Authorization": f"Bearer {server.tokens['st1']}"}
    r = await server.client.get("/api/stations/st2/marks", headers=st1)
    assert r.status == 403 and (await r.json())["where"] == "URL code"
    r = await server.client.get("/api/stations/st1/marks?after=-1", headers=st1)
    assert r.status == 400 and (await r.json())["where"] == "query after"
    r = await server.client.get("/api/stations/st1/marks", headers=server.examiner)
    assert r.status == 403


async def test_a_server_that_is_away_is_retried_later(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "marks.db")
    pull = MarkPull(journal, "http://127.0.0.1:9", "st1", "token", tmp_path / "cursor.json")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            await pull.pull_once(http)
    assert pull.after == 0 and journal.events("A1") == []
    journal.close()

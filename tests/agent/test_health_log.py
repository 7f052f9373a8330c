"""Health events from the agent to the review server: opened and ended as warnings come and go, kept while the
server is unreachable, ended at their last sighting after a crash, and sent once."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.migrations import upgrade
from review_server.models import Attempt, HealthEvent, Station
from review_server.storage import LocalStorage
from review_server.web import DB
from station_agent.health_log import HealthLog, HealthSender

T0 = dt.datetime(2026, 7, 1, 9, 0, 0, tzinfo=dt.UTC)
FROZEN = {"code": "camera_frozen", "text": "Камера cam0: изображение застыло (3 с)"}
SILENT = {"code": "mic_silent", "text": "Микрофон: тишина (4 с)"}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Any, str]]:
    auth.configure_passwords(1, 8, 1)
    url = f"sqlite:///{tmp_path / 'server.db'}"
    upgrade(url)
    config = ServerConfig(database_url=url, media_dir=tmp_path / "media", insecure_cookies=True)
    app = create_app(config, storage=LocalStorage(config.media_dir))

    def station(s: Any) -> str:
        st = Station(code="st1", name="st1")
        s.add(st)
        s.flush()
        s.add(Attempt(id="A1", station_id=st.id))  # on the schedule (osce server schedule import)
        return auth.issue_station_token(s, st)[0]

    token = app[DB].run(station)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, app[DB], token


def stored(db: Any) -> list[tuple[str, str | None, dt.datetime, dt.datetime | None]]:
    rows = db.run(lambda s: [(r.code, r.attempt_id, r.started_at, r.ended_at)
                             for r in s.scalars(select(HealthEvent).order_by(HealthEvent.started_at))])
    return rows


async def test_warnings_become_events_on_the_server(server: tuple[TestClient, Any, str], tmp_path: Path) -> None:
    client, db, token = server
    hl = HealthLog(tmp_path / "state" / "health-events.db")
    hl.restarted(at(0), None)
    hl.observe([], "A1", at(2))
    hl.observe([FROZEN], "A1", at(4))
    hl.observe([FROZEN, SILENT], "A1", at(6))

    # The server is unreachable: nothing is lost, nothing marked sent.
    down = HealthSender(hl, "http://127.0.0.1:9", "st1", token)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        with pytest.raises(aiohttp.ClientError):
            await down.send_once(http)
    assert len(hl.unsent()) == 3

    sender = HealthSender(hl, str(client.make_url("")), "st1", token)
    async with aiohttp.ClientSession() as http:
        assert await sender.send_once(http) == 3
        assert await sender.send_once(http) == 0  # nothing new
        hl.observe([SILENT], "A1", at(9))  # the picture moves again: the frozen event ends
        assert await sender.send_once(http) == 1
    rows = stored(db)
    assert [(code, attempt) for code, attempt, _, _ in rows] == [
        ("agent_started", None), ("camera_frozen", "A1"), ("mic_silent", "A1")]
    assert rows[1][2:] == (at(4), at(9))
    assert rows[2][3] is None  # still silent

    # kill -9: a new run ends what was open at its last sighting and says it started again.
    hl2 = HealthLog(tmp_path / "state" / "health-events.db")
    hl2.restarted(at(60), "A1")
    async with aiohttp.ClientSession() as http:
        assert await HealthSender(hl2, str(client.make_url("")), "st1", token).send_once(http) == 2
    rows = stored(db)
    assert rows[2][0] == "mic_silent" and rows[2][3] == at(6)  # last seen at 6 s (written on first sighting)
    assert rows[3][:3] == ("agent_started", "A1", at(60))

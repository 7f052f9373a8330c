"""The marking page's JSON API, in process (aiohttp test client)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

import osce_cli
from checklists.loader import load_checklist
from station_agent.marking_app import MarkingConfig, create_marking_app
from station_agent.pages import STATIC_DIR, TEMPLATES_DIR

from .conftest import CPR


def config(tmp_path: Path, **kw: object) -> MarkingConfig:
    return MarkingConfig(
        checklist=load_checklist(CPR),
        db_path=tmp_path / "marks.db",
        attempt_id="A1",
        candidate_number="240517",
        examiners={"ivanova": "246802", "petrov": "135702"},
        station_id="st1",
        **kw,
    )  # type: ignore[arg-type]


async def _client(cfg: MarkingConfig) -> TestClient:
    client = TestClient(TestServer(create_marking_app(cfg)))
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    c = await _client(config(tmp_path))
    yield c
    await c.close()


async def login(client: TestClient, examiner: str = "ivanova", pin: str = "246802") -> None:
    response = await client.post("/api/login", json={"examiner": examiner, "pin": pin})
    assert response.status == 200


async def send(client: TestClient, **fields: object) -> tuple[int, dict]:
    fields.setdefault("event_id", str(uuid.uuid4()))
    response = await client.post("/api/events", json=fields)
    return response.status, await response.json()


async def test_everything_but_the_page_needs_a_signed_in_examiner(client: TestClient) -> None:
    assert (await client.get("/")).status == 200
    assert (await client.get("/api/state")).status == 401
    status, body = await send(client, kind="mark", item=1, done=True)
    assert status == 401
    assert (await client.post("/api/start")).status == 401
    client.session.cookie_jar.update_cookies({"osce_marking": "69766e616e6f7661.forged"})
    assert (await client.get("/api/state")).status == 401


async def test_wrong_pins_are_refused_then_locked_out(client: TestClient) -> None:
    for _ in range(5):
        response = await client.post("/api/login", json={"examiner": "ivanova", "pin": "135702"})
        assert response.status == 401
    response = await client.post("/api/login", json={"examiner": "ivanova", "pin": "246802"})
    assert response.status == 429


async def test_marks_update_the_score_and_history(client: TestClient) -> None:
    await login(client)
    state = await (await client.get("/api/state")).json()
    assert state["candidate_number"] == "240517"
    assert state["checklist"]["content_hash"] == load_checklist(CPR).content_hash
    assert state["score"]["total"] == 19 and state["score"]["done"] == 0
    for item in range(1, 15):
        status, body = await send(client, kind="mark", item=item, done=True)
        assert status == 200, body
    assert body["state"]["score"]["passed"] is True
    assert body["event"]["seq"] == 14
    assert body["event"]["recording_offset_s"] is None  # not started yet
    status, body = await send(client, kind="mark", item=1, done=False)
    assert body["state"]["score"]["done"] == 13
    assert body["state"]["score"]["passed"] is False
    assert body["state"]["sheet"]["marks"]["1"] is False
    assert len(body["state"]["sheet"]["history"]) == 15


async def test_a_retry_is_stored_once_and_a_reused_id_is_refused(client: TestClient) -> None:
    await login(client)
    event_id = str(uuid.uuid4())
    first = await send(client, event_id=event_id, kind="mark", item=2, done=True)
    again = await send(client, event_id=event_id, kind="mark", item=2, done=True)
    assert first[0] == again[0] == 200
    assert (first[1]["stored"], again[1]["stored"]) == (True, False)
    assert first[1]["event"] == again[1]["event"]
    status, body = await send(client, event_id=event_id, kind="mark", item=2, done=False)
    assert (status, body["field"]) == (409, "event_id")
    # The other examiner cannot replay someone else's id either.
    await login(client, "petrov", "135702")
    status, body = await send(client, event_id=event_id, kind="mark", item=2, done=True)
    assert status == 409


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"kind": "mark", "item": 99, "done": True}, "item", "item: no item 99 in this checklist"),
        ({"kind": "mark", "item": 1}, "done", "done: required for a mark"),
        ({"kind": "mark", "item": 1, "done": "yes"}, "done", "done: must be true or false, not str"),
        ({"kind": "vote", "item": 1, "done": True}, "kind", "kind: must be one of mark, rating, finalise, reopen"),
        ({"kind": "rating", "rating": 9}, "rating", "rating: must be between 1 and 5, got 9"),
        ({"kind": "mark", "item": 1, "done": True, "examiner": "x"}, "examiner", "examiner: unknown field"),
        ({"kind": "mark", "item": 1, "done": True, "event_id": "42"}, "event_id", "event_id: must be a lowercase"),
    ],
)
async def test_bad_events_are_refused_with_the_field(
    client: TestClient, fields: dict, field: str, message: str
) -> None:
    await login(client)
    status, body = await send(client, **fields)
    assert status == 400
    assert body["field"] == field
    assert body["error"].startswith(message)
    state = await (await client.get("/api/state")).json()
    assert state["sheet"]["history"] == []


async def test_finalise_locks_and_corrections_need_a_reason(client: TestClient) -> None:
    await login(client)
    await send(client, kind="mark", item=1, done=True)
    status, body = await send(client, kind="finalise")
    assert status == 200 and body["state"]["sheet"]["finalised"] is True
    status, body = await send(client, kind="mark", item=2, done=True)
    assert (status, body["field"]) == (409, "reason")
    status, body = await send(client, kind="mark", item=2, done=True, reason="  ")
    assert (status, body["error"]) == (400, "reason: empty")
    status, body = await send(client, kind="mark", item=2, done=True, reason="пересмотр видео")
    assert status == 200
    sheet = body["state"]["sheet"]
    assert sheet["finalised"] is True
    assert [c["reason"] for c in sheet["corrections"]] == ["пересмотр видео"]
    assert body["state"]["score"]["done"] == 2


async def test_examiners_mark_independently(client: TestClient) -> None:
    await login(client)
    await send(client, kind="mark", item=1, done=True)
    await login(client, "petrov", "135702")
    state = await (await client.get("/api/state")).json()
    assert state["examiner"] == "petrov"
    assert state["sheet"]["marks"] == {}
    status, body = await send(client, kind="mark", item=1, done=False)
    assert body["event"]["seq"] == 1


async def test_marks_land_on_the_recording_timeline(tmp_path: Path) -> None:
    started = (datetime.now(UTC) - timedelta(seconds=125)).isoformat()
    client = await _client(config(tmp_path, recording_started_at=started))
    try:
        await login(client)
        status, body = await send(client, kind="mark", item=1, done=True)
        assert 125 <= body["event"]["recording_offset_s"] < 135
        assert body["state"]["started_at"] == started
    finally:
        await client.close()


async def test_start_button_starts_the_timer_once(client: TestClient) -> None:
    await login(client)
    first = await (await client.post("/api/start")).json()
    assert first["started_at"] is not None
    second = await (await client.post("/api/start")).json()
    assert second["started_at"] == first["started_at"]
    status, body = await send(client, kind="mark", item=1, done=True)
    assert 0 <= body["event"]["recording_offset_s"] < 10


def test_config_takes_an_accreditation_number_not_a_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^candidate_number: "):
        config(tmp_path).__class__(**{**vars(config(tmp_path)), "candidate_number": "Иванов Иван"})
    with pytest.raises(ValueError, match="^examiners: "):
        config(tmp_path).__class__(**{**vars(config(tmp_path)), "examiners": {"ivanova": ""}})


async def test_static_page_is_russian_and_loads_nothing_from_outside(tmp_path: Path) -> None:
    for path in [*STATIC_DIR.iterdir(), *TEMPLATES_DIR.iterdir()]:
        assert not re.search(r"https?://", path.read_text(encoding="utf-8")), path
    client = await _client(config(tmp_path))
    html = await (await client.get("/")).text()
    await client.close()
    assert 'lang="ru"' in html and "Номер аккредитуемого" in html and "Завершить и подписать" in html


async def test_an_attempt_keeps_its_checklist_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = await _client(config(tmp_path))
    await login(client)
    assert (await send(client, kind="mark", item=1, done=True))[0] == 200
    await client.close()
    edited = tmp_path / "cpr_edited.yaml"
    edited.write_text(CPR.read_text(encoding="utf-8").replace('version: "2026.1"', 'version: "2026.2"'), "utf-8")
    other = config(tmp_path)
    other.checklist = load_checklist(edited)
    with pytest.raises(ValueError, match="^checklist_hash: attempt A1 was marked against checklist version "):
        await _client(other)
    # The CLI says the same and exits 1 before serving.
    code = osce_cli.main(
        [
            "agent",
            "marking",
            "--checklist",
            str(edited),
            "--db",
            str(tmp_path / "marks.db"),
            "--attempt",
            "A1",
            "--candidate",
            "240517",
            "--pin-file",
            str(_pin_file(tmp_path)),
        ]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("checklist_hash: attempt A1 was marked against")


def _pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "pins"
    path.write_text("ivanova:246802\n", "utf-8")
    return path


def _figures_report(path: Path, checklist: str = "01_basic_cpr_adult") -> Path:
    import json

    report = {
        "format": "osce-cpr-figures/1",
        "checklist": checklist,
        "video": None,
        "manikin": None,
        "alignment": None,
        "items": {"16": ["Частота (видео): 112/мин (цель 100–120)"], "13": ["Глубина (тренажёр): 5,4 см"], "99": ["x"]},
    }
    path.write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    return path


async def test_state_carries_cpr_figures_when_the_report_exists(tmp_path: Path) -> None:
    figures = tmp_path / "cpr_figures.json"
    c = await _client(config(tmp_path, figures_path=figures))
    try:
        await login(c)
        assert "figures" not in await (await c.get("/api/state")).json()  # not written yet
        _figures_report(figures)  # written beside the recording later: picked up on the next request
        state = await (await c.get("/api/state")).json()
        assert state["figures"] == {
            "13": ["Глубина (тренажёр): 5,4 см"],
            "16": ["Частота (видео): 112/мин (цель 100–120)"],
        }  # item 99 is not in the checklist
        assert state["sheet"]["marks"] == {} and state["score"]["done"] == 0  # figures never mark
        figures.write_text('{"format": "osce-cpr-figures/1", "items": ', encoding="utf-8")  # half-written
        state = await (await c.get("/api/state")).json()
        assert "figures" not in state
        _figures_report(figures, checklist="03_blood_pressure")  # a report for another checklist
        assert "figures" not in await (await c.get("/api/state")).json()
    finally:
        await c.close()


async def test_no_figures_for_another_checklist(tmp_path: Path) -> None:
    from checklists.loader import DATA_DIR

    cfg = config(tmp_path, figures_path=_figures_report(tmp_path / "cpr_figures.json"))
    cfg.checklist = load_checklist(DATA_DIR / "03_blood_pressure.yaml")
    c = await _client(cfg)
    try:
        await login(c)
        assert "figures" not in await (await c.get("/api/state")).json()
    finally:
        await c.close()


def test_the_daemon_looks_for_figures_beside_the_recording(tmp_path: Path) -> None:
    from station_agent.marking_host import MarkingHost
    from station_agent.roster import Roster
    from station_agent.tablet_auth import TabletAuth

    args = (load_checklist(CPR), tmp_path / "m.db", TabletAuth(Roster()), "st1", "127.0.0.1", 0)
    assert MarkingHost(*args, tmp_path / "rec").figures_path("A1") == tmp_path / "rec" / "A1" / "cpr_figures.json"
    assert MarkingHost(*args).figures_path("A1") is None

"""Readiness checks on the server (review_server/readiness.py, routes/readiness.py), on SQLite and PostgreSQL: an
admin's run, a station taking it over the long poll, its test recording over tus kept apart from candidates'
media, its report judged item by item, time-outs, the act (page and PDF), audit, the retention of test media and
the refusals. The agent's side against a real server: tests/agent/test_readiness.py; the page in Chromium:
tests/e2e/test_readiness_page.py."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import io
import time
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select, update

from media.readiness_report import (
    CameraResult,
    DiskResult,
    FragmentRef,
    MicrophoneResult,
    Refusal,
    Report,
    ReportError,
    SyncResult,
    UploadResult,
)
from review_server import readiness
from review_server.config import ServerConfig
from review_server.models import (
    Attempt,
    AuditEvent,
    Fragment,
    ReadinessCheck,
    ReadinessFragment,
    Recording,
    Station,
)
from review_server.readiness_judge import Limits, judge, ready
from review_server.web import STORAGE
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .conftest import Api, World

LIMITS = Limits.of(ServerConfig())
NOW = dt.datetime(2026, 7, 1, 6, 0, tzinfo=dt.UTC)
MB = 2**20


def good_report(fragments: tuple[FragmentRef, ...] = (), **over: Any) -> Report:
    """What a healthy station reports: one camera at its rate, sound over the floor, sync measured, clock right,
    room for a day of 36 attempts of 9 minutes."""
    fields: dict[str, Any] = {
        "agent_time": NOW, "seconds": 10.0,
        "cameras": (CameraResult("synthetic", "cam0", frames=250, fps=25.0, requested_fps=25.0, luma=96.0,
                                 arriving=True),),
        "microphone": MicrophoneResult("pulse", arriving=True, level_dbfs=-32.0, peak_dbfs=-20.0, floor_dbfs=-60.0),
        "sync": SyncResult("cam0", pairs=9, median_ms=1.5, max_abs_ms=3.0, suggested_latency_ms=-1.5),
        "disk": DiskResult(free_bytes=40 * 2**30, reserve_bytes=500 * MB, recorded_bytes=1 * MB,
                           planned_s=36 * 540.0, planned_attempts=36),
        "upload": UploadResult(fragments=fragments, seconds=0.4),
    }
    return Report(**{**fields, **over})


def reds(items: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {f"{i['item']}{(' ' + i['subject']) if i['subject'] else ''}": [r["code"] for r in i["reasons"]]
            for i in items if i["ok"] is False}


STORED = {("cam0", 0): "a" * 64, ("cam0", 1): "b" * 64}
FRAGS = (FragmentRef("cam0", 0, "a" * 64, 900), FragmentRef("cam0", 1, "b" * 64, 300_000))


# --- the rules ---------------------------------------------------------------------------------------------------


def test_a_healthy_station_is_green_and_sync_not_measured_is_no_red() -> None:
    items = judge(good_report(FRAGS), STORED, NOW, LIMITS)
    assert reds(items) == {} and ready(items)
    assert [i["item"] for i in items] == ["recording", "upload", "camera", "microphone", "sync", "clock", "disk"]
    quiet_room = judge(good_report(FRAGS, sync=SyncResult("cam0", pairs=0)), STORED, NOW, LIMITS)
    sync = next(i for i in quiet_room if i["item"] == "sync")
    assert sync["ok"] is None and sync["value"]["code"] == "sync.none" and ready(quiet_room)


@pytest.mark.parametrize(("change", "expected"), [
    ({"cameras": (CameraResult("/dev/video7", None, error="video 0 (/dev/video7): cannot open"),)},
     {"camera 0 · /dev/video7": ["camera.not_opened"]}),
    ({"cameras": (CameraResult("synthetic", "cam0", frames=250, fps=25.0, requested_fps=25.0, luma=3.0, black=True,
                               arriving=True),)}, {"camera 0 · synthetic": ["camera.black"]}),
    ({"cameras": (CameraResult("synthetic", "cam0", frames=250, fps=25.0, requested_fps=25.0, luma=90.0,
                               frozen_s=7.0, arriving=True),)}, {"camera 0 · synthetic": ["camera.frozen"]}),
    ({"cameras": (CameraResult("rtsp://cam", "cam0", frames=120, fps=12.0, requested_fps=25.0, arriving=True),)},
     {"camera 0 · rtsp://cam": ["camera.fps"]}),
    ({"cameras": (CameraResult("synthetic", "cam0", requested_fps=25.0),)},
     {"camera 0 · synthetic": ["camera.no_frames"]}),
    ({"microphone": MicrophoneResult("pulse", arriving=True, level_dbfs=-120.0, peak_dbfs=-120.0)},
     {"microphone pulse": ["microphone.silent"]}),
    ({"microphone": MicrophoneResult("hw:9", error="audio (hw:9): no such device")},
     {"microphone hw:9": ["microphone.not_opened"]}),
    ({"microphone": None}, {"microphone": ["microphone.none"]}),
    ({"sync": SyncResult("cam0", pairs=9, median_ms=-142.0, max_abs_ms=150.0, suggested_latency_ms=142.0)},
     {"sync cam0": ["sync.off"]}),
    ({"agent_time": NOW + dt.timedelta(seconds=5)}, {"clock": ["clock.off"]}),
    ({"agent_time": NOW - dt.timedelta(seconds=1.5)}, {"clock": ["clock.off"]}),
    ({"disk": DiskResult(free_bytes=30 * MB, reserve_bytes=1 * MB, recorded_bytes=1 * MB, planned_s=3600.0,
                         planned_attempts=6)}, {"disk": ["disk.short"]}),
    ({"disk": DiskResult(free_bytes=400 * MB, reserve_bytes=500 * MB, recorded_bytes=1 * MB, planned_s=0.0,
                         planned_attempts=0)}, {"disk": ["disk.reserve"]}),
], ids=["not-opened", "black", "frozen", "fps", "no-frames", "silent", "mic-not-opened", "no-mic", "sync",
        "clock-ahead", "clock-behind", "disk-short", "disk-reserve"])
def test_each_red_has_its_reason(change: dict[str, Any], expected: dict[str, list[str]]) -> None:
    items = judge(good_report(FRAGS, **change), STORED, NOW, LIMITS)
    assert reds(items) == expected and not ready(items)


def test_disk_need_is_the_plan_at_the_measured_rate_with_margin_and_reserve() -> None:
    # 1 MiB per 10 s = 6 MiB a minute; 60 minutes planned: 360 MiB x 1.25 + 100 MiB reserve = 550 MiB.
    disk = DiskResult(free_bytes=549 * MB, reserve_bytes=100 * MB, recorded_bytes=1 * MB, planned_s=3600.0,
                      planned_attempts=6)
    short = next(i for i in judge(good_report(FRAGS, disk=disk), STORED, NOW, LIMITS) if i["item"] == "disk")
    assert short["ok"] is False and short["value"]["params"]["need_bytes"] == 550 * MB
    enough = DiskResult(**{**disk.__dict__, "free_bytes": 551 * MB})
    assert next(i for i in judge(good_report(FRAGS, disk=enough), STORED, NOW, LIMITS) if i["item"] == "disk")["ok"]


def test_upload_is_verified_against_what_the_server_holds() -> None:
    missing = judge(good_report(FRAGS), {("cam0", 0): "a" * 64}, NOW, LIMITS)
    assert reds(missing) == {"upload": ["upload.missing"]}
    other = judge(good_report(FRAGS), {("cam0", 0): "a" * 64, ("cam0", 1): "c" * 64}, NOW, LIMITS)
    assert reds(other) == {"upload": ["upload.mismatch"]}
    failed = judge(good_report(FRAGS, upload=UploadResult(FRAGS, error="HTTP 409: closed")), {}, NOW, LIMITS)
    assert reds(failed) == {"upload": ["upload.missing"]}
    assert next(i for i in failed if i["item"] == "upload")["detail"] == "HTTP 409: closed"


def test_no_recording_leaves_what_needs_it_not_measured() -> None:
    report = good_report(error="no camera could be opened: video 0 (/dev/video7): cannot open", seconds=0.0,
                         cameras=(CameraResult("/dev/video7", None, error="video 0 (/dev/video7): cannot open"),),
                         microphone=MicrophoneResult("pulse"), sync=None, upload=None,
                         disk=DiskResult(40 * 2**30, 500 * MB, 0, 3600.0, 6))
    items = judge(report, {}, NOW, LIMITS)
    assert reds(items) == {"recording": ["recording.failed"], "camera 0 · /dev/video7": ["camera.not_opened"]}
    assert {i["item"]: i["ok"] for i in items if i["ok"] is None} == {"microphone": None, "sync": None, "disk": None}


def test_a_refusal_is_one_red_item_with_the_attempt() -> None:
    items = judge(Report(agent_time=NOW, refused=Refusal("attempt_running", "d1-st1-007", "performing", 312.0)), {},
                  NOW, LIMITS)
    assert reds(items) == {"agent": ["agent.attempt_running"]}
    texts = readiness.shown_items(items, "ru")
    assert texts[0]["reasons"] == ["идёт попытка d1-st1-007 (выполнение, до её конца 312 с): во время экзамена "
                                   "проверка не выполняется"]


def test_the_report_format_is_strict_and_names_the_field() -> None:
    body = good_report(FRAGS).to_json()
    assert Report.from_json(body) == good_report(FRAGS)
    for bad, where in [({**body, "extra": 1}, "report.extra"),
                       ({**body, "seconds": "10"}, "report.seconds"),
                       ({**body, "agent_time": "2026-07-01T09:00:00+03:00"}, "report.agent_time"),
                       ({**body, "cameras": [{**body["cameras"][0], "fps": float("nan")}]}, "report.cameras[0].fps"),
                       ({**body, "microphone": {**body["microphone"], "source": "a\x00b"}}, "report.microphone.source"),
                       ({**body, "refused": {"code": "bored"}}, "report.refused.code"),
                       ({k: v for k, v in body.items() if k != "agent_time"}, "report.agent_time")]:
        with pytest.raises(ReportError) as info:
            Report.from_json(bad)
        assert info.value.where == where


def test_texts_in_both_languages_with_units() -> None:
    disk = DiskResult(free_bytes=30 * MB, reserve_bytes=1 * MB, recorded_bytes=1 * MB, planned_s=3600.0,
                      planned_attempts=6)
    items = judge(good_report(FRAGS, disk=disk, agent_time=NOW + dt.timedelta(seconds=5.25)), STORED, NOW, LIMITS)
    ru = {i["label"]: i for i in readiness.shown_items(items, "ru")}
    en = {i["label"]: i for i in readiness.shown_items(items, "en")}
    assert (ru["Часы станции"]["value"], ru["Часы станции"]["reasons"]) == (
        "расхождение с сервером +5,25 с", ["больше допустимых ±1 с: проверьте синхронизацию времени станции"])
    assert (en["Station clock"]["value"], en["Station clock"]["reasons"]) == (
        "+5.25 s from the server's clock", ["more than the ±1 s allowed: check the station's time synchronisation"])
    assert ru["Свободное место"]["reasons"] == ["мало места: свободно 30,0 МБ, нужно 451,0 МБ (60 мин записи по 6,0 МБ "
                                                "в минуту и резерв 1,0 МБ)"]


# --- the flow over HTTP -----------------------------------------------------------------------------------------


def tus_meta(data: bytes, check: int, track: str, seq: int, **extra: str) -> str:
    meta = {"sha256": hashlib.sha256(data).hexdigest(), "recording": f"readiness-{check}", "track": track,
            "seq": str(seq), "kind": "init" if seq == 0 else "media", "readiness": str(check), **extra}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())


async def upload(api: Api, token: str, data: bytes, check: int, track: str, seq: int, **extra: str) -> Any:
    """One fragment of a check's test recording over tus (create, one PATCH); the last response."""
    h = {**Api.station_headers(token), "Tus-Resumable": "1.0.0"}
    r = await api.client.post("/api/tus", headers={**h, "Upload-Length": str(len(data)),
                                                   "Upload-Metadata": tus_meta(data, check, track, seq, **extra)})
    if r.status != 201 or "X-Stored-SHA256" in r.headers:
        return r
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return await api.client.patch(r.headers["Location"], data=data, headers={
        **h, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": f"sha256 {digest}"})


async def start(api: Api, admin: dict[str, str], stations: Any) -> Any:
    return await api.client.post("/api/readiness/runs", json={"stations": stations}, headers=admin)


async def take(api: Api, token: str, code: str = "S1", wait: int = 0) -> Any:
    return await api.client.get(f"/api/stations/{code}/readiness/next?wait={wait}", headers=Api.station_headers(token))


def audit_actions(api: Api) -> list[tuple[str, str, str]]:
    rows = api.run(lambda s: list(s.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.target)
                                            .where(AuditEvent.action.like("readiness.%")).order_by(AuditEvent.seq))))
    return [tuple(r) for r in rows]


async def test_a_check_end_to_end_kept_apart_from_candidates_media(world: World) -> None:
    api, admin = world.api, Api.user_headers(world.api.session_for("admin"))
    r = await start(api, admin, ["S1"])
    assert r.status == 201, await r.text()
    run = await r.json()
    assert run["stations"] == ["S1"]
    r = await take(api, world.other_station_token, "S2")
    assert r.status == 204  # nothing asked of S2
    r = await take(api, world.station_token)
    assert r.status == 200
    check = (await r.json())["check"]
    assert check == {"id": check["id"], "seconds": 10, "recording": f"readiness-{check['id']}"}
    assert (await take(api, world.station_token)).status == 204  # taken once
    r = await api.client.post(f"/api/stations/S1/readiness/{check['id']}/progress", json={"state": "recording"},
                              headers=Api.station_headers(world.station_token))
    assert r.status == 200
    init, media = init_bytes(seed=7), media_bytes(300_000, seed=7)
    for seq, data in ((0, init), (1, media)):
        r = await upload(api, world.station_token, data, check["id"], "cam0", seq)
        assert r.status in (201, 204) and r.headers["X-Stored-SHA256"] == hashlib.sha256(data).hexdigest()
    frags = (FragmentRef("cam0", 0, hashlib.sha256(init).hexdigest(), len(init)),
             FragmentRef("cam0", 1, hashlib.sha256(media).hexdigest(), len(media)))
    sent = good_report(frags, agent_time=dt.datetime.now(dt.UTC)).to_json()
    r = await api.client.post(f"/api/stations/S1/readiness/{check['id']}/report", json=sent,
                              headers=Api.station_headers(world.station_token))
    assert r.status == 200, await r.text()
    assert await r.json() == {"id": check["id"], "state": "done", "ok": True}
    status = await (await api.client.get(f"/api/readiness/runs/{run['id']}", headers=admin)).json()
    assert status == {"id": run["id"], "finished": True, "checks": [{"id": check["id"], "station": "S1",
                                                                      "state": "done", "ok": True}]}

    def held(s: Any) -> tuple[int, int, int, list[str]]:
        return (s.scalar(select(func.count()).select_from(ReadinessFragment)),
                s.scalar(select(func.count()).select_from(Recording)),
                s.scalar(select(func.count()).select_from(Fragment)),
                list(s.scalars(select(Attempt.id))))

    assert api.run(held) == (2, 0, 0, [])  # nothing in candidates' recordings, no attempt made
    storage = api.app[STORAGE]
    assert all(storage.exists(f.sha256) for f in frags)
    assert audit_actions(api) == [("user:admin", "readiness.run", f"readiness:{run['id']}"),
                                  ("station:S1", "readiness.result", f"readiness:{run['id']}")]
    # The act: the page and the PDF (audited), with who ran it, each item and the verdict.
    page = await api.client.get(f"/admin/readiness/runs/{run['id']}", headers=admin)
    text = await page.text()
    assert page.status == 200 and "Акт готовности № " in text and "✓ Готова" in text and "admin" in text
    pdf = await api.client.get(f"/admin/readiness/runs/{run['id']}/act.pdf", headers=admin)
    assert pdf.status == 200 and pdf.headers["Content-Type"] == "application/pdf"
    act = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(await pdf.read())).pages)
    for words in (f"АКТ № {run['id']}", "Проверку провёл: admin", "Станция S1 — S1: ГОТОВА",
                  "Итог: готовы 1 из 1 станций", "SHA-256 каждого совпал на сервере", "+1,5 мс (9 пар меток)"):
        assert words in act, (words, act)
    assert audit_actions(api)[-1] == ("user:admin", "readiness.act", f"readiness:{run['id']}")


async def test_refusals_and_ownership(world: World) -> None:
    api, admin = world.api, Api.user_headers(world.api.session_for("admin"))
    S1, S2 = Api.station_headers(world.station_token), Api.station_headers(world.other_station_token)
    run = await (await start(api, admin, ["S1", "S2"])).json()
    assert run["stations"] == ["S1", "S2"]
    r = await start(api, admin, ["S1"])  # one check at a time per station
    assert r.status == 409 and (await r.json())["where"] == "stations"
    r = await start(api, admin, ["S1", "S9"])
    assert r.status == 422 and (await r.json())["where"] == "stations[1]"
    assert (await take(api, world.station_token, "S2")).status == 403  # another station's poll
    c1 = (await (await take(api, world.station_token)).json())["check"]
    c2 = (await (await take(api, world.other_station_token, "S2")).json())["check"]
    data = init_bytes(seed=3)
    r = await upload(api, world.station_token, data, c2["id"], "cam0", 0)  # S1 sends into S2's check
    assert r.status == 409 and "not this station's" in (await r.json())["error"]
    r = await upload(api, world.station_token, data, c1["id"], "cam0", 0, attempt_id="att-1")
    assert r.status == 400 and "not both" in (await r.json())["error"]
    r = await api.client.post(f"/api/stations/S1/readiness/{c2['id']}/report", json={}, headers=S1)
    assert r.status == 404
    r = await api.client.post(f"/api/stations/S2/readiness/{c2['id']}/report", headers=S2,
                              json={**good_report().to_json(), "cameras": "two"})
    assert r.status == 422 and (await r.json())["where"] == "report.cameras"
    refusal = Report(agent_time=dt.datetime.now(dt.UTC), refused=Refusal("attempt_soon", "d1-S1-001", "scheduled", 20))
    r = await api.client.post(f"/api/stations/S1/readiness/{c1['id']}/report", json=refusal.to_json(), headers=S1)
    assert (await r.json())["state"] == "refused"
    status = await (await api.client.get(f"/api/readiness/runs/{run['id']}", headers=admin)).json()
    assert [(c["station"], c["state"], c["ok"]) for c in status["checks"]] == [("S1", "refused", False),
                                                                               ("S2", "failed", False)]
    r = await upload(api, world.station_token, data, c1["id"], "cam0", 0)  # a closed check takes no media
    assert r.status == 409 and "refused" in (await r.json())["error"]
    assert api.run(lambda s: s.scalar(select(func.count()).select_from(ReadinessFragment))) == 0
    page = await (await api.client.get("/admin/readiness", headers=admin)).text()
    assert "попытка d1-S1-001 начинается через 20 с" in page and "отчёт агента не прочитан" in page
    assert "report.cameras: expected a list" in page  # the technical detail, shown as code


async def test_time_outs_make_offline_and_no_result(world: World) -> None:
    api, admin = world.api, Api.user_headers(world.api.session_for("admin"))
    run = await (await start(api, admin, "all")).json()
    assert run["stations"] == ["S1", "S2"]
    await take(api, world.station_token)  # S1's agent takes it and then goes silent; S2 has no agent
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    api.run(lambda s: s.execute(update(ReadinessCheck).values(requested_at=old)))
    api.run(lambda s: s.execute(update(ReadinessCheck).where(ReadinessCheck.claimed_at.is_not(None))
                                .values(claimed_at=old)))
    status = await (await api.client.get(f"/api/readiness/runs/{run['id']}", headers=admin)).json()
    assert [(c["station"], c["state"]) for c in status["checks"]] == [("S1", "failed"), ("S2", "offline")]
    board = await (await api.client.get("/api/readiness", headers=admin)).json()
    reasons = {st["code"]: st["check"]["results"][0]["reasons"] for st in board["stations"]}
    assert reasons == {"S1": ["агент не прислал результат за 180 с"],
                       "S2": ["агент не забрал задание за 30 с: нет связи с комнатой или агент не запущен"]}
    assert [a[:2] for a in audit_actions(api)].count(("server", "readiness.result")) == 2
    # A late agent can take nothing of an offline check.
    assert (await take(api, world.other_station_token, "S2")).status == 204


async def test_a_waiting_poll_is_answered_as_soon_as_a_run_starts(world: World) -> None:
    api, admin = world.api, Api.user_headers(world.api.session_for("admin"))
    poll = asyncio.ensure_future(take(api, world.station_token, wait=20))
    await asyncio.sleep(0.5)
    assert not poll.done()
    online = await (await api.client.get("/api/readiness", headers=admin)).json()
    assert {st["code"]: st["online"] for st in online["stations"]} == {"S1": True, "S2": False}
    started = time.monotonic()
    await start(api, admin, ["S1"])
    r = await asyncio.wait_for(poll, 5)
    assert r.status == 200 and time.monotonic() - started < 1.0
    r = await api.client.get("/api/stations/S1/readiness/next?wait=26",
                             headers=Api.station_headers(world.station_token))
    assert r.status == 400 and (await r.json())["where"] == "query wait"


async def test_test_media_has_its_own_retention(world: World) -> None:
    """A new run deletes the media of checks older than readiness_keep_days, but never a blob that a candidate's
    fragment also holds, and never an init segment; the results stay."""
    api, admin = world.api, Api.user_headers(world.api.session_for("admin"))
    await start(api, admin, ["S1"])
    check = (await (await take(api, world.station_token)).json())["check"]
    init, own, shared = init_bytes(seed=1), media_bytes(5000, seed=1), media_bytes(5000, seed=2)
    for seq, data in ((0, init), (1, own), (2, shared)):
        assert (await upload(api, world.station_token, data, check["id"], "cam0", seq)).status in (201, 204)

    def candidate_holds_shared(s: Any) -> None:
        st = s.scalar(select(Station).where(Station.code == "S1"))
        rec = Recording(key="rec-x", station_id=st.id)
        s.add(rec)
        s.flush()
        s.add(Fragment(recording_id=rec.id, track="cam0", kind="media", seq=1,
                       sha256=hashlib.sha256(shared).hexdigest(), size=len(shared)))

    api.run(candidate_holds_shared)
    frags = tuple(FragmentRef("cam0", i, hashlib.sha256(d).hexdigest(), len(d)) for i, d in enumerate((init, own,
                                                                                                        shared)))
    r = await api.client.post(f"/api/stations/S1/readiness/{check['id']}/report",
                              json=good_report(frags, agent_time=dt.datetime.now(dt.UTC)).to_json(),
                              headers=Api.station_headers(world.station_token))
    assert (await r.json())["ok"] is True
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    api.run(lambda s: s.execute(update(ReadinessCheck).values(finished_at=old)))
    await start(api, admin, ["S1"])
    storage = api.app[STORAGE]
    assert not storage.exists(hashlib.sha256(own).hexdigest())
    assert storage.exists(hashlib.sha256(shared).hexdigest()) and storage.exists(hashlib.sha256(init).hexdigest())
    first = api.run(lambda s: s.get(ReadinessCheck, check["id"]))
    assert first.media_purged_at is not None and first.ok is True and first.items
    assert api.run(lambda s: s.scalar(select(func.count()).select_from(ReadinessFragment))) == 0
    assert ("user:admin", "readiness.purge", "readiness") in audit_actions(api)

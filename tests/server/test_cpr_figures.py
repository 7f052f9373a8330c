"""A station's CPR figures report for an attempt: uploaded, validated, audited, and exported as cpr_figures.json."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from sqlalchemy import select

from review_server.models import AuditEvent, CprFigures
from review_server.package import verify

from .conftest import Api, World


@pytest.fixture
def world(world: World) -> World:
    """The attempts these tests name, on the schedule: a station sends only for its own scheduled attempts."""
    world.schedule("A7")
    return world


URL = "/api/attempts/A7/cpr-figures"
REPORT: dict[str, Any] = {
    "format": "osce-cpr-figures/1",
    "checklist": "01_basic_cpr_adult",
    "guidelines": {"rate_per_min": [100, 120]},
    "video": {"estimate": True, "confidence": 0.9, "rate_per_min": 112.0},
    "manikin": None,
    "alignment": None,
    "items": {"16": ["Частота (видео): 112/мин (цель 100–120)"]},
}


def _bytes(report: dict[str, Any]) -> bytes:
    return json.dumps(report, ensure_ascii=False).encode("utf-8")


async def _put(world: World, body: bytes, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {**Api.station_headers(token or world.station_token), "Content-Type": "application/json"}
    resp = await world.api.client.put(URL, data=body, headers=headers)
    return resp.status, await resp.json()


async def test_upload_validates_stores_once_and_belongs_to_the_station(world: World) -> None:
    for bad, where in (
        ({**REPORT, "format": "osce-cpr-figures/2"}, "format"),
        ({**REPORT, "items": {"16": "not a list"}}, "items.16"),
        ({**REPORT, "items": {"x": []}}, "items"),
    ):
        status, body = await _put(world, _bytes(bad))
        assert status == 422 and body["error"].startswith(where), body
    status, body = await _put(world, b"x" * (2 * 1024 * 1024 + 1))
    assert status == 413

    raw = _bytes(REPORT)
    status, body = await _put(world, raw)
    assert status == 200 and body == {"attempt_id": "A7", "sha256": hashlib.sha256(raw).hexdigest(), "stored": True}
    status, body = await _put(world, raw)  # the same report again: nothing changes
    assert status == 200 and body["stored"] is False
    status, body = await _put(world, raw, token=world.other_station_token)
    assert status == 409 and "another station" in body["error"]
    newer = _bytes({**REPORT, "items": {"16": ["Частота (видео): 110/мин (цель 100–120)"]}})
    status, body = await _put(world, newer)
    assert status == 200 and body["stored"] is True

    def check(s):  # type: ignore[no-untyped-def]
        row = s.get(CprFigures, "A7")
        assert row.body.encode("utf-8") == newer and row.uploaded_by == "station:S1"
        actions = s.scalars(select(AuditEvent.details).where(AuditEvent.action == "attempt.cpr_figures")).all()
        assert [a["replaces"] for a in actions] == [None, hashlib.sha256(raw).hexdigest()]

    world.api.run(check)


async def test_export_includes_the_report(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = _bytes(REPORT)
    assert (await _put(world, raw))[0] == 200
    client, arch = world.api.client, world.headers("archivist")
    req = await client.post(
        "/api/export-requests",
        headers=arch,
        json={"number": "1", "date": "2026-07-01", "requester": "Минздрав России", "subject": "СЛР"},
    )
    assert req.status == 201, await req.text()
    rid = (await req.json())["id"]
    sel = await client.post(f"/api/export-requests/{rid}/attempts", headers=arch, json={"attempt_ids": ["A7"]})
    assert sel.status == 200, await sel.text()
    pkg = await client.post(f"/api/export-requests/{rid}/exports", headers=arch)
    assert pkg.status == 201, await pkg.text()
    body = await (await client.get((await pkg.json())["url"], headers=arch)).read()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.read("attempts/A7/cpr_figures.json") == raw
        manifest = json.loads(zf.read("manifest.json"))
        sums = zf.read("SHA256SUMS").decode("ascii")
    sha = hashlib.sha256(raw).hexdigest()
    assert {"path": "attempts/A7/cpr_figures.json", "sha256": sha, "size": len(raw)} in manifest["files"]
    assert f"{sha}  attempts/A7/cpr_figures.json\n" in sums
    (tmp_path / "p.zip").write_bytes(body)
    published = await (await client.get("/api/export-key")).read()
    assert verify(tmp_path / "p.zip", published).ok

"""Export package for a request, end to end: a real recording uploaded by a station, marks and a correction,
finalised; the archivist's request, selection, export and resumable download; then the package checked the
way a recipient would (sha256sum -c, osce verify, ffmpeg decoding) and tampered with."""

from __future__ import annotations

import csv
import io
import json
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from media.calibration import ffmpeg_exe
from media.manifest import read_manifest
from review_server.models import AuditEvent, ExportPackage
from review_server.package import verify
from review_server.signing import data_dir
from review_server.web import CONFIG

from .archive_helpers import (
    CPR,
    ROOT,
    add_schedule,
    checklist,
    events,
    link_attempt,
    make_recording,
    post_marks,
    upload_recording,
)
from .conftest import World


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_recording(tmp_path_factory.mktemp("rec") / "r")


async def _json(resp, status: int):  # type: ignore[no-untyped-def]
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_export_package_end_to_end(world: World, recording: Path, tmp_path: Path) -> None:
    api, client = world.api, world.api.client
    ids = add_schedule(world)
    world.schedule("A1")
    cl = checklist(CPR)
    frags = await upload_recording(world, recording, "rec-A1", "A1")
    link_attempt(world, "A1", "2611001", ids, "CPR")
    done = set(cl.item_numbers[:14])  # 14 of 19 = 73.68 %
    await post_marks(world, events("A1", "S1", cl, done))
    # A correction after finalising: item 1 becomes "not done" (13 of 19 = 68.42 %: не сдано).
    examiner = world.headers("examiner")
    corr = {
        "kind": "mark",
        "item": 1,
        "done": False,
        "reason": "видео: не представился",
        "checklist_hash": cl.content_hash,
        "wall_time": "2026-06-01T09:30:00Z",
        "seq": 100,
        "event_id": "6f1c8a52-4a5e-4d7a-9c0e-1a2b3c4d5e6f",
        "recording_offset_s": 3.5,
    }
    await _json(await client.post("/api/attempts/A1/marks", json=corr, headers=examiner), 200)
    frozen = {"id": "h1", "code": "camera_frozen", "text": "Камера cam0: изображение застыло", "attempt_id": "A1",
              "started_at": "2026-06-01T09:29:10Z", "ended_at": "2026-06-01T09:29:40Z"}
    health = {**world.headers("station"), "Content-Type": "application/json"}
    await _json(await client.put("/api/stations/S1/health-events", json={"events": [frozen]}, headers=health), 200)

    arch = world.headers("archivist")
    found = await _json(await client.get("/api/archive/search?number=2611001", headers=arch), 200)
    assert [a["attempt_id"] for a in found["attempts"]] == ["A1"]
    req = await _json(
        await client.post(
            "/api/export-requests",
            headers=arch,
            json={
                "number": "17-3/4512",
                "date": "2026-07-01",
                "requester": "Минздрав России",
                "subject": "видео и листы",
            },
        ),
        201,
    )
    await _json(await client.post(f"/api/export-requests/{req['id']}/exports", headers=arch), 409)  # nothing yet
    bad = await client.post(f"/api/export-requests/{req['id']}/attempts", headers=arch, json={"attempt_ids": ["X9"]})
    assert bad.status == 422 and (await bad.json())["where"] == "attempt_ids[0]"
    sel = {"attempt_ids": [a["attempt_id"] for a in found["attempts"]]}
    await _json(await client.post(f"/api/export-requests/{req['id']}/attempts", headers=arch, json=sel), 200)
    pkg = await _json(await client.post(f"/api/export-requests/{req['id']}/exports", headers=arch), 201)

    resp = await client.get(pkg["url"], headers=arch)
    assert resp.status == 200
    body = await resp.read()
    assert len(body) == pkg["size"]
    # Resume: a Range request gives the rest of the file.
    part = await client.get(pkg["url"], headers={**arch, "Range": "bytes=1000-"})
    assert part.status == 206
    assert await part.read() == body[1000:]

    zpath = tmp_path / "package.zip"
    zpath.write_bytes(body)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(unpacked)
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=unpacked, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sums.stdout.count(": OK") == len((unpacked / "SHA256SUMS").read_text().splitlines())

    manifest = json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))
    attempt = json.loads((unpacked / "attempts/A1/attempt.json").read_text(encoding="utf-8"))
    assert [(h["code"], h["ended_at"]) for h in attempt["health_events"]] == [
        ("camera_frozen", "2026-06-01T09:29:40.000+00:00")]
    unzip = subprocess.run(["unzip", "-tqq", str(zpath)], capture_output=True, text=True)  # an independent reader
    assert unzip.returncode == 0, unzip.stdout + unzip.stderr
    assert manifest["request"]["number"] == "17-3/4512"
    assert manifest["attempts"] == ["A1"] and manifest["absent_media"] == []
    key_resp = await client.get("/api/export-key")
    assert key_resp.status == 200
    assert (await key_resp.read()) == (unpacked / "public_key.pem").read_bytes()
    assert key_resp.headers["X-Key-SHA256"] == manifest["public_key_sha256"]
    key_file = data_dir(api.app[CONFIG]) / "keys" / "export-ed25519.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and b"PRIVATE KEY" in key_file.read_bytes()

    # The recording files are the station's bytes, in per-track folders, and decode.
    rec_dir = unpacked / "attempts/A1/recordings/rec-A1"
    src = read_manifest(recording)
    assert sum(1 for p in rec_dir.rglob("*") if p.is_file()) == frags
    for track in src.track_ids():
        files = src.track_files(track)
        for f in files:
            assert (rec_dir / f.file).read_bytes() == (recording / f.file).read_bytes()
        joined = tmp_path / f"{track}.mp4"
        joined.write_bytes(b"".join((rec_dir / f.file).read_bytes() for f in files))
        dec = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-i", str(joined), "-f", "null", "-"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert dec.returncode == 0 and dec.stderr.strip() == "", dec.stderr

    # Marks and the correction; the protocol's figures follow from them.
    marks = json.loads((unpacked / "attempts/A1/marks.json").read_text(encoding="utf-8"))
    assert len(marks["events"]) == len(cl.item_numbers) + 2
    sheet = marks["sheets"]["examiner"]
    assert sheet["finalised"] is True and sheet["marks"]["1"] is False
    assert [c["reason"] for c in sheet["corrections"]] == ["видео: не представился"]
    text = (unpacked / "attempts/A1/marks.txt").read_text(encoding="utf-8")
    assert "причина: видео: не представился" in text and "13 из 19" in text
    rows = list(csv.DictReader(io.StringIO((unpacked / "protocol.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 1
    assert rows[0]["accreditation_number"] == "2611001" and rows[0]["task"] == "CPR"
    assert float(rows[0]["percent"]) == pytest.approx(100 * 13 / 19, abs=0.005)
    assert rows[0]["result"] == "не сдано" and rows[0]["final"] == "да"
    audit_rows = [json.loads(x) for x in (unpacked / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    actions = {r["action"] for r in audit_rows}
    assert {"attempt.finalise", "mark.correct", "archive.request.add", "archive.request.select"} <= actions

    # The export itself is audited: who, which request, what.
    ev = api.run(lambda s: s.scalar(select(AuditEvent).where(AuditEvent.action == "archive.export")))
    assert ev.actor == "user:archivist" and ev.target == f"request:{req['id']}"
    assert ev.details["attempts"] == ["A1"] and ev.details["sha256"] == pkg["sha256"]
    assert api.run(lambda s: s.get(ExportPackage, pkg["id"]).sha256) == pkg["sha256"]

    # osce verify on the ZIP (a separate process, as a recipient would run it, with the centre's published key)
    # and on the folder.
    published = await (await client.get("/api/export-key")).read()
    (tmp_path / "centre.pem").write_bytes(published)
    ok = subprocess.run(
        [sys.executable, "-m", "osce_cli", "verify", str(zpath), "--public-key", str(tmp_path / "centre.pem")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "package: OK" in ok.stdout and manifest["public_key_sha256"] in ok.stdout
    assert verify(unpacked, published).ok

    # One byte changed in one media file: verify fails and names it; sha256sum agrees.
    victim = rec_dir / src.track_files(src.track_ids()[0])[1].file
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = verify(unpacked, published)
    assert not report.ok
    rel = victim.relative_to(unpacked).as_posix()
    assert any(p.startswith(f"{rel}: SHA-256") for p in report.problems), report.problems
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=unpacked, capture_output=True).returncode
    bad = subprocess.run(
        [sys.executable, "-m", "osce_cli", "verify", str(unpacked), "--public-key", str(tmp_path / "centre.pem")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "package: FAILED" in bad.stdout
    assert f"FAIL {rel}: SHA-256 or size differs from the manifest" in bad.stdout


async def test_verify_finds_extra_missing_and_resigned(world: World, tmp_path: Path) -> None:
    """No recording needed: a package of marks only; then files added, removed and the manifest re-signed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from review_server.signing import public_pem

    ids = add_schedule(world)
    world.schedule("B1")
    cl = checklist(CPR)
    await post_marks(world, events("B1", "S1", cl, set(cl.item_numbers)))
    link_attempt(world, "B1", "2611002", ids, "CPR")
    arch = world.headers("archivist")
    client = world.api.client
    req = await _json(
        await client.post(
            "/api/export-requests", headers=arch, json={"number": "1", "date": "2026-07-02", "requester": "суд"}
        ),
        201,
    )
    await _json(
        await client.post(f"/api/export-requests/{req['id']}/attempts", headers=arch, json={"attempt_ids": ["B1"]}), 200
    )
    pkg = await _json(await client.post(f"/api/export-requests/{req['id']}/exports", headers=arch), 201)
    body = await (await client.get(pkg["url"], headers=arch)).read()
    d = tmp_path / "p"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        zf.extractall(d)
    published = await (await client.get("/api/export-key")).read()
    assert verify(d, published).ok
    # A second entry under a listed name, appended to the ZIP (what an unzip would silently prefer).
    twice = tmp_path / "twice.zip"
    twice.write_bytes(body)
    with warnings.catch_warnings(), zipfile.ZipFile(twice, "a") as zf:
        warnings.simplefilter("ignore")
        zf.writestr("protocol.csv", b"forged\n")
    assert "protocol.csv: more than one entry with this name in the ZIP" in verify(twice, published).problems
    assert verify(tmp_path / "nowhere.zip", published).problems == [
        f"{tmp_path / 'nowhere.zip'}: no such file or folder"]
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    assert "cannot open" in verify(tmp_path / "junk.zip", published).problems[0]
    (d / "extra.txt").write_text("x")
    assert any(p.startswith("extra.txt: in the package but not listed") for p in verify(d, published).problems)
    (d / "extra.txt").unlink()
    (d / "protocol.csv").unlink()
    assert "protocol.csv: listed in the manifest but missing" in verify(d, published).problems
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        zf.extractall(d)
    # Someone re-signs an altered manifest with their own key: the package's own check passes only if the
    # key is swapped too (and only when told to trust the package's own key), and the published key catches it.
    other = Ed25519PrivateKey.generate()
    man = (d / "manifest.json").read_bytes().replace(b'"B1"', b'"B2"')
    assert man != (d / "manifest.json").read_bytes()
    (d / "manifest.json").write_bytes(man)
    (d / "manifest.sig").write_bytes(other.sign(man))
    assert any(p.startswith("manifest.sig: signature does not match")
               for p in verify(d, trust_embedded_key=True).problems)
    (d / "public_key.pem").write_bytes(public_pem(other))
    pinned = verify(d, published)
    assert not pinned.ok and any("public_key.pem" in p or "manifest.sig" in p for p in pinned.problems)

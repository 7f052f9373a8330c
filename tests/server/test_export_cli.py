"""`osce server export --request N` (progress on stderr, audited as the CLI user) and a package whose media
was partly destroyed by retention (declared absent, still verifiable)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from osce_cli import main
from review_server.config import ServerConfig
from review_server.models import AuditEvent
from review_server.package import verify
from review_server.signing import data_dir, load_existing, public_pem
from review_server.storage import LocalStorage
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .archive_helpers import CPR, add_schedule, checklist, events, link_attempt, post_marks
from .conftest import World


async def test_cli_export_with_progress_and_absent_media(
    world: World, config: ServerConfig, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    ids = add_schedule(world)
    world.schedule("C1")
    cl = checklist(CPR)
    client = world.api.client
    blobs = [init_bytes()] + [media_bytes(300_000 + i, seed=i) for i in (1, 2)]
    for seq, data in enumerate(blobs):
        sha = hashlib.sha256(data).hexdigest()
        resp = await client.put(
            f"/api/recordings/rec-C1/tracks/cam0/fragments/{seq}?attempt_id=C1",
            data=data,
            headers={**world.headers("station"), "X-Content-SHA256": sha},
        )
        assert resp.status == 201
    await post_marks(world, events("C1", "S1", cl, {1, 2, 3}, finalise=False))
    link_attempt(world, "C1", "2611003", ids, "CPR")
    arch = world.headers("archivist")
    req = await (
        await client.post(
            "/api/export-requests", headers=arch, json={"number": "5", "date": "2026-07-03", "requester": "МЗ"}
        )
    ).json()
    resp = await client.post(f"/api/export-requests/{req['id']}/attempts", headers=arch, json={"attempt_ids": ["C1"]})
    assert resp.status == 200
    gone = hashlib.sha256(blobs[2]).hexdigest()
    LocalStorage(config.media_dir).delete(gone)  # as retention would

    cfg = tmp_path / "server.toml"
    cfg.write_text(
        f"database_url = {json.dumps(config.database_url)}\nmedia_dir = {json.dumps(str(config.media_dir))}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.zip"
    capsys.readouterr()
    assert main(["server", "export", "--request", str(req["id"]), "--out", str(out), "--config", str(cfg)]) == 0
    captured = capsys.readouterr()
    assert "export: 100%" in captured.err and "export:   0%" in captured.err
    pkg = json.loads(captured.out)
    assert pkg["path"] == str(out) and hashlib.sha256(out.read_bytes()).hexdigest() == pkg["sha256"]

    report = verify(out, public_pem(load_existing(data_dir(config))))
    assert report.ok, report.problems
    import zipfile

    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        protocol = zf.read("protocol.csv").decode("utf-8")
    assert [a["sha256"] for a in manifest["absent_media"]] == [gone]
    assert manifest["absent_media"][0]["path"] == "attempts/C1/recordings/rec-C1/cam0/000002.m4s"
    assert ",не сдано,нет,not finalised" in protocol  # 3 of 19 marked, sheet not signed
    ev = world.api.run(lambda s: s.scalar(select(AuditEvent).where(AuditEvent.action == "archive.export")))
    assert ev.actor.startswith("cli:") and ev.details["absent_media"] == 1
    assert main(["server", "export", "--request", "999", "--config", str(cfg)]) == 2

"""Retention: a policy per specialty, legal holds, `osce server retention run` deleting expired unheld media
(blobs still used elsewhere stay), every step in the audit trail."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from osce_cli import main
from review_server import audit
from review_server.config import ServerConfig
from review_server.models import AuditEvent, Recording
from review_server.storage import LocalStorage
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

from .archive_helpers import add_schedule, link_attempt
from .conftest import World


async def _upload(world: World, key: str, attempt: str, blobs: list[bytes]) -> list[str]:
    out = []
    for seq, data in enumerate(blobs):
        sha = hashlib.sha256(data).hexdigest()
        resp = await world.api.client.put(
            f"/api/recordings/{key}/tracks/cam0/fragments/{seq}?attempt_id={attempt}",
            data=data,
            headers={**world.headers("station"), "X-Content-SHA256": sha},
        )
        assert resp.status == 201, await resp.text()
        out.append(sha)
    return out


async def test_retention_run_respects_policy_and_holds(
    world: World, config: ServerConfig, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    ids = add_schedule(world)
    world.schedule("R1", "R2", "R3")
    shared = init_bytes(seed=1)
    r1 = await _upload(world, "rec-R1", "R1", [shared, media_bytes(800, seed=1)])
    r2 = await _upload(world, "rec-R2", "R2", [init_bytes(seed=2), media_bytes(800, seed=2)])
    await _upload(world, "rec-R3", "R3", [shared])  # on no exam day: its period runs from today
    link_attempt(world, "R1", "2611001", ids, "CPR")
    link_attempt(world, "R2", "2611002", ids, "CPR")
    client = world.api.client
    admin, arch = world.headers("admin"), world.headers("archivist")
    resp = await client.put("/api/retention-policies/NURSE", json={"keep_days": 30}, headers=admin)
    assert resp.status == 200
    assert (await (await client.get("/api/retention-policies", headers=admin)).json())["policies"] == [
        {"specialty": "NURSE", "keep_days": 30, "updated_by": "user:admin"}
    ]
    resp = await client.post("/api/attempts/R2/holds", json={"kind": "appeal", "reason": "апелляция №3"}, headers=arch)
    assert resp.status == 201
    hold_id = (await resp.json())["id"]

    cfg = tmp_path / "server.toml"
    cfg.write_text(
        f"database_url = {json.dumps(config.database_url)}\nmedia_dir = {json.dumps(str(config.media_dir))}\n",
        encoding="utf-8",
    )
    store = LocalStorage(config.media_dir)
    run = ["server", "retention", "run", "--today", "2026-07-01", "--config", str(cfg)]
    capsys.readouterr()
    assert main([*run, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete 0 recording(s)" in out  # 2026-06-01 + 30 days is not past on 2026-07-01
    later = ["server", "retention", "run", "--today", "2026-08-01", "--config", str(cfg)]
    assert main([*later, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete rec-R1" in out and "kept rec-R2: legal hold" in out and "rec-R3" not in out
    assert all(store.exists(h) for h in r1 + r2)

    assert main(later) == 0
    out = capsys.readouterr().out
    assert "deleted 1 recording(s), 1 media object(s); 1 held" in out
    keys = world.api.run(lambda s: sorted(s.scalars(select(Recording.key))))
    assert keys == ["rec-R2", "rec-R3"]
    assert not store.exists(r1[1]) and store.exists(r1[0])  # the init file is still used by rec-R3
    assert all(store.exists(h) for h in r2)
    ev = world.api.run(
        lambda s: s.scalar(
            select(AuditEvent).where(AuditEvent.action == "recording.delete", AuditEvent.target == "rec-R1")
        )
    )
    assert ev.details["reason"] == "retention: 30 days for specialty NURSE" and len(ev.details["fragments"]) == 2

    resp = await client.delete(f"/api/holds/{hold_id}", json={"reason": "решение по апелляции"}, headers=arch)
    assert resp.status == 200
    assert (await client.delete(f"/api/holds/{hold_id}", json={"reason": "x"}, headers=arch)).status == 409
    assert main(later) == 0
    assert "deleted 1 recording(s), 2 media object(s); 0 held" in capsys.readouterr().out
    assert not any(store.exists(h) for h in r2)
    actions = world.api.run(lambda s: list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))))
    assert actions.count("retention.run") == 2 and {"hold.add", "hold.release", "retention.policy.set"} <= set(actions)
    assert world.api.run(audit.verify).ok


async def test_selecting_for_a_request_holds_the_attempt(world: World) -> None:
    ids = add_schedule(world)
    world.schedule("H1")
    await _upload(world, "rec-H1", "H1", [init_bytes(seed=5)])
    link_attempt(world, "H1", "2611005", ids, "CPR")
    client, arch = world.api.client, world.headers("archivist")
    req = await (
        await client.post(
            "/api/export-requests", headers=arch, json={"number": "9", "date": "2026-07-09", "requester": "МЗ"}
        )
    ).json()
    await client.post(f"/api/export-requests/{req['id']}/attempts", headers=arch, json={"attempt_ids": ["H1"]})
    holds = (await (await client.get("/api/attempts/H1/holds", headers=arch)).json())["holds"]
    assert [(h["kind"], h["released_at"]) for h in holds] == [("request", None)]
    assert "export request 9" in holds[0]["reason"]
    bad = await client.post("/api/attempts/H1/holds", json={"kind": "whim", "reason": "x"}, headers=arch)
    assert bad.status == 422 and (await bad.json())["where"] == "kind"

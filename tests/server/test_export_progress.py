"""Exports as background jobs: progress while the package is written (monotonic, exact totals), the finished
package downloaded (twice) and verified; a server killed mid-export leaves the package interrupted, and it is
resumed to a package that verifies; a failed export is audited and resumable. Plus the short export benchmark.

"Slow storage" below is the real LocalStorage whose open() waits at a gate after some files: a test stand-in
for a slow disk, so that the job is seen mid-way deterministically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.export import ExportProgress, exports_dir, run_export
from review_server.models import AuditEvent
from review_server.package import MANIFEST, PUBLIC_KEY, SIGNATURE, SUMS, verify
from review_server.storage import LocalStorage
from review_server.web import CONFIG
from scripts.harness.fmp4_bytes import init_bytes, media_bytes
from scripts.harness.ports import free_port as _free_port

from .archive_helpers import CPR, ROOT, add_schedule, checklist, events, link_attempt, post_marks
from .conftest import Api, World

ENVELOPE = {MANIFEST, SIGNATURE, SUMS, PUBLIC_KEY}  # not in the byte total (written after the members)


class GatedStorage(LocalStorage):
    """LocalStorage that lets `free` objects be opened, then waits at the gate (`waiting` is set meanwhile)."""

    def __init__(self, root: Path, free: int) -> None:
        super().__init__(root)
        self.free, self.gate, self.waiting = free, threading.Event(), threading.Event()

    def open(self, key: str):  # type: ignore[no-untyped-def]
        if self.free <= 0:
            self.waiting.set()
            assert self.gate.wait(60), "the test never opened the gate"
        self.free -= 1
        return super().open(key)


@pytest.fixture
async def gated(config: ServerConfig) -> AsyncIterator[tuple[World, GatedStorage]]:
    storage = GatedStorage(config.media_dir, free=10**9)
    # The ZIP's progress against a stalled disk: no identification videos (burn_in.py, tested on their own) read
    # the media first.
    app = create_app(dataclasses.replace(config, export_identified_video=False), storage=storage)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield World(Api(client, app)), storage


async def _media_request(world: World, fragments: int, size: int, seed: int) -> tuple[int, int]:
    """Attempt A1 on S1 with one recording of an init and `fragments` media fragments (fMP4-shaped, random
    payload), marked; an export request selecting it. Returns (request id, media bytes)."""
    ids = add_schedule(world)
    world.schedule("A1")
    rnd = random.Random(seed)
    client, total = world.api.client, 0
    for seq in range(fragments + 1):
        data = init_bytes(seed=seed) if seq == 0 else media_bytes(size + seq, seed=rnd.getrandbits(32))
        total += len(data)
        resp = await client.put(
            f"/api/recordings/rec-A1/tracks/cam0/fragments/{seq}?attempt_id=A1",
            data=data,
            headers={**world.headers("station"), "X-Content-SHA256": hashlib.sha256(data).hexdigest()},
        )
        assert resp.status == 201, await resp.text()
    cl = checklist(CPR)
    await post_marks(world, events("A1", "S1", cl, set(cl.item_numbers[:15])))
    link_attempt(world, "A1", "2611001", ids, "CPR")
    arch = world.headers("archivist")
    req = await (await client.post("/api/export-requests", headers=arch,
                                   json={"number": "17-3/1", "date": "2026-07-01", "requester": "Минздрав"})).json()
    resp = await client.post(f"/api/export-requests/{req['id']}/attempts", headers=arch, json={"attempt_ids": ["A1"]})
    assert resp.status == 200
    return req["id"], total


def _monotonic(snaps: list[dict[str, Any]]) -> None:
    for key in ("bytes_done", "files_done"):
        values = [p[key] for p in snaps]
        assert values == sorted(values), (key, values)
    assert len({(p["bytes_total"], p["files_total"]) for p in snaps}) == 1  # totals known from the start


async def test_progress_while_running_then_download_verifies(gated: tuple[World, GatedStorage], tmp_path: Path) -> None:
    world, storage = gated
    request_id, media = await _media_request(world, fragments=8, size=256 * 1024, seed=1)
    client, arch = world.api.client, world.headers("archivist")
    storage.free = 4  # the init and three media fragments, then the "disk" stalls
    resp = await client.post(f"/api/export-requests/{request_id}/exports?background=1", headers=arch)
    assert resp.status == 202, await resp.text()
    started = await resp.json()
    pid = started["id"]
    assert resp.headers["Location"] == f"/api/exports/{pid}" == started["status_url"]
    assert await asyncio.to_thread(storage.waiting.wait, 30)
    snaps = []
    mid = await (await client.get(f"/api/exports/{pid}", headers=arch)).json()
    assert mid["status"] == "running" and mid["sha256"] is None
    p = mid["progress"]
    snaps.append(p)
    assert media < p["bytes_total"] and 3 * 256 * 1024 <= p["bytes_done"] < p["bytes_total"]
    assert 0 < p["files_done"] < p["files_total"] and p["current"].startswith("attempts/A1/recordings/rec-A1/cam0/")
    refused = await client.get(f"/api/exports/{pid}/download", headers=arch)
    assert refused.status == 409 and (await refused.json())["export_status"] == "running"
    assert (await client.post(f"/api/exports/{pid}/resume", headers=arch)).status == 409  # it is running
    listed = await (await client.get(f"/api/export-requests/{request_id}", headers=arch)).json()
    assert [(x["id"], x["status"]) for x in listed["packages"]] == [(pid, "running")]
    assert listed["attempt_rows"] == [
        {"attempt_id": "A1", "accreditation_number": "2611001", "exam_day": "2026-06-01", "station": "S1",
         "task": "CPR"}
    ]
    storage.gate.set()
    for _ in range(300):
        st = await (await client.get(f"/api/exports/{pid}", headers=arch)).json()
        snaps.append(st["progress"])
        if st["status"] != "running":
            break
        await asyncio.sleep(0.02)
    assert st["status"] == "done", st
    _monotonic(snaps)
    final = snaps[-1]
    assert final["percent"] == 100 and final["files_done"] == final["files_total"]
    # Downloaded twice (a finished package stays), both audited; the bytes are the recorded package.
    for _ in range(2):
        got = await client.get(st["url"], headers=arch)
        body = await got.read()
        assert got.status == 200 and hashlib.sha256(body).hexdigest() == st["sha256"] == got.headers["X-Content-SHA256"]
    (tmp_path / "p.zip").write_bytes(body)
    published = await (await client.get("/api/export-key")).read()
    report = verify(tmp_path / "p.zip", published)
    assert report.ok, report.problems
    with zipfile.ZipFile(tmp_path / "p.zip") as zf:  # files counted: every entry, the envelope's included
        assert len(zf.namelist()) == final["files_total"]
        assert sum(i.file_size for i in zf.infolist() if i.filename not in ENVELOPE) == final["bytes_total"]
    actions = world.api.run(lambda s: [(e.action, e.details.get("package_id")) for e in
                                       s.scalars(select(AuditEvent).order_by(AuditEvent.seq))])
    ours = [a for a, p in actions if p == pid]
    assert ours == ["archive.export.start", "archive.export", "archive.export.download", "archive.export.download"]

    # The same export in this thread: every progress call is monotonic and ends at the totals.
    seen: list[dict[str, Any]] = []

    def record(p: ExportProgress) -> None:
        seen.append(p.to_json())

    pkg = run_export(world.api.db, storage, world.api.app[CONFIG], request_id, "test", record)
    _monotonic(seen)
    assert seen[0]["bytes_done"] == 0 and seen[-1]["bytes_done"] == seen[-1]["bytes_total"] > media
    assert seen[-1]["bytes_total"] > final["bytes_total"]  # its audit.jsonl holds the first export's events too
    assert len(seen) > pkg["files"]  # per chunk and per file


STALLING_SERVER = """
import sys, time
from pathlib import Path
from aiohttp import web
from review_server.app import create_app
from review_server.web import CONFIG
from review_server.config import ServerConfig
from review_server.storage import LocalStorage

class Stalling(LocalStorage):  # a slow disk: two objects, then it hangs (the test kills the server there)
    opened = 0
    def open(self, key):
        if self.opened >= 2:
            Path(sys.argv[3]).touch()
            time.sleep(3600)
        self.opened += 1
        return super().open(key)

cfg = ServerConfig(database_url=sys.argv[1], media_dir=Path(sys.argv[2]), insecure_cookies=True,
                   argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1,
                   export_identified_video=False)  # stalls in the ZIP, not in the videos made before it
web.run_app(create_app(cfg, storage=Stalling(cfg.media_dir)), host="127.0.0.1", port=int(sys.argv[4]),
            print=lambda *_: print("serving", flush=True))
"""


def _http(method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_server_killed_mid_export_then_resumed(world: World, config: ServerConfig, tmp_path: Path) -> None:
    request_id, _ = await _media_request(world, fragments=6, size=200 * 1024, seed=2)
    stuck, port = tmp_path / "stuck", _free_port()
    cmd = [sys.executable, "-c", STALLING_SERVER, config.database_url, str(config.media_dir), str(stuck), str(port)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and b"serving" in server.stdout.readline()
        arch = world.headers("archivist")
        status, pkg = await asyncio.to_thread(
            _http, "POST", f"http://127.0.0.1:{port}/api/export-requests/{request_id}/exports?background=1", arch
        )
        assert status == 202, pkg
        for _ in range(300):
            if stuck.exists():
                break
            await asyncio.sleep(0.05)
        assert stuck.exists()
        status, there = await asyncio.to_thread(_http, "GET", f"http://127.0.0.1:{port}/api/exports/{pkg['id']}", arch)
        assert status == 200 and there["status"] == "running" and there["progress"]["files_done"] > 0
    finally:
        server.send_signal(signal.SIGKILL)  # the server dies mid-package: no clean-up, no audit of its own
        server.wait(10)
    folder = exports_dir(config)
    assert (folder / (pkg["file_name"] + ".partial")).exists()

    client = world.api.client
    st = await (await client.get(f"/api/exports/{pkg['id']}", headers=arch)).json()
    assert st["status"] == "interrupted" and st["sha256"] is None
    resp = await client.post(f"/api/exports/{pkg['id']}/resume", headers=arch)  # waits for the package: 201
    assert resp.status == 201, await resp.text()
    done = await resp.json()
    assert done["id"] == pkg["id"] and done["status"] == "done"
    assert not (folder / (pkg["file_name"] + ".partial")).exists()
    body = await (await client.get(done["url"], headers=arch)).read()
    assert hashlib.sha256(body).hexdigest() == done["sha256"]
    (tmp_path / "r.zip").write_bytes(body)
    assert verify(tmp_path / "r.zip", await (await client.get("/api/export-key")).read()).ok
    assert (await client.post(f"/api/exports/{pkg['id']}/resume", headers=arch)).status == 409  # done
    assert (await client.post("/api/exports/999999/resume", headers=arch)).status == 404
    resumed = world.api.run(
        lambda s: s.scalar(select(AuditEvent).where(AuditEvent.action == "archive.export.resume"))
    )
    assert resumed.actor == "user:archivist" and resumed.details["was"] == "interrupted" and resumed.details["run"] == 2

    # A failure (a media object altered on disk) is audited, shown, and resumable once the object is right.
    victim = next(p for p in config.media_dir.rglob("*") if p.is_file() and p.parent.name != ".tmp")
    good = victim.read_bytes()
    victim.write_bytes(b"x" + good[1:])
    resp = await client.post(f"/api/export-requests/{request_id}/exports", headers=arch)
    assert resp.status == 500 and "media storage returned other bytes" in (await resp.json())["error"]
    failed = world.api.run(lambda s: s.scalar(select(AuditEvent).where(AuditEvent.action == "archive.export.fail")))
    bad_id = failed.details["package_id"]
    st = await (await client.get(f"/api/exports/{bad_id}", headers=arch)).json()
    assert st["status"] == "failed" and "other bytes" in st["error"]
    victim.write_bytes(good)
    resp = await client.post(f"/api/exports/{bad_id}/resume", headers=arch)
    assert resp.status == 201 and (await resp.json())["status"] == "done"


def test_bench_export_quick(tmp_path: Path) -> None:
    """The export benchmark's short run (50 MB): it measures both, computes the ratio, and the export's memory
    stays far below the media's size (constant memory). Speed is not asserted."""
    env = os.environ | {"OSCE_BENCH_EXPORT_MB": "50"}
    run = subprocess.run(
        [sys.executable, "bench/bench_export.py", "--quick", "--workdir", str(tmp_path / "w")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("BENCH_JSON "))
    res = json.loads(line.removeprefix("BENCH_JSON "))
    assert res["media_bytes"] >= 50 * 10**6 and res["files"] > 20
    assert res["export_mb_s"] > 0 and res["copy_mb_s"] > 0
    assert res["ratio"] == pytest.approx(res["export_mb_s"] / res["copy_mb_s"], rel=1e-3)
    assert res["package_verified"] is True
    assert 0 < res["export_rss_growth_mb"] < 24  # 50 MB went through; the writer keeps ~1 MiB chunks

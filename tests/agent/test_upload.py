"""Store and forward (station_agent/upload_queue.py, uploader.py) against a real review server on a real port.

Also the command line of the uploader child these tests kill (``python -m tests.agent.test_upload agent ...``):
it runs an uploader until its queue and journal are empty. The review server child is scripts/harness/review.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from checklists.marks import MarkEvent
from media.manifest import Fragment as ManifestFragment
from media.manifest import ManifestWriter, read_manifest
from review_server.config import ServerConfig
from review_server.db import Database
from review_server.models import Recording
from review_server.storage import LocalStorage
from scripts.harness.fmp4_bytes import init_bytes, media_bytes
from scripts.harness.ports import free_port
from scripts.harness.review import ROOT, serve_command, start_review_server
from scripts.harness.wait import wait_for_async as wait_for
from station_agent.journal import Journal
from station_agent.upload_queue import DONE, FAILED, UploadQueue
from station_agent.uploader import Uploader

from .conftest import CHECKLIST_HASH, add_marks, drained, expected_fragments, server_setup, server_view


class RecordingMaker:
    """A recording folder in the manifest format, written fragment by fragment (fMP4-shaped, random payload)."""

    def __init__(self, folder: Path, tracks: tuple[str, ...] = ("cam0", "cam1")) -> None:
        self.folder = folder
        self.tracks = tracks
        folder.mkdir(parents=True)
        self.recording_id = uuid.uuid4().hex
        header = {
            "recording_id": self.recording_id,
            "attempt_id": "att-1",
            "station": "S1",
            "started_wall": "2026-11-26T08:00:00.000+00:00",
            "fragment_s": 2.0,
            "tracks": [{"id": t, "source": "test"} for t in tracks],
        }
        self.writer = ManifestWriter(folder, header)
        init = init_bytes((1,), seed=random.getrandbits(32))  # both cameras share an init file's bytes
        self.init_size = len(init)
        for t in tracks:
            self._write(t, 0, init)
        self.next_seq = 1

    def _write(self, track: str, seq: int, data: bytes) -> None:
        name = f"{track}/init.mp4" if seq == 0 else f"{track}/{seq:06d}.m4s"
        path = self.folder / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        kind = "init" if seq == 0 else "media"
        start, end = (None, None) if seq == 0 else (2.0 * (seq - 1), 2.0 * seq)
        self.writer.fragment(ManifestFragment(track, seq, kind, name, sha, len(data), start, end))

    def add_media(self, count: int, size: tuple[int, int]) -> None:
        for _ in range(count):
            for t in self.tracks:
                self._write(t, self.next_seq, media_bytes(random.randint(*size), seed=random.getrandbits(32)))
            self.next_seq += 1

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[ServerConfig, str, str]]:
    cfg, token = server_setup(tmp_path)
    runner, url = await start_review_server(cfg)
    yield cfg, url, token
    await runner.cleanup()


# ---------------------------------------------------------------- in-process tests


async def test_uploads_fragments_and_marks_once(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, url, token = server
    rec = RecordingMaker(tmp_path / "rec")
    rec.add_media(3, (50_000, 200_000))
    queue, journal = UploadQueue(tmp_path / "queue.db"), Journal(tmp_path / "marks.db")
    assert queue.add_recording_folder(rec.folder) == 8
    assert queue.add_recording_folder(rec.folder) == 0  # idempotent
    marks = add_marks(journal, 7)
    stats = queue.stats()
    assert stats["length"] == 8 and stats["bytes"] == sum(f.size for f in read_manifest(rec.folder).fragments)
    uploader = Uploader(queue, url, token, journal=journal, chunk_size=64 * 1024)
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    await wait_for(lambda: drained(queue, journal), 20, "the first upload")
    rec.add_media(1, (10_000, 20_000))  # the recording goes on: only the new fragments are queued
    assert queue.add_recording_folder(rec.folder) == 2
    await wait_for(lambda: drained(queue, journal), 20, "the new fragments")
    stop.set()
    await asyncio.wait_for(task, 10)
    view = server_view(cfg)
    assert view.fragments == expected_fragments(rec.folder)
    assert view.media_ok
    assert view.marks == sorted(marks)
    sizes = [f.size for f in read_manifest(rec.folder).fragments]
    assert uploader.bytes_sent == sum(sizes) - rec.init_size  # the second camera's init file was already there
    status = uploader.status()
    assert (status["queue_length"], status["bytes_pending"], status["oldest_age_s"]) == (0, 0, None)
    assert status["marks_pending"] == 0 and status["uploaded"] == 10

    # A station that lost its queue database sends the folder again: the server has every hash, no bytes move.
    queue2 = UploadQueue(tmp_path / "queue2.db")
    queue2.add_recording_folder(rec.folder)
    again = Uploader(queue2, url, token, chunk_size=64 * 1024)
    stop2 = asyncio.Event()
    task2 = asyncio.create_task(again.run(stop2))
    await wait_for(lambda: drained(queue2), 20, "the re-run")
    stop2.set()
    await task2
    assert again.bytes_sent == 0 and again.uploaded == 10
    assert server_view(cfg).fragments == view.fragments
    db = Database(cfg.database_url)
    try:
        with db.transaction() as s:  # the recording is linked to the attempt named in its header
            assert s.scalar(select(Recording.attempt_id).where(Recording.key == rec.recording_id)) == "att-1"
            # Media time 0 (started_wall + the recorder's 1.5 s warm-up), sent with the init files.
            started = s.scalar(select(Recording.media_from).where(Recording.key == rec.recording_id))
            assert started.isoformat() == "2026-11-26T08:00:01.500000+00:00"
    finally:
        db.dispose()


async def test_delete_after_confirm_and_refused_fragment(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, url, token = server
    rec = RecordingMaker(tmp_path / "rec", tracks=("cam0",))
    rec.add_media(3, (20_000, 30_000))
    damaged = rec.folder / "cam0/000002.m4s"
    data = damaged.read_bytes()  # still fMP4-shaped, but no longer the file its manifest line describes
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    queue = UploadQueue(tmp_path / "queue.db")
    queue.add_recording_folder(rec.folder)
    uploader = Uploader(queue, url, token, delete_after_confirm=True, chunk_size=8 * 1024)
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    await wait_for(lambda: queue.stats()["length"] == 0, 20, "the queue")
    stop.set()
    await task
    states = {i.file: i.state for i in queue.items()}
    assert states.pop("cam0/000002.m4s") == FAILED
    assert set(states.values()) == {DONE}
    assert "differs from its manifest" in (queue.items(FAILED)[0].last_error or "")
    assert damaged.is_file()  # kept: never confirmed
    assert sorted(p.name for p in (rec.folder / "cam0").iterdir()) == ["000002.m4s"]
    assert (rec.folder / "manifest.jsonl").is_file()
    assert len(server_view(cfg).fragments) == 3
    assert uploader.status()["failed"] == 1


async def test_a_refused_mark_does_not_hold_up_the_others(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, url, token = server
    queue, journal = UploadQueue(tmp_path / "queue.db"), Journal(tmp_path / "marks.db")
    good = add_marks(journal, 2)
    foreign = MarkEvent.new(
        attempt_id="att-2", station_id="S2", examiner="petrov", kind="mark", checklist_hash=CHECKLIST_HASH,
        seq=1, item=1, done=True,
    )  # fmt: skip
    journal.append(foreign)  # this station's token may not send another station's marks: 403
    good += add_marks(journal, 2)
    uploader = Uploader(queue, url, token, journal=journal)
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    await wait_for(lambda: len(journal.pending()) == 1, 20, "the good marks")
    stop.set()
    await task
    assert [e.event_id for e in journal.pending()] == [foreign.event_id]  # kept, not lost
    assert server_view(cfg).marks == sorted(good)
    status = uploader.status()
    assert status["marks_rejected"] == 1 and status["marks_pending"] == 1
    assert "S1" in (status["last_error"] or "")


async def test_bandwidth_cap(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _cfg, url, token = server
    rec = RecordingMaker(tmp_path / "rec", tracks=("cam0",))
    rec.add_media(1, (600_000, 600_000))
    queue = UploadQueue(tmp_path / "queue.db")
    queue.add_recording_folder(rec.folder)
    rate = 300_000
    uploader = Uploader(queue, url, token, bandwidth_bps=rate, chunk_size=32 * 1024)
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(uploader.run(stop))
    await wait_for(lambda: queue.stats()["length"] == 0, 20, "the upload")
    elapsed = time.monotonic() - started
    stop.set()
    await task
    # 601 200 bytes at 300 000 B/s with a 0.25 s burst: at least ~1.75 s.
    assert elapsed >= (601_200 - 0.25 * rate) / rate * 0.95, elapsed
    assert elapsed < 6


async def test_status_while_server_is_away(tmp_path: Path) -> None:
    rec = RecordingMaker(tmp_path / "rec", tracks=("cam0",))
    rec.add_media(2, (1000, 1000))
    queue, journal = UploadQueue(tmp_path / "queue.db"), Journal(tmp_path / "marks.db")
    queue.add_recording_folder(rec.folder)
    add_marks(journal, 2)
    uploader = Uploader(
        queue, f"http://127.0.0.1:{free_port()}", "t", journal=journal, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(task, 5)
    status = uploader.status()
    assert status["queue_length"] == 3 and status["bytes_pending"] == rec.init_size + 2000
    assert status["oldest_age_s"] >= 0.9
    assert status["marks_pending"] == 2
    assert "Connect" in (status["last_error"] or "")
    assert status["bytes_sent"] == 0


# ---------------------------------------------------------------- real processes, killed


def child(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.agent.test_upload", *args]


async def test_server_kill9_mid_upload_resumes_from_offset(tmp_path: Path) -> None:
    cfg, token = server_setup(tmp_path)
    port = free_port()
    serve = serve_command(cfg.database_url, cfg.media_dir, port)

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*serve, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert b"serving" in line, line
        return proc

    proc = await start()
    rec = RecordingMaker(tmp_path / "rec", tracks=("cam0",))
    rec.add_media(1, (3_000_000, 3_000_000))
    queue = UploadQueue(tmp_path / "queue.db")
    queue.add_recording_folder(rec.folder)
    chunk = 64 * 1024
    uploader = Uploader(
        queue, f"http://127.0.0.1:{port}", token, bandwidth_bps=1_500_000, chunk_size=chunk, backoff_max_s=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    try:
        await wait_for(lambda: uploader.bytes_sent >= 1_200_000, 20, "a third of the upload")
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        await asyncio.sleep(1.5)  # the server is away; the uploader backs off
        assert queue.stats()["length"] == 1  # the big fragment is still pending
        proc = await start()
        await wait_for(lambda: queue.stats()["length"] == 0, 30, "the upload after the restart")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    view = server_view(cfg)
    assert view.fragments == expected_fragments(rec.folder) and view.media_ok
    big = 3_000_000
    assert uploader.resumed_at and min(uploader.resumed_at) >= 1_200_000 - chunk  # resumed, not from zero
    resent = uploader.bytes_sent - big - rec.init_size
    assert 0 <= resent <= chunk, resent


async def test_agent_kill9_at_random_moments(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, url, token = server
    rec = RecordingMaker(tmp_path / "rec")
    rec.add_media(8, (120_000, 260_000))
    rec.close()
    journal = Journal(tmp_path / "marks.db")
    marks = add_marks(journal, 40)
    journal.close()
    queue_db = tmp_path / "queue.db"
    args = child("agent", str(queue_db), str(rec.folder), url, token, str(tmp_path / "marks.db"), "32768", "500000")
    rng = random.Random(20261126)
    kills = 0
    for _ in range(12):
        proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert b"ready" in line, line
        await asyncio.sleep(rng.uniform(0.02, 0.5))
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        await proc.wait()
        # Nothing the agent took as acknowledged may be missing on the server.
        queue, journal = UploadQueue(queue_db), Journal(tmp_path / "marks.db")
        done = {(rec.recording_id, i.track, i.seq, i.sha256) for i in queue.items(DONE)}
        synced = set(marks) - {e.event_id for e in journal.pending()}
        queue.close()
        journal.close()
        view = server_view(cfg)
        assert done <= set(view.fragments)
        assert synced <= set(view.marks)
        assert len(view.fragments) == len(set(view.fragments)) and len(view.marks) == len(set(view.marks))
    assert kills >= 10
    queue = UploadQueue(queue_db)
    assert queue.stats()["length"] > 0, "the kills came too late to interrupt anything"
    queue.close()
    proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    view = server_view(cfg)
    assert view.fragments == expected_fragments(rec.folder) and view.media_ok
    assert view.marks == sorted(marks)
    storage = LocalStorage(cfg.media_dir)
    hashes = {f[3] for f in view.fragments}
    assert all(storage.exists(h) for h in hashes)


# ---------------------------------------------------------------- child processes


async def _agent(queue_db: str, folder: str, url: str, token: str, journal_db: str, chunk: str, bps: str) -> None:
    queue, journal = UploadQueue(queue_db), Journal(journal_db)
    queue.add_recording_folder(Path(folder))
    uploader = Uploader(
        queue, url, token, journal=journal, bandwidth_bps=float(bps), chunk_size=int(chunk), backoff_max_s=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    print("ready", flush=True)
    while not (drained(queue, journal) or task.done()):
        await asyncio.sleep(0.05)
    stop.set()
    await task


def main(argv: list[str]) -> None:
    if argv[0] == "agent":
        asyncio.run(_agent(*argv[1:8]))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Fragment upload on loopback: the agent's tus path (queue + Uploader, 1 MiB chunks, sha256 per chunk, server
verifies and stores by hash) against one plain HTTP PUT of the same bytes to the server's fragment route
(stream, hash, store by hash), in the same run; then the bytes sent again when the network is cut mid-upload.

The server runs as a child process (``osce``'s review server app with the tus routes), so client and server
do not share a CPU. Targets: throughput ratio tus/PUT >= 0.8 (median of the repeats), bytes re-sent after a
cut <= one chunk.

    .venv/bin/python bench/bench_upload.py            # 64 MiB, 3 repeats
    .venv/bin/python bench/bench_upload.py --quick    # 16 MiB, 1 repeat
    OSCE_BENCH_CHUNK_MIB=8 .venv/bin/python bench/bench_upload.py   # another tus chunk size

Every PATCH is one request/response with its own authentication and an fsync of the partial file (the
offset the server reports is durable), so the ratio depends on the chunk size and on fsync latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from common import ROOT, log, median, parse_args, report, workdir

from media.manifest import Fragment, ManifestWriter
from review_server import auth
from review_server.config import ServerConfig
from review_server.db import Database
from review_server.migrations import upgrade
from review_server.models import Station
from scripts.harness.fmp4_bytes import write_media
from scripts.harness.ports import free_port
from station_agent.upload_queue import UploadQueue
from station_agent.uploader import Uploader

CHUNK = int(float(os.environ.get("OSCE_BENCH_CHUNK_MIB", "8")) * 1024 * 1024)  # the Uploader default
TARGET_RATIO = 0.8


def serve(db_url: str, media_dir: str, port: str) -> None:
    from aiohttp import web

    from review_server.app import create_app
    from review_server.storage import LocalStorage

    cfg = ServerConfig(database_url=db_url, media_dir=Path(media_dir), max_fragment_bytes=1 << 30)
    app = create_app(cfg, storage=LocalStorage(cfg.media_dir))
    web.run_app(app, host="127.0.0.1", port=int(port), print=lambda *_: print("serving", flush=True))


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    db_url = f"sqlite:///{root / 'server' / 'osce.db'}"
    upgrade(db_url)
    db = Database(db_url)
    with db.transaction() as s:
        st = Station(code="S1", name="bench")
        s.add(st)
        s.flush()
        token = auth.issue_station_token(s, st)[0]
    db.dispose()
    port = free_port()
    cmd = [sys.executable, __file__, "_serve", db_url, str(root / "server" / "media"), str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and b"serving" in proc.stdout.readline()
    return proc, f"http://127.0.0.1:{port}", token


class _HashingFile:
    """A file that hashes what is written to it."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.digest = fh, hashlib.sha256()

    def write(self, block: bytes) -> None:
        self.digest.update(block)
        self.fh.write(block)


def make_fragment(folder: Path, size: int) -> tuple[Path, str]:
    """A one-fragment recording folder: an fMP4-shaped media fragment (moof + mdat of random bytes, as the server
    checks the box structure at ingest), new bytes each call so no upload finds its hash stored; (file, sha256)."""
    folder.mkdir(parents=True)
    writer = ManifestWriter(folder, {"recording_id": uuid.uuid4().hex, "station": "S1", "tracks": [{"id": "cam0"}]})
    path = folder / "000001.m4s"
    with open(path, "wb") as fh:
        sink = _HashingFile(fh)
        write_media(sink, size, seed=int.from_bytes(os.urandom(8), "big"), chunk=CHUNK)  # type: ignore[arg-type]
    digest = sink.digest
    writer.fragment(Fragment("cam0", 1, "media", path.name, digest.hexdigest(), size, 0.0, 2.0))
    writer.close()
    return path, digest.hexdigest()


async def upload_tus(root: Path, folder: Path, url: str, token: str, **kw: Any) -> Uploader:
    queue = UploadQueue(root / f"queue-{uuid.uuid4().hex[:8]}.db")
    queue.add_recording_folder(folder)
    uploader = Uploader(queue, url, token, chunk_size=CHUNK, idle_poll_s=0.01, backoff_initial_s=0.05, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    while not uploader.uploaded:  # in memory: polling the queue database would take CPU from the upload
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    stop.set()
    await task
    queue.close()
    return uploader


async def upload_put(path: Path, sha: str, url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "X-Content-SHA256": sha, "Content-Length": str(path.stat().st_size)}
    key = uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        with open(path, "rb") as fh:
            r = await http.put(f"{url}/api/recordings/{key}/tracks/cam0/fragments/1", data=fh, headers=headers)
            assert r.status == 201, await r.text()


class Proxy:
    """Loopback TCP proxy with a rate limit towards the server (a slow link, so that a cut finds a request
    crossing it) that can be cut (connections reset, port closed) and restored."""

    def __init__(self, upstream: int, rate_bps: float) -> None:
        self.upstream, self.rate, self.port, self.writers = upstream, rate_bps, 0, set[asyncio.StreamWriter]()
        self.server: asyncio.Server | None = None
        self.in_flight = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.writers |= {w, uw}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    self.in_flight += up
                    try:
                        dst.write(data)
                        await dst.drain()
                        if up:
                            await asyncio.sleep(len(data) / self.rate)
                    finally:
                        self.in_flight -= up
                dst.close()

        try:
            await asyncio.gather(pipe(r, uw, True), pipe(ur, w, False))
        finally:
            self.writers -= {w, uw}

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()


async def resent_after_cut(root: Path, folder: Path, size: int, url: str, token: str) -> int:
    """Upload through a 2-second link, cut it while a PATCH is crossing, halfway; bytes sent twice."""
    proxy = Proxy(int(url.rsplit(":", 1)[1]), rate_bps=size / 2.0)
    await proxy.start()
    queue = UploadQueue(root / f"queue-cut-{uuid.uuid4().hex[:8]}.db")
    queue.add_recording_folder(folder)
    uploader = Uploader(
        queue, f"http://127.0.0.1:{proxy.port}", token, chunk_size=CHUNK, backoff_initial_s=0.1, backoff_max_s=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(stop))
    while uploader.bytes_sent < size // 2 or not proxy.in_flight:
        await asyncio.sleep(0.001)
    await proxy.cut()
    await asyncio.sleep(1.0)
    await proxy.start()
    while queue.stats()["length"]:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    queue.close()
    await proxy.cut()  # closes the port and the idle connections, so no pipe is left running
    await asyncio.sleep(0.05)
    return uploader.bytes_sent - size


async def main_async() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    root = workdir(args, "upload")
    size = (16 if args.quick else 64) * 1024 * 1024
    proc, url, token = start_server(root)
    rows, tus_s, put_s, resent = [], [], [], []
    try:
        for rep in range(args.repeats):
            path, sha = make_fragment(root / f"tus-{rep}", size)
            os.sync()  # neither run pays for the other's (or the generator's) write-back
            started = time.perf_counter()
            await upload_tus(root, path.parent, url, token)
            tus_s.append(time.perf_counter() - started)
            path.unlink()
            path, sha = make_fragment(root / f"put-{rep}", size)
            os.sync()
            started = time.perf_counter()
            await upload_put(path, sha, url, token)
            put_s.append(time.perf_counter() - started)
            path.unlink()
            path, _sha = make_fragment(root / f"cut-{rep}", size)
            resent.append(await resent_after_cut(root, path.parent, size, url, token))
            path.unlink()
            log(f"repeat {rep + 1}: tus {tus_s[-1]:.3f} s, PUT {put_s[-1]:.3f} s, re-sent after cut {resent[-1]} B")
            rows.append([rep + 1, size / tus_s[-1] / 1e6, size / put_s[-1] / 1e6, put_s[-1] / tus_s[-1], resent[-1]])
    finally:
        proc.kill()
        proc.wait()
    ratio = median(put_s) / median(tus_s)
    result = {
        "size_bytes": size,
        "chunk_bytes": CHUNK,
        "repeats": args.repeats,
        "tus_mb_s": round(size / median(tus_s) / 1e6, 1),
        "put_mb_s": round(size / median(put_s) / 1e6, 1),
        "ratio": round(ratio, 3),
        "ratio_target": TARGET_RATIO,
        "ratio_ok": ratio >= TARGET_RATIO,
        "resent_after_cut_max_bytes": max(resent),
        "resent_target_bytes": CHUNK,
        "resent_ok": max(resent) <= CHUNK,
    }
    report("upload", ["repeat", "tus MB/s", "PUT MB/s", "ratio", "re-sent B"], rows, result)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(*sys.argv[2:5])
    else:
        asyncio.run(main_async())

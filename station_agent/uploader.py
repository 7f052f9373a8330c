"""Store and forward: uploads the queued fragments over tus 1.0 and the journal's marks to the review server.

`await Uploader(queue, server_url, token, journal=...).run(stop_event)` loops until `stop_event` is set:
1. marks: the journal's pending events (each with its examiner's proof) go to ``POST /api/marks`` in batches; on
   2xx the accepted and
   duplicate ids are marked synced (the server is idempotent by event_id, so a re-send is harmless);
2. fragments, oldest first: a tus upload is created (its URL stored in the queue before any byte is sent),
   then PATCHed in chunks with ``Upload-Checksum: sha256``; after any failure the upload resumes at the
   offset the server reports (HEAD). The item is marked done, durably, only when the server answered with
   ``X-Stored-SHA256`` equal to the fragment's hash; only then may the local file be deleted.
Network errors, 5xx, 401/403 and timeouts are retried with exponential backoff (capped, jittered), for as
long as the server is away. A refusal specific to one fragment (400, 409, 413...) marks it failed with
the server's reason and the queue moves on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from media.manifest import sha256_file

from .journal import Journal
from .lifecycle import iso, part_media_span
from .upload_queue import Item, UploadQueue

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_PATH = "/api/tus"
MARKS_PATH = "/api/marks"
STORED_HEADER = "X-Stored-SHA256"
RETRYABLE_STATUS = frozenset({401, 403, 408, 423, 425, 429})


class RetryLater(Exception):
    """Something transient (network, server down, server busy): back off and try again."""


class Refused(Exception):
    """The server refused this item for good (the message says why)."""


class TokenBucket:
    """Average rate cap in bytes/s with a short burst; a request larger than the burst runs into debt."""

    def __init__(self, rate_bps: float, burst_s: float = 0.25) -> None:
        if rate_bps <= 0:
            raise ValueError("bandwidth must be positive")
        self.rate = float(rate_bps)
        self.capacity = self.rate * burst_s
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


def _error_text(status: int, body: str) -> str:
    return f"HTTP {status}: {body[:300]}"


class Uploader:
    def __init__(
        self,
        queue: UploadQueue,
        server_url: str,
        token: str,
        journal: Journal | None = None,
        bandwidth_bps: float | None = None,
        delete_after_confirm: bool = False,
        *,
        chunk_size: int = 8 * 1024 * 1024,  # a 2 s fragment goes in one PATCH; see bench/bench_upload.py
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 60.0,
        idle_poll_s: float = 1.0,
        mark_batch: int = 200,
        request_timeout_s: float = 60.0,
    ) -> None:
        self.queue = queue
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.journal = journal
        self.bucket = TokenBucket(bandwidth_bps) if bandwidth_bps else None
        self.delete_after_confirm = delete_after_confirm
        self.chunk_size = chunk_size
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.idle_poll_s = idle_poll_s
        self.mark_batch = mark_batch
        self.request_timeout_s = request_timeout_s
        # Progress and diagnostics (this process only).
        self.bytes_sent = 0  # PATCH body bytes handed to the network, including ones lost to a cut
        self.resumed_at: list[int] = []  # non-zero offsets an upload resumed from
        self.uploaded = 0
        self.marks_synced = 0
        self.rejected_marks: dict[str, str] = {}
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self._http: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ the loop

    async def run(self, stop_event: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self.request_timeout_s)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            self._http = http
            delay = self.backoff_initial_s
            try:
                while not stop_event.is_set():
                    try:
                        worked = await self.step()
                        delay = self.backoff_initial_s
                    except Exception as exc:  # transient or not, the daemon must go on: note it, back off
                        if not isinstance(exc, RetryLater | aiohttp.ClientError | TimeoutError | OSError):
                            log.exception("upload: unexpected error")
                        self._note_error(f"{type(exc).__name__}: {exc}")
                        await self._wait(stop_event, random.uniform(0.5, 1.0) * delay)
                        delay = min(delay * 2, self.backoff_max_s)
                        continue
                    if not worked:
                        await self._wait(stop_event, self.idle_poll_s)
            finally:
                self._http = None

    async def step(self) -> bool:
        """Send one batch of marks and one fragment; False if there was nothing to do."""
        worked = await self.sync_marks()
        item = await asyncio.to_thread(self.queue.next_pending)
        if item is not None:
            try:
                await self.upload_item(item)
            except Refused as exc:
                self._note_error(f"{item.file}: {exc}")
                await asyncio.to_thread(self.queue.record_error, item.id, str(exc), permanent=True)
            except (RetryLater, aiohttp.ClientError, TimeoutError, OSError) as exc:
                await asyncio.to_thread(self.queue.record_error, item.id, f"{type(exc).__name__}: {exc}")
                raise
            worked = True
        return worked

    def status(self) -> dict[str, Any]:
        stats = self.queue.stats()
        return {
            "queue_length": stats["length"],
            "bytes_pending": stats["bytes"],
            "oldest_age_s": stats["oldest_age_s"],
            "failed": stats["failed"],
            "marks_pending": len(self.journal.pending()) if self.journal is not None else 0,
            "marks_rejected": len(self.rejected_marks),
            "uploaded": self.uploaded,
            "marks_synced": self.marks_synced,
            "bytes_sent": self.bytes_sent,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
        }

    def _note_error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, time.time()
        log.warning("upload: %s", text)

    @staticmethod
    async def _wait(stop_event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), seconds)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("Uploader.run() is not running")
        return self._http

    # ------------------------------------------------------------ marks

    async def sync_marks(self) -> bool:
        if self.journal is None:
            return False
        events = await asyncio.to_thread(self.journal.pending_wire, self.mark_batch + len(self.rejected_marks))
        events = [e for e in events if e["event_id"] not in self.rejected_marks][: self.mark_batch]
        if not events:
            return False
        status, body = await self._post_marks(events)
        if status < 300:
            await self._synced(body)
            return True
        # One bad event refuses the whole batch: find it by sending them one at a time. A refused one stays in
        # the journal (never lost), listed with the server's reason.
        for ev in events:
            status, body = await self._post_marks([ev])
            if status < 300:
                await self._synced(body)
            else:
                self.rejected_marks[ev["event_id"]] = body.get("error", str(status))
                self._note_error(f"mark {ev['event_id']} refused: {body}")
        return True

    async def _post_marks(self, events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.server_url + MARKS_PATH, json={"events": events}) as r:
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = {"error": (await r.text())[:300]}
            # 403 is not retried here: the server refuses an event of another station with it.
            if r.status >= 500 or r.status in RETRYABLE_STATUS - {403}:
                raise RetryLater(f"marks: {_error_text(r.status, str(body))}")
            return r.status, body if isinstance(body, dict) else {}

    async def _synced(self, body: dict[str, Any]) -> None:
        ids = [*body.get("accepted", []), *body.get("duplicates", [])]
        journal = self.journal
        assert journal is not None  # marks are sent only from a journal
        self.marks_synced += await asyncio.to_thread(journal.mark_synced, ids)
        self.last_success_at = time.time()

    # ------------------------------------------------------------ fragments

    def _tus_headers(self, **extra: str) -> dict[str, str]:
        return {"Tus-Resumable": TUS_VERSION, **extra}

    async def upload_item(self, item: Item) -> None:
        path = item.path
        if not await asyncio.to_thread(path.is_file):
            raise Refused(f"local file {path} is missing")
        url, offset, stored = item.tus_url, 0, False
        if url is not None:
            found = await self._head(url, item)
            if found is None:
                url = None
            else:
                offset, stored = found
        if url is None:
            url, offset, stored = await self._create(item)
            await asyncio.to_thread(self.queue.set_url, item.id, url)
        if offset and not stored:
            self.resumed_at.append(offset)
        mismatches = 0
        ahead: tuple[int, asyncio.Task[tuple[bytes, str]]] | None = None  # the next chunk, read while one is sent
        try:
            while not stored:
                if offset >= item.size:
                    raise RetryLater(f"{item.file}: all bytes sent but the server has not confirmed the hash yet")
                if ahead is not None and ahead[0] == offset:
                    chunk, digest = await ahead[1]
                else:
                    if ahead is not None:
                        ahead[1].cancel()
                    chunk, digest = await asyncio.to_thread(_read_chunk, path, offset, self.chunk_size)
                ahead = None
                if offset + len(chunk) < item.size:
                    nxt = offset + len(chunk)
                    ahead = (nxt, asyncio.create_task(asyncio.to_thread(_read_chunk, path, nxt, self.chunk_size)))
                if self.bucket is not None:
                    await self.bucket.take(len(chunk))
                status, text, new_offset, confirmed = await self._patch(url, offset, chunk, digest)
                if status == 204 and new_offset is not None:
                    offset, stored = int(new_offset), confirmed == item.sha256
                    continue
                if status == 409:  # the offset moved (an earlier PATCH did arrive) or the upload is busy
                    found = await self._head(url, item)
                    if found is None:
                        raise RetryLater(f"{item.file}: upload vanished; it will be created again")
                    offset, stored = found
                elif status == 460:
                    mismatches += 1
                    if mismatches >= 3:
                        raise RetryLater(f"{item.file}: chunk at {offset} damaged in transit {mismatches} times")
                elif status in (404, 410):
                    await asyncio.to_thread(self.queue.set_url, item.id, None)
                    raise RetryLater(f"{item.file}: upload vanished; it will be created again")
                elif status == 422:
                    await asyncio.to_thread(self.queue.set_url, item.id, None)
                    if await asyncio.to_thread(sha256_file, path) != item.sha256:
                        raise Refused(f"local file {path} differs from its manifest SHA-256")
                    raise RetryLater(f"{item.file}: server found another SHA-256 ({text[:200]}); uploading again")
                else:
                    self._raise_for(status, text, item)
        finally:
            if ahead is not None:
                ahead[1].cancel()
        await asyncio.to_thread(self.queue.mark_done, item.id)
        self.uploaded += 1
        self.last_success_at = time.time()
        if self.delete_after_confirm:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def _patch(self, url: str, offset: int, chunk: bytes, digest: str) -> tuple[int, str, str | None, str | None]:
        """One PATCH: (status, body text, Upload-Offset, X-Stored-SHA256)."""
        headers = self._tus_headers(
            **{
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": f"sha256 {digest}",
            }
        )
        try:
            async with self.http.patch(self._abs(url), data=chunk, headers=headers) as r:
                result = r.status, await r.text(), r.headers.get("Upload-Offset"), r.headers.get(STORED_HEADER)
        except aiohttp.ClientConnectorError:
            raise  # not connected: nothing was sent
        except BaseException:
            self.bytes_sent += len(chunk)  # (some of) the chunk went out before the failure
            raise
        self.bytes_sent += len(chunk)
        return result

    def _abs(self, url: str) -> str:
        return url if url.startswith(("http://", "https://")) else self.server_url + url

    def _raise_for(self, status: int, text: str, item: Item) -> None:
        if status >= 500 or status in RETRYABLE_STATUS:
            raise RetryLater(f"{item.file}: {_error_text(status, text)}")
        raise Refused(_error_text(status, text))

    async def _head(self, url: str, item: Item) -> tuple[int, bool] | None:
        """(offset, stored) of an existing upload, or None if the server no longer knows it."""
        async with self.http.head(self._abs(url), headers=self._tus_headers()) as r:
            if r.status in (404, 410, 422):  # unknown, or discarded because the bytes were not the declared ones
                await asyncio.to_thread(self.queue.set_url, item.id, None)
                return None
            if r.status == 409:  # the server is still busy with an earlier request on this upload
                raise RetryLater(f"{item.file}: upload busy on the server")
            if r.status != 200:
                self._raise_for(r.status, r.reason or "", item)
            return int(r.headers["Upload-Offset"]), r.headers.get(STORED_HEADER) == item.sha256

    async def _create(self, item: Item) -> tuple[str, int, bool]:
        meta = {
            "sha256": item.sha256,
            "recording": item.recording_id,
            "track": item.track,
            "seq": str(item.seq),
            "kind": item.kind,
            "filename": Path(item.file).name,
        }
        if item.attempt_id:
            meta["attempt_id"] = item.attempt_id
        if item.kind == "init":  # the part's media time 0 on the wall clock: the server's timeline needs it
            origin = (await asyncio.to_thread(part_media_span, item.folder))[0]
            if origin is not None:
                meta["media_from"] = iso(origin)
        for name in ("start", "end"):
            value = getattr(item, name)
            if value is not None:
                meta[name] = f"{value:.6f}"
        encoded = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())
        headers = self._tus_headers(**{"Upload-Length": str(item.size), "Upload-Metadata": encoded})
        async with self.http.post(self.server_url + TUS_PATH, headers=headers) as r:
            text = await r.text()
            if r.status != 201:
                self._raise_for(r.status, text, item)
            return r.headers["Location"], int(r.headers.get("Upload-Offset", "0")), (
                r.headers.get(STORED_HEADER) == item.sha256
            )


def _read_chunk(path: Path, offset: int, size: int) -> tuple[bytes, str]:
    """The bytes at offset and their SHA-256 in base64 (as Upload-Checksum wants it); runs in a thread."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    return data, base64.b64encode(hashlib.sha256(data).digest()).decode()

"""The agent's uploads: the durable queue of recorded files and, with a server, the uploader that empties it.

Every part is queued when it stops and every few seconds while it records (`queue_part` is idempotent); at start
every recording found is queued again, because a part cut short by a crash or a power loss has fragments its
manifest lists but the queue never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from media.manifest import MANIFEST_NAME

from .config import AgentConfig
from .journal import Journal
from .upload_queue import UploadQueue
from .uploader import Uploader

log = logging.getLogger(__name__)


class Uploads:
    def __init__(self, cfg: AgentConfig, queue_db: Path, marks_db: Path | None, fail: Callable[[str], None]) -> None:
        self.cfg, self.queue_db, self.marks_db, self.fail = cfg, queue_db, marks_db, fail
        self.queue: UploadQueue | None = None
        self.uploader: Uploader | None = None  # with a server
        self.note = "no server configured"

    def start(self, recordings: Path) -> None:
        """Open the queue (and the uploader, with a server) and queue every recording found."""
        try:
            self.queue = UploadQueue(self.queue_db)
            if self.cfg.server_url and self.cfg.token:
                journal = Journal(self.marks_db) if self.marks_db is not None else None
                self.uploader = Uploader(self.queue, self.cfg.server_url, self.cfg.token, journal=journal,
                                         bandwidth_bps=self.cfg.bandwidth_bps,
                                         delete_after_confirm=self.cfg.delete_after_upload)
                self.note = "uploading"
            else:
                self.note = "queued only: no server configured"
        except Exception as exc:  # noqa: BLE001 - recording must go on without uploads
            self.fail(f"upload: cannot start: {exc}")
            return
        for manifest in sorted(recordings.glob(f"*/*/{MANIFEST_NAME}")):
            self.queue_part(manifest.parent)

    def queue_part(self, folder: Path) -> None:
        if self.queue is None:
            return
        try:
            self.queue.add_recording_folder(folder)
        except Exception as exc:  # noqa: BLE001 - the folder is queued again later
            self.fail(f"upload queue: {folder}: {exc}")

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.note}
        try:
            if self.queue is not None:
                out["queue"] = self.queue.stats()
            if self.uploader is not None:
                out["uploader"] = self.uploader.status()
        except Exception as exc:  # noqa: BLE001 - health must answer even so
            out["error"] = str(exc)
        return out

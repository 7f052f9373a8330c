"""Review renditions: an H.264 copy of a track recorded in a codec the review page's browser cannot decode.

Room cameras send H.265 and the station records it as it comes (stream copy); Chromium on Linux has no H.265
decoder. When the attempt page shows such a track, the server makes an H.264 copy of it ONCE, in the background,
at the lowest priority (`nice 19`, one encoder thread), stores it beside the originals (content-addressed, as any
fragment) and serves it in the original's place, the page saying that it is a rendition. Originals are what is
archived, verified and exported; a rendition is a view, deleted with its recording (review_server/retention.py).

The copy keeps the recording's clock and its fragment boundaries (a key frame forced at each original fragment's
start, one fragment per key frame, the sound copied), so it lines up with the other cameras and the marks and is
served like the original (init, index, fragments: routes/track_file.py). A recording still arriving gets its
rendition remade once it has more fragments than the copy covers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from media import mp4box
from media.calibration import ffmpeg_exe
from media.fragments import BoxSplitter

from .db import Database
from .models import Fragment, Recording, Rendition, utcnow
from .storage import MediaStorage, NotFound

log = logging.getLogger(__name__)

PLAYABLE = {"avc1", "avc3"}  # what every browser the centre uses decodes
NAMES = {"hvc1": "H.265", "hev1": "H.265"}
PENDING, DONE, FAILED = "pending", "done", "failed"
FragmentRow = tuple[str, str, float | None, float | None]  # kind, sha256, start, end


@dataclass(frozen=True)
class State:
    """What the page shows about one track: its original codec and whether a rendition is served instead."""

    codec: str  # "H.265"
    state: str  # pending | done | failed


@functools.lru_cache(maxsize=1024)
def _entry_of(init: bytes) -> str:
    top = mp4box.top_level(init)
    for track in mp4box.tracks(init, top["moov"]):
        if track.handler == "vide":
            return track.sample_entry
    return ""


def codec_needing_rendition(storage: MediaStorage, init_sha: str) -> str | None:
    """The name of a track's video codec when the browser cannot decode it ("H.265"), else None."""
    try:
        entry = _entry_of(storage.get(init_sha))
    except (NotFound, mp4box.Mp4Error, KeyError):
        return None
    return None if entry in PLAYABLE or not entry else NAMES.get(entry, entry)


def _media(s: Session, recording_id: int, track: str) -> list[Fragment]:
    return list(s.scalars(select(Fragment).where(Fragment.recording_id == recording_id, Fragment.track == track)
                          .order_by(Fragment.seq)).all())


def states(s: Session, storage: MediaStorage, rec: Recording) -> dict[str, State]:
    """Each track of `rec` that needs a rendition, with its state; a missing or out-of-date rendition is marked
    pending (the maker picks it up)."""
    out: dict[str, State] = {}
    frags: dict[str, list[Fragment]] = {}
    for f in s.scalars(select(Fragment).where(Fragment.recording_id == rec.id).order_by(Fragment.seq)):
        frags.setdefault(f.track, []).append(f)
    existing = {r.track: r for r in s.scalars(select(Rendition).where(Rendition.recording_id == rec.id))}
    for track, fs in frags.items():
        if not fs or fs[0].kind != "init":
            continue
        codec = codec_needing_rendition(storage, fs[0].sha256)
        if codec is None:
            continue
        media = sum(f.kind == "media" for f in fs)
        row = existing.get(track)
        if row is None:
            row = Rendition(recording_id=rec.id, track=track, state=PENDING, source_fragments=0, pieces="[]")
            s.add(row)
        elif row.state == DONE and row.source_fragments < media:
            row.state = PENDING  # more of the recording has arrived since: made again, the old copy served meanwhile
        out[track] = State(codec, DONE if row.state == PENDING and row.source_fragments else row.state)
    s.flush()
    return out


def pieces_of(s: Session, recording_id: int, track: str) -> list[dict[str, object]] | None:
    """The stored pieces of a track's rendition, or None when there is none yet."""
    row = s.scalar(select(Rendition).where(Rendition.recording_id == recording_id, Rendition.track == track))
    if row is None or not row.source_fragments:
        return None
    return list(json.loads(row.pieces))


class RenditionMaker:
    """Makes pending renditions one at a time on one background thread (`kick()` after marking one pending)."""

    def __init__(self, db: Database, storage: MediaStorage, work_dir: Path | None = None) -> None:
        self.db, self.storage, self.work_dir = db, storage, work_dir
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rendition")
        self._lock = threading.Lock()
        self._busy = False
        self.made = 0

    def kick(self) -> None:
        with self._lock:
            if self._busy:
                return
            self._busy = True
        self._pool.submit(self._drain)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _drain(self) -> None:
        try:
            while True:
                job = self.db.run(_next_pending)
                if job is None:
                    return
                self._make(*job)
        except Exception:  # noqa: BLE001 - a failed drain must not leave the maker stuck as busy
            log.exception("renditions")
        finally:
            with self._lock:
                self._busy = False

    def _make(self, rendition_id: int, recording_id: int, track: str) -> None:
        frags = self.db.run(lambda s: [(f.kind, f.sha256, f.start_s, f.end_s) for f in _media(s, recording_id, track)])
        media = [f for f in frags if f[0] == "media"]
        folder = Path(tempfile.mkdtemp(prefix="osce-rendition-", dir=self.work_dir))
        try:
            pieces = self._encode(frags, folder)
            if len(pieces) - 1 == len(media):  # one copy fragment per original one: the original's times index it
                for piece, (_k, _sha, start, end) in zip(pieces[1:], media, strict=True):
                    piece["start"], piece["end"] = start, end
            self.db.run(functools.partial(_finish, rendition_id, len(media), pieces, None))
            self.made += 1
            log.info("rendition of recording %s %s: %d pieces", recording_id, track, len(pieces))
        except (OSError, subprocess.SubprocessError, NotFound, ValueError) as exc:
            log.error("rendition of recording %s %s failed: %s", recording_id, track, exc)
            self.db.run(functools.partial(_finish, rendition_id, 0, [], str(exc)[-2000:]))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _encode(self, frags: list[FragmentRow], folder: Path) -> list[dict[str, object]]:
        source = folder / "original.mp4"
        with open(source, "wb") as original:
            for _kind, sha, _start, _end in frags:
                with self.storage.open(sha) as fh:
                    shutil.copyfileobj(fh, original)
        # A key frame at each original fragment's start (a millisecond early: the first frame at or after a forced
        # time is made a key frame, and the stored times are rounded).
        starts = [f"{start - 0.001:.6f}" for kind, _sha, start, _end in frags if kind == "media" and start is not None]
        result = folder / "rendition.mp4"
        # Lowest priority, one encoder thread; the recording's own times kept (-copyts, passthrough, the 90 kHz
        # time base: a 1/25 s encoder time base moved every picture to a 40 ms grid); no B-frames, key frames only
        # where forced; the sound copied; fMP4 cut at each key frame, its moov after the first packets (so that
        # its edit list keeps where the track starts).
        cmd = ["nice", "-n", "19", ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-copyts", "-i", str(source),
               "-map", "0:v:0", "-map", "0:a?", "-fps_mode", "passthrough", "-enc_time_base:v", "demux",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-threads", "1",
               "-bf", "0", "-x264-params", "scenecut=0", "-g", "100000",
               "-force_key_frames", ",".join(starts) or "expr:eq(n,0)", "-c:a", "copy",
               "-movflags", "empty_moov+default_base_moof+frag_keyframe+skip_trailer+delay_moov",
               "-f", "mp4", str(result)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if run.returncode != 0:
            raise ValueError(f"ffmpeg: {run.stderr.strip()[-1000:]}")
        parts: list[tuple[str, bytes]] = []
        splitter = BoxSplitter(lambda data: parts.append(("init", data)), lambda data: parts.append(("media", data)))
        with open(result, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                splitter.write(chunk)
        if not parts or parts[0][0] != "init":
            raise ValueError("the encoder wrote no init segment")
        out: list[dict[str, object]] = []
        for kind, data in parts:
            sha = hashlib.sha256(data).hexdigest()
            self.storage.put(data, sha)
            out.append({"kind": kind, "sha256": sha, "size": len(data), "start": None, "end": None})
        return out


def _next_pending(s: Session) -> tuple[int, int, str] | None:
    row = s.scalar(select(Rendition).where(Rendition.state == PENDING).order_by(Rendition.id).limit(1))
    return None if row is None else (row.id, row.recording_id, row.track)


def _finish(rendition_id: int, covered: int, pieces: list[dict[str, object]], error: str | None, s: Session) -> None:
    row = s.get(Rendition, rendition_id)
    if row is None:
        return  # its recording was deleted meanwhile
    if error is None:
        row.state, row.source_fragments, row.pieces, row.error = DONE, covered, json.dumps(pieces), None
    elif row.source_fragments:
        row.state, row.error = DONE, error  # a remake failed: the earlier copy is still served
    else:
        row.state, row.error = FAILED, error
    row.done_at = utcnow()


def rendition_hashes(s: Session, recording_id: int) -> list[str]:
    """The stored pieces of a recording's renditions (retention deletes them with the recording)."""
    rows = s.scalars(select(Rendition).where(Rendition.recording_id == recording_id)).all()
    return sorted({p["sha256"] for r in rows for p in json.loads(r.pieces)})


"""The recording manifest: one format, written by the recorder and read by the agent and the server.

A recording is a folder. `manifest.jsonl` beside the media lists, one JSON object a line,
appended and fsynced as things happen:

- line 1, ``{"type": "recording", "format": "osce-recording/1", "recording_id", "attempt_id" (or null), "station",
  "started_wall" (UTC ISO-8601), "fragment_s", "tracks": [{"id", "source", "video": {...},
  "audio": {...}}]}``
- ``{"type": "fragment", "track", "seq", "kind": "init"|"media", "file", "sha256", "size",
  "start", "end"}``: a finished file; `file` is relative to the folder; `start`/`end` are seconds
  of the recording's shared clock (media only). The track's playable stream is its init file
  followed by its media files in `seq` order (CMAF: `cat init.mp4 *.m4s` is a valid MP4).
- ``{"type": "event", "event", "at", ...}``: a source lost or back, a clock report, an error.
- ``{"type": "end", "at", "reason", "stats"}``: written when the recording stops cleanly.

A crash can leave the last line cut short; the reader drops it and says so. Any other bad
line is an error naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media.durable import append_line

FORMAT = "osce-recording/1"
MANIFEST_NAME = "manifest.jsonl"


class ManifestError(ValueError):
    """The manifest or the files it lists are not what they should be."""


@dataclass(frozen=True)
class Fragment:
    track: str
    seq: int
    kind: str
    file: str
    sha256: str
    size: int
    start: float | None = None
    end: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "fragment", **self.__dict__}


@dataclass
class Manifest:
    header: dict[str, Any]
    fragments: list[Fragment] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    truncated_tail: bool = False

    def track_ids(self) -> list[str]:
        return [t["id"] for t in self.header.get("tracks", [])]

    def track_files(self, track: str) -> list[Fragment]:
        """The init file then the media files of a track, in order."""
        frags = [f for f in self.fragments if f.track == track]
        return sorted(frags, key=lambda f: (f.kind != "init", f.seq))


class ManifestWriter:
    """Appends manifest lines durably; safe to call from several recorder threads."""

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.path = folder / MANIFEST_NAME
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the recording's life
        self._write({"type": "recording", "format": FORMAT, **header})

    def _write(self, obj: dict[str, Any]) -> None:
        with self._lock:
            append_line(self._fh, json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    def fragment(self, fragment: Fragment) -> None:
        self._write(fragment.to_json())

    def event(self, event: str, at: float, **fields: Any) -> None:
        self._write({"type": "event", "event": event, "at": round(at, 6), **fields})

    def end(self, at: float, reason: str, stats: dict[str, Any]) -> None:
        self._write(_end_line(at, reason, stats))

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def _end_line(at: float, reason: str, stats: dict[str, Any]) -> dict[str, Any]:
    return {"type": "end", "at": round(at, 6), "reason": reason, "stats": stats}


def close_cut(folder: Path, reason: str, stats: dict[str, Any]) -> bool:
    """Give a recording cut short (kill -9, power loss) the ``end`` line it never got; False if it had one (or
    has no readable manifest). A last line cut short by the crash is dropped first (every reader drops it
    anyway; appended to, it would become a bad line in the middle). `at` is the end of the last media fragment.
    """
    try:
        manifest = read_manifest(folder)
    except ManifestError:
        return False
    if manifest.end is not None:
        return False
    path = folder / MANIFEST_NAME
    with open(path, "r+b") as fh:
        data = fh.read()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            fh.truncate(whole)
    ends = [f.end for f in manifest.fragments if f.kind == "media" and f.end is not None]
    with open(path, "a", encoding="utf-8") as fh:
        append_line(fh, json.dumps(_end_line(max(ends, default=0.0), reason, stats), ensure_ascii=False,
                                   separators=(",", ":")))
    return True


_FRAGMENT_KEYS = {"type", "track", "seq", "kind", "file", "sha256", "size", "start", "end"}


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest") from None
    if lines and lines[-1] == "":
        lines.pop()
        complete_tail = True
    else:
        complete_tail = False
    manifest: Manifest | None = None
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if last and not complete_tail:
                if manifest is not None:
                    manifest.truncated_tail = True
                break
            raise ManifestError(f"{path}:{number}: not a manifest line ({exc})") from None
        kind = obj.get("type")
        if manifest is None:
            if kind != "recording" or obj.get("format") != FORMAT:
                raise ManifestError(f"{path}:{number}: expected the recording header of format {FORMAT}")
            manifest = Manifest(header=obj)
        elif kind == "fragment":
            if set(obj) != _FRAGMENT_KEYS:
                raise ManifestError(f"{path}:{number}: fragment fields {sorted(set(obj) ^ _FRAGMENT_KEYS)}")
            obj.pop("type")
            frag = Fragment(**obj)
            if frag.kind not in ("init", "media") or ".." in Path(frag.file).parts or frag.file.startswith("/"):
                raise ManifestError(f"{path}:{number}: bad fragment kind or file {frag.file!r}")
            manifest.fragments.append(frag)
        elif kind == "event":
            manifest.events.append(obj)
        elif kind == "end":
            manifest.end = obj
        else:
            raise ManifestError(f"{path}:{number}: unknown line type {kind!r}")
    if manifest is None:
        raise ManifestError(f"{path}: empty manifest")
    return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_recording(folder: Path) -> list[str]:
    """Problems with a recording folder: missing or altered files, gaps in a track. Empty if sound."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    problems = []
    for track in manifest.track_ids():
        files = manifest.track_files(track)
        if not files or files[0].kind != "init":
            problems.append(f"track {track}: no init file")
        seqs = [f.seq for f in files if f.kind == "media"]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"track {track}: media fragments out of sequence {seqs[:5]}…")
    for frag in manifest.fragments:
        path = folder / frag.file
        if not path.is_file():
            problems.append(f"{frag.file}: listed but missing")
        elif path.stat().st_size != frag.size or sha256_file(path) != frag.sha256:
            problems.append(f"{frag.file}: size or SHA-256 differs from the manifest")
    return problems

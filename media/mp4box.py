"""The one reader of MP4 box structure in the project: the recorder's fragment splitter, the server's ingest check,
its track index (sidx) and the live view's chunk timing all walk boxes through this module.

A box is a 32-bit big-endian size (1: a 64-bit size follows the type; 0: to the end of the file), a four-letter
type, then its payload. Everything here reads headers and the few fields the project needs (track ids, time
scales, sample counts, the video codec's configuration); nothing decodes media.

Sources are bytes (or a memoryview) or a seekable binary file, so the server can check a stored fragment without
reading it whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

Source = bytes | bytearray | memoryview | BinaryIO


class Mp4Error(ValueError):
    """The bytes are not the MP4 structure they claim to be; the message says what and at which byte."""


@dataclass(frozen=True)
class Box:
    kind: str
    offset: int  # where the box starts
    header: int  # 8, or 16 with a 64-bit size
    size: int  # the whole box, header included

    @property
    def start(self) -> int:
        """Where the payload starts."""
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size


def _read(src: Source, offset: int, n: int) -> bytes:
    if isinstance(src, bytes | bytearray | memoryview):
        return bytes(src[offset:offset + n])
    src.seek(offset)
    return src.read(n)


def _length(src: Source) -> int:
    if isinstance(src, bytes | bytearray | memoryview):
        return len(src)
    return src.seek(0, 2)


def header(buf: bytes | bytearray, pos: int = 0) -> tuple[bytes, int, int] | None:
    """(type, header size, box size) of the box starting at buf[pos], or None while the header is incomplete.
    A size of 0 ("to the end of the file") is returned as 0: a stream reader cannot know that end yet."""
    if len(buf) - pos < 8:
        return None
    size, kind = struct.unpack_from(">I4s", buf, pos)
    if size == 1:
        if len(buf) - pos < 16:
            return None
        return kind, 16, struct.unpack_from(">Q", buf, pos + 8)[0]
    return kind, 8, size


def walk(src: Source, start: int = 0, end: int | None = None) -> list[Box]:
    """The boxes that tile [start, end) exactly; Mp4Error when they do not."""
    end = _length(src) if end is None else end
    out, pos = [], start
    while pos < end:
        head = _read(src, pos, 8)
        if len(head) < 8 or pos + 8 > end:
            raise Mp4Error(f"a box header is cut short at byte {pos}")
        size, kind = struct.unpack(">I4s", head)
        head_size = 8
        if size == 1:
            large = _read(src, pos + 8, 8)
            if len(large) < 8 or pos + 16 > end:
                raise Mp4Error(f"a 64-bit box size is cut short at byte {pos}")
            size, head_size = struct.unpack(">Q", large)[0], 16
        elif size == 0:
            size = end - pos
        name = kind.decode("latin-1")
        if not kind.isalnum() and kind != b"\xa9too":
            raise Mp4Error(f"not an MP4 box at byte {pos} (type {kind!r})")
        if size < head_size or pos + size > end:
            raise Mp4Error(f"box '{name}' at byte {pos} claims {size} bytes; the file ends at byte {end}")
        out.append(Box(name, pos, head_size, size))
        pos += size
    return out


def children(src: Source, box: Box, kind: str | None = None) -> list[Box]:
    """The boxes inside a container box (of one type, if given)."""
    return [b for b in walk(src, box.start, box.end) if kind is None or b.kind == kind]


def path(src: Source, box: Box, *kinds: str) -> list[Box]:
    """Every box reached from `box` through the types in `kinds` (e.g. 'trak', 'mdia', 'mdhd')."""
    level = [box]
    for kind in kinds:
        level = [child for parent in level for child in children(src, parent, kind)]
    return level


def u32(src: Source, offset: int) -> int:
    raw = _read(src, offset, 4)
    if len(raw) < 4:
        raise Mp4Error(f"a field is cut short at byte {offset}")
    return struct.unpack(">I", raw)[0]


def _versioned_u32(src: Source, box: Box, v0: int, v1: int) -> int:
    """A field of a full box at payload offset v0 (version 0) or v1 (version 1: 64-bit times before it)."""
    version = _read(src, box.start, 1)
    return u32(src, box.start + (v1 if version == b"\x01" else v0))


def top_level(src: Source, size: int | None = None) -> dict[str, Box]:
    """The first box of each type at the top of a file."""
    out: dict[str, Box] = {}
    for b in walk(src, 0, size):
        out.setdefault(b.kind, b)
    return out


@dataclass(frozen=True)
class TrackInfo:
    track_id: int
    timescale: int
    handler: str  # 'vide', 'soun'
    sample_entry: str  # 'avc1', 'hvc1', 'hev1', 'mp4a', ...


def tracks(src: Source, moov: Box) -> list[TrackInfo]:
    """What each trak of a moov declares."""
    out = []
    for trak in children(src, moov, "trak"):
        tkhd = children(src, trak, "tkhd")
        if not tkhd:
            raise Mp4Error(f"a 'trak' at byte {trak.offset} has no 'tkhd'")
        track_id = _versioned_u32(src, tkhd[0], 12, 20)
        mdhd = path(src, trak, "mdia", "mdhd")
        timescale = _versioned_u32(src, mdhd[0], 12, 20) if mdhd else 0
        hdlr = path(src, trak, "mdia", "hdlr")
        handler = _read(src, hdlr[0].start + 8, 4).decode("latin-1") if hdlr else ""
        stsd = path(src, trak, "mdia", "minf", "stbl", "stsd")
        entry = ""
        if stsd:
            first = _read(src, stsd[0].start + 12, 4)  # version+flags, entry count, then the entry's size and type
            entry = first.decode("latin-1") if len(first) == 4 else ""
        out.append(TrackInfo(track_id, timescale, handler, entry))
    return out


def init_tracks(src: Source, size: int | None = None) -> list[TrackInfo]:
    """The tracks of an init segment (ftyp + moov); Mp4Error if it is not one."""
    top = walk(src, 0, size)
    kinds = [b.kind for b in top]
    if "ftyp" not in kinds or "moov" not in kinds:
        raise Mp4Error(f"an init segment needs 'ftyp' and 'moov' boxes; found {kinds[:8]}")
    return tracks(src, top[kinds.index("moov")])


def fragment_tracks(src: Source, moof: Box) -> list[tuple[int, int]]:
    """(track_ID, sample count) of each traf of a moof."""
    out = []
    for traf in children(src, moof, "traf"):
        track, count = 0, 0
        for box in children(src, traf):
            if box.kind == "tfhd":
                track = u32(src, box.start + 4)
            elif box.kind == "trun":
                count += u32(src, box.start + 4)
        out.append((track, count))
    return out


# -- the video codec's configuration (for MSE / HLS codec strings) ----------------------------------------------


def _sample_entry_config(init: bytes) -> tuple[str, bytes]:
    """(sample entry type, its avcC/hvcC payload) of the first video track of an init segment."""
    top = top_level(init)
    if "moov" not in top:
        raise Mp4Error("not an init segment (no 'moov')")
    for trak in children(init, top["moov"], "trak"):
        for stsd in path(init, trak, "mdia", "minf", "stbl", "stsd"):
            for entry in walk(init, stsd.start + 8, stsd.end):
                if entry.kind in ("avc1", "avc3", "hvc1", "hev1"):
                    # A visual sample entry has 78 bytes of fixed fields before its child boxes.
                    for box in walk(init, entry.start + 78, entry.end):
                        if box.kind in ("avcC", "hvcC"):
                            return entry.kind, bytes(init[box.start:box.end])
    raise Mp4Error("the init segment has no H.264 or H.265 video track")


def video_codec_string(init: bytes) -> str:
    """The RFC 6381 codec string of an init segment's video: 'avc1.64001f', 'hvc1.1.6.L93.B0'."""
    entry, config = _sample_entry_config(init)
    if entry.startswith("avc"):
        if len(config) < 4:
            raise Mp4Error("the avcC box is cut short")
        return f"{entry}.{config[1:4].hex()}"
    if len(config) < 13:
        raise Mp4Error("the hvcC box is cut short")
    space = "ABC"[(config[1] >> 6) - 1] if config[1] >> 6 else ""
    profile = config[1] & 0x1F
    compat = int.from_bytes(config[2:6], "big")
    compat_rev = int(f"{compat:032b}"[::-1], 2)  # written bit-reversed, in hex, without leading zeros
    tier = "H" if config[1] & 0x20 else "L"
    constraints = config[6:12].rstrip(b"\0")
    parts = [f"{entry}", f"{space}{profile}", f"{compat_rev:X}", f"{tier}{config[12]}"]
    parts += [f"{b:X}" for b in constraints]
    return ".".join(parts)


def codecs(init: bytes) -> str:
    """The MSE codec list of an init segment: its video codec string, plus 'mp4a.40.2' when it has AAC."""
    out = [video_codec_string(init)]
    top = top_level(init)
    if any(t.sample_entry == "mp4a" for t in tracks(init, top["moov"])):
        out.append("mp4a.40.2")
    return ", ".join(out)

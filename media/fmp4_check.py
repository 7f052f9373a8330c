"""A structural check of the fragmented MP4 files the recorder writes, for the server to refuse at ingest what
is not one (garbage, a truncated file, a fragment of a track its recording does not have) before storing it.

Only box headers are read: the top-level boxes must tile the file exactly; an init segment holds ``ftyp`` and
``moov`` (whose ``trak/tkhd`` boxes give the track ids); a media fragment holds ``moof`` then ``mdat``, and
every ``moof/traf/tfhd`` names a track id of its init. Decoding is not attempted: that is ffprobe's job.
"""

from __future__ import annotations

import struct
from typing import BinaryIO


class Fmp4Error(ValueError):
    """The bytes are not the fMP4 file they claim to be; the message says what and at which byte."""


def _boxes(fh: BinaryIO, start: int, end: int) -> list[tuple[str, int, int, int]]:
    """(type, box offset, header size, box size) of the boxes tiling [start, end)."""
    out, pos = [], start
    while pos < end:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            raise Fmp4Error(f"a box header is cut short at byte {pos}")
        size, kind = struct.unpack(">I4s", head)
        header = 8
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                raise Fmp4Error(f"a 64-bit box size is cut short at byte {pos}")
            size, header = struct.unpack(">Q", large)[0], 16
        elif size == 0:
            size = end - pos
        name = kind.decode("latin-1")
        if not kind.isalnum() and kind not in (b"\xa9too",):
            raise Fmp4Error(f"not an MP4 box at byte {pos} (type {kind!r})")
        if size < header or pos + size > end:
            raise Fmp4Error(f"box '{name}' at byte {pos} claims {size} bytes; the file ends at byte {end}")
        out.append((name, pos, header, size))
        pos += size
    return out


def _child(fh: BinaryIO, box: tuple[str, int, int, int], name: str) -> list[tuple[str, int, int, int]]:
    _kind, pos, header, size = box
    return [b for b in _boxes(fh, pos + header, pos + size) if b[0] == name]


def _u32_at(fh: BinaryIO, offset: int) -> int:
    fh.seek(offset)
    raw = fh.read(4)
    if len(raw) < 4:
        raise Fmp4Error(f"a field is cut short at byte {offset}")
    return struct.unpack(">I", raw)[0]


def _track_ids_of_moov(fh: BinaryIO, moov: tuple[str, int, int, int]) -> set[int]:
    ids = set()
    for trak in _child(fh, moov, "trak"):
        for tkhd in _child(fh, trak, "tkhd"):
            _k, pos, header, _s = tkhd
            fh.seek(pos + header)
            version = fh.read(1)
            ids.add(_u32_at(fh, pos + header + (20 if version == b"\x01" else 12)))
    return ids


def init_track_ids(fh: BinaryIO, size: int) -> set[int]:
    """Check an init segment; return the track ids its moov declares."""
    top = _boxes(fh, 0, size)
    kinds = [b[0] for b in top]
    if "ftyp" not in kinds or "moov" not in kinds:
        raise Fmp4Error(f"an init segment needs 'ftyp' and 'moov' boxes; found {kinds[:8]}")
    ids = _track_ids_of_moov(fh, top[kinds.index("moov")])
    if not ids:
        raise Fmp4Error("the init segment's 'moov' declares no track")
    return ids


def check_media(fh: BinaryIO, size: int, track_ids: set[int] | None) -> None:
    """Check a media fragment; with `track_ids` (from its init), every track it names must be one of them."""
    top = _boxes(fh, 0, size)
    kinds = [b[0] for b in top]
    if "moof" not in kinds or "mdat" not in kinds or kinds.index("moof") > kinds.index("mdat"):
        raise Fmp4Error(f"a media fragment needs a 'moof' box then an 'mdat' box; found {kinds[:8]}")
    if track_ids is None:
        return
    for moof in (b for b in top if b[0] == "moof"):
        for traf in _child(fh, moof, "traf"):
            for tfhd in _child(fh, traf, "tfhd"):
                track = _u32_at(fh, tfhd[1] + tfhd[2] + 4)
                if track not in track_ids:
                    raise Fmp4Error(f"the fragment is for track id {track}; its init has {sorted(track_ids)}")


def check(fh: BinaryIO, size: int, kind: str, init: BinaryIO | None = None, init_size: int = 0) -> None:
    """Check one fragment as the manifest's `kind` says ("init" or "media"), against its init if known."""
    if kind == "init":
        init_track_ids(fh, size)
    else:
        check_media(fh, size, init_track_ids(init, init_size) if init is not None else None)

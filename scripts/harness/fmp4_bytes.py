"""fMP4-shaped bytes for tests and benches that upload fragments: the server checks the box structure at ingest
(media/fmp4_check.py), so random bytes are refused. These are not decodable video, only the boxes the check reads
(ftyp + moov/trak/tkhd for an init; moof/mfhd + moof/traf/tfhd then mdat for a media fragment), and the mdat
payload is deterministic pseudo-random bytes so two seeds give two different files of the same size."""

from __future__ import annotations

import random
import struct
from typing import BinaryIO

# moof (8) + mfhd (16) + traf (8) + tfhd (16), then the mdat header (8).
MEDIA_HEADER_SIZE = 56
# Below this a media fragment would be almost all header; tests that want "small" fragments use at least this.
MIN_MEDIA_SIZE = 64


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def _tkhd(track_id: int, stamp: int) -> bytes:
    """A version 0 tkhd: creation, modification, track_ID (at byte 12 of the payload), then the fixed fields."""
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    payload = struct.pack(">IIIII", stamp, stamp, track_id, 0, 0) + bytes(8) + struct.pack(">hhhH", 0, 0, 0, 0)
    return full_box(b"tkhd", 0, 3, payload + matrix + struct.pack(">II", 1280 << 16, 720 << 16))


def _mvhd(next_track: int, stamp: int) -> bytes:
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    payload = struct.pack(">IIII", stamp, stamp, 1000, 0) + struct.pack(">IH", 0x10000, 0x100) + bytes(10)
    return full_box(b"mvhd", 0, 0, payload + matrix + bytes(24) + struct.pack(">I", next_track))


def init_bytes(track_ids: tuple[int, ...] = (1,), seed: int = 0) -> bytes:
    """An init segment: ftyp + moov holding one trak/tkhd per track id; `seed` changes the time stamps."""
    if not track_ids:
        raise ValueError("an init segment needs at least one track id")
    stamp = seed & 0xFFFFFFFF
    ftyp = box(b"ftyp", b"iso5" + struct.pack(">I", 512) + b"iso5iso6mp41")
    traks = b"".join(box(b"trak", _tkhd(t, stamp)) for t in track_ids)
    return ftyp + box(b"moov", _mvhd(max(track_ids) + 1, stamp) + traks)


def media_header(size: int, track_id: int = 1, seq: int = 1) -> bytes:
    """The moof and the mdat header of a media fragment of `size` bytes; the mdat payload follows it."""
    if size < MIN_MEDIA_SIZE:
        raise ValueError(f"a media fragment needs at least {MIN_MEDIA_SIZE} bytes; asked for {size}")
    if size >= 1 << 32:
        raise ValueError("media fragments of 4 GiB or more are not supported here")
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track_id))  # default-base-is-moof
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", seq & 0xFFFFFFFF)) + box(b"traf", tfhd))
    return moof + struct.pack(">I4s", size - len(moof), b"mdat")


def media_bytes(size: int, track_id: int = 1, seed: int = 0) -> bytes:
    """A media fragment of exactly `size` bytes: moof/traf/tfhd naming `track_id`, then an mdat of pseudo-random
    bytes drawn from `seed` (so equal arguments give equal bytes, another seed other bytes)."""
    head = media_header(size, track_id, seq=seed)
    return head + random.Random(seed).randbytes(size - len(head))


def write_media(fh: BinaryIO, size: int, track_id: int = 1, seed: int = 0, chunk: int = 1 << 20) -> None:
    """Stream `media_bytes(size, track_id, seed)` into `fh` without holding it in memory (for big bench files)."""
    head = media_header(size, track_id, seq=seed)
    fh.write(head)
    rng, left = random.Random(seed), size - len(head)
    while left:
        n = min(chunk, left)
        fh.write(rng.randbytes(n))
        left -= n

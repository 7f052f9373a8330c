"""ZIP framing for export packages: members written front to back, ZIP64 throughout, the central directory
at the end (PKWARE APPNOTE 6.3: local header, data, data descriptor; ZIP64 extra fields and end records).

Why not `zipfile` for writing: zipfile computes each member's CRC-32 itself, with zlib (~3 GB/s), on the
thread that writes. The package writer already reads every media byte once, to check its SHA-256 against its
storage key; it computes the CRC-32 in that same pass with ISA-L (~40 GB/s) and hands the bytes untouched to
a thread that only hashes the package and writes it. This module only frames them. zipfile still reads the
packages (`osce verify`), and the tests check them with Info-ZIP's `unzip -t` as well.

Each member's local header carries a ZIP64 extra with zero sizes and the data-descriptor flag, as zipfile
writes a member to a stream it cannot seek: the sizes and CRC follow the data, and the central directory
repeats them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STORED, DEFLATED = 0, 8
_VERSION = 45  # ZIP64
_FLAGS = 0x0008 | 0x0800  # sizes and CRC in a data descriptor; names in UTF-8
_UNIX = 3
_FILE_MODE = 0o644 << 16
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_ZIP64 = struct.Struct("<HHQQ")
_DESCRIPTOR = struct.Struct("<4sIQQ")
_CENTRAL = struct.Struct("<4sBBHHHHHIIIHHHHHII")
_CENTRAL_ZIP64 = struct.Struct("<HHQQQ")
_END64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<4sIQI")
_END = struct.Struct("<4sHHHHIIH")
_FULL32 = 0xFFFFFFFF

Write = Callable[[Any], None]  # takes bytes, a memoryview or an mmap: whatever the caller hands on


@dataclass
class _Entry:
    name: bytes
    method: int
    offset: int
    crc: int = 0
    size: int = 0
    compressed: int = 0


def _dos(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    y, mo, d, h, mi, s = date_time
    return (h << 11) | (mi << 5) | (s // 2), ((max(y, 1980) - 1980) << 9) | (mo << 5) | d


class ZipWriter:
    """Frames members for `write`: begin(), the member's data through data(), end() with its CRC-32 and
    sizes; close() writes the central directory. The caller computes CRCs (one pass over its bytes)."""

    def __init__(self, write: Write, date_time: tuple[int, int, int, int, int, int]) -> None:
        self._write = write
        self._time, self._date = _dos(date_time)
        self._entries: list[_Entry] = []
        self._open: _Entry | None = None
        self.offset = 0

    def _out(self, piece: Any) -> None:
        self._write(piece)
        self.offset += len(piece)

    def begin(self, path: str, method: int = STORED) -> None:
        if self._open is not None:
            raise RuntimeError(f"{path}: member {self._open.name.decode()} is not ended")
        name = path.encode("utf-8")
        self._open = _Entry(name, method, self.offset)
        extra = _LOCAL_ZIP64.pack(1, 16, 0, 0)
        self._out(
            _LOCAL.pack(
                b"PK\x03\x04",
                _VERSION,
                _FLAGS,
                method,
                self._time,
                self._date,
                0,
                _FULL32,
                _FULL32,
                len(name),
                len(extra),
            )
            + name
            + extra
        )

    def data(self, piece: Any) -> None:
        self._out(piece)

    def end(self, crc: int, size: int, compressed: int) -> None:
        entry = self._open
        if entry is None:
            raise RuntimeError("no member begun")
        written = self.offset - entry.offset - _LOCAL.size - len(entry.name) - _LOCAL_ZIP64.size
        if written != compressed:
            raise RuntimeError(f"{entry.name.decode()}: {written} bytes written, {compressed} declared")
        entry.crc, entry.size, entry.compressed = crc, size, compressed
        self._out(_DESCRIPTOR.pack(b"PK\x07\x08", crc, compressed, size))
        self._entries.append(entry)
        self._open = None

    def close(self) -> None:
        """The central directory and the (ZIP64) end records."""
        start = self.offset
        parts = []
        for e in self._entries:
            extra = _CENTRAL_ZIP64.pack(1, 24, e.size, e.compressed, e.offset)
            parts.append(
                _CENTRAL.pack(
                    b"PK\x01\x02",
                    _VERSION,
                    _UNIX,
                    _VERSION,
                    _FLAGS,
                    e.method,
                    self._time,
                    self._date,
                    e.crc,
                    _FULL32,
                    _FULL32,
                    len(e.name),
                    len(extra),
                    0,
                    0,
                    0,
                    _FILE_MODE,
                    _FULL32,
                )
                + e.name
                + extra
            )
        directory = b"".join(parts)
        self._out(directory)
        end64 = self.offset
        n = len(self._entries)
        self._out(
            _END64.pack(b"PK\x06\x06", _END64.size - 12, _VERSION, _VERSION, 0, 0, n, n, len(directory), start)
            + _LOCATOR64.pack(b"PK\x06\x07", 0, end64, 1)
            + _END.pack(b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), _FULL32, _FULL32, 0)
        )

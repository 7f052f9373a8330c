"""Cutting a fragmented-MP4 byte stream into CMAF files, and reading them back as one stream.

libavformat's mp4 muxer (movflags empty_moov+default_base_moof+frag_keyframe) writes
`ftyp moov` once, then a `moof mdat` pair per key frame. `BoxSplitter` is the file object
the muxer writes to: it parses top-level boxes as they complete and hands out the init
segment and each media fragment whole, so the recorder can make each one durable on its
own. A crash loses only the fragment still inside the muxer.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from media import mp4box

INIT_BOXES = {b"ftyp", b"moov"}
SKIPPED_BOXES = {b"styp", b"sidx", b"mfra", b"free", b"prft"}


class BoxSplitter(io.RawIOBase):
    """A write-only file: calls on_init(bytes) once and on_fragment(bytes) per moof+mdat."""

    def __init__(self, on_init: Callable[[bytes], None], on_fragment: Callable[[bytes], None]) -> None:
        super().__init__()
        self._on_init = on_init
        self._on_fragment = on_fragment
        self._buf = bytearray()
        self._init = bytearray()
        self._moof: bytes | None = None
        self.error: BaseException | None = None  # raised again by the caller after mux()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001 - bytes-like from libavformat
        self._buf += data
        try:
            self._drain()
        except BaseException as exc:  # the muxer swallows exceptions: keep it for the caller
            self.error = exc
            raise
        return len(data)

    def _drain(self) -> None:
        while (head := mp4box.header(self._buf)) is not None:
            kind, _header, size = head
            if size == 0:
                return  # "to end of file": only a trailer uses it, and we skip trailers
            if len(self._buf) < size:
                return
            box = bytes(self._buf[:size])
            del self._buf[:size]
            self._box(kind, box)

    def _box(self, kind: bytes, box: bytes) -> None:
        if kind in INIT_BOXES:
            self._init += box
            if kind == b"moov":
                self._on_init(bytes(self._init))
        elif kind == b"moof":
            self._moof = box
        elif kind == b"mdat":
            if self._moof is None:
                raise ValueError("mdat without moof in the muxer's output")
            self._on_fragment(self._moof + box)
            self._moof = None
        elif kind not in SKIPPED_BOXES:
            raise ValueError(f"unexpected top-level box {kind!r} in the muxer's output")


class ChainedReader(io.RawIOBase):
    """Several files read as one seekable stream (a track's init + media fragments)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._paths = [Path(p) for p in paths]
        self._sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._total = sum(self._sizes)
        self._pos = 0
        self._open: tuple[int, io.BufferedReader] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:  # noqa: ANN001
        if self._pos >= self._total:
            return 0
        index = max(i for i, s in enumerate(self._starts) if s <= self._pos)
        while self._sizes[index] == 0:
            index += 1
        if self._open is None or self._open[0] != index:
            if self._open is not None:
                self._open[1].close()
            self._open = (index, open(self._paths[index], "rb"))  # noqa: SIM115
        fh = self._open[1]
        fh.seek(self._pos - self._starts[index])
        want = min(len(buffer), self._starts[index] + self._sizes[index] - self._pos)
        data = fh.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None
        super().close()

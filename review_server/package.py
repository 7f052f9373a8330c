"""The export package format (`osce-export/1`): a ZIP written front to back, and its verification.

Layout (all paths relative to the package root):
- `manifest.json`: format, request, who and when, the signing key's fingerprint, and every other file
  with its SHA-256 and size (all except manifest.json itself, manifest.sig and SHA256SUMS);
- `manifest.sig`: the raw 64-byte Ed25519 signature of manifest.json's bytes, by the server's key
  (`openssl pkeyutl -verify -pubin -inkey public_key.pem -rawin -in manifest.json -sigfile manifest.sig`);
- `public_key.pem`: that key (compare its fingerprint with the one the server publishes);
- `SHA256SUMS`: every file but itself, in `sha256sum` format, so `sha256sum -c SHA256SUMS` checks the lot.

The package is written front to back (ZIP framing in `zipwriter`), so it needs only `write()` from its
output and memory stays constant: each stored file is read once, hashed (SHA-256 against its storage key,
CRC-32 for the ZIP) and handed to a writer thread that hashes the package and writes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import queue
import stat
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from isal.isal_zlib import crc32  # ISA-L: ~40 GB/s against zlib's ~3 GB/s, the same CRC-32

from .signing import fingerprint, load_public_pem, public_pem
from .zipwriter import DEFLATED, STORED, ZipWriter

FORMAT = "osce-export/1"
MANIFEST, SIGNATURE, SUMS, PUBLIC_KEY = "manifest.json", "manifest.sig", "SHA256SUMS", "public_key.pem"
UNLISTED = frozenset({MANIFEST, SIGNATURE, SUMS})  # not in the manifest's file list (they are its envelope)
CHUNK = 1024 * 1024
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map the cached pages at once, not one fault per page
Progress = Callable[[int, int, str], None]  # (bytes of members written so far, members done, current file)


class PackageSink:
    """Where a package's bytes go. A thread of its own hashes them (the package's SHA-256) and writes them,
    while the caller reads, hashes and CRCs the next member on another core. Pieces are handed on as they
    are (no copy), so a piece must not change after write(): bytes, or a read-only mmap. At most `depth`
    pieces wait in between. Write-back to disk is started every WRITE_BACK bytes, so that the closing fsync
    waits for little. Call close() to drain it."""

    WRITE_BACK = 256 * 1024 * 1024  # on 5 GB: every 32 MiB cost a third more CPU; never halved the speed

    def __init__(self, out: BinaryIO, depth: int = 16) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._synced = 0
        self.thread = threading.Thread(target=self._run, name="package-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (piece := self.queue.get()) is not None:
            try:
                if self.error is None:
                    self._take(piece)
            except BaseException as exc:  # raised to the caller at its next write or at close()
                self.error = exc
            finally:
                if isinstance(piece, MappedFile):  # written or skipped after an error: its descriptor goes
                    piece.close()

    def _take(self, piece: Any) -> None:
        self.sha.update(piece)
        size = len(piece)
        if isinstance(piece, MappedFile):
            # The kernel copies page cache to page cache (as `cp` does); writing the mapping from user space
            # cost twice the CPU (measured: copy_folio_from_iter at a third of the export's samples).
            self.out.flush()
            left, offset = size, 0
            while left:
                n = os.copy_file_range(piece.fd, self.out.fileno(), left, offset)
                if n == 0:
                    raise OSError(f"stored file shrank while packed ({left} bytes short)")
                left, offset = left - n, offset + n
        else:
            self.out.write(piece)
        self.size += size
        if self.size - self._synced >= self.WRITE_BACK:
            # Linux starts write-back for dirty pages on DONTNEED; the page cache has no use for them.
            self.out.flush()
            os.posix_fadvise(self.out.fileno(), self._synced, self.size - self._synced, os.POSIX_FADV_DONTNEED)
            self._synced = self.size

    def write(self, piece: Any) -> None:
        if self.error is not None:
            if isinstance(piece, MappedFile):
                piece.close()
            raise self.error
        self.queue.put(piece)

    def close(self) -> None:
        """Wait until everything written has been hashed and written; raise what went wrong on the way."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.error is not None:
            raise self.error
        self.out.flush()


class MappedFile(mmap.mmap):
    """A stored file mapped read-only (what the hashes read) with its own descriptor (what the sink copies
    from, after the caller has closed its file); closing it closes both."""

    fd: int

    def __new__(cls, fd: int, size: int) -> MappedFile:
        self = super().__new__(cls, fd, size, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED | _POPULATE)
        self.fd = os.dup(fd)
        return self

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def pieces(src: BinaryIO) -> Iterator[Any]:
    """The bytes of a stored object: one read-only mapping of a local file (read once by the hashes, written
    from the page cache, no copy in between), or CHUNK-sized reads of any other stream (object storage).
    Stored media is never rewritten in place, so the mapping cannot change under the package."""
    try:
        fd = src.fileno()
        st = os.fstat(fd)
    except (AttributeError, OSError, io.UnsupportedOperation):
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        if st.st_size:
            yield MappedFile(fd, st.st_size)
        return
    while chunk := src.read(CHUNK):
        yield chunk


@dataclass
class PackageWriter:
    sink: PackageSink
    date_time: tuple[int, int, int, int, int, int]
    progress: Progress | None = None
    files: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.zip = ZipWriter(self.sink.write, self.date_time)
        self.written = 0
        self.files_done = 0
        self._paths: set[str] = set()

    def add_bytes(self, path: str, data: bytes, *, listed: bool = True) -> str:
        """A small generated file (marks, protocol, manifest), deflated."""
        self._check(path, listed)
        sha = hashlib.sha256(data).hexdigest()
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        packed = packer.compress(data) + packer.flush()
        self.zip.begin(path, DEFLATED)
        self.zip.data(packed)
        self.zip.end(crc32(data), len(data), len(packed))
        self._done(path, sha, len(data), listed)
        return sha

    def add_stream(self, path: str, src: BinaryIO) -> tuple[str, int]:
        """A stored object, byte for byte. Its SHA-256 and CRC-32 are computed here, in one pass, while the
        sink's thread writes what was hashed before. Returns its SHA-256 and size."""
        self._check(path, True)
        h, crc, size = hashlib.sha256(), 0, 0
        self.zip.begin(path, STORED)
        for piece in pieces(src):
            h.update(piece)
            crc = crc32(piece, crc)
            size += len(piece)
            self.zip.data(piece)
            if self.progress:
                self.progress(self.written + size, self.files_done, path)
        self.zip.end(crc, size, size)
        self._done(path, h.hexdigest(), size, True)
        return h.hexdigest(), size

    def _check(self, path: str, listed: bool) -> None:
        if "\\" in path or any(ord(c) < 32 for c in path):  # SHA256SUMS would need escapes sha256sum -c reads
            raise ValueError(f"{path!r}: a backslash or control character in a package path")
        if path in self._paths or (listed and path in UNLISTED):
            raise ValueError(f"{path}: already in the package")
        self._paths.add(path)

    def _done(self, path: str, sha: str, size: int, listed: bool) -> None:
        self.written += size
        self.files_done += 1
        if listed:
            self.files.append({"path": path, "sha256": sha, "size": size})
        if self.progress:
            self.progress(self.written, self.files_done, path)

    def finish(self, key: Ed25519PrivateKey, meta: dict[str, Any]) -> dict[str, Any]:
        """Add the public key, the manifest, its signature and SHA256SUMS; close the ZIP. Returns the manifest."""
        self.add_bytes(PUBLIC_KEY, public_pem(key))
        manifest = {"format": FORMAT, **meta, "public_key_sha256": fingerprint(key), "files": self.files}
        body = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        sums = [(f["sha256"], f["path"]) for f in self.files]
        sums.append((self.add_bytes(MANIFEST, body, listed=False), MANIFEST))
        sums.append((self.add_bytes(SIGNATURE, key.sign(body), listed=False), SIGNATURE))
        self.add_bytes(SUMS, "".join(f"{sha}  {path}\n" for sha, path in sums).encode("utf-8"), listed=False)
        self.zip.close()
        return manifest


# --- verification ------------------------------------------------------------------------------------


class _Source:
    """Files of a package, from a ZIP or an unpacked folder."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.zf = zipfile.ZipFile(where) if where.is_file() else None

    def names(self) -> set[str]:
        if self.zf is not None:
            return {n for n in self.zf.namelist() if not n.endswith("/")}
        return {p.relative_to(self.where).as_posix() for p in self.where.rglob("*") if p.is_file()}

    def open(self, name: str) -> BinaryIO:
        if self.zf is not None:
            return self.zf.open(name)  # type: ignore[return-value]
        return (self.where / name).open("rb")

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def sha256(self, name: str) -> tuple[str, int]:
        h, size = hashlib.sha256(), 0
        with self.open(name) as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        return h.hexdigest(), size


@dataclass
class Report:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    key_sha256: str = ""
    request: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def lines(self) -> Iterator[str]:
        yield f"package: {'OK' if self.ok else 'FAILED'}"
        if self.request:
            r = self.request
            yield f"request: №{r.get('number')} of {r.get('date')} ({r.get('requester')})"
        yield f"signing key sha256: {self.key_sha256 or '?'}"
        yield f"files checked: {self.checked}"
        for p in self.problems:
            yield f"FAIL {p}"


def verify(where: str | Path, public_key: bytes | None = None) -> Report:
    """Check the signature (with `public_key` PEM if given, else the package's own), every file's SHA-256
    and size, SHA256SUMS, and that the package holds exactly the files listed."""
    report = Report()
    if not Path(where).exists():
        report.fail(f"{where}: no such file or folder")
        return report
    try:
        src = _Source(Path(where))
    except (OSError, zipfile.BadZipFile) as exc:
        report.fail(f"{where}: cannot open ({exc})")
        return report
    names = src.names()
    if src.zf is not None:
        counts = Counter(src.zf.namelist())
        for dup in sorted(n for n, c in counts.items() if c > 1):
            report.fail(f"{dup}: more than one entry with this name in the ZIP")
    for needed in (MANIFEST, SIGNATURE, SUMS, PUBLIC_KEY):
        if needed not in names:
            report.fail(f"{needed}: missing")
    if not report.ok:
        return report
    body = src.read(MANIFEST)
    try:
        key = load_public_pem(public_key if public_key is not None else src.read(PUBLIC_KEY))
        report.key_sha256 = fingerprint(key)
        key.verify(src.read(SIGNATURE), body)
    except InvalidSignature:
        report.fail(f"{SIGNATURE}: signature does not match {MANIFEST} (altered, or signed by another key)")
    except ValueError as exc:
        report.fail(f"{PUBLIC_KEY}: {exc}")
    try:
        manifest = json.loads(body)
        listed = {f["path"]: f for f in manifest["files"]}
        report.request = manifest.get("request", {})
    except (ValueError, KeyError, TypeError) as exc:
        report.fail(f"{MANIFEST}: unreadable ({exc})")
        return report
    if manifest.get("format") != FORMAT:
        report.fail(f"{MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT}")
    if manifest.get("public_key_sha256") != report.key_sha256:
        report.fail(f"{PUBLIC_KEY}: fingerprint differs from the manifest's public_key_sha256")
    for path in sorted(listed):
        if path not in names:
            report.fail(f"{path}: listed in the manifest but missing")
            continue
        sha, size = src.sha256(path)
        report.checked += 1
        if sha != listed[path]["sha256"] or size != listed[path]["size"]:
            report.fail(f"{path}: SHA-256 or size differs from the manifest")
    for extra in sorted(names - set(listed) - UNLISTED):
        report.fail(f"{extra}: in the package but not listed in the manifest")
    _check_sums(src, listed, report)
    return report


def _check_sums(src: _Source, listed: dict[str, Any], report: Report) -> None:
    expected = {path: f["sha256"] for path, f in listed.items()}
    expected[MANIFEST] = src.sha256(MANIFEST)[0]
    expected[SIGNATURE] = src.sha256(SIGNATURE)[0]
    sums: dict[str, str] = {}
    for number, line in enumerate(src.read(SUMS).decode("utf-8", "replace").splitlines(), start=1):
        sha, sep, path = line.partition("  ")
        if not sep or len(sha) != 64:
            report.fail(f"{SUMS}:{number}: not a sha256sum line")
            continue
        sums[path] = sha
    if sums != expected:
        wrong = sorted(set(sums) ^ set(expected) | {p for p in sums.keys() & expected.keys() if sums[p] != expected[p]})
        report.fail(f"{SUMS}: disagrees with the files for {', '.join(wrong[:5])}")

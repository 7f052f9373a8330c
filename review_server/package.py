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

import contextlib
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
#
# `verify` reads a package nobody vouches for yet, so it trusts nothing in it until the signature holds with a
# key the caller trusts (the centre's published key); the package's own public_key.pem is only a claim. What is
# read is bounded before it is read: the envelope files have caps, a member's bytes are read only when the
# signed manifest lists it with the size the ZIP declares, and never more than that size; a folder's symlinks
# and special files (FIFOs, devices) are not followed or opened.

MAX_ENVELOPE = {MANIFEST: 64 * 1024 * 1024, SUMS: 64 * 1024 * 1024, PUBLIC_KEY: 16 * 1024, SIGNATURE: 1024}
MAX_MEMBERS = 1_000_000


class Unreadable(Exception):
    """A member that cannot be read as the package says it is (the message says why)."""


class _Source:
    """Files of a package, from a ZIP or an unpacked folder."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.zf = zipfile.ZipFile(where) if where.is_file() else None
        self.refused: dict[str, str] = {}  # folder entries not read: path -> why

    def names(self) -> set[str]:
        if self.zf is not None:
            return {n for n in self.zf.namelist() if not n.endswith("/")}
        out: set[str] = set()
        root = self.where.resolve()
        for folder, dirs, files in os.walk(self.where):  # does not descend into symlinked folders
            for name in [*dirs, *files]:
                path = Path(folder) / name
                rel = path.relative_to(self.where).as_posix()
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    target = path.resolve()
                    outside = target != root and root not in target.parents
                    self.refused[rel] = (f"a symlink to {'outside the package folder' if outside else target.name}, "
                                         "not followed")
                    out.add(rel)
                elif stat.S_ISREG(st.st_mode):
                    out.add(rel)
                elif not stat.S_ISDIR(st.st_mode):
                    self.refused[rel] = "not a regular file (a FIFO, socket or device), not opened"
                    out.add(rel)
        return out

    def declared_size(self, name: str) -> int:
        if self.zf is not None:
            return self.zf.getinfo(name).file_size
        return (self.where / name).lstat().st_size

    def open(self, name: str) -> BinaryIO:
        if self.zf is not None:
            return self.zf.open(name)  # type: ignore[return-value]
        if name in self.refused:
            raise Unreadable(self.refused[name])
        fd = os.open(self.where / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Unreadable("not a regular file")
        return os.fdopen(fd, "rb")

    def read(self, name: str, cap: int) -> bytes:
        """The whole member, refused unread if it declares more than `cap` bytes, and never more than that."""
        if self.declared_size(name) > cap:
            raise Unreadable(f"larger than the {cap}-byte limit for this file")
        with self._reading(name), self.open(name) as fh:
            data = fh.read(cap + 1)
        if len(data) > cap:
            raise Unreadable(f"larger than the {cap}-byte limit for this file")
        return data

    def sha256(self, name: str, size: int) -> str:
        """SHA-256 of a member that must hold exactly `size` bytes (read in chunks, never past size + 1)."""
        if self.declared_size(name) != size:
            raise Unreadable(f"declares {self.declared_size(name)} bytes, the manifest {size}")
        h, got = hashlib.sha256(), 0
        with self._reading(name), self.open(name) as fh:
            while got <= size and (chunk := fh.read(min(CHUNK, size + 1 - got))):
                h.update(chunk)
                got += len(chunk)
            if got == size and self.zf is not None and not self._ends_where_declared(self.zf.getinfo(name)):
                raise Unreadable(f"its data goes on past the {size} bytes it declares")
        if got != size:
            raise Unreadable(f"holds {'more than' if got > size else 'only'} {min(got, size)} bytes, "
                             f"the manifest says {size}")
        return h.hexdigest()

    def _ends_where_declared(self, info: zipfile.ZipInfo) -> bool:
        """Does a ZIP member hold exactly the bytes it declares? zipfile stops at the declared size (its CRC-32
        covers only that), so data hidden past it, which an unzip tool may still write out, is seen only here:
        stored bytes beyond it, or a deflate stream that goes on. Inflates at most one byte past the size."""
        if info.compress_type == zipfile.ZIP_STORED:
            return info.compress_size == info.file_size
        with self.where.open("rb") as f:
            f.seek(info.header_offset)
            head = f.read(30)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                raise Unreadable("no local header where the ZIP's directory says")
            name_len, extra_len = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
            f.seek(info.header_offset + 30 + name_len + extra_len)
            inflate, out, left = zlib.decompressobj(-zlib.MAX_WBITS), 0, info.compress_size
            while left and not inflate.eof:
                buf = f.read(min(CHUNK, left))
                if not buf:
                    return False
                left -= len(buf)
                while buf and not inflate.eof:
                    out += len(inflate.decompress(buf, info.file_size + 1 - out))
                    if out > info.file_size:
                        return False
                    buf = inflate.unconsumed_tail
        return inflate.eof and out == info.file_size and left == 0 and not inflate.unused_data

    @contextlib.contextmanager
    def _reading(self, name: str) -> Iterator[None]:
        try:
            yield
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
            raise Unreadable(f"cannot be read ({exc})") from None


@dataclass
class Report:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    key_sha256: str = ""  # the key that signed the package (its public_key.pem)
    trusted_sha256: str = ""  # the key it was checked against: the centre's, or its own when told to trust it
    trusted_from: str = ""  # where that key came from, in words
    request: dict[str, Any] = field(default_factory=dict)
    anchor: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def lines(self) -> Iterator[str]:
        yield f"package: {'OK' if self.ok else 'FAILED'}"
        if self.request:
            r = self.request
            yield f"request: №{r.get('number')} of {r.get('date')} ({r.get('requester')})"
        yield f"signed by key sha256: {self.key_sha256 or '?'}"
        yield f"checked against key sha256: {self.trusted_sha256 or 'none'}" + (
            f" ({self.trusted_from})" if self.trusted_from else "")
        if self.anchor:
            a = self.anchor
            yield f"audit chain head at export: row {a.get('seq')} {a.get('hash')} ({a.get('at')})"
        yield f"files checked: {self.checked}"
        for p in self.problems:
            yield f"FAIL {p}"


NO_TRUSTED_KEY = ("no trusted key: a package can be signed by anyone's key, so give the centre's published key "
                  "(GET /api/export-key) with --public-key FILE, or --config with the server's configuration; "
                  "--trust-embedded-key checks it against the key it carries, which proves nothing about who made it")


def verify(where: str | Path, public_key: bytes | None = None, *, trust_embedded_key: bool = False,
           trusted_from: str = "") -> Report:
    """Check the signature against `public_key` (the centre's published key, PEM; or, only with
    `trust_embedded_key`, the package's own), then every listed file's SHA-256 and size, SHA256SUMS, and that
    the package holds exactly the files listed. Nothing in the package is read beyond the envelope before
    its signature holds with a trusted key."""
    report = Report()
    if not Path(where).exists():
        report.fail(f"{where}: no such file or folder")
        return report
    try:
        src = _Source(Path(where))
    except (OSError, zipfile.BadZipFile) as exc:
        report.fail(f"{where}: cannot open ({exc})")
        return report
    try:
        names = src.names()
    except OSError as exc:
        report.fail(f"{where}: cannot list ({exc})")
        return report
    if src.zf is not None:
        if len(src.zf.infolist()) > MAX_MEMBERS:
            report.fail(f"{where}: more than {MAX_MEMBERS} entries")
            return report
        counts = Counter(src.zf.namelist())
        for dup in sorted(n for n, c in counts.items() if c > 1):
            report.fail(f"{dup}: more than one entry with this name in the ZIP")
    for name, why in sorted(src.refused.items()):
        report.fail(f"{name}: {why}")
    envelope: dict[str, bytes] = {}
    for needed in (MANIFEST, SIGNATURE, SUMS, PUBLIC_KEY):
        if needed not in names:
            report.fail(f"{needed}: missing")
            continue
        try:
            envelope[needed] = src.read(needed, MAX_ENVELOPE[needed])
        except Unreadable as exc:
            report.fail(f"{needed}: {exc}")
    if not report.ok:
        return report
    body = envelope[MANIFEST]
    try:
        embedded = load_public_pem(envelope[PUBLIC_KEY])
        report.key_sha256 = fingerprint(embedded)
        trusted = load_public_pem(public_key) if public_key is not None else embedded
    except ValueError as exc:
        report.fail(f"{PUBLIC_KEY if public_key is None else 'the trusted key'}: {exc}")
        return report
    if public_key is None and not trust_embedded_key:
        report.fail(NO_TRUSTED_KEY)
        return report
    report.trusted_sha256 = fingerprint(trusted)
    report.trusted_from = trusted_from or ("given" if public_key is not None else
                                           "the package's own key, trusted as asked: proves nothing about who made it")
    try:
        trusted.verify(envelope[SIGNATURE], body)
    except InvalidSignature:
        signer = "" if report.key_sha256 == report.trusted_sha256 else f" (the package names key {report.key_sha256})"
        report.fail(f"{SIGNATURE}: signature does not match {MANIFEST} with key {report.trusted_sha256}{signer}: "
                    "altered, or signed by another key")
        return report
    if report.key_sha256 != report.trusted_sha256:
        report.fail(f"{PUBLIC_KEY}: key {report.key_sha256}, not the trusted key {report.trusted_sha256}")
    try:
        manifest = json.loads(body)
        listed = {f["path"]: f for f in manifest["files"]}
        report.request = manifest.get("request", {})
        report.anchor = manifest.get("audit_anchor") or {}
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
        try:
            sha = src.sha256(path, int(listed[path]["size"]))
        except Unreadable as exc:
            report.fail(f"{path}: {exc}")
            continue
        except (TypeError, ValueError, KeyError):
            report.fail(f"{MANIFEST}: {path} has no size")
            continue
        report.checked += 1
        if sha != listed[path]["sha256"]:
            report.fail(f"{path}: SHA-256 or size differs from the manifest")
    for extra in sorted(names - set(listed) - UNLISTED - set(src.refused)):
        report.fail(f"{extra}: in the package but not listed in the manifest")
    _check_sums(envelope, listed, report)
    return report


def _check_sums(envelope: dict[str, bytes], listed: dict[str, Any], report: Report) -> None:
    expected = {path: f["sha256"] for path, f in listed.items()}
    expected[MANIFEST] = hashlib.sha256(envelope[MANIFEST]).hexdigest()
    expected[SIGNATURE] = hashlib.sha256(envelope[SIGNATURE]).hexdigest()
    sums: dict[str, str] = {}
    for number, line in enumerate(envelope[SUMS].decode("utf-8", "replace").splitlines(), start=1):
        sha, sep, path = line.partition("  ")
        if not sep or len(sha) != 64:
            report.fail(f"{SUMS}:{number}: not a sha256sum line")
            continue
        sums[path] = sha
    if sums != expected:
        wrong = sorted(set(sums) ^ set(expected) | {p for p in sums.keys() & expected.keys() if sums[p] != expected[p]})
        report.fail(f"{SUMS}: disagrees with the files for {', '.join(wrong[:5])}")

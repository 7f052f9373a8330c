"""The export package format (`osce-export/1`): a ZIP written front to back, and its verification.

Layout (all paths relative to the package root):
- `manifest.json`: format, request, who and when, the signing key's fingerprint, and every other file
  with its SHA-256 and size (all except manifest.json itself, manifest.sig and SHA256SUMS);
- `manifest.sig`: the raw 64-byte Ed25519 signature of manifest.json's bytes, by the server's key
  (`openssl pkeyutl -verify -pubin -inkey public_key.pem -rawin -in manifest.json -sigfile manifest.sig`);
- `public_key.pem`: that key (compare its fingerprint with the one the server publishes);
- `SHA256SUMS`: every file but itself, in `sha256sum` format, so `sha256sum -c SHA256SUMS` checks the lot.

The writer needs only `write()` from its output (zipfile then writes data descriptors), so a package can
be streamed with constant memory: each member is copied through in chunks and hashed on the way.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .signing import fingerprint, load_public_pem, public_pem

FORMAT = "osce-export/1"
MANIFEST, SIGNATURE, SUMS, PUBLIC_KEY = "manifest.json", "manifest.sig", "SHA256SUMS", "public_key.pem"
UNLISTED = frozenset({MANIFEST, SIGNATURE, SUMS})  # not in the manifest's file list (they are its envelope)
CHUNK = 1024 * 1024
Progress = Callable[[int, int, str], None]  # (bytes of members written so far, members done, current file)


class HashingWriter:
    """A write-only stream that hashes and counts what passes to `out` (no seek, no tell: zipfile streams)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


class ThreadedHashingWriter(HashingWriter):
    """A HashingWriter whose hashing and writing run on a thread of their own, so that the package's SHA-256
    and the copy into the file take a second core while the caller reads, hashes each file and CRCs it. At most
    `depth` writes wait in between (memory stays constant: ~depth × CHUNK). Call close() to drain it."""

    def __init__(self, out: BinaryIO, depth: int = 8) -> None:
        super().__init__(out)
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="package-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            if self.error is None:
                try:
                    HashingWriter.write(self, data)
                except BaseException as exc:  # raised to the caller at its next write or at close()
                    self.error = exc

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        self.queue.put(bytes(data))  # a copy if it is a view: the caller may reuse its buffer
        return len(data)

    def flush(self) -> None:
        """Not a barrier: the file is flushed by close()."""

    def close(self) -> None:
        """Wait until everything written has been hashed and written; raise what went wrong on the way."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if self.error is not None:
            raise self.error
        self.out.flush()


@dataclass
class PackageWriter:
    out: BinaryIO
    date_time: tuple[int, int, int, int, int, int]
    progress: Progress | None = None
    files: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.zf = zipfile.ZipFile(self.out, "w")
        # Each file's SHA-256 runs here beside the CRC-32 and the write (hashlib and zlib release the GIL).
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="package-hash")
        self.written = 0
        self.files_done = 0
        self._paths: set[str] = set()

    def _info(self, path: str, compress: bool) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(path, self.date_time)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        return info

    def add_bytes(self, path: str, data: bytes, *, listed: bool = True) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.zf.writestr(self._info(path, True), data)
        self._done(path, sha, len(data), listed)
        return sha

    def add_stream(self, path: str, src: BinaryIO, *, compress: bool = False) -> tuple[str, int]:
        h, size = hashlib.sha256(), 0
        hashing: Future[None] | None = None
        with self.zf.open(self._info(path, compress), "w", force_zip64=True) as dst:
            while chunk := src.read(CHUNK):
                if hashing is not None:
                    hashing.result()  # one chunk at a time: the updates stay in order
                hashing = self._hasher.submit(h.update, chunk)
                dst.write(chunk)
                size += len(chunk)
                if self.progress:
                    self.progress(self.written + size, self.files_done, path)
            if hashing is not None:
                hashing.result()
        self._done(path, h.hexdigest(), size, True)
        return h.hexdigest(), size

    def _done(self, path: str, sha: str, size: int, listed: bool) -> None:
        if path in self._paths or (listed and path in UNLISTED):
            raise ValueError(f"{path}: already in the package")
        self._paths.add(path)
        self.written += size
        self.files_done += 1
        if listed:
            self.files.append({"path": path, "sha256": sha, "size": size})
        if self.progress:
            self.progress(self.written, self.files_done, path)

    def abort(self) -> None:
        """Give the package up: no central directory is written (the output is being thrown away)."""
        self.zf.fp = None  # ZipFile.close() and __del__ then write nothing to an output that may be closed
        self._hasher.shutdown(wait=True)

    def finish(self, key: Ed25519PrivateKey, meta: dict[str, Any]) -> dict[str, Any]:
        """Add the public key, the manifest, its signature and SHA256SUMS; close the ZIP. Returns the manifest."""
        self.add_bytes(PUBLIC_KEY, public_pem(key))
        manifest = {"format": FORMAT, **meta, "public_key_sha256": fingerprint(key), "files": self.files}
        body = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        sums = [(f["sha256"], f["path"]) for f in self.files]
        sums.append((self.add_bytes(MANIFEST, body, listed=False), MANIFEST))
        sums.append((self.add_bytes(SIGNATURE, key.sign(body), listed=False), SIGNATURE))
        self.add_bytes(SUMS, "".join(f"{sha}  {path}\n" for sha, path in sums).encode("ascii"), listed=False)
        self.zf.close()
        self._hasher.shutdown(wait=True)
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
    for number, line in enumerate(src.read(SUMS).decode("ascii", "replace").splitlines(), start=1):
        sha, sep, path = line.partition("  ")
        if not sep or len(sha) != 64:
            report.fail(f"{SUMS}:{number}: not a sha256sum line")
            continue
        sums[path] = sha
    if sums != expected:
        wrong = sorted(set(sums) ^ set(expected) | {p for p in sums.keys() & expected.keys() if sums[p] != expected[p]})
        report.fail(f"{SUMS}: disagrees with the files for {', '.join(wrong[:5])}")

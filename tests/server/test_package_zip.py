"""The package's ZIP: written by our framing (review_server.zipwriter) through PackageSink, read back by
Python's zipfile and by Info-ZIP's unzip (an independent reader: every CRC-32 and offset is checked)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from review_server.package import CHUNK, MANIFEST, SUMS, PackageSink, PackageWriter, pieces, verify
from review_server.signing import public_pem
from review_server.zipwriter import STORED, ZipWriter

UNZIP = shutil.which("unzip")
DATE = (2026, 7, 1, 10, 30, 42)
KEY = Ed25519PrivateKey.generate()  # the "centre's" key: packages are checked against it, not their own


def unzip(*args: str) -> str:
    assert UNZIP, "Info-ZIP unzip is missing: scripts/setup.sh installs it (apt-get install unzip)"
    run = subprocess.run([UNZIP, *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def write(path: Path, members: list[tuple[str, object]]) -> dict[str, bytes]:
    """Write a package with these members (bytes: generated; a Path or stream: stored); return name -> bytes."""
    expected: dict[str, bytes] = {}
    with path.open("wb") as fh:
        sink = PackageSink(fh, depth=2)
        pw = PackageWriter(sink, DATE)
        for name, what in members:
            if isinstance(what, bytes):
                pw.add_bytes(name, what)
                expected[name] = what
            elif isinstance(what, Path):
                with what.open("rb") as src:
                    sha, size = pw.add_stream(name, src)
                expected[name] = what.read_bytes()
                assert (sha, size) == (hashlib.sha256(expected[name]).hexdigest(), len(expected[name]))
            else:
                assert isinstance(what, io.BytesIO)
                expected[name] = what.getvalue()
                pw.add_stream(name, what)
        pw.finish(KEY, {"request": {"number": "1"}})
        sink.close()
        assert sink.size == path.stat().st_size
        assert sink.sha.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    return expected


def test_package_reads_back_in_zipfile_and_unzip(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(2 * CHUNK + 123))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    pkg = tmp_path / "p.zip"
    expected = write(
        pkg,
        [
            ("attempts/A1/cam0/000001.m4s", big),
            ("attempts/A1/cam0/init.mp4", empty),
            ("attempts/A1/s3-object.m4s", io.BytesIO(os.urandom(CHUNK + 7))),  # a stream without a file (S3)
            ("attempts/A1/чек-лист.txt", "Оценочный лист: да/нет\n".encode() * 50),
        ],
    )
    with zipfile.ZipFile(pkg) as zf:
        assert zf.testzip() is None  # every member's CRC-32
        for name, data in expected.items():
            assert zf.read(name) == data
        info = zf.getinfo("attempts/A1/cam0/000001.m4s")
        assert info.compress_type == zipfile.ZIP_STORED and info.date_time == DATE
        assert info.flag_bits & 0x0808 == 0x0808  # data descriptor, UTF-8 names
        assert zf.getinfo("attempts/A1/чек-лист.txt").compress_type == zipfile.ZIP_DEFLATED
        assert {MANIFEST, SUMS} <= set(zf.namelist())
    unzip("-tqq", str(pkg))
    assert "attempts/A1/чек-лист.txt" in unzip("-Z1", str(pkg)).splitlines()
    out = tmp_path / "out"
    unzip("-q", str(pkg), "-d", str(out))
    assert (out / "attempts/A1/cam0/000001.m4s").read_bytes() == big.read_bytes()
    sums = subprocess.run(["sha256sum", "--quiet", "-c", SUMS], cwd=out, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert verify(pkg, public_pem(KEY)).ok


def test_a_name_twice_is_refused(tmp_path: Path) -> None:
    with (tmp_path / "p.zip").open("wb") as fh:
        sink = PackageSink(fh)
        pw = PackageWriter(sink, DATE)
        pw.add_bytes("a.txt", b"1")
        with pytest.raises(ValueError, match="a.txt: already in the package"):
            pw.add_stream("a.txt", io.BytesIO(b"2"))
        with pytest.raises(ValueError, match="already in the package"):
            pw.add_bytes(MANIFEST, b"{}")  # the envelope's names are reserved
        with pytest.raises(ValueError, match="control character in a package path"):
            pw.add_bytes("a\nb.txt", b"1")  # a line of its own in SHA256SUMS
        sink.close()


def test_framing_refuses_a_size_other_than_written() -> None:
    zw = ZipWriter(lambda piece: None, DATE)
    zw.begin("x.bin", STORED)
    zw.data(b"abc")
    with pytest.raises(RuntimeError, match="x.bin: 3 bytes written, 4 declared"):
        zw.end(0, 4, 4)


def test_a_failed_write_is_raised_not_lost(tmp_path: Path) -> None:
    fh = (tmp_path / "p.zip").open("wb")
    sink = PackageSink(fh)
    fh.close()  # the output goes away under the writer thread (a disk error, a closed file)
    sink.write(b"x" * 10)
    stored = tmp_path / "stored.m4s"
    stored.write_bytes(b"y" * 100)
    with stored.open("rb") as src:
        mapped = next(pieces(src))
    with contextlib.suppress(ValueError):
        sink.write(mapped)  # queued behind the failure, or refused at once
    with pytest.raises(ValueError, match="closed file"):
        sink.close()
    assert mapped.closed  # skipped, its mapping and descriptor released all the same

"""Resource exhaustion in the parsers of files nobody vouches for: `osce verify` given a ZIP bomb, a member that
holds more than it declares, a folder whose file is a symlink out of it; a manikin's export the size of a disk;
a checklist of half a million YAML nodes. Each runs as its own process with its address space capped (so that a
parser that would eat the machine fails inside its cap), and must end with a clear refusal naming the file, in
bounded memory and CPU, without a traceback."""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

from .conftest import Package, run_measured

CATEGORY = "resource exhaustion"

MIB = 1024 * 1024


def members(zpath: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zpath) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_a_zip_bomb_manifest_does_not_exhaust_osce_verify(package: Package, tmp_path: Path) -> None:
    """manifest.json deflated to a few hundred KB that inflates to 256 MiB (a real one is kilobytes)."""
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members(package.zip).items():
            if name != "manifest.json":
                zf.writestr(name, data)
        with zf.open("manifest.json", "w", force_zip64=True) as fh:
            block = b" " * MIB
            for _ in range(256):
                fh.write(block)
    assert bomb.stat().st_size < 2 * MIB
    run = run_measured(["verify", str(bomb), "--public-key", str(package.centre_pem)], memory_mb=1536)
    assert run.max_rss_mb < 200, f"peak {run.max_rss_mb:.0f} MB"
    assert not run.timed_out and run.returncode == 1, run.stdout + run.stderr
    assert "FAIL manifest.json: larger than" in run.stdout and "Traceback" not in run.stderr, run.stdout


def _declare(zbytes: bytearray, name: str, size: int, crc: int) -> None:
    """Rewrite what a (non-ZIP64) member declares: its size and CRC-32, in its local header and the directory."""
    with zipfile.ZipFile(io.BytesIO(bytes(zbytes))) as zf:
        at = zf.getinfo(name).header_offset
    struct.pack_into("<I", zbytes, at + 14, crc)
    struct.pack_into("<I", zbytes, at + 22, size)
    entry = zbytes.find(b"PK\x01\x02")
    while entry != -1:
        n = struct.unpack_from("<H", zbytes, entry + 28)[0]
        if bytes(zbytes[entry + 46 : entry + 46 + n]) == name.encode():
            struct.pack_into("<I", zbytes, entry + 16, crc)
            struct.pack_into("<I", zbytes, entry + 24, size)
            return
        entry = zbytes.find(b"PK\x01\x02", entry + 4)
    raise AssertionError(f"{name} not in the central directory")


def test_a_member_that_holds_more_than_it_declares_is_refused(package: Package, tmp_path: Path) -> None:
    """protocol.csv declares its genuine size and CRC-32, but its deflate stream goes on for 64 MiB more: zipfile
    reads only what is declared (and the hash matches), an unzip tool writes out everything."""
    files = members(package.zip)
    genuine = files["protocol.csv"]
    out = tmp_path / "longer.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, genuine + b"\n" * (64 * MIB) if name == "protocol.csv" else data)
    zbytes = bytearray(out.read_bytes())
    _declare(zbytes, "protocol.csv", len(genuine), zlib.crc32(genuine))
    out.write_bytes(bytes(zbytes))
    run = run_measured(["verify", str(out), "--public-key", str(package.centre_pem)])
    assert not run.timed_out and run.returncode == 1, run.stdout + run.stderr
    assert "FAIL protocol.csv: its data goes on past" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr


def test_folder_mode_does_not_follow_a_symlink_out_of_the_package(package: Package, tmp_path: Path) -> None:
    """The unpacked package's protocol.csv is a symlink to a file elsewhere (with the right bytes today): what
    was checked is not in the package, and can change after the check."""
    folder = tmp_path / "pkg"
    with zipfile.ZipFile(package.zip) as zf:
        zf.extractall(folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(folder / "protocol.csv", elsewhere / "protocol.csv")
    (folder / "protocol.csv").symlink_to(elsewhere / "protocol.csv")
    run = run_measured(["verify", str(folder), "--public-key", str(package.centre_pem)])
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL protocol.csv: a symlink to outside the package folder, not followed" in run.stdout, run.stdout


def test_a_manikin_export_the_size_of_a_disk_is_refused_unread(tmp_path: Path) -> None:
    """A 4 GiB file (sparse) in the manikin's folder: read whole before, now refused at 16 MiB."""
    big = tmp_path / "session.csv"
    with big.open("wb") as fh:
        fh.write(b"# osce-cpr-feedback/1\n")
        fh.truncate(4 * 1024 * MIB)
    run = run_measured(["cpr", "import", str(big), "--recording", str(tmp_path / "none")], memory_mb=1024)
    assert run.returncode == 2, run.stdout + run.stderr[-500:]
    assert f"{big}: larger than 16 MiB" in run.stderr and "Traceback" not in run.stderr


def test_a_checklist_of_half_a_million_nodes_stops_early(tmp_path: Path) -> None:
    """900 KB of `[0,0,0,...]`: PyYAML would build every node before the old count saw one (seconds of CPU and
    hundreds of MB); counted while composed, it stops at the limit."""
    flood = tmp_path / "flood.yaml"
    flood.write_text("[" + ",".join(["0"] * 450_000) + "]\n", encoding="utf-8")
    run = run_measured(["checklist", "validate", str(flood)], memory_mb=1024, timeout=120)
    assert run.max_rss_mb < 150 and run.cpu_s < 5, (run.max_rss_mb, run.cpu_s)
    assert run.returncode != 0 and "YAML nodes: not a checklist" in run.stdout + run.stderr, run.stdout + run.stderr

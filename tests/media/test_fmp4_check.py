"""The ingest check of fMP4 structure (media/fmp4_check.py) on a real recording made by `osce record`, on garbage,
cut and wrong-track bytes; and the fMP4-shaped test bytes of scripts/harness/fmp4_bytes.py against the same check."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from media import fmp4_check
from media.fmp4_check import Fmp4Error
from media.manifest import read_manifest
from scripts.harness.fmp4_bytes import MIN_MEDIA_SIZE, init_bytes, media_bytes, write_media

from .conftest import osce


def check(data: bytes, kind: str, init: bytes | None = None) -> None:
    fmp4_check.check(io.BytesIO(data), len(data), kind, io.BytesIO(init) if init is not None else None,
                     len(init or b""))


def init_ids(data: bytes) -> set[int]:
    return fmp4_check.init_track_ids(io.BytesIO(data), len(data))


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """{track: [init, media 1, media 2, ...]} of a real 4 s recording: two synthetic cameras and a microphone."""
    out = tmp_path_factory.mktemp("rec") / "rec"
    run = osce("record", "--video", "synthetic", "--video", "synthetic:seed=5", "--audio", "synthetic",
               "--seconds", "4", "--size", "320x180", "--out", str(out), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    tracks: dict[str, list[bytes]] = {}
    for frag in sorted(read_manifest(out).fragments, key=lambda f: (f.track, f.seq)):
        tracks.setdefault(frag.track, []).append((out / frag.file).read_bytes())
    assert sorted(tracks) == ["cam0", "cam1"] and all(len(parts) >= 3 for parts in tracks.values())
    return tracks


def test_a_real_recording_passes_and_its_inits_name_video_and_audio(recording: dict[str, list[bytes]]) -> None:
    for parts in recording.values():
        init, media = parts[0], parts[1:]
        check(init, "init")
        assert init_ids(init) == {1, 2}  # each camera's file carries the video and the room's sound
        for fragment in media:
            check(fragment, "media", init)
            check(fragment, "media")  # the init not stored yet: structure only


def test_real_bytes_cut_short_or_of_the_wrong_kind_are_refused(recording: dict[str, list[bytes]]) -> None:
    init, first = recording["cam0"][0], recording["cam0"][1]
    with pytest.raises(Fmp4Error, match="'mdat' at byte .* claims"):
        check(first[:-100], "media", init)
    with pytest.raises(Fmp4Error, match="claims|cut short"):
        check(init[: len(init) // 2], "init")
    with pytest.raises(Fmp4Error, match="needs 'ftyp' and 'moov'"):
        check(first, "init")
    with pytest.raises(Fmp4Error, match="needs a 'moof' box then an 'mdat'"):
        check(init, "media")
    with pytest.raises(Fmp4Error, match="needs a 'moof' box then an 'mdat'"):
        check(struct.pack(">I4s", 8, b"mdat") + first, "media")  # an empty mdat before the moof
    with pytest.raises(Fmp4Error, match=f"header is cut short at byte {len(first)}"):
        check(first + b"\0\0\0", "media")  # trailing bytes that are no box


def test_a_real_fragment_naming_a_track_its_init_lacks_is_refused(recording: dict[str, list[bytes]]) -> None:
    init, first = recording["cam1"][0], recording["cam1"][1]
    at = first.index(b"tfhd") + 8  # box type, then version + flags, then track_ID
    assert struct.unpack(">I", first[at:at + 4])[0] in {1, 2}
    other = first[:at] + struct.pack(">I", 7) + first[at + 4:]
    check(other, "media")  # well-formed on its own
    with pytest.raises(Fmp4Error, match=r"track id 7; its init has \[1, 2\]"):
        check(other, "media", init)


@pytest.mark.parametrize("data", [b"", os.urandom(4096), b"\x00garbage, not an fMP4 fragment " * 40,
                                  b"\x00\x00\x00\x04moof", b"\x00\x00\x00\x01mdat\x00\x00",
                                  b"\x00\x00\x00\x10mo\x00f" + bytes(8)],
                         ids=["empty", "random", "text", "box-smaller-than-header", "64-bit-size-cut", "bad-type"])
def test_garbage_is_refused_as_init_and_as_media(data: bytes) -> None:
    for kind in ("init", "media"):
        with pytest.raises(Fmp4Error):
            check(data, kind)


def test_an_init_without_tracks_is_refused() -> None:
    with pytest.raises(Fmp4Error, match="declares no track"):
        check(init_bytes()[:28] + struct.pack(">I4s", 8, b"moov"), "init")  # ftyp + an empty moov


# --- scripts/harness/fmp4_bytes.py ----------------------------------------------------------------------


def test_init_bytes_pass_the_check_with_their_track_ids(recording: dict[str, list[bytes]]) -> None:
    assert init_ids(init_bytes()) == {1}
    assert init_ids(init_bytes((1, 2, 40_000), seed=3)) == {1, 2, 40_000}
    assert init_bytes(seed=1) != init_bytes(seed=2) and init_bytes(seed=1) == init_bytes(seed=1)
    # The helper's tkhd has the real one's version 0 layout (92 bytes), as ffmpeg writes it.
    real = recording["cam0"][0]
    at = real.index(b"tkhd") - 4
    assert real[at + 8] == 0 and struct.unpack(">I", real[at:at + 4])[0] == 92
    mine = init_bytes()
    assert struct.unpack(">I", mine[mine.index(b"tkhd") - 4:][:4])[0] == 92
    with pytest.raises(ValueError):
        init_bytes(())


@pytest.mark.parametrize("size", [MIN_MEDIA_SIZE, 65, 1000, 300_000])
def test_media_bytes_have_the_exact_size_and_pass_against_their_init(size: int) -> None:
    data = media_bytes(size, track_id=2, seed=size)
    assert len(data) == size
    check(data, "media", init_bytes((1, 2)))
    with pytest.raises(Fmp4Error, match="track id 2"):
        check(data, "media", init_bytes((1,)))
    with pytest.raises(Fmp4Error):
        check(data[:-1], "media")
    sink = io.BytesIO()
    write_media(sink, size, track_id=2, seed=size, chunk=4096)
    assert sink.getvalue() == data


def test_media_bytes_are_deterministic_per_seed_and_refuse_too_small_sizes(tmp_path: Path) -> None:
    assert media_bytes(500, seed=1) == media_bytes(500, seed=1) != media_bytes(500, seed=2)
    with pytest.raises(ValueError, match="at least"):
        media_bytes(MIN_MEDIA_SIZE - 1)
    path = tmp_path / "big.m4s"
    with open(path, "wb") as fh:
        write_media(fh, 5 * 1024 * 1024 + 3, seed=9)
    with open(path, "rb") as fh:
        fmp4_check.check_media(fh, path.stat().st_size, {1})

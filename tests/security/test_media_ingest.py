"""Malformed media through both ingest paths (PUT per fragment, and tus): a wrong hash, a cut upload, garbage or
a truncated fragment trying to replace a good one, a fragment claiming the wrong track. What is held: nothing
is stored under a hash it does not have, nothing stored is replaced, the good recording still reads back byte
for byte, the server lives, and the box structure is checked before anything is stored (media/fmp4_check.py):
garbage, a truncated fragment or a fragment naming a track its init lacks, each sent with its own correct hash,
is refused."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import time
import uuid

import pytest

from .conftest import Reply, Stand, tus_metadata

CATEGORY = "malformed media"

TUS = {"Tus-Resumable": "1.0.0"}


def _key() -> str:
    return f"rec-mal-{uuid.uuid4().hex[:10]}"


def ingest(stand: Stand, path: str, key: str, seq: int, data: bytes, sha: str | None = None,
           track: str = "cam0") -> Reply:
    """Send one fragment by PUT or by tus (create + one PATCH); the final answer."""
    sha = sha or hashlib.sha256(data).hexdigest()
    if path == "put":
        return stand.put_fragment("S1", key, track, seq, data, sha=sha)
    meta = tus_metadata(sha256=sha, recording=key, track=track, seq=str(seq), kind="init" if seq == 0 else "media")
    made = stand.request("POST", "/api/tus", {**stand.station("S1"), **TUS, "Upload-Length": str(len(data)),
                                              "Upload-Metadata": meta})
    if made.status != 201 or made.headers.get("Upload-Offset") == str(len(data)):
        return made  # refused, or complete at creation (these bytes are stored already: only the row is new)
    return stand.request("PATCH", made.headers["Location"], {**stand.station("S1"), **TUS, "Upload-Offset": "0",
                                                             "Content-Type": "application/offset+octet-stream"},
                         data)


def stored(stand: Stand, sha: str) -> bool:
    return (stand.media_dir / sha[:2] / sha[2:4] / sha).exists()


def fragment_count(stand: Stand, key: str) -> int:
    reply = stand.request("GET", f"/api/recordings/{key}", stand.user("observer"))
    return len(reply.json()["fragments"]) if reply.status == 200 else 0


def s1_reads_back(stand: Stand) -> None:
    rec = stand.recordings["S1"]
    for sha, part in zip(rec["hashes"], rec["parts"], strict=True):
        got = stand.request("GET", f"/api/media/{sha}", stand.user("observer"))
        assert got.status == 200 and got.body == part


def with_track_id(fragment: bytes, track_id: int) -> bytes:
    """The same moof+mdat with its tfhd naming another track."""
    at = fragment.index(b"tfhd") + 8  # box type, then version+flags (4), then track_ID (4)
    return fragment[:at] + struct.pack(">I", track_id) + fragment[at + 4:]


PATHS = ["put", "tus"]


@pytest.mark.parametrize("path", PATHS)
def test_a_wrong_hash_stores_nothing(stand: Stand, fmp4: list[bytes], path: str) -> None:
    key, data = _key(), fmp4[1]
    wrong = hashlib.sha256(data + b"!").hexdigest()
    reply = ingest(stand, path, key, 1, data, sha=wrong)
    assert reply.status == 422, (reply.status, reply.body)
    assert not stored(stand, wrong) and fragment_count(stand, key) == 0
    s1_reads_back(stand)


def test_a_tus_chunk_with_a_wrong_checksum_is_not_appended(stand: Stand, fmp4: list[bytes]) -> None:
    data = fmp4[2]
    meta = tus_metadata(sha256=hashlib.sha256(data).hexdigest(), recording=_key(), track="cam0", seq="2",
                        kind="media")
    made = stand.request("POST", "/api/tus", {**stand.station("S1"), **TUS, "Upload-Length": str(len(data)),
                                              "Upload-Metadata": meta})
    url = made.headers["Location"]
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    reply = stand.request("PATCH", url, {**stand.station("S1"), **TUS, "Upload-Offset": "0",
                                         "Content-Type": "application/offset+octet-stream",
                                         "Upload-Checksum": f"sha256 {bad}"}, data[:100])
    assert reply.status == 460
    assert stand.request("HEAD", url, {**stand.station("S1"), **TUS}).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("path", PATHS)
def test_garbage_cannot_replace_a_stored_fragment(stand: Stand, path: str) -> None:
    rec = stand.recordings["S1"]
    garbage = uuid.uuid4().bytes * 64
    for seq in (0, 1):
        reply = ingest(stand, path, rec["key"], seq, garbage)
        assert reply.status == 409, (reply.status, reply.body)
    assert not stored(stand, hashlib.sha256(garbage).hexdigest())
    s1_reads_back(stand)


@pytest.mark.parametrize("path", PATHS)
def test_a_truncated_fragment_cannot_replace_the_whole_one(stand: Stand, path: str) -> None:
    rec = stand.recordings["S1"]
    cut = rec["parts"][1][: len(rec["parts"][1]) // 2]
    reply = ingest(stand, path, rec["key"], 1, cut)
    assert reply.status == 409, (reply.status, reply.body)
    s1_reads_back(stand)


def test_a_put_cut_half_way_stores_nothing(stand: Stand, fmp4: list[bytes]) -> None:
    key, data = _key(), fmp4[1]
    sha = hashlib.sha256(data).hexdigest()
    with socket.create_connection((stand.host, stand.port), timeout=10) as sock:
        sock.sendall(f"PUT /api/recordings/{key}/tracks/cam0/fragments/1 HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {stand.tokens['S1']}\r\nX-Content-SHA256: {sha}\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data[: len(data) // 2])
        sock.shutdown(socket.SHUT_WR)  # the station lost its link half-way
        sock.recv(4096)
    assert fragment_count(stand, key) == 0
    assert stand.alive()


def test_a_tus_upload_cut_half_way_is_not_a_fragment_until_completed(stand: Stand, fmp4: list[bytes]) -> None:
    key, data = _key(), fmp4[1]
    sha = hashlib.sha256(data).hexdigest()
    meta = tus_metadata(sha256=sha, recording=key, track="cam0", seq="1", kind="media")
    st = {**stand.station("S1"), **TUS}
    url = stand.request("POST", "/api/tus", {**st, "Upload-Length": str(len(data)),
                                             "Upload-Metadata": meta}).headers["Location"]
    half = len(data) // 2
    with socket.create_connection((stand.host, stand.port), timeout=10) as sock:
        sock.sendall(f"PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stand.tokens['S1']}\r\n"
                     f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:half])
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)
    for _ in range(50):  # the server may still be closing the cut PATCH: 409 "retry", as a tus client would
        head = stand.request("HEAD", url, st)
        if head.status != 409:
            break
        time.sleep(0.1)
    assert head.status == 200, (head.status, dict(head.headers))
    offset = int(head.headers["Upload-Offset"])
    assert offset <= half and fragment_count(stand, key) == 0 and not stored(stand, sha)
    done = stand.request("PATCH", url, {**st, "Upload-Offset": str(offset),
                                        "Content-Type": "application/offset+octet-stream"}, data[offset:])
    assert done.status == 204 and done.headers["X-Stored-SHA256"] == sha
    assert stand.request("GET", f"/api/media/{sha}", stand.user("observer")).body == data


def test_tus_kind_must_match_seq(stand: Stand, fmp4: list[bytes]) -> None:
    for kind, seq in (("init", "1"), ("media", "0")):
        meta = tus_metadata(sha256=hashlib.sha256(fmp4[0]).hexdigest(), recording=_key(), track="cam0", seq=seq,
                            kind=kind)
        reply = stand.request("POST", "/api/tus", {**stand.station("S1"), **TUS, "Upload-Length": str(len(fmp4[0])),
                                                   "Upload-Metadata": meta})
        assert reply.status == 400, (kind, seq, reply.status)


# --- the content is checked at ingest ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_garbage_bytes_are_refused_at_ingest(stand: Stand, path: str) -> None:
    key = _key()
    reply = ingest(stand, path, key, 1, b"\x00garbage, not an fMP4 fragment " * 40)
    assert reply.status in (400, 422) and fragment_count(stand, key) == 0


@pytest.mark.parametrize("path", PATHS)
def test_a_truncated_fmp4_fragment_is_refused_at_ingest(stand: Stand, fmp4: list[bytes], path: str) -> None:
    key = _key()
    assert ingest(stand, path, key, 0, fmp4[0]).status in (201, 204)
    reply = ingest(stand, path, key, 1, fmp4[1][: len(fmp4[1]) - 100])
    assert reply.status in (400, 422) and fragment_count(stand, key) == 1


@pytest.mark.parametrize("path", PATHS)
def test_a_fragment_claiming_another_track_is_refused(stand: Stand, fmp4: list[bytes], path: str) -> None:
    key = _key()
    assert ingest(stand, path, key, 0, fmp4[0]).status in (201, 204)
    reply = ingest(stand, path, key, 1, with_track_id(fmp4[1], 2))
    assert reply.status in (400, 422) and fragment_count(stand, key) == 1

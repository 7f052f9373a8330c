"""Path traversal: ../ and its encodings (%2e%2e, %2f, %5c, double-encoded, overlong UTF-8), backslashes,
absolute paths and NUL in every variable part of every route, sent raw (no client-side normalisation) by a
principal allowed to use the route; dot segments in whole URLs, the static asset routes, and file names in tus
Upload-Metadata. Nothing may answer 2xx with something it should not, 5xx, leak a file, or write one outside
the media folder."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import pytest

from scripts.harness.fmp4_bytes import media_bytes
from tests.server.test_route_matrix import ANON, EXPECTED, PLACEHOLDERS, STATION

from .conftest import Stand, tus_metadata

CATEGORY = "path traversal"

CANARY = f"osce-traversal-{uuid.uuid4().hex[:12]}"
PAYLOADS = {
    "dotdot": "..",
    "encoded slash": "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "encoded dots": "%2e%2e",
    "encoded dots and slash": "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "backslashes": "..%5c..%5c..%5cwindows%5cwin.ini",
    "double encoded": "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "overlong utf-8": "%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
    "absolute": "%2fetc%2fpasswd",
    "drive letter": "C:%5cWindows%5csystem.ini",
    "nul": "a%00b",
    "raw nul byte": "a\x00b",
    "nul then extension": "live.js%00.png",
    "write canary": f"..%2f..%2f..%2f..%2f..%2ftmp%2f{CANARY}",
}
SECRETS = (b"root:x:0:0", b"[fonts]", b"from __future__", b"import ", b"BEGIN PRIVATE KEY", b"[boot loader]")
PARAMS = sorted({name for (_, p) in EXPECTED for name in re.findall(r"\{(\w+)\}", p)})
REAL = {**PLACEHOLDERS, "key": "rec-s1", "attempt_id": "att-s1", "code": "S1", "station": "S1", "camera": "cam0",
        "track": "cam0", "sha256": None}


def _who(allowed: frozenset) -> str | None:
    if ANON in allowed:
        return None
    if STATION in allowed:
        return "S1"
    return sorted(a for a in allowed if a)[0]


def _headers(stand: Stand, who: str | None) -> dict[str, str]:
    if who is None:
        return {}
    return stand.station(who) if who.startswith("S") else stand.user(who)


def _check(reply_status: int, body: bytes, what: str) -> None:
    assert reply_status < 500, (what, reply_status, body[:200])
    for secret in SECRETS:
        assert secret not in body, (what, secret)


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("param", PARAMS)
def test_traversal_in_every_path_parameter(stand: Stand, param: str, payload: str) -> None:
    raw = PAYLOADS[payload]
    values = {**REAL, "sha256": stand.recordings["S1"]["hashes"][1]}
    tried = 0
    for (method, path), allowed in sorted(EXPECTED.items()):
        if f"{{{param}}}" not in path:
            continue
        target = re.sub(r"\{(\w+)\}", lambda m: raw if m.group(1) == param else values[m.group(1)], path)
        who = _who(allowed)
        headers = {**_headers(stand, who), "Accept": "application/json", "Content-Type": "application/json",
                   "Tus-Resumable": "1.0.0"}
        if method == "PUT" and "/fragments/" in target:
            body: bytes | None = media_bytes(64)  # a well-formed fragment: only the name may be refused
            headers["X-Content-SHA256"] = hashlib.sha256(body).hexdigest()
        else:
            body = b"{}" if method in ("POST", "PUT", "PATCH", "DELETE") else None
        reply = stand.request(method, target, headers, body)
        _check(reply.status, reply.body, f"{method} {target}")
        # A well-formed identifier is refused; nothing may answer 2xx for a traversal string.
        assert not 200 <= reply.status < 300, (method, target, reply.status, reply.body[:200])
        tried += 1
    assert tried > 0
    assert not (Path("/tmp") / CANARY).exists()
    assert not any(CANARY in p.name for p in stand.dir.rglob("*"))


RAW_URLS = [
    "/live/assets/../../../../../../etc/passwd",
    "/live/assets/..%2f..%2f..%2fapp.py",
    "/live/assets/%2e%2e/%2e%2e/live.py",
    "/live/assets/..\\..\\live.py",
    "/live/assets/%2e%2e%5c%2e%2e%5clive.py",
    "/live/assets/live.js/../../../../review_server/app.py",
    "/exports/assets/..%2f..%2f..%2froutes%2fexports.py",
    "/exports/assets/%2e%2e%2f%2e%2e%2fapp.py",
    "/exports/assets/export.js%00.html",
    "//etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/api/media/../../../../etc/passwd",
    "/api/recordings/rec-s1/../../../etc/passwd",
    "/review/..%2f..%2f..%2fetc%2fpasswd",
    "/./././etc/passwd",
    "/live/assets/" + "..%2f" * 40 + "etc%2fpasswd",
]


@pytest.mark.parametrize("url", RAW_URLS)
def test_dot_segments_in_whole_urls_and_the_static_asset_routes(stand: Stand, url: str) -> None:
    for role in ("observer", "archivist", None):
        headers = {"Accept": "application/json", **(_headers(stand, role) if role else {})}
        reply = stand.request("GET", url, headers)
        _check(reply.status, reply.body, url)
        assert reply.status in (400, 401, 403, 404), (url, role, reply.status, reply.body[:200])


def test_the_asset_routes_still_serve_their_own_files(stand: Stand) -> None:
    """The control for the above: the names on the list are served, so the refusals are the guard's."""
    assert stand.request("GET", "/live/assets/live.js", stand.user("observer")).status == 200
    assert stand.request("GET", "/exports/assets/export.js", stand.user("archivist")).status == 200


FILENAMES = {
    "dotdot": f"../../../../../../tmp/{CANARY}-tus",
    "absolute": f"/tmp/{CANARY}-tus",
    "backslashes": f"..\\..\\..\\tmp\\{CANARY}-tus",
    "nul": f"cam0.m4s\x00/../../{CANARY}-tus",
    "newline": f"cam0.m4s\r\nX-Injected: 1\r\n{CANARY}",
    "long": "a" * 5000,
    "dots only": "..",
}


@pytest.mark.parametrize("kind", sorted(FILENAMES))
def test_tus_metadata_filename_never_becomes_a_path(stand: Stand, kind: str) -> None:
    data = media_bytes(400, seed=uuid.uuid4().int)  # new bytes each run: the stand outlives one test
    sha = hashlib.sha256(data).hexdigest()
    meta = tus_metadata(sha256=sha, recording=f"rec-fn-{uuid.uuid4().hex[:8]}", track="cam0", seq="1",
                        kind="media", filename=FILENAMES[kind])
    tus = {**stand.station("S1"), "Tus-Resumable": "1.0.0"}
    made = stand.request("POST", "/api/tus", {**tus, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    _check(made.status, made.body, kind)
    if made.status == 201:
        done = stand.request("PATCH", made.headers["Location"], {**tus, "Upload-Offset": "0",
                                                                 "Content-Type": "application/offset+octet-stream"},
                             data)
        assert done.status == 204 and done.headers["X-Stored-SHA256"] == sha
        assert stand.media_dir / sha[:2] / sha[2:4] / sha in stand.media_files()  # stored by its hash only
        assert b"X-Injected" not in str(done.headers).encode()
    else:
        assert made.status == 400, (made.status, made.body)
    assert not any(CANARY in p.name for p in Path("/tmp").glob(f"{CANARY}*"))
    assert not any(CANARY in p.name or p.name == FILENAMES[kind] for p in stand.dir.rglob("*"))


@pytest.mark.parametrize("field", ["recording", "track", "attempt_id"])
@pytest.mark.parametrize("value", ["../../etc/passwd", "..", "/abs", "a\\b", "a\x00b", "%2e%2e", "."])
def test_tus_metadata_identifiers_with_paths_are_400(stand: Stand, field: str, value: str) -> None:
    data = b"identifier traversal" * 5
    meta = {"sha256": hashlib.sha256(data).hexdigest(), "recording": "rec-ok", "track": "cam0", "seq": "1",
            "kind": "media", field: value}
    reply = stand.request("POST", "/api/tus", {**stand.station("S1"), "Tus-Resumable": "1.0.0",
                                               "Upload-Length": str(len(data)),
                                               "Upload-Metadata": tus_metadata(**meta)})
    assert reply.status == 400 and reply.json()["where"] == "Upload-Metadata", (reply.status, reply.body)

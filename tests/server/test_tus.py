"""tus 1.0 ingest (review_server/tus.py) against a real server on a real port: protocol, refusals, tuspy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from yarl import URL

from review_server import auth
from review_server.app import create_app
from review_server.config import ServerConfig
from review_server.migrations import upgrade
from review_server.models import Fragment, Recording, Station
from review_server.storage import LocalStorage
from review_server.tus import STORED_HEADER, TUS_DIR, expire_uploads
from review_server.web import CONFIG, DB, STORAGE
from scripts.harness.fmp4_bytes import init_bytes, media_bytes

CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}
TUS = {"Tus-Resumable": "1.0.0"}


@dataclass
class Env:
    url: str
    token: str
    other_token: str
    app: aiohttp.web.Application
    http: aiohttp.ClientSession

    def h(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {**TUS, "Authorization": f"Bearer {token or self.token}", **extra}


def add_station(app: aiohttp.web.Application, code: str) -> str:
    def make(s):  # type: ignore[no-untyped-def]
        st = Station(code=code, name=code)
        s.add(st)
        s.flush()
        return auth.issue_station_token(s, st)[0]

    return app[DB].run(make)


def server_config(tmp_path: Path) -> ServerConfig:
    url = f"sqlite:///{tmp_path / 'osce.db'}"
    upgrade(url)
    return ServerConfig(
        database_url=url,
        media_dir=tmp_path / "media",
        max_fragment_bytes=64 * 1024 * 1024,
        max_json_bytes=64 * 1024,
        **CHEAP_ARGON2,  # type: ignore[arg-type]
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    config = server_config(tmp_path)
    app = create_app(config, storage=LocalStorage(config.media_dir))
    token, other = add_station(app, "S1"), add_station(app, "S2")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Env(str(server.make_url("")).rstrip("/"), token, other, app, http)
    await server.close()


def metadata(data: bytes, *, sha: str | None = None, track: str = "cam0", seq: int = 1, rec: str = "rec1") -> str:
    meta = {
        "sha256": sha or hashlib.sha256(data).hexdigest(),
        "recording": rec,
        "track": track,
        "seq": str(seq),
        "kind": "init" if seq == 0 else "media",
        "filename": f"{track}/{seq:06d}.m4s",
    }
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())


async def create(env: Env, data: bytes, **kw: object) -> aiohttp.ClientResponse:
    hdrs = env.h(**{"Upload-Length": str(len(data)), "Upload-Metadata": metadata(data, **kw)})  # type: ignore[arg-type]
    return await env.http.post(env.url + "/api/tus", headers=hdrs)


async def patch(env: Env, location: str, offset: int, chunk: bytes, checksum: bytes | None = None):  # type: ignore[no-untyped-def]
    hdrs = env.h(**{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
    digest = hashlib.sha256(chunk if checksum is None else checksum).digest()
    hdrs["Upload-Checksum"] = "sha256 " + base64.b64encode(digest).decode()
    return await env.http.patch(env.url + location, data=chunk, headers=hdrs)


async def head(env: Env, location: str, token: str | None = None) -> aiohttp.ClientResponse:
    return await env.http.head(env.url + location, headers=env.h(token))


def fragment_rows(env: Env) -> list[tuple[str, str, int, str]]:
    def q(s):  # type: ignore[no-untyped-def]
        rows = s.execute(select(Recording.key, Fragment.track, Fragment.seq, Fragment.sha256).join(Fragment))
        return sorted(tuple(r) for r in rows)

    return env.app[DB].run(q)


async def test_options_advertises_the_protocol(env: Env) -> None:
    r = await env.http.options(env.url + "/api/tus", headers=env.h())
    assert r.status == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "checksum", "termination"}
    assert r.headers["Tus-Checksum-Algorithm"] == "sha256"
    assert int(r.headers["Tus-Max-Size"]) == 64 * 1024 * 1024


async def test_create_upload_in_chunks_store_and_record(env: Env) -> None:
    data = media_bytes(300_000, seed=1)
    sha = hashlib.sha256(data).hexdigest()
    r = await create(env, data)
    assert r.status == 201, await r.text()
    loc = r.headers["Location"]
    assert loc.startswith("/api/tus/") and r.headers["Upload-Offset"] == "0"
    offset = 0
    while offset < len(data):
        chunk = data[offset : offset + 100_000]
        r = await patch(env, loc, offset, chunk)
        assert r.status == 204, await r.text()
        offset = int(r.headers["Upload-Offset"])
    assert r.headers[STORED_HEADER] == sha
    h = await head(env, loc)
    assert (h.status, h.headers["Upload-Offset"], h.headers["Upload-Length"]) == (200, "300000", "300000")
    assert h.headers[STORED_HEADER] == sha
    assert env.app[STORAGE].get(sha) == data
    assert fragment_rows(env) == [("rec1", "cam0", 1, sha)]
    # A PATCH at a wrong offset is refused (409), a finished upload takes no more bytes.
    r = await patch(env, loc, 0, data[:10])
    assert r.status == 409
    r = await patch(env, loc, len(data), b"")
    assert (r.status, r.headers[STORED_HEADER]) == (204, sha)
    assert list(env.app[TUS_DIR].glob("*.part")) == []


async def test_known_hash_is_already_complete_at_creation(env: Env) -> None:
    data = init_bytes(seed=1)
    sha = hashlib.sha256(data).hexdigest()
    r = await create(env, data, track="cam0", seq=0)
    await patch(env, r.headers["Location"], 0, data)
    r = await create(env, data, track="cam1", seq=0)  # the same init file on a second camera
    assert r.status == 201
    assert r.headers["Upload-Offset"] == str(len(data)) and r.headers[STORED_HEADER] == sha
    r = await create(env, data, track="cam1", seq=0)  # and a re-run: still complete, still one row each
    assert r.headers[STORED_HEADER] == sha
    assert fragment_rows(env) == [("rec1", "cam0", 0, sha), ("rec1", "cam1", 0, sha)]
    # Bytes held already are still checked for the place they are offered for: an init is no media fragment.
    r = await create(env, data, track="cam2", seq=1)
    assert r.status == 422 and "not an fMP4 media fragment" in (await r.json())["error"]
    assert ("rec1", "cam2", 1, sha) not in fragment_rows(env)
    # The same place with other bytes conflicts before any byte is sent.
    other = init_bytes(seed=2)
    r = await create(env, other, track="cam1", seq=0)
    assert r.status == 409


async def test_interrupted_patch_resumes_from_the_offset(env: Env) -> None:
    data = media_bytes(200_000, seed=2)
    r = await create(env, data)
    loc = r.headers["Location"]
    host, port = URL(env.url).host, URL(env.url).port
    # A PATCH without a checksum announcing 200 000 bytes, of which 120 000 arrive before the cut.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"PATCH {loc} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {env.token}\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:120_000]
    )
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.transport.abort()
    await asyncio.sleep(0.3)
    h = await head(env, loc)
    offset = int(h.headers["Upload-Offset"])
    assert 0 < offset <= 120_000
    # A cut inside a checksummed PATCH appends nothing.
    reader, writer = await asyncio.open_connection(host, port)
    digest = base64.b64encode(hashlib.sha256(data[offset:]).digest()).decode()
    writer.write(
        (
            f"PATCH {loc} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {env.token}\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Upload-Checksum: sha256 {digest}\r\nContent-Length: {len(data) - offset}\r\n\r\n"
        ).encode()
        + data[offset : offset + 50_000]
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    await asyncio.sleep(0.3)
    assert (await head(env, loc)).headers["Upload-Offset"] == str(offset)
    r = await patch(env, loc, offset, data[offset:])
    assert r.status == 204
    assert env.app[STORAGE].get(hashlib.sha256(data).hexdigest()) == data


async def test_checksum_mismatch_is_460_and_appends_nothing(env: Env) -> None:
    data = media_bytes(50_000, seed=3)
    loc = (await create(env, data)).headers["Location"]
    assert (await patch(env, loc, 0, data[:20_000])).status == 204
    r = await patch(env, loc, 20_000, data[20_000:40_000], checksum=b"something else")
    assert r.status == 460
    assert (await head(env, loc)).headers["Upload-Offset"] == "20000"
    bad = await env.http.patch(
        env.url + loc,
        data=data[20_000:],
        headers=env.h(
            **{"Upload-Offset": "20000", "Content-Type": "application/offset+octet-stream", "Upload-Checksum": "md5 x"}
        ),
    )
    assert bad.status == 400
    assert (await patch(env, loc, 20_000, data[20_000:])).status == 204


async def test_wrong_final_hash_is_refused_and_nothing_stored(env: Env) -> None:
    data = media_bytes(40_000, seed=4)
    claimed = hashlib.sha256(b"not these bytes").hexdigest()
    loc = (await create(env, data, sha=claimed)).headers["Location"]
    assert (await patch(env, loc, 0, data[:30_000])).status == 204
    r = await patch(env, loc, 30_000, data[30_000:])
    assert r.status == 422
    assert "SHA-256" in (await r.json())["error"]
    assert not env.app[STORAGE].exists(claimed)
    assert not env.app[STORAGE].exists(hashlib.sha256(data).hexdigest())
    assert fragment_rows(env) == []
    assert (await head(env, loc)).status == 404  # discarded: the client starts over
    assert list(env.app[TUS_DIR].iterdir()) == []


async def test_termination(env: Env) -> None:
    data = media_bytes(30_000, seed=5)
    loc = (await create(env, data)).headers["Location"]
    await patch(env, loc, 0, data[:10_000])
    assert (await env.http.delete(env.url + loc, headers=env.h(env.other_token))).status == 404  # not theirs
    r = await env.http.delete(env.url + loc, headers=env.h())
    assert r.status == 204
    assert (await head(env, loc)).status == 404
    assert (await patch(env, loc, 10_000, data[10_000:])).status == 404
    assert list(env.app[TUS_DIR].iterdir()) == []
    assert fragment_rows(env) == []


async def test_unknown_and_foreign_ids_are_404(env: Env) -> None:
    assert (await head(env, "/api/tus/" + "0" * 32)).status == 404
    data = media_bytes(1000, seed=6)
    loc = (await create(env, data)).headers["Location"]
    assert (await head(env, loc, env.other_token)).status == 404  # another station's upload
    r = await env.http.patch(
        env.url + loc,
        data=data,
        headers=env.h(env.other_token, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}),
    )
    assert r.status == 404
    assert (await head(env, loc)).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize(
    "bad_id",
    ["..%2F..%2Fosce.db", "..%2Fmedia", "%2e%2e", "A" * 32, "0" * 31 + "g", "0" * 33, "x.json", "%00" + "0" * 31],
)
async def test_traversal_looking_ids_are_refused(env: Env, bad_id: str) -> None:
    before = sorted(p.name for p in env.app[TUS_DIR].parent.parent.iterdir())
    url = URL(env.url + "/api/tus/" + bad_id, encoded=True)
    for method in ("HEAD", "PATCH", "DELETE"):
        hdrs = env.h(**{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        r = await env.http.request(method, url, data=b"x", headers=hdrs)
        assert r.status in (400, 404), (method, bad_id, r.status)
    assert sorted(p.name for p in env.app[TUS_DIR].parent.parent.iterdir()) == before
    assert (env.app[TUS_DIR].parent.parent / "osce.db").is_file()


async def test_unauthenticated_is_401(env: Env) -> None:
    data = media_bytes(100, seed=7)
    loc = (await create(env, data)).headers["Location"]
    for token_header in ({}, {"Authorization": "Bearer osce-st-not-a-token"}):
        hdrs = {**TUS, **token_header, "Upload-Length": "100", "Upload-Metadata": metadata(data)}
        assert (await env.http.post(env.url + "/api/tus", headers=hdrs)).status == 401
        assert (await env.http.options(env.url + "/api/tus", headers=hdrs)).status == 401
        assert (await env.http.head(env.url + loc, headers=hdrs)).status == 401
        hdrs |= {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
        assert (await env.http.patch(env.url + loc, data=data, headers=hdrs)).status == 401
        assert (await env.http.delete(env.url + loc, headers=hdrs)).status == 401
    assert (await head(env, loc)).headers["Upload-Offset"] == "0"


async def test_creation_refusals(env: Env) -> None:
    data = media_bytes(100, seed=8)
    ok = {"Upload-Length": "100", "Upload-Metadata": metadata(data)}
    assert (await env.http.post(env.url + "/api/tus", headers={**env.h(), **ok, "Tus-Resumable": "0.2"})).status == 412
    assert (await env.http.post(env.url + "/api/tus", headers=env.h(**{**ok, "Upload-Length": "x"}))).status == 400
    too_big = str(64 * 1024 * 1024 + 1)
    assert (await env.http.post(env.url + "/api/tus", headers=env.h(**{**ok, "Upload-Length": too_big}))).status == 413
    no_sha = metadata(data).split(",", 1)[1]
    assert (await env.http.post(env.url + "/api/tus", headers=env.h(**{**ok, "Upload-Metadata": no_sha}))).status == 400
    assert list(env.app[TUS_DIR].iterdir()) == []


async def test_tuspy_interoperates(env: Env, tmp_path: Path) -> None:
    from tusclient.client import TusClient
    from tusclient.uploader import Uploader

    class Sha256Uploader(Uploader):
        CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)

    data = media_bytes(700_000, seed=9)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / "000007.m4s"
    path.write_bytes(data)
    client = TusClient(env.url + "/api/tus", headers={"Authorization": f"Bearer {env.token}"})
    meta = {"sha256": sha, "recording": "rec9", "track": "cam0", "seq": "7", "kind": "media", "filename": path.name}
    uploader = Sha256Uploader(
        file_path=str(path), client=client, chunk_size=256 * 1024, metadata=meta, upload_checksum=True
    )
    await asyncio.to_thread(uploader.upload)
    assert uploader.offset == len(data)
    assert env.app[STORAGE].get(sha) == data
    assert fragment_rows(env) == [("rec9", "cam0", 7, sha)]
    count = env.app[DB].run(lambda s: s.scalar(select(func.count()).select_from(Fragment)))
    assert count == 1


async def test_state_survives_a_new_server_and_head_finishes_a_complete_upload(env: Env, tmp_path: Path) -> None:
    data = media_bytes(90_000, seed=10)
    sha = hashlib.sha256(data).hexdigest()
    loc = (await create(env, data)).headers["Location"]
    assert (await patch(env, loc, 0, data[:40_000])).status == 204
    # A second server process on the same folders (as after a restart) sees the same offset.
    config = env.app[CONFIG]
    app2 = create_app(config, storage=LocalStorage(config.media_dir))
    server2 = TestServer(app2, host="127.0.0.1")
    await server2.start_server()
    try:
        env2 = Env(str(server2.make_url("")).rstrip("/"), env.token, env.other_token, app2, env.http)
        assert (await head(env2, loc)).headers["Upload-Offset"] == "40000"
        # The last bytes reached the disk but the server died before storing them: HEAD completes the job.
        with open(app2[TUS_DIR] / (loc.rsplit("/", 1)[1] + ".part"), "ab") as fh:
            fh.write(data[40_000:])
        h = await head(env2, loc)
        assert (h.status, h.headers["Upload-Offset"], h.headers[STORED_HEADER]) == (200, "90000", sha)
        assert app2[STORAGE].get(sha) == data
        assert fragment_rows(env2) == [("rec1", "cam0", 1, sha)]
    finally:
        await server2.close()


async def test_after_a_restart_the_whole_file_is_hashed_again(env: Env) -> None:
    """The running hash lives in memory only: a new server process hashes the part file at the end, so bytes
    damaged on disk meanwhile (or left unverified by a crash) are refused (422), never stored."""
    data = media_bytes(60_000, seed=11)
    loc = (await create(env, data)).headers["Location"]
    assert (await patch(env, loc, 0, data[:30_000])).status == 204
    part = env.app[TUS_DIR] / (loc.rsplit("/", 1)[1] + ".part")
    with open(part, "r+b") as fh:  # one byte damaged while the server was down
        fh.seek(100)
        fh.write(bytes([data[100] ^ 0xFF]))
    config = env.app[CONFIG]
    app2 = create_app(config, storage=LocalStorage(config.media_dir))
    server2 = TestServer(app2, host="127.0.0.1")
    await server2.start_server()
    try:
        env2 = Env(str(server2.make_url("")).rstrip("/"), env.token, env.other_token, app2, env.http)
        r = await patch(env2, loc, 30_000, data[30_000:])
        assert r.status == 422 and "SHA-256" in (await r.json())["error"]  # the damaged byte is in the mdat
        assert not app2[STORAGE].exists(hashlib.sha256(data).hexdigest())
        assert fragment_rows(env2) == []
    finally:
        await server2.close()


async def test_old_uploads_expire_at_startup(env: Env) -> None:
    data = media_bytes(1000, seed=12)
    old = (await create(env, data)).headers["Location"]
    await patch(env, old, 0, data[:500])
    fresh = (await create(env, data, seq=2)).headers["Location"]
    folder = env.app[TUS_DIR]
    assert len(expire_uploads(folder, 3600, now=time.time() + 1800)) == 0
    old_id = old.rsplit("/", 1)[1]
    info = json.loads((folder / f"{old_id}.json").read_text())
    info["created"] -= 7200
    (folder / f"{old_id}.json").write_text(json.dumps(info))
    assert len(expire_uploads(folder, 3600)) == 1
    assert sorted(p.name for p in folder.iterdir()) == [fresh.rsplit("/", 1)[1] + ".json"]
    assert (await head(env, old)).status == 404
    assert (await head(env, fresh)).status == 200


async def test_probing_upload_ids_leaves_nothing_in_memory(env: Env) -> None:
    """Issue 16, case 11: the lock table grew by one entry for every upload id anyone asked about."""
    import secrets

    from review_server.tus import TUS_HASHES, TUS_LOCKS

    for _ in range(300):
        loc = f"/api/tus/{secrets.token_hex(16)}"
        assert (await head(env, loc)).status == 404
        assert (await patch(env, loc, 0, b"x")).status == 404
    data = media_bytes(20_000, seed=13)
    loc = (await create(env, data)).headers["Location"]
    assert (await patch(env, loc, 0, data)).status == 204  # stored: nothing of it stays in memory either
    assert env.app[TUS_LOCKS] == {} and env.app[TUS_HASHES] == {}

"""Unbounded state keyed by client input: whatever a client sends or names, the server keeps a bounded amount
of it, and forgets what is idle while it runs.

Live relay (issue 16, case 9): 200 x 1 MiB non-key chunks published after a key frame grew the server from 122
to 524 MiB; channels were made for any camera name (by publishers and by viewers) and never removed. The
publisher here is a real WebSocket client speaking the station's wire format (media/live.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media.live import CHUNK, HEADER, INIT, KEY

from .conftest import Stand
from .servers import own_server

CATEGORY = "unbounded state"
MIB = 1024 * 1024


def _rss_mib(stand: Stand) -> float:
    for line in Path(f"/proc/{stand.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _message(kind: bytes, t: float, payload: bytes) -> bytes:
    return HEADER.pack(kind, t) + payload


async def _publish(stand: Stand, station: str, token: str, camera: str, messages: list[bytes | str],
                   hold_s: float = 0.0) -> int | None:
    """Open the publish socket and send; None if it opened, else the HTTP status that refused it."""
    url = f"ws://{stand.host}:{stand.port}/api/live/{station}/{camera}/publish"
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, max_msg_size=0) as ws:
                for m in messages:
                    await (ws.send_str(m) if isinstance(m, str) else ws.send_bytes(m))
                await asyncio.sleep(hold_s)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
    return None


def _streams(stand: Stand, role: str = "observer") -> dict[str, Any]:
    reply = stand.request("GET", "/api/live/streams", stand.user(role))
    assert reply.status == 200
    return {s["station"]: s for s in reply.json()["stations"]}


def test_non_key_chunks_after_a_key_frame_do_not_grow_the_server(stand: Stand, new_station: Any,
                                                                 fmp4: list[bytes]) -> None:
    code, token, _ = new_station()
    before = _rss_mib(stand)
    junk = bytes(MIB)
    messages: list[bytes | str] = [_message(INIT, 0.0, fmp4[0]), _message(KEY, 0.0, fmp4[1])]
    messages += [_message(CHUNK, 0.04 * (i + 1), junk) for i in range(200)]
    assert asyncio.run(_publish(stand, code, token, "cam0", messages, hold_s=0.5)) is None
    grown = _rss_mib(stand) - before
    assert grown < 64, f"the server grew by {grown:.0f} MiB for 200 MiB of one GOP"
    assert stand.alive()


def test_a_station_cannot_open_channels_under_any_camera_name(stand: Stand, new_station: Any,
                                                               fmp4: list[bytes]) -> None:
    code, token, _ = new_station()
    init = [_message(INIT, 0.0, fmp4[0])]
    statuses = [asyncio.run(_publish(stand, code, token, f"cam{n}x", init)) for n in range(30)]
    statuses += [asyncio.run(_publish(stand, code, token, name, init)) for name in ("cam9", "cam99", "Cam0", "x")]
    assert set(statuses) == {403}, statuses
    assert asyncio.run(_publish(stand, code, token, "cam1", init)) is None  # one of its cameras: fine
    assert [c["camera"] for c in _streams(stand)[code]["cameras"]] == ["cam1"]


def test_a_viewer_cannot_make_channels_by_watching_names(stand: Stand) -> None:
    ws = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    for n in range(40):
        reply = stand.request("GET", f"/api/live/S1/probe{n}/ws", {**stand.user("observer"), **ws})
        assert reply.status == 404, reply.status
    cameras = [c["camera"] for c in _streams(stand).get("S1", {}).get("cameras", [])]
    assert not any(c.startswith("probe") for c in cameras), cameras


def test_a_huge_meta_message_is_not_kept_or_served(stand: Stand, new_station: Any, fmp4: list[bytes]) -> None:
    code, token, _ = new_station()
    meta = json.dumps({"station_name": "x" * (2 * MIB), "warnings": ["y" * MIB]})
    assert asyncio.run(_publish(stand, code, token, "cam0", [_message(INIT, 0.0, fmp4[0]), meta])) is None
    reply = stand.request("GET", "/api/live/streams", stand.user("observer"))
    assert len(reply.body) < 256 * 1024, len(reply.body)


@pytest.fixture(scope="module")
def quick_idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """A server whose live channels are dropped after 1 s without publisher or viewer."""
    with own_server(Path(tmp_path_factory.mktemp("idle")), "sqlite", "live_idle_s = 1\n") as stand:
        for role in ("observer",):
            reply = stand.login(role)
            stand.sessions[role] = (reply.cookies()["osce_session"], reply.json()["csrf_token"])
        yield stand


def test_idle_channels_are_removed_while_the_server_runs(quick_idle: Stand, fmp4: list[bytes]) -> None:
    stand = quick_idle
    init = [_message(INIT, 0.0, fmp4[0]), _message(KEY, 0.0, fmp4[1])]
    for camera in ("cam0", "cam1"):
        assert asyncio.run(_publish(stand, "S1", stand.tokens["S1"], camera, init)) is None
    assert [c["camera"] for c in _streams(stand)["S1"]["cameras"]] == ["cam0", "cam1"]
    time.sleep(1.5)
    assert _streams(stand).get("S1", {}).get("cameras", []) == []  # both channels gone, not just silent


# --- tus (issue 16, case 11): abandoned uploads filled the disk; a station could open any number of them ---------

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def small_tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """A server with small tus limits: 5 open uploads or 1 MiB declared per station."""
    extra = "tus_max_open_per_station = 5\ntus_max_open_bytes_per_station = 1048576\n"
    with own_server(Path(tmp_path_factory.mktemp("tus")), "sqlite", extra) as stand:
        yield stand


@pytest.fixture(scope="module")
def quick_tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """A server whose tus uploads are idle after 1 s."""
    with own_server(Path(tmp_path_factory.mktemp("tus-idle")), "sqlite", "tus_idle_s = 1\n") as stand:
        yield stand


def _create(stand: Stand, station: str, length: int, seq: int) -> Any:
    from .conftest import tus_metadata

    meta = tus_metadata(sha256=f"{seq:064x}", recording=f"rec-{station}", track="cam0", seq=str(seq), kind="media")
    return stand.request("POST", "/api/tus", {**stand.station(station), **TUS, "Upload-Length": str(length),
                                              "Upload-Metadata": meta})


def _delete_all(stand: Stand, locations: list[str], station: str) -> None:
    for loc in locations:
        stand.request("DELETE", loc, {**stand.station(station), **TUS})


def test_abandoned_uploads_are_removed_while_the_server_runs(quick_tus: Stand) -> None:
    stand = quick_tus
    made = _create(stand, "S1", 1000, 1)
    assert made.status == 201
    loc = made.headers["Location"]
    patch = {**stand.station("S1"), **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    assert stand.request("PATCH", loc, patch, b"x" * 400).status == 204
    part = stand.media_dir / ".tus" / (loc.rsplit("/", 1)[1] + ".part")
    assert part.stat().st_size == 400
    time.sleep(2.5)  # idle for more than tus_idle_s, the server untouched meanwhile
    assert not part.exists()
    assert stand.request("HEAD", loc, {**stand.station("S1"), **TUS}).status == 404


def test_a_station_cannot_open_uploads_without_limit(small_tus: Stand) -> None:
    stand = small_tus
    made = [_create(stand, "S1", 1000, 10 + i) for i in range(5)]
    assert [r.status for r in made] == [201] * 5
    refused = _create(stand, "S1", 1000, 20)
    assert refused.status == 429, refused.body
    assert _create(stand, "S2", 1000, 21).status == 201  # another station is not held up by S1's uploads
    _delete_all(stand, [made[0].headers["Location"]], "S1")
    again = _create(stand, "S1", 1000, 22)
    assert again.status == 201
    _delete_all(stand, [r.headers["Location"] for r in (*made[1:], again)], "S1")


def test_open_bytes_per_station_are_capped(small_tus: Stand) -> None:
    stand = small_tus
    first = _create(stand, "S1", 700 * 1024, 30)
    assert first.status == 201
    assert _create(stand, "S1", 400 * 1024, 31).status == 429
    _delete_all(stand, [first.headers["Location"]], "S1")
    assert _create(stand, "S1", 400 * 1024, 32).status == 201


def test_parallel_creates_cannot_all_pass_the_limit(small_tus: Stand) -> None:
    """Races on quotas: 60 creates inside the server at once."""
    from collections import Counter

    from .conftest import tus_metadata
    from .servers import late_bodies

    requests = []
    for i in range(60):
        meta = tus_metadata(sha256=f"{100 + i:064x}", recording="rec-race", track="cam0", seq=str(i + 1),
                            kind="media")
        head = (f"POST /api/tus HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
                f"{small_tus.tokens['S2']}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1000\r\n"
                f"Upload-Metadata: {meta}\r\nContent-Length: 0\r\n\r\n").encode()
        requests.append((head, b""))
    open_before = _open_uploads_of(small_tus, "S2")
    outcome = Counter(late_bodies(small_tus, requests))
    assert outcome[201] <= 5 - open_before and outcome[429] >= 55, outcome


def _open_uploads_of(stand: Stand, station: str) -> int:
    """Uploads of the station not stored yet, as on the server's disk."""
    from review_server.models import Station

    sid = stand.db(lambda s: s.query(Station.id).filter(Station.code == station).scalar())
    infos = [json.loads(p.read_text()) for p in (stand.media_dir / ".tus").glob("*.json")]
    return sum(1 for i in infos if i.get("station_id") == sid and not i.get("stored"))


# --- viewer sockets: one session, or one channel, cannot open them without end -------------------------------


async def _open_viewers(stand: Stand, targets: list[tuple[str, str]]) -> list[int]:
    """Open a viewer socket per (station, cookie) and hold them all; the status of each (101: opened)."""
    statuses: list[int] = []
    async with aiohttp.ClientSession() as http:
        sockets = []
        for station, cookie in targets:
            url = f"ws://{stand.host}:{stand.port}/api/live/{station}/cam0/ws"
            try:
                sockets.append(await http.ws_connect(url, headers={"Cookie": cookie}))
                statuses.append(101)
            except aiohttp.WSServerHandshakeError as exc:
                statuses.append(exc.status)
        for ws in sockets:
            await ws.close()
    return statuses


def _cookie(stand: Stand) -> str:
    reply = stand.login("observer")
    return f"osce_session={reply.cookies()['osce_session']}"


def _station_live(stand: Stand, new_station: Any, fmp4: list[bytes]) -> str:
    code, token, _ = new_station()
    assert asyncio.run(_publish(stand, code, token, "cam0", [_message(INIT, 0.0, fmp4[0])])) is None
    return code


def test_one_session_cannot_open_viewer_sockets_without_end(stand: Stand, new_station: Any,
                                                            fmp4: list[bytes]) -> None:
    a, b = _station_live(stand, new_station, fmp4), _station_live(stand, new_station, fmp4)
    cookie = _cookie(stand)
    statuses = asyncio.run(_open_viewers(stand, [(a, cookie)] * 40 + [(b, cookie)] * 40))
    assert statuses.count(101) == 64 and statuses.count(429) == 16, statuses


def test_one_channel_cannot_be_watched_without_end(stand: Stand, new_station: Any, fmp4: list[bytes]) -> None:
    a = _station_live(stand, new_station, fmp4)
    statuses = asyncio.run(_open_viewers(stand, [(a, _cookie(stand))] * 40 + [(a, _cookie(stand))] * 40))
    assert statuses.count(101) == 64 and statuses.count(429) == 16, statuses

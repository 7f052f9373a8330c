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

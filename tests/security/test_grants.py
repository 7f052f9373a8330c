"""Credentials that outlive their grant: a signed live URL, an open viewer socket, a session, once the user logs
out or is disabled, must stop working at once (issue 16, case 12: a signed HLS URL kept working for an hour after
its user was disabled or logged out)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from media.live import HEADER, INIT, KEY

from .conftest import PASSWORD, Stand
from .test_unbounded import _publish

CATEGORY = "credentials that outlive their grant"


def _live_camera(stand: Stand, new_station: Any, fmp4: list[bytes]) -> str:
    """A station with a live camera (init and two key frames: one HLS segment), left as its publisher left it."""
    code, token, _ = new_station()
    messages: list[bytes | str] = [HEADER.pack(INIT, 0.0) + fmp4[0], HEADER.pack(KEY, 0.0) + fmp4[1],
                                   HEADER.pack(KEY, 2.0) + fmp4[2]]
    assert asyncio.run(_publish(stand, code, token, "cam0", messages)) is None
    return code


def _session(stand: Stand, login: str) -> dict[str, str]:
    reply = stand.login(login)
    assert reply.status == 200, reply.body
    return {"Cookie": f"osce_session={reply.cookies()['osce_session']}", "X-CSRF-Token": reply.json()["csrf_token"]}


def _signed_url(stand: Stand, station: str, session: dict[str, str]) -> dict[str, Any]:
    reply = stand.request("GET", f"/api/live/{station}/cam0/hls", session)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert stand.request("GET", body["url"]).status == 200  # it plays, with no cookie at all
    return body


def _new_observer(stand: Stand) -> str:
    login = f"obs{uuid.uuid4().hex[:8]}"
    made = stand.json_request("POST", "/api/users", {"login": login, "password": PASSWORD, "role": "observer"},
                              stand.user("admin"))
    assert made.status == 201, made.body
    return login


def test_a_signed_hls_url_dies_with_its_session_at_logout(stand: Stand, new_station: Any, fmp4: list[bytes]) -> None:
    station = _live_camera(stand, new_station, fmp4)
    session = _session(stand, "observer")
    url = _signed_url(stand, station, session)["url"]
    assert stand.request("POST", "/logout", {**session, "Content-Type": "application/json"}, b"{}").status == 200
    for leaf in ("index.m3u8", "init.mp4", "1.m4s", "master.m3u8", "ident.m3u8", "1.vtt"):
        reply = stand.request("GET", url.replace("index.m3u8", leaf))
        assert reply.status == 401, (leaf, reply.status)


def test_a_signed_hls_url_dies_when_its_user_is_disabled(stand: Stand, new_station: Any,
                                                         fmp4: list[bytes]) -> None:
    station = _live_camera(stand, new_station, fmp4)
    login = _new_observer(stand)
    url = _signed_url(stand, station, _session(stand, login))["url"]
    assert stand.request("DELETE", f"/api/users/{login}", stand.user("admin"), b"").status == 200
    assert stand.request("GET", url).status == 401


def test_a_signed_hls_url_is_short_lived_and_says_when_to_refresh(stand: Stand, new_station: Any,
                                                                  fmp4: list[bytes]) -> None:
    station = _live_camera(stand, new_station, fmp4)
    body = _signed_url(stand, station, _session(stand, "observer"))
    now = time.time()
    assert body["expires"] - now <= 600 and now < body["refresh_after"] < body["expires"]


def test_a_signed_url_opens_nothing_else(stand: Stand, new_station: Any, fmp4: list[bytes]) -> None:
    station = _live_camera(stand, new_station, fmp4)
    other = _live_camera(stand, new_station, fmp4)
    url = _signed_url(stand, station, _session(stand, "observer"))["url"]
    token = url.split("token=", 1)[1]
    expires, session, mac = token.split(".")
    forged = {
        "another station": url.replace(f"/live/{station}/", f"/live/{other}/"),
        "another session": url.replace(token, f"{expires}.{int(session) + 1}.{mac}"),
        "a later expiry": url.replace(token, f"{int(expires) + 86400}.{session}.{mac}"),
    }
    for what, target in forged.items():
        assert stand.request("GET", target).status == 401, what


def test_an_open_viewer_socket_is_closed_when_its_session_ends(stand: Stand, new_station: Any,
                                                               fmp4: list[bytes]) -> None:
    station = _live_camera(stand, new_station, fmp4)
    login = _new_observer(stand)
    session = _session(stand, login)

    async def watch() -> int | None:
        url = f"ws://{stand.host}:{stand.port}/api/live/{station}/cam0/ws"
        async with aiohttp.ClientSession() as http, http.ws_connect(url, headers={"Cookie": session["Cookie"]}) as ws:
            assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.BINARY  # the picture flows
            reply = await asyncio.to_thread(stand.request, "DELETE", f"/api/users/{login}", stand.user("admin"),
                                            b"")
            assert reply.status == 200
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                msg = await ws.receive(timeout=deadline - time.monotonic())
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return ws.close_code
            return None

    assert asyncio.run(watch()) == 4401


@pytest.mark.parametrize("how", ["logout", "disable"])
def test_a_session_ended_is_refused_everywhere(stand: Stand, how: str) -> None:
    login = _new_observer(stand)
    session = _session(stand, login)
    if how == "logout":
        stand.request("POST", "/logout", {**session, "Content-Type": "application/json"}, b"{}")
    else:
        stand.request("DELETE", f"/api/users/{login}", stand.user("admin"), b"")
    for path in ("/api/me", "/api/live/streams", "/live"):
        assert stand.request("GET", path, {"Cookie": session["Cookie"]}).status == 401, path

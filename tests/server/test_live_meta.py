"""A station's live meta reaches the observation grid as JSON a browser can parse, even when the station sent NaN."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestClient, TestServer

from review_server.live import create_live_test_app


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON (the browser's JSON.parse refuses it)")

    return json.loads(text, parse_constant=refuse)


async def test_nan_in_a_stations_meta_becomes_null_in_the_station_list() -> None:
    app = create_live_test_app({"tok": "S1"}, {"obs": "observer"})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client, \
            client.ws_connect("/api/live/S1/cam0/publish", headers={"Authorization": "Bearer tok"}) as ws:
        # What Python's json.dumps writes for a float('nan') rate (the CPR estimate of a short window could be one).
        await ws.send_str('{"station_name": "Станция 1", "cpr": {"rate_per_min": NaN, "ccf": Infinity, '
                          '"compressions": 12, "estimate": true}}')
        await ws.send_bytes(b"I" + bytes(8) + b"init")
        for _ in range(50):
            r = await client.get("/api/live/streams", cookies={"osce_session": "obs"})
            stations = _strict(await r.text())["stations"]
            if stations and stations[0].get("station_name") == "Станция 1":
                break
            await asyncio.sleep(0.05)
        assert stations[0]["cpr"] == {"rate_per_min": None, "ccf": None, "compressions": 12, "estimate": True}

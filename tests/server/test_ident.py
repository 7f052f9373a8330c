"""Identification on the picture (issue 19): its text, the live HLS WebVTT cues, and the export's identification
video, made from a real two-camera recording and read back: it decodes, lasts as long as the attempt, has the sound,
shows the cameras side by side, and the banner's text is found in a frame by template matching against the same
lines rendered separately in DejaVu Sans (a wrong text is not found); the originals stay byte for byte."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
import zipfile
import zoneinfo
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from media.manifest import read_manifest
from review_server.burn_in import FONT
from review_server.ident import Ident, lines, webvtt
from review_server.models import Recording, Station
from review_server.web import CONFIG

from .archive_helpers import ROOT, add_schedule, link_attempt, upload_recording
from .conftest import World

MSK = zoneinfo.ZoneInfo("Europe/Moscow")
IDENT = Ident("77 г. Москва", "ППЭ 0001", "Демо-центр", "101", "S1", "2611001")
CENTRE_LINE = "77 г. Москва · ППЭ 0001 Демо-центр"
WHERE_LINE = "ауд. 101 · ст. S1 · № 2611001"
MEDIA_FROM = dt.datetime(2026, 6, 1, 6, 0, 0, 250000, tzinfo=dt.UTC)  # 09:00:00.25 in Moscow


def test_lines_name_the_centre_room_station_number_and_the_time_in_moscow() -> None:
    when = dt.datetime(2026, 6, 1, 6, 30, 5, tzinfo=dt.UTC)
    assert lines(IDENT, when, "Europe/Moscow") == [CENTRE_LINE, WHERE_LINE, "01.06.2026 09:30:05"]
    assert lines(Ident(region="77", station="S2"), None, "Europe/Moscow") == ["77", "ст. S2"]  # nothing empty


def test_webvtt_cues_tick_at_whole_wall_seconds_on_media_time() -> None:
    text = webvtt(IDENT, 10.0, 2.0, MEDIA_FROM, "Europe/Moscow")
    assert text.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n")
    cues = [block.split("\n") for block in text.split("\n\n")[1:] if block.strip()]
    # Media 10.0 s is 09:00:10.25: the first cue runs to media 10.75 (09:00:11.00), then a cue per second.
    assert [c[0].split(" ")[0:3] for c in cues] == [["00:00:10.000", "-->", "00:00:10.750"],
                                                     ["00:00:10.750", "-->", "00:00:11.750"],
                                                     ["00:00:11.750", "-->", "00:00:12.000"]]
    assert [c[3] for c in cues] == ["01.06.2026 09:00:10", "01.06.2026 09:00:11", "01.06.2026 09:00:12"]
    assert all(c[1] == CENTRE_LINE and c[2] == WHERE_LINE for c in cues)
    assert "line:0" in cues[0][0]  # the top of the picture, not its centre


# -- the export's identification video -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "r"
    subprocess.run([sys.executable, "-m", "osce_cli", "record", "--video", "synthetic:label=cam0", "--video",
                    "synthetic:seed=2", "--audio", "synthetic", "--seconds", "4", "--size", "320x180", "--out",
                    str(out)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    return out


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _rendered(text: str, size: int) -> np.ndarray:
    """The text in white on black in DejaVu Sans at `size` px, cropped to its ink."""
    font = ImageFont.truetype(str(FONT), size)
    box = font.getbbox(text)
    img = Image.new("L", (box[2] + 4, box[3] + 4), 0)
    ImageDraw.Draw(img).text((2, 0), text, font=font, fill=255)
    a = np.array(img)
    ys, xs = np.nonzero(a > 40)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _found(frame: np.ndarray, text: str) -> float:
    """The best normalised correlation of the rendered text anywhere in the frame's top half, over font sizes."""
    top = frame[: frame.shape[0] // 2]
    best = -1.0
    for size in range(8, 24):
        t = _rendered(text, size)
        if t.shape[0] > top.shape[0] or t.shape[1] > top.shape[1]:
            break
        best = max(best, float(cv2.matchTemplate(top, t, cv2.TM_CCOEFF_NORMED).max()))
    return best


async def test_export_carries_a_burned_in_video_read_back_from_its_frames(
        world: World, recording: Path, tmp_path: Path) -> None:
    api, client = world.api, world.api.client
    for key, value in (("centre_region", "77 г. Москва"), ("centre_code", "ППЭ 0001"), ("centre_name", "Демо-центр")):
        setattr(api.app[CONFIG], key, value)  # read by the export job when it runs
    ids = add_schedule(world)
    world.schedule("A1")
    await upload_recording(world, recording, "rec-A1", "A1")
    link_attempt(world, "A1", "2611001", ids, "CPR")

    def setup(s):  # type: ignore[no-untyped-def]
        s.scalar(select(Station).where(Station.code == "S1")).room = "101"
        s.scalar(select(Recording).where(Recording.key == "rec-A1")).media_from = MEDIA_FROM

    api.run(setup)
    arch = world.headers("archivist")
    req = await (await client.post("/api/export-requests", headers=arch, json={
        "number": "17-3/9", "date": "2026-07-01", "requester": "Минздрав России"})).json()
    assert (await client.post(f"/api/export-requests/{req['id']}/attempts", headers=arch,
                              json={"attempt_ids": ["A1"]})).status == 200
    resp = await client.post(f"/api/export-requests/{req['id']}/exports", headers=arch)
    assert resp.status == 201, await resp.text()
    pkg = await resp.json()
    body = await (await client.get(pkg["url"], headers=arch)).read()
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(_write(tmp_path / "p.zip", body)) as zf:
        zf.extractall(unpacked)

    # Listed, hashed, described; the originals are the station's bytes.
    video = unpacked / "attempts/A1/identified.mp4"
    sums = (unpacked / "SHA256SUMS").read_text()
    assert f"{hashlib.sha256(video.read_bytes()).hexdigest()}  attempts/A1/identified.mp4" in sums
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=unpacked).returncode == 0
    manifest = json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["identification_videos"]["files"] == ["attempts/A1/identified.mp4"]
    assert manifest["identification_videos"]["failed"] == []
    assert "not an original" in manifest["identification_videos"]["what"]
    src = read_manifest(recording)
    for track in src.track_ids():
        for f in src.track_files(track):
            assert (unpacked / "attempts/A1/recordings/rec-A1" / f.file).read_bytes() == \
                (recording / f.file).read_bytes()

    # It decodes; both cameras side by side at their height; the sound; the attempt's length.
    with av.open(str(video)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (640, 180)
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        length = float(c.duration or 0) / av.time_base
        frames = {}
        for frame in c.decode(v):
            t = float(frame.time or 0)
            for want in (1.0, 3.0):
                if want not in frames and t >= want:
                    frames[want] = (t, frame.to_ndarray(format="rgb24"))
    media_end = max(f.end for tr in src.track_ids() for f in src.track_files(tr) if f.end is not None)
    media_start = min(f.start for tr in src.track_ids() for f in src.track_files(tr) if f.start is not None)
    assert abs(length - (media_end - media_start)) < 0.3, (length, media_start, media_end)

    # The text, read back: each line found in the frame; a wrong number and another time are not.
    t, rgb = frames[1.0]
    gray = _gray(rgb)
    for line in (CENTRE_LINE, WHERE_LINE):
        assert _found(gray, line) > 0.8, line
    assert _found(gray, "ауд. 707 · ст. S9 · № 5599488") < _found(gray, WHERE_LINE) - 0.15
    # The frame's own time: media_from + its media time (the picture's first sample at the recording's start).
    for t, rgb in frames.values():
        wall = (MEDIA_FROM + dt.timedelta(seconds=t + media_start_of(video, recording))).astimezone(MSK)
        right, wrong = wall.strftime("%d.%m.%Y %H:%M:%S"), (wall + dt.timedelta(seconds=7)).strftime(
            "%d.%m.%Y %H:%M:%S")
        assert _found(_gray(rgb), right) > 0.8 and _found(_gray(rgb), right) > _found(_gray(rgb), wrong) + 0.05, t
    # The banner stays within the picture and away from its centre: the middle of the frame is the cameras'.
    original = _first_frame(recording)
    assert _found(_gray(original), WHERE_LINE) < 0.6  # and the originals carry no such text


def media_start_of(video: Path, recording: Path) -> float:
    """Media time at the identification video's time 0: the earliest sample of the recording's first tracks."""
    starts = []
    src = read_manifest(recording)
    for track in src.track_ids():
        joined = b"".join((recording / f.file).read_bytes() for f in src.track_files(track))
        path = video.parent / f"probe-{track}.mp4"
        path.write_bytes(joined)
        with av.open(str(path)) as c:
            starts += [float(s.start_time * s.time_base) for s in c.streams if s.start_time is not None
                       and s.time_base is not None]
        path.unlink()
    return min(starts)


def _first_frame(recording: Path) -> np.ndarray:
    src = read_manifest(recording)
    path = recording.parent / "cam0-joined.mp4"
    path.write_bytes(b"".join((recording / f.file).read_bytes() for f in src.track_files("cam0")))
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(c.streams.video[0])):
            if i == 25:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("no frame")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_a_station_is_added_with_its_room_and_a_bad_room_is_named(world: World) -> None:
    client, admin = world.api.client, world.headers("admin")
    made = await client.post("/api/stations", headers=admin, json={"code": "R7", "name": "Станция 7", "room": "214"})
    assert made.status == 201 and (await made.json())["room"] == "214"
    bad = await client.post("/api/stations", headers=admin, json={"code": "R8", "room": "2\n14"})
    assert bad.status == 422 and (await bad.json())["where"] == "room"
    long = await client.post("/api/stations", headers=admin, json={"code": "R9", "room": "x" * 33})
    assert long.status == 422 and (await long.json())["where"] == "room"
    listed = await (await client.get("/api/stations", headers=admin)).json()
    assert next(s for s in listed["stations"] if s["code"] == "R7")["room"] == "214"

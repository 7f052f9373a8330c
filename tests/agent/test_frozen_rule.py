"""The frozen-camera rule against real pictures: a still room with sensor noise is live, a repeated picture is
frozen, from the synthetic camera and from a real H.264 network camera decoded by the agent's own source."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from media.calibration import ffmpeg_exe
from media.cpr.motion import FlowGrid, analyse_series
from media.sources import SourceError
from media.sources.spec import open_video_source
from media.sources.synthetic import SyntheticCamera
from station_agent.health import FREEZE_NOISE, CameraWatch
from tests.media.conftest import free_udp_port, udp_camera_url

from .conftest import Daemon, write_config

FPS = 25


def old_thumbnail(image: np.ndarray) -> np.ndarray:
    """The rule this one replaced: 64x36 grey by area averaging, 'the same picture' under 0.5 of 255."""
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (64, 36), interpolation=cv2.INTER_AREA).astype(float)


class OldRule:
    """The replaced CameraWatch rule, kept here to show its false alarm: thumbnail diff to the previous sample."""

    def __init__(self) -> None:
        self.thumb: np.ndarray | None = None
        self.since: float | None = None

    def frozen(self, image: np.ndarray, now: float, frozen_s: float) -> bool:
        thumb = old_thumbnail(image)
        same = self.thumb is not None and float(np.abs(thumb - self.thumb).mean()) < 0.5
        self.since = (self.since if self.since is not None else now) if same else None
        self.thumb = thumb
        return self.since is not None and now - self.since >= frozen_s


def watch_synthetic(specs: list[str], seconds: float, frozen_s: float) -> dict[str, list[dict]]:
    """Read the cameras side by side in real time and sample each once a second of its own frames."""
    cameras = {spec: SyntheticCamera(spec, width=640, height=360, fps=FPS) for spec in specs}
    watches = {spec: CameraWatch("cam0", spec) for spec in specs}
    olds = {spec: OldRule() for spec in specs}
    out: dict[str, list[dict]] = {spec: [] for spec in specs}
    for camera in cameras.values():
        camera.open()
    try:
        for n in range(1, int(seconds * FPS) + 1):
            for spec, camera in cameras.items():
                item = camera.read(timeout=1.0)
                assert item is not None, spec
                watch = watches[spec]
                watch.frames += 1
                watch.last_item_t = n / FPS
                if n % FPS == 0:
                    watch.latest = item.image
                    report = watch.sample(n / FPS, frozen_s)
                    report["difference"] = watch.difference
                    report["old_frozen"] = olds[spec].frozen(item.image, n / FPS, frozen_s)
                    out[spec].append(report)
                else:
                    watch.latest = item.image
    finally:
        for camera in cameras.values():
            camera.close()
    return out


def test_still_noisy_scene_is_live_and_its_frozen_fault_is_caught() -> None:
    still, stalled = "still=1,noise=2,seed=3", "still=1,noise=2,seed=3,freeze_after_s=1.2"
    reports = watch_synthetic([still, stalled], seconds=6.0, frozen_s=2.0)

    live = reports[still]
    assert not any(r["frozen"] for r in live), live  # three frozen_s periods of a still room: live
    assert min(r["difference"] for r in live[1:]) > 4 * FREEZE_NOISE  # the sensor noise, well over the tolerance
    # The old thumbnail rule averaged the noise away: "the same picture" every second, so it reported a freeze.
    assert [r["old_frozen"] for r in live] == [False, False, False, True, True, True], live

    samples = [(i + 1, r) for i, r in enumerate(reports[stalled])]  # (seconds since open, report)
    first = next(t for t, r in samples if r["frozen"])
    # Sampled once a second: one sample sees the repeated picture, the next confirms it, then frozen_s passes.
    assert first <= 1.2 + 2.0 + 2 * 1.0, samples
    assert all(r["frozen"] and r["difference"] == 0.0 for t, r in samples if t >= first)  # bit for bit the same


def test_synthetic_noise_parameter() -> None:
    for bad in ("noise=-1", "noise=loud", "noise=80"):
        with pytest.raises(SourceError, match="noise"):
            SyntheticCamera(bad, 64, 36)
    pictures = []
    for spec in ("still=1,noise=3,seed=4", "still=1,noise=3,seed=4", "still=1,seed=4"):
        camera = SyntheticCamera(spec, width=320, height=180)
        camera._pacer.start = 0.0
        pictures.append(camera._render(1.0).astype(int))
    assert np.array_equal(pictures[0], pictures[1])  # seeded: the same run twice gives the same pictures
    assert 2.5 < float((pictures[0] - pictures[2]).std()) < 3.5  # sigma 3 per pixel and channel


def test_slow_drift_ends_a_candidate_freeze_because_it_compares_with_its_first_picture() -> None:
    rng = np.random.default_rng(5)
    picture = rng.integers(20, 200, (360, 640), dtype=np.uint8)
    cam = CameraWatch("cam0", "test")
    states = []
    for second in range(8):
        drifted = picture.copy()
        # each second brightens another 10 % of the pixels by one level: 0.1 per step, under the tolerance
        drifted[: 36 * second] += 1
        cam.latest = drifted
        states.append((cam.sample(float(second), frozen_s=3.0)["frozen"], cam.difference))
    # compared with the previous sample it would be frozen from second 4; against the candidate's first picture
    # the drift adds up to 0.3 > 0.255 after three steps and starts a new candidate
    assert [s[0] for s in states] == [False] * 8, states
    assert 0.09 < states[1][1] < 0.11 and states[3][1] > FREEZE_NOISE, states


def test_cpr_video_analysis_counts_compressions_through_sensor_noise() -> None:
    """The demo's CPR camera with noise: the analysis gives the same figures as on clean pictures, and the
    watch sees a live camera (the old thumbnail could not see the fine chest texture move at all)."""
    figures, old_frozen = {}, []
    for noise in (0, 2):
        camera = SyntheticCamera(f"seed=9,cpr_rate=110,cpr_cycle=12,cpr_pause_s=2.5,cpr_after_s=1,noise={noise}",
                                 width=640, height=360, fps=FPS)
        camera._pacer.start = 0.0  # pictures at chosen times, not in real time (as tests/agent/test_cpr_agent.py)
        flow, watch, old = FlowGrid(), CameraWatch("cam1", "cpr"), OldRule()
        for k in range(18 * FPS):  # two cycles of 12 compressions, 2.5 s apart; the picture ends in a pause
            image = camera._render(k / FPS)
            flow.feed(image, k / FPS)
            if k % FPS == 0:
                watch.latest = image
                assert watch.sample(k / FPS, frozen_s=3.0)["frozen"] is False, (noise, k)
                old_frozen.append(old.frozen(image, k / FPS, frozen_s=3.0))
        got = analyse_series(flow.motion, 0.0)
        figures[noise] = {k: got.get(k) for k in ("estimate", "rate_per_min", "compressions", "pauses")}
    assert figures[2]["estimate"] is True and figures[2]["compressions"] == 24, figures
    assert abs(figures[2]["rate_per_min"] - 110) <= 3, figures
    assert figures[2] == figures[0]
    assert any(old_frozen), old_frozen  # the old rule's false alarm on this very camera, noise or not


def stream(picture: Path, port: int, noise: int) -> subprocess.Popen:
    """A network camera (H.264 in MPEG-TS over UDP, one keyframe a second) showing one picture, with temporal
    noise from ffmpeg's noise filter or none."""
    vf = "format=yuv420p" + (f",noise=alls={noise}:allf=t" if noise else "")
    return subprocess.Popen(
        [ffmpeg_exe(), "-loglevel", "error", "-re", "-loop", "1", "-framerate", str(FPS), "-i", str(picture),
         "-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", str(FPS),
         "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"], stdin=subprocess.DEVNULL)


def watch_network_camera(picture: Path, noise: int, seconds: float, frozen_s: float) -> list[dict]:
    port = free_udp_port()
    sender = stream(picture, port, noise)
    try:
        time.sleep(0.3)
        # the agent's own network camera source (OpenCV + FFmpeg), as a station config names it
        source = open_video_source(udp_camera_url(port))
        source.open()
        watch, out = CameraWatch("cam0", f"udp noise={noise}"), []
        try:
            for n in range(1, int(seconds * FPS) + 1):
                item = source.read(timeout=2.0)
                assert item is not None, f"the stream with noise={noise} stopped"
                watch.frames, watch.last_item_t, watch.latest = n, n / FPS, item.image
                if n % FPS == 0:  # once a second of the stream's own time
                    out.append(watch.sample(n / FPS, frozen_s) | {"difference": watch.difference})
        finally:
            source.close()
        return out
    finally:
        sender.terminate()
        sender.wait(timeout=5)


def test_network_camera_still_room_is_live_and_a_looped_picture_is_frozen(tmp_path: Path) -> None:
    camera = SyntheticCamera("still=1", width=640, height=360)
    camera.open()
    item = camera.read(timeout=1.0)
    camera.close()
    assert item is not None
    picture = tmp_path / "room.png"
    cv2.imwrite(str(picture), item.image)

    with ThreadPoolExecutor(2) as pool:  # both cameras at once: the test takes one run's time
        noisy_job = pool.submit(watch_network_camera, picture, 8, 6.0, 2.0)
        looped_job = pool.submit(watch_network_camera, picture, 0, 6.0, 2.0)
        noisy, looped = noisy_job.result(timeout=40), looped_job.result(timeout=40)

    assert not any(r["frozen"] for r in noisy), noisy
    assert min(r["difference"] for r in noisy[1:]) > 4 * FREEZE_NOISE, noisy
    # Skip-block P-frames repeat the picture; keyframes re-encode it within the tolerance.
    assert max(r["difference"] for r in looped[1:]) <= FREEZE_NOISE, looped
    assert looped[3]["frozen"] and looped[-1]["frozen"] and looped[-1]["frozen_for_s"] >= 4.0, looped


def test_agent_does_not_call_a_noisy_still_room_frozen(tmp_path: Path) -> None:
    """The real agent, recording: a still room with sensor noise stays live for several frozen_s periods, while
    the same room from a perfect (noiseless) camera is one repeated picture, which it reports."""
    noisy, perfect = "synthetic:still=1,noise=2,seed=1", "synthetic:still=1,seed=2"
    config = write_config(tmp_path, cameras=(noisy, perfect), extra="[health]\nfrozen_s = 2\n")
    daemon = Daemon(config)
    try:
        daemon.start()
        status, _ = daemon.request("POST", "/api/attempt/start",
                                   {"candidate": "240517", "attempt_id": "d1-st1-031", "performing_s": 60})
        assert status == 200
        reports, started = [], time.monotonic()
        while time.monotonic() - started < 7.0:
            cameras = daemon.get("/api/health")["cameras"]
            if cameras and all(c["arriving"] for c in cameras):
                reports.append({c["source"]: c for c in cameras})
            time.sleep(0.5)
    finally:
        daemon.stop()
    assert len(reports) >= 10, reports
    assert not any(r[noisy]["frozen"] for r in reports), reports
    assert reports[-1][perfect]["frozen"] and reports[-1][perfect]["frozen_for_s"] >= 3.0, reports[-1]

"""Room IP cameras over RTSP against a real RTSP server (GStreamer's, media/rtsp_server.py): H.264 and H.265 by
stream copy over TCP and UDP, the camera's own microphone in G.711, AAC and Opus, MJPEG decoded, and the
flash-and-beep sync of a camera's sound and pictures against bare ffmpeg copying the same session."""

from __future__ import annotations

import json
import struct
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from media import mp4box, synccheck
from media.calibration import ffmpeg_exe
from media.fragments import ChainedReader
from media.manifest import read_manifest
from media.rtsp_server import RtspServer
from media.sources.rtsp import AUDIO_RATE, RtspCamera

from .conftest import decode_errors, decodes_fragment_by_fragment, osce, rtsp_stand_in, sync_check


@pytest.fixture(autouse=True)
def _stand_in() -> None:
    rtsp_stand_in()


def hvcc_arrays(init: bytes) -> dict[int, tuple[bool, int]]:
    """NAL type -> (array_completeness, count) of the hvcC of an init segment's video."""
    moov = mp4box.top_level(init)["moov"]
    for stsd in mp4box.path(init, moov, "trak", "mdia", "minf", "stbl", "stsd"):
        for entry in mp4box.walk(init, stsd.start + 8, stsd.end):
            for box in mp4box.walk(init, entry.start + 78, entry.end) if entry.kind == "hvc1" else []:
                if box.kind == "hvcC":
                    data, pos, arrays = init[box.start:box.end], 23, {}
                    for _ in range(data[22]):
                        kind, count = data[pos], struct.unpack_from(">H", data, pos + 1)[0]
                        pos += 3
                        for _n in range(count):
                            pos += 2 + struct.unpack_from(">H", data, pos)[0]
                        arrays[kind & 0x3F] = (bool(kind & 0x80), count)
                    return arrays
    raise AssertionError("no hvc1/hvcC in the init segment")


def track_sound(folder: Path, track: str) -> np.ndarray:
    manifest = read_manifest(folder)
    with av.open(ChainedReader([folder / f.file for f in manifest.track_files(track)])) as container:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(container.streams.audio[0])])


def dominant_hz(samples: np.ndarray, rate: int = AUDIO_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_h265_and_h264_cameras_copied_over_tcp_and_udp_with_the_cameras_sound(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    mounts = {"main": {"video": "h265", "audio": "alaw", "width": 640, "height": 360},
              "door": {"video": "h264", "width": 480, "height": 270}}
    with RtspServer(mounts) as cams:
        result = osce("record", "--video", "copy:" + cams.url("main"), "--video", cams.url("door"),
                      "--transport", "tcp", "--transport", "udp", "--audio", "camera:0", "--seconds", "6",
                      "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads(result.stdout)["stats"]
    header = read_manifest(out).header
    main, door = header["tracks"]
    assert main["video"] | {"fps": None} == {"codec": "hevc", "width": 640, "height": 360, "fps": None,
                                              "fps_requested": 25.0, "copy": True}
    assert door["video"]["codec"] == "h264" and door["video"]["copy"] is True  # rtsp:// copies what it can
    assert "RTSP over TCP" in main["description"] and "RTSP over UDP" in door["description"]
    assert main["audio"]["source"] == "camera:0" and "pcm_alaw" in main["audio"]["description"]
    assert 23 <= stats["cam0"]["fps_delivered"] <= 27 and 23 <= stats["cam1"]["fps_delivered"] <= 27, stats
    # H.265 in an hvc1 sample entry whose hvcC holds the parameter sets, complete (VPS 32, SPS 33, PPS 34).
    init = (out / "cam0" / "init.mp4").read_bytes()
    assert {t.sample_entry for t in mp4box.init_tracks(init)} == {"hvc1", "mp4a"}
    arrays = hvcc_arrays(init)
    assert all(arrays.get(kind, (False, 0)) == (True, 1) for kind in (32, 33, 34)), arrays
    assert mp4box.codecs(init).startswith("hvc1.1.6.L")  # Main profile: what a browser is asked for
    assert osce("verify-recording", str(out)).returncode == 0
    for track in ("cam0", "cam1"):
        assert decode_errors(out, track) == ""
    assert decodes_fragment_by_fragment(out, "cam0") == []  # each fragment plays with the init alone (HLS)
    # The camera's microphone (a 440 Hz tone in A-law) is in both tracks as AAC at 48 kHz.
    for track in ("cam0", "cam1"):
        sound = track_sound(out, track)
        assert sound.size >= 3 * AUDIO_RATE
        tail = sound[-2 * AUDIO_RATE:]
        assert float(np.sqrt(np.mean(tail ** 2))) > 0.05 and abs(dominant_hz(tail) - 440) < 5


@pytest.mark.parametrize("codec", ["mulaw", "aac", "opus"])
def test_the_cameras_sound_in_mulaw_aac_and_opus_is_decoded_to_48_khz_on_the_cameras_clock(codec: str) -> None:
    with RtspServer({"cam": {"audio": codec, "width": 320, "height": 180}}) as cams:
        camera = RtspCamera(cams.url("cam"))
        camera.open()
        mic = camera.microphone
        mic.open()
        blocks, deadline = [], time.monotonic() + 8
        try:
            while time.monotonic() < deadline and sum(b.samples.size for b in blocks) < 2 * AUDIO_RATE:
                camera.read(timeout=1.0)
                while (block := mic.read(timeout=0.0)) is not None:
                    blocks.append(block)
        finally:
            camera.close()
    assert mic.codec == {"mulaw": "pcm_mulaw", "aac": "aac", "opus": "opus"}[codec]
    assert sum(b.samples.size for b in blocks) >= 2 * AUDIO_RATE, f"{codec}: too little sound"
    # One continuous run, each block stamped one block after the last, but for one step where the sender reports'
    # timing takes over from the start-of-play alignment.
    pairs = list(zip(blocks, blocks[1:], strict=False))
    steps = [abs((b.capture_t - a.capture_t) - a.samples.size / AUDIO_RATE) for a, b in pairs]
    assert all(b.first_index == a.first_index + a.samples.size for a, b in pairs)
    assert sum(step > 0.002 for step in steps) <= 1 and max(steps) < 0.05, steps
    sound = np.concatenate([b.samples for b in blocks])[-AUDIO_RATE:]
    assert abs(dominant_hz(sound) - 440) < 5 and float(np.sqrt(np.mean(sound ** 2))) > 0.05


def test_mjpeg_is_decoded_and_encoded_and_refused_by_copy(tmp_path: Path) -> None:
    with RtspServer({"old": {"video": "mjpeg", "width": 320, "height": 240}}) as cams:
        refused = osce("record", "--video", "copy:" + cams.url("old"), "--seconds", "2", "--out",
                       str(tmp_path / "refused"))
        result = osce("record", "--video", cams.url("old"), "--size", "320x240", "--seconds", "3",
                      "--out", str(tmp_path / "rec"))
    assert refused.returncode == 2 and "sends mjpeg; stream copy needs H.264 or H.265" in refused.stderr
    assert result.returncode == 0, result.stderr[-2000:]
    video = read_manifest(tmp_path / "rec").header["tracks"][0]["video"]
    assert video["copy"] is False and video["codec"] == "h264"
    assert decode_errors(tmp_path / "rec", "cam0") == ""
    assert json.loads(result.stdout)["stats"]["cam0"]["frames"] >= 2 * 25


def bare_ffmpeg_copy(url: str, out: Path, seconds: float) -> subprocess.Popen:
    """What a technician would run: ffmpeg copying the camera's session, its sound to AAC (the baseline)."""
    return subprocess.Popen([ffmpeg_exe(), "-v", "error", "-y", "-rtsp_transport", "tcp", "-i", url, "-t", str(seconds),
                             "-c:v", "copy", "-c:a", "aac", "-ar", "48000", "-f", "mp4", str(out)],
                            stdin=subprocess.DEVNULL)


def offsets_after(path: Path, after_s: float) -> dict:
    """sync-check's figures over the pairs from `after_s` on (bare ffmpeg maps the camera's sound and pictures onto
    one clock only once the first RTCP sender reports have come)."""
    times, lumas, audio, start = synccheck.decode_track([path])
    pairs = synccheck.pair_offsets(synccheck.flash_times(times, lumas), synccheck.beep_times(audio, start))
    return synccheck.summarise([p for p in pairs if p[0] - times[0] >= after_s])


def test_flash_and_beep_through_rtsp_in_sync_without_calibration_and_a_second_camera_after(
        tmp_path: Path, stimulus_file: Path) -> None:
    """The camera's sound (A-law) and pictures of one RTSP session: |median| and spread within 5 ms without any
    calibration, as bare ffmpeg copying the same session in the same run; a second, video-only camera of the
    room within 20 ms of that sound once calibrated."""
    # The second camera is H.264: x265 in the stand-in falls behind on a loaded 2-core machine, and a camera that
    # delivers late in bursts cannot be mapped by anyone (H.265 recording is tested above).
    mounts = {"room": {"stimulus": str(stimulus_file), "audio": "alaw"}, "second": {"stimulus": str(stimulus_file)}}
    with RtspServer(mounts) as cams:
        # Viewers that keep both cameras' pipelines running between the two recordings: the phase of one
        # camera's flashes against the other's is then fixed, as for two cameras filming one room.
        witnesses = [subprocess.Popen([ffmpeg_exe(), "-v", "quiet", "-rtsp_transport", "tcp", "-i", cams.url(mount),
                                       "-c", "copy", "-f", "null", "-"], stdin=subprocess.DEVNULL)
                     for mount in ("room", "second")]
        time.sleep(3.0)  # the pipelines start with their first viewer: past their first seconds, as in a room
        try:
            bare = bare_ffmpeg_copy(cams.url("room"), tmp_path / "bare.mp4", 14)
            first = osce("record", "--video", "copy:" + cams.url("room"), "--video", "copy:" + cams.url("second"),
                         "--audio", "camera:0", "--seconds", "10", "--out", str(tmp_path / "first"))
            bare.wait(timeout=60)
            assert first.returncode == 0, first.stderr[-2000:]
            report = sync_check(tmp_path / "first")["tracks"]
            latency = report["cam1"]["suggested_camera_latency_ms"]
            second = osce("record", "--video", "copy:" + cams.url("room"), "--video", "copy:" + cams.url("second"),
                          "--video-latency-ms", "0", "--video-latency-ms", str(latency), "--audio", "camera:0",
                          "--seconds", "8", "--out", str(tmp_path / "second"))
            assert all(w.poll() is None for w in witnesses), "a camera's pipeline restarted between the recordings"
        finally:
            for witness in witnesses:
                witness.terminate()
                witness.wait(timeout=10)
    assert second.returncode == 0, second.stderr[-2000:]
    ours, baseline = report["cam0"], offsets_after(tmp_path / "bare.mp4", 5.0)
    assert ours["pairs"] >= 6 and baseline["pairs"] >= 6, (ours, baseline)
    assert abs(ours["median_ms"]) <= 5 and ours["spread_ms"] <= 5, (ours, baseline)
    # Bare ffmpeg lands on 0 or on a multiple of ~17 ms, depending on how its sound started (before or after the
    # first sender report): the stand-in is steady (small spread), and the recorder is not worse than the tool.
    assert baseline["spread_ms"] <= 5 and abs(ours["median_ms"]) <= max(5.0, abs(baseline["median_ms"])), baseline
    calibrated = sync_check(tmp_path / "second")["tracks"]
    assert abs(calibrated["cam1"]["median_ms"]) <= 20 and calibrated["cam1"]["pairs"] >= 4, calibrated
    assert abs(calibrated["cam0"]["median_ms"]) <= 5, calibrated
    for folder in ("first", "second"):
        assert osce("verify-recording", str(tmp_path / folder)).returncode == 0
        assert decode_errors(tmp_path / folder, "cam0") == "" and decode_errors(tmp_path / folder, "cam1") == ""


def test_the_live_view_sends_the_sub_stream_by_copy_with_the_rooms_sound(tmp_path: Path) -> None:
    from media.live import Chunk
    from media.recorder import Recorder, RecorderConfig, SourceConfig

    calls: list[tuple[str, bool]] = []
    chunks: dict[str, list[Chunk]] = {}

    def live(track, muxer=None) -> None:  # noqa: ANN001 - as the agent's LivePublisher.attach
        from media.live import attach

        calls.append((track.id, muxer is not None))
        chunks[track.id] = []
        (muxer or attach(track)).listen(chunks[track.id].append)

    mounts = {"main": {"video": "h265", "audio": "alaw", "width": 640, "height": 360, "key_int": 25},
              "sub": {"width": 320, "height": 180, "key_int": 25, "bitrate_kbps": 300}}
    with RtspServer(mounts) as cams:
        recorder = Recorder(RecorderConfig(
            out_dir=tmp_path / "rec", audio=SourceConfig("camera:0"), live=live,
            videos=[SourceConfig("copy:" + cams.url("main"), live_url=cams.url("sub")),
                    SourceConfig("copy:" + cams.url("main"), live_url=cams.url("no-such-sub"))]))
        recorder.start()
        time.sleep(7)
        recorder.stop()
    assert calls == [("cam0", True), ("cam1", False)]  # cam1's sub-stream does not open: the recorded stream
    sub = b"".join(c.data for c in chunks["cam0"])
    assert mp4box.codecs(chunks["cam0"][0].data).startswith("avc1.") and b"mp4a" in chunks["cam0"][0].data
    assert mp4box.codecs(chunks["cam1"][0].data).startswith("hvc1.")
    (tmp_path / "live.mp4").write_bytes(sub)
    check = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "live.mp4"), "-f", "null", "-"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stderr == "", check.stderr[-500:]
    with av.open(str(tmp_path / "live.mp4")) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (320, 180)
        frames = sum(1 for _ in container.decode(video))
    with av.open(str(tmp_path / "live.mp4")) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(container.streams.audio[0])])
    assert frames >= 3 * 25 and abs(dominant_hz(sound[-AUDIO_RATE:]) - 440) < 5  # the room's sound beside it
    assert read_manifest(tmp_path / "rec").header["tracks"][0]["video"]["width"] == 640  # the main stream recorded

"""The clock fit, the drift corrector and the manifest reader on their own."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from media.clock import DeviceClock
from media.manifest import ManifestError, read_manifest, verify_recording
from media.resample import DriftCorrector
from media.sources.base import AudioBlock
from tests.media.conftest import osce


@pytest.mark.parametrize("skew_ppm", [-1000, 100, 1000])
def test_device_clock_learns_skew_through_jitter_and_a_late_start(skew_ppm):
    rng = random.Random(1)
    clock = DeviceClock()
    for i in range(25 * 60):
        true_t = i / 25
        device_t = true_t * (1 + skew_ppm * 1e-6)
        late = rng.uniform(0, 0.010) + (0.4 * (1 - true_t) if true_t < 1 else 0.0)  # a backlog flushed at start
        clock.observe(device_t, 1000.0 + true_t + late)
    assert clock.drift_ppm == pytest.approx(skew_ppm, abs=20)
    # The mapping lands on the earliest arrivals: the true capture instant, within a millisecond.
    assert clock.to_shared(60 * (1 + skew_ppm * 1e-6)) == pytest.approx(1060.0, abs=0.0015)


def test_drift_corrector_outputs_exactly_the_nominal_rate_on_the_shared_clock():
    rate, skew = 48000, 1000e-6
    corrector = DriftCorrector(rate, origin=0.0)
    device_rate = rate * (1 + skew)
    produced, first_pts = 0, None
    n = 0
    tone = np.sin(2 * np.pi * 1000 * np.arange(480) / rate).astype(np.float32)
    while n < device_rate * 30:
        capture_t = n / device_rate
        pts, out = corrector.push(AudioBlock(samples=tone, first_index=n, capture_t=capture_t))
        if out.size:
            first_pts = pts if first_pts is None else first_pts
            assert pts == first_pts + produced  # one continuous sample stream, no gaps or overlaps
            produced += out.size
        n += 480
    # 30 s of device samples at +1000 ppm are 30 s of shared time: 30 * 48000 output samples.
    assert produced == pytest.approx(30 * rate, abs=rate * 0.002)
    assert corrector.resyncs == 0


def write_manifest(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.jsonl").write_text("".join(lines), encoding="utf-8")


HEADER = json.dumps({"type": "recording", "format": "osce-recording/1", "recording_id": "r", "station": "s",
                     "started_wall": "2026-11-26T08:00:00Z", "fragment_s": 2.0,
                     "tracks": [{"id": "cam0"}]}) + "\n"


def fragment_line(file, sha="0" * 64, size=3, kind="init", seq=0):
    return json.dumps({"type": "fragment", "track": "cam0", "seq": seq, "kind": kind, "file": file,
                       "sha256": sha, "size": size, "start": None, "end": None}) + "\n"


def test_manifest_cut_short_by_a_crash_is_read_up_to_the_last_whole_line(tmp_path):
    write_manifest(tmp_path, [HEADER, fragment_line("cam0/init.mp4"), '{"type": "fragm'])
    manifest = read_manifest(tmp_path)
    assert manifest.truncated_tail and len(manifest.fragments) == 1


def test_manifest_with_a_bad_line_in_the_middle_names_the_line(tmp_path):
    write_manifest(tmp_path, [HEADER, "garbage\n", fragment_line("cam0/init.mp4")])
    with pytest.raises(ManifestError, match=r"manifest.jsonl:2: not a manifest line"):
        read_manifest(tmp_path)


def test_manifest_refuses_paths_outside_the_recording(tmp_path):
    write_manifest(tmp_path, [HEADER, fragment_line("../../etc/passwd")])
    with pytest.raises(ManifestError, match=r":2: bad fragment kind or file '../../etc/passwd'"):
        read_manifest(tmp_path)


def test_verify_recording_finds_an_altered_and_a_missing_file(tmp_path):
    (tmp_path / "cam0").mkdir()
    (tmp_path / "cam0" / "init.mp4").write_bytes(b"abc")
    write_manifest(tmp_path, [HEADER, fragment_line("cam0/init.mp4"),
                              fragment_line("cam0/000001.m4s", kind="media", seq=1)])
    problems = verify_recording(tmp_path)
    assert "cam0/init.mp4: size or SHA-256 differs from the manifest" in problems
    assert "cam0/000001.m4s: listed but missing" in problems


def test_sync_check_of_a_folder_without_a_recording_is_a_clear_error(tmp_path):
    result = osce("sync-check", str(tmp_path))
    assert result.returncode == 2
    assert "no manifest" in result.stderr


def test_bad_record_arguments_are_named(tmp_path):
    result = osce("record", "--video", "synthetic", "--seconds", "1", "--size", "720p", "--out", str(tmp_path))
    assert result.returncode != 0 and "--size '720p'" in result.stderr


def test_a_stalled_audio_thread_does_not_shift_the_sound():
    """Blocks held back 2.5 s by a busy machine arrive in a burst stamped late; sync must hold after."""
    rate, skew = 48000, 1000e-6
    device_rate = rate * (1 + skew)
    corrector = DriftCorrector(rate, origin=2.0)
    rng = random.Random(4)
    outputs = {}
    n = 0
    while n < device_rate * 60:
        true_t = n / device_rate + 480 / device_rate
        delivered = true_t + rng.uniform(0, 0.004)
        if 20.0 <= true_t < 22.5:
            delivered = 22.5 + (true_t - 20.0) * 0.01  # the backlog flushed at once
        block = np.full(480, n, dtype=np.float32)  # each sample carries its block's device index
        pts, out = corrector.push(AudioBlock(samples=block, first_index=n, capture_t=delivered - 480 / device_rate))
        for i in range(out.size):
            outputs[pts + i] = out[i]
        n += 480
    assert corrector.resyncs == 0
    # Output sample j stands for shared time origin + j / rate; it must carry the device sample captured then.
    for t in (10.0, 30.0, 50.0):
        j = round((t - 2.0) * rate)
        device_index = outputs[j]
        captured_at = device_index / device_rate
        assert abs(captured_at - t) < 0.005 + 480 / device_rate, (t, captured_at)


def test_an_audio_gap_is_filled_with_silence_so_later_sound_stays_in_place(tmp_path):
    from media.manifest import ManifestWriter
    from media.track import EncodeSettings, Track

    manifest = ManifestWriter(tmp_path, {"recording_id": "r", "station": "s", "tracks": [{"id": "cam0"}]})
    track = Track(tmp_path, "cam0", manifest, EncodeSettings(), 64, 64, 25.0, None, with_audio=True)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    for i in range(125):  # 5 s of video
        track.add_frame(image, i / 25)
    track.add_audio(0, np.full(48000, 0.1, dtype=np.float32))  # second 0..1
    track.add_audio(3 * 48000, np.full(48000, 0.1, dtype=np.float32))  # second 3..4 after a 2 s hole
    track.close()
    manifest.close()
    assert track.silence_filled == 2 * 48000
    import av

    from media.fragments import ChainedReader
    from media.manifest import read_manifest

    files = [tmp_path / f.file for f in read_manifest(tmp_path).track_files("cam0")]
    with av.open(ChainedReader(files)) as container:
        decoded = sum(frame.samples for frame in container.decode(audio=0))
    assert decoded >= 4 * 48000 - 2048  # one continuous stream: the hole is there as silence

"""media/live.py: the live muxer re-muxes a Track's own packets (no second encode) into per-frame chunks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from media.calibration import ffmpeg_exe
from media.live import CHUNK, INIT, KEY, Chunk, attach, codecs_of_init, moof_samples
from media.manifest import ManifestWriter
from media.track import EncodeSettings, Track


def _track(tmp_path: Path) -> Track:
    return Track(tmp_path, "cam0", ManifestWriter(tmp_path, {"station": "t"}), EncodeSettings(fragment_s=1.0),
                 320, 180, 25, None, with_audio=True)


def _feed(track: Track, seconds: float, start: int = 0) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)
    for i in range(start, start + round(seconds * 25)):
        track.add_frame(np.roll(image, i * 4, axis=1), i / 25)
        track.add_audio(i * 1920, (0.1 * np.sin(np.arange(i * 1920, (i + 1) * 1920) / 8)).astype(np.float32))


def test_chunk_wire_format_round_trips_and_rejects_garbage() -> None:
    chunk = Chunk(KEY, 12.5, b"moofmdat")
    assert Chunk.decode(chunk.encode()) == chunk
    with pytest.raises(ValueError):
        Chunk.decode(b"X" + chunk.encode()[1:])
    with pytest.raises(ValueError):
        Chunk.decode(b"K\x00")


def test_live_chunks_are_the_recorded_packets_one_frame_each(tmp_path: Path) -> None:
    track = _track(tmp_path)
    muxer = attach(track)
    chunks: list[Chunk] = []
    assert muxer.listen(chunks.append) == []  # nothing before the first key frame
    _feed(track, 2.0)
    track.close()
    muxer.close()
    assert chunks[0].kind == INIT and chunks[1].kind == KEY
    assert codecs_of_init(chunks[0].data).startswith("avc1.64")
    assert [c.kind for c in chunks].count(KEY) == 2  # the recording's key frames: one per 1 s fragment
    # One video frame per chunk (with the audio muxed meanwhile): small chunks, low latency.
    video_per_chunk = [dict(moof_samples(c.data[:int.from_bytes(c.data[:4], "big")])).get(1, 0) for c in chunks[1:]]
    assert max(video_per_chunk) == 1 and sum(video_per_chunk) >= 49
    assert all(a.t <= b.t + 0.05 for a, b in zip(chunks[1:], chunks[2:], strict=False))
    # The live stream holds exactly the recorded video packets (same bytes: no second encode).
    live = tmp_path / "live.mp4"
    live.write_bytes(b"".join(c.data for c in chunks))
    files = [tmp_path / "cam0" / "init.mp4", *sorted((tmp_path / "cam0").glob("*.m4s"))]
    recorded = b"".join(p.read_bytes() for p in files)
    (tmp_path / "rec.mp4").write_bytes(recorded)

    def video_packets(path: Path) -> list[tuple[int, bytes]]:
        with av.open(str(path)) as c:
            return [(p.pts, bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]

    live_packets, recorded_packets = video_packets(live), video_packets(tmp_path / "rec.mp4")
    assert [data for _, data in live_packets] == [data for _, data in recorded_packets]
    assert [pts for pts, _ in live_packets] == [i * 3600 for i in range(50)]  # the capture times, exactly
    result = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(live), "-f", "null", "-"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""


def test_a_joiner_gets_init_and_the_gop_from_its_key_frame(tmp_path: Path) -> None:
    track = _track(tmp_path)
    muxer = attach(track)
    _feed(track, 1.5)  # a key frame at 0 and at 1 s
    snapshot = muxer.listen(lambda c: None)
    assert [c.kind for c in snapshot[:2]] == [INIT, KEY]
    assert snapshot[1].t == pytest.approx(1.0)
    assert all(c.kind == CHUNK for c in snapshot[2:]) and len(snapshot) > 12
    track.close()
    muxer.close()


def test_a_failing_tap_never_stops_the_recording(tmp_path: Path) -> None:
    track = _track(tmp_path)

    def broken(packet: av.Packet) -> None:
        raise RuntimeError("viewer gone mad")

    track.taps.append(broken)
    muxer = attach(track)
    got: list[Chunk] = []
    muxer.listen(got.append)
    _feed(track, 1.2)
    track.close()
    assert track.frames == 30 and len(list((tmp_path / "cam0").glob("*.m4s"))) == 2
    assert len(got) > 30  # the tap after the broken one still ran

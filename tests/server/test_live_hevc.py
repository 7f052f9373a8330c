"""An H.265 room camera recorded by stream copy goes live as recorded: the live muxer keeps its packets (no
second encode) in an hvc1 init, and every segment of the server's HLS output plays with ffmpeg (init + segment),
fed from a real RTSP camera (GStreamer's server, media/rtsp_server.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from media.calibration import ffmpeg_exe
from media.live import Chunk, attach, codecs_of_init
from media.recorder import Recorder, RecorderConfig, SourceConfig
from media.rtsp_server import RtspServer
from review_server.live import Channel
from tests.media.conftest import rtsp_stand_in


def test_every_hls_segment_of_an_h265_camera_plays(tmp_path: Path) -> None:
    rtsp_stand_in()
    channel = Channel("st1", "cam0")
    muxers = []

    def live(track) -> None:  # noqa: ANN001 - media.track.Track
        muxer = attach(track)
        muxer.listen(lambda chunk: channel.publish(chunk.encode()))
        muxers.append(muxer)

    with RtspServer({"cam": {"video": "h265", "audio": "alaw", "width": 480, "height": 270, "key_int": 25}}) as cams:
        recorder = Recorder(RecorderConfig(out_dir=tmp_path / "rec", videos=[SourceConfig("copy:" + cams.url("cam"))],
                                           audio=SourceConfig("camera:0"), live=live))
        recorder.start()
        deadline = time.monotonic() + 30
        while len(channel.segments) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        recorder.stop()
    for muxer in muxers:
        muxer.close()
    assert channel.init is not None and len(channel.segments) >= 4, len(channel.segments)
    init = Chunk.decode(channel.init).data
    assert codecs_of_init(init).startswith("hvc1.1.6.L") and "mp4a.40.2" in codecs_of_init(init)
    assert "#EXT-X-MAP:URI=\"init.mp4\"" in channel.playlist("")
    for segment in channel.segments:
        result = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-f", "null", "-"],
                                input=init + segment.data, capture_output=True, timeout=60)
        assert result.returncode == 0 and result.stderr == b"", (segment.seq, result.stderr[-500:])
        frames = subprocess.run([ffmpeg_exe(), "-i", "pipe:0", "-map", "0:v", "-f", "null", "-"],
                                input=init + segment.data, capture_output=True, timeout=60).stderr.decode()
        assert int(frames.rsplit("frame=", 1)[1].split()[0]) >= 20  # a whole second of pictures, decoded

"""An IP camera that already sends H.264, recorded by stream copy: no decode, no re-encode.

PyAV demuxes the stream (RTSP, HTTP, UDP MPEG-TS); each packet keeps its bytes and is
re-timed onto the shared clock like any other source, so a room PC with three such cameras
spends almost no CPU on them.
"""

from __future__ import annotations

from collections.abc import Iterator

import av

from media import clock
from media.sources.base import EncodedVideo, SourceError
from media.sources.rtsp import masked


class StreamCopyCamera:
    encoded = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"camera {masked(url)} (stream copy)"
        self.description = self.name
        self.width = self.height = 0
        self.fps = 25.0
        self.stream: av.video.stream.VideoStream | None = None
        self._container: av.container.InputContainer | None = None
        self._packets: Iterator[av.Packet] | None = None

    def open(self) -> None:
        options = {"rtsp_transport": "tcp"} if self.url.startswith("rtsp") else {}
        try:
            container = av.open(self.url, options=options, timeout=(5.0, 2.0))
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"{self.name}: cannot open ({masked(str(exc))})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.name}: the stream has no video")
        stream = container.streams.video[0]
        if stream.codec_context.name != "h264":
            container.close()
            raise SourceError(f"{self.name}: sends {stream.codec_context.name}, stream copy needs H.264")
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        if stream.average_rate:
            self.fps = float(stream.average_rate)
        self.stream = stream
        self._container = container
        self._packets = container.demux(stream)

    def read(self, timeout: float) -> EncodedVideo | None:
        if self._packets is None:
            raise SourceError(f"{self.name}: not open")
        try:
            for packet in self._packets:
                if packet.pts is None or packet.size == 0:
                    continue
                return EncodedVideo(packet=packet, device_t=float(packet.pts * packet.time_base),
                                    observed_t=clock.now())
        except (av.error.FFmpegError, OSError):
            return None
        return None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._packets = None

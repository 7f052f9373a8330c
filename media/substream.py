"""A camera's sub-stream for the observation room: its second, low-resolution H.264 stream, sent on by stream copy.

Ceiling cameras send a main stream (recorded and archived) and a sub-stream (a few hundred kbit/s). With a
sub-stream configured, the live view shows it instead of the recorded stream: the room PC neither decodes nor
encodes anything for the observers, and the server relays a fifth of the bytes. Its pictures are put on the
recording's clock by their own camera-stamped mapping (`DeviceClock.stamped`), and the sound is the room's, the
very AAC packets the recording's track muxes. A sub-stream that cannot be opened leaves the live view on the
recorded stream; one that goes away is tried again every second meanwhile (the live view pauses).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import av

from media import clock
from media.clock import DeviceClock
from media.live import LiveMuxer
from media.sources.base import EncodedVideo, SourceError
from media.sources.rtsp import RtspCamera
from media.track import VIDEO_TB, Track

log = logging.getLogger(__name__)

STALL_S = 2.0
RETRY_S = 1.0


class SubStream:
    def __init__(self, url: str, track: Track, origin: float, latency_s: float = 0.0, transport: str = "tcp",
                 user: str | None = None, password: str | None = None) -> None:
        self.camera = RtspCamera(url, transport=transport, user=user, password=password, copy=True)
        self.track, self.origin, self.latency_s = track, origin, latency_s
        self.muxer: LiveMuxer | None = None
        self.packets = 0
        self._clock = DeviceClock.stamped()
        self._timeline = -1
        self._last_pts = -1
        self._sound_ready = track.audio is None  # the live init needs the track's AAC set-up: after its first packet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveMuxer:
        """Open the sub-stream (SourceError if it cannot be) and start sending it to the muxer returned."""
        self.camera.open()
        assert self.camera.stream is not None
        self.muxer = LiveMuxer(self.camera.stream, self.track.audio, self.camera.fps)
        self.track.taps.append(self._sound)
        self._thread = threading.Thread(target=self._run, name=f"substream-{self.track.id}", daemon=True)
        self._thread.start()
        return self.muxer

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.camera.close()

    def _sound(self, packet: av.Packet) -> None:
        """The recording track's tap: its AAC packets go to the live view too (its pictures do not)."""
        if packet.stream is self.track.audio and self.muxer is not None:
            self._sound_ready = True
            self.muxer.tap(packet)

    def _run(self) -> None:
        last_seen = clock.now()
        while not self._stop.is_set():
            try:
                item = self.camera.read(timeout=0.5)
            except SourceError:
                item = None
            if item is None:
                if clock.now() - last_seen > STALL_S:
                    self._reopen()
                    last_seen = clock.now()
                continue
            last_seen = clock.now()
            if isinstance(item, EncodedVideo):
                self._send(item)

    def _reopen(self) -> None:
        self.camera.close()
        while not self._stop.wait(RETRY_S):
            try:
                self.camera.open()
                return
            except SourceError as exc:
                log.info("%s: sub-stream: %s", self.track.id, exc)

    def _send(self, item: EncodedVideo) -> None:
        if self.camera.timeline != self._timeline:
            self._clock, self._timeline = DeviceClock.stamped(), self.camera.timeline
        self._clock.observe(item.device_t, item.observed_t)
        t = self._clock.to_shared(item.device_t) - self.latency_s - self.origin
        if t < 0 or not self._sound_ready or self.muxer is None:
            return
        packet = item.packet
        pts = max(round(t / VIDEO_TB), self._last_pts + 1)
        lead = (packet.pts - packet.dts) if packet.pts is not None and packet.dts is not None else 0
        lead_ticks = round(float(lead * packet.time_base) / VIDEO_TB) if packet.time_base else 0
        packet.time_base = VIDEO_TB
        packet.pts, packet.dts = pts, pts - lead_ticks
        self._last_pts = pts
        self.muxer.tap(packet)
        self.packets += 1


def live_of(track: Track, live: Callable[..., object], sub: SubStream | None) -> None:
    """Hand the live view a camera's muxer: the sub-stream's when it opened, else the recorded track's own."""
    if sub is None:
        live(track)
        return
    try:
        muxer = sub.start()
    except SourceError as exc:
        log.warning("%s: sub-stream %s; the live view shows the recorded stream", track.id, exc)
        live(track)
        return
    live(track, muxer)
